import NIOHTTP1
public enum S {}
