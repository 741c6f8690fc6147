"""Functions the tests run in worker processes."""

from __future__ import annotations

import os


def note_texts() -> tuple[int, list[str]]:
    """The notes in the database, read with the ORM, and the pid that read them."""
    from django_project.models import Note

    return os.getpid(), sorted(Note.objects.values_list("text", flat=True))


def add_note(text: str) -> int:
    from django_project.models import Note

    return Note.objects.create(text=text).pk


def connection_open() -> bool:
    """Whether this worker's default connection is open as the task starts."""
    from django.db import connection

    return connection.connection is not None
