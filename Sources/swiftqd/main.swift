print("swiftqd")
