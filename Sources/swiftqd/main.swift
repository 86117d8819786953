import SwiftqWorker

SwiftqDaemon.main()
