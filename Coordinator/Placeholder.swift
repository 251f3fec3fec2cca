import CLibPQ
public enum C {}
