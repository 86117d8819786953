// The tasks of Celery's integration suite (`t/integration/tasks.py` in Celery's sdist) as Swift tasks, under their
// exact names, for dev/celery-suite: the suite then runs against this binary as it would against
// `celery -A ... worker`. Only the public task API is used (TaskRegistry, TaskInvocation, TaskEnvironment,
// TaskFailure, TaskReplace, the task effects, SwiftqDaemon.main), so the suite's pass count measures what a user's
// worker can do today. docs/celery-suite.md describes them.
//
//   swift build --product swiftq-celery-suite-worker
//   dev/celery-suite
import SwiftqWorker

var registry = TaskRegistry()
SuiteTasks.register(into: &registry)
SwiftqDaemon.main(registry: registry)
