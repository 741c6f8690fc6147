"""A minimal Django project for the Django integration's tests (one app, one model)."""
