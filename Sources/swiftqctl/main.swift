print("swiftqctl")
