import LoadstarAgent
import LoadstarCoordinator
import ArgumentParser
print("x")
