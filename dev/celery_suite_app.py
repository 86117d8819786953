"""The stock Celery worker's app for dev/celery-suite (SWIFTQ_SUITE_WORKER=celery): the configuration the suite's
own fixtures give the app it tests (t/integration/conftest.py: celery_config, celery_includes, celery_class_tasks),
so `celery -A celery_suite_app worker` serves exactly what the embedded worker would."""

import os

from celery import Celery
from celery.contrib.testing.app import DEFAULT_TEST_CONFIG

app = Celery("celery.tests")
app.conf.update(DEFAULT_TEST_CONFIG)
app.conf.update(
    broker_url=os.environ["TEST_BROKER"],
    result_backend=os.environ["TEST_BACKEND"],
    result_extended=True,
    task_create_missing_queues=False,
)
app.set_default()
# celery.ping, which the fixture sends before any test (the test process imports it with celery.contrib.pytest).
app.loader.import_task_module("celery.contrib.testing.tasks")
app.loader.import_task_module("t.integration.tasks")

from t.integration.tasks import ClassBasedAutoRetryTask  # noqa: E402

app.register_task(ClassBasedAutoRetryTask)
