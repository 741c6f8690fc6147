"""The Django app: ``"makeparallel.integrations.django"`` in ``INSTALLED_APPS``."""

from __future__ import annotations

from django.apps import AppConfig

from . import pool_options


class MakeParallelConfig(AppConfig):
    name = "makeparallel.integrations.django"
    label = "makeparallel"
    verbose_name = "makeparallel"

    def ready(self) -> None:
        # Checks settings.MAKEPARALLEL and nothing else: a management command, a
        # migration or a test run must not start worker processes, and Django may call
        # ready() more than once.
        pool_options()
