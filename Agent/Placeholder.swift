import CCurl
public enum A {}
