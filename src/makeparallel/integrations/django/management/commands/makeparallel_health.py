"""``manage.py makeparallel_health``: start the configured pool and print its health report.

A deployment check: the workers start with these settings (Django loads in
them), and the report says so. Exits with an error when the pool is not healthy.
"""

from __future__ import annotations

import json
import time
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from ... import get_pool


class Command(BaseCommand):
    help = "Start the makeparallel pool of settings.MAKEPARALLEL and print its health report."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--wait",
            type=float,
            default=30.0,
            help="seconds to wait for the workers to start (default 30)",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        pool = get_pool()
        deadline = time.monotonic() + options["wait"]
        report = pool.health()
        while report.workers_starting and time.monotonic() < deadline:
            time.sleep(0.05)  # polling a report: there is no event for "workers started"
            report = pool.health()
        self.stdout.write(json.dumps(report.to_dict(), indent=2))
        if not report.healthy:
            raise CommandError(f"pool {report.pool!r} is not healthy: {'; '.join(report.reasons)}")
