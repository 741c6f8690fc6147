"""Django: settings.MAKEPARALLEL, workers that use the ORM, connections closed after tasks.

Django is set up here, by this module, with the test project in
``django_project`` and a database file in a temporary folder; pytest-django
stays inert for the rest of the suite (no DJANGO_SETTINGS_MODULE at start).
"""

from __future__ import annotations

import importlib
import io
import json
import os
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

pytest.importorskip("django")
pytest.importorskip("pytest_django")

import django
from django.core.exceptions import ImproperlyConfigured
from django.core.management import call_command
from django.db import connections

import makeparallel as mp
from makeparallel.pool import live_pools
from processes import worker_pids
from programs import run_program, write_program

TESTS = Path(__file__).parent


@pytest.fixture(scope="module", autouse=True)
def database(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    path = tmp_path_factory.mktemp("django") / "db.sqlite3"
    with pytest.MonkeyPatch.context() as patch:
        # spawned workers inherit both, and find the same settings and database
        patch.setenv("MAKEPARALLEL_TEST_DB", str(path))
        patch.setenv("DJANGO_SETTINGS_MODULE", "django_project.settings")
        django.setup()
        call_command("migrate", run_syncdb=True, verbosity=0)
        yield path
        from makeparallel.integrations.django import get_pool

        get_pool().shutdown()
        connections.close_all()


def test_a_process_task_queries_the_database_with_the_orm() -> None:
    from django_project.models import Note
    from django_project.tasks import add_note, note_texts
    from makeparallel.integrations.django import get_pool

    Note.objects.all().delete()
    Note.objects.create(text="from the caller")
    pool = get_pool()
    assert (pool.name, pool.workers, pool.start) == ("django", 1, "spawn")  # settings.MAKEPARALLEL

    pid, texts = pool.submit(note_texts).result(timeout=60)
    assert texts == ["from the caller"]
    assert pid in worker_pids(pool)
    assert pid != os.getpid()

    pool.submit(add_note, "from a worker").result(timeout=60)
    assert sorted(Note.objects.values_list("text", flat=True)) == [
        "from a worker",
        "from the caller",
    ]
    # a map runs through the same set-up
    assert [t for _, t in pool.map(note_texts_of, ["a", "b"])] == [["a"], ["b"]]


def note_texts_of(prefix: str) -> tuple[int, list[str]]:
    from django_project.tasks import note_texts

    pid, texts = note_texts()
    return pid, [prefix for text in texts if text == "from a worker"]


def test_each_task_closes_its_connection_when_it_ends() -> None:
    from django_project.tasks import connection_open, note_texts
    from makeparallel.integrations.django import DjangoPool, get_pool

    pool = get_pool()  # one worker: the second task runs where the first did
    pool.submit(note_texts).result(timeout=60)
    assert pool.submit(connection_open).result(timeout=60) is False

    # without the integration the connection stays open (what the check above rules out)
    with mp.Pool(workers=1, backend="thread") as plain:
        plain.submit(note_texts).result(timeout=60)
        assert plain.submit(connection_open).result(timeout=60) is True
        plain.submit(connections.close_all).result(timeout=60)
    with DjangoPool(workers=1, backend="thread") as threads:
        threads.submit(note_texts).result(timeout=60)
        assert threads.submit(connection_open).result(timeout=60) is False
    # a task run inline, in the caller's thread, leaves the caller's connection alone
    with DjangoPool(backend="serial") as inline:
        inline.submit(note_texts).result(timeout=60)
        assert connection_open() is True


def test_ready_only_checks_the_settings(settings: object) -> None:
    from django.apps import apps

    config = apps.get_app_config("makeparallel")
    pools = set(map(id, live_pools()))
    config.ready()
    config.ready()  # Django may call it twice
    assert set(map(id, live_pools())) == pools  # no pool was made

    settings.MAKEPARALLEL = {"wokers": 2}  # type: ignore[attr-defined]
    with pytest.raises(ImproperlyConfigured, match=r"unknown key\(s\) wokers.*workers"):
        config.ready()
    settings.MAKEPARALLEL = {"workers": 0}  # type: ignore[attr-defined]
    with pytest.raises(ImproperlyConfigured, match="workers must be >= 1"):
        config.ready()
    settings.MAKEPARALLEL = [("workers", 2)]  # type: ignore[attr-defined]
    with pytest.raises(ImproperlyConfigured, match="must be a dict"):
        config.ready()


def test_the_health_command_prints_the_pools_report() -> None:
    out = io.StringIO()
    call_command("makeparallel_health", stdout=out)
    report = json.loads(out.getvalue())
    assert report["pool"] == "django"
    assert report["healthy"] is True
    assert report["workers_alive"] == 1


def test_a_forked_worker_leaves_the_callers_connection_working(
    tmp_path: Path, database: Path
) -> None:
    script = tmp_path / "forked.py"
    write_program(
        script,
        f"""
        import json, os, sys
        sys.path.insert(0, {str(TESTS)!r})
        os.environ["DJANGO_SETTINGS_MODULE"] = "django_project.settings"
        os.environ["MAKEPARALLEL_TEST_DB"] = {str(database)!r}
        import django
        django.setup()
        from django.db import connection
        from django_project.models import Note
        from django_project.tasks import note_texts
        from makeparallel.integrations.django import DjangoPool

        before = Note.objects.count()  # the caller's connection is open as the worker forks
        with DjangoPool(workers=1, start="fork") as pool:
            pid, texts = pool.submit(note_texts).result(timeout=60)
            start = pool.start
        after = Note.objects.count()
        print(json.dumps({{"start": start, "pid": pid, "texts": len(texts),
                          "before": before, "after": after}}))
        """,
    )
    found = json.loads(run_program(script, timeout=60).stdout)
    assert found["start"] == "fork"
    assert found["texts"] == found["before"] == found["after"]


def test_without_django_the_error_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "django", None)
    monkeypatch.delitem(sys.modules, "makeparallel.integrations.django")
    with pytest.raises(ImportError, match=r'pip install "makeparallel\[django\]"'):
        importlib.import_module("makeparallel.integrations.django")
