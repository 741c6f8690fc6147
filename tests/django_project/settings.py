"""Settings of the test project; the database file is named by MAKEPARALLEL_TEST_DB."""

import os

SECRET_KEY = "tests-only"
USE_TZ = True
INSTALLED_APPS = ["django_project", "makeparallel.integrations.django"]
DATABASES = {
    "default": {
        "ENGINE": "django.db.backends.sqlite3",
        "NAME": os.environ.get("MAKEPARALLEL_TEST_DB", ":memory:"),
    }
}
DEFAULT_AUTO_FIELD = "django.db.models.AutoField"
MAKEPARALLEL = {"workers": 1, "start": "spawn", "shutdown_timeout": 10}
