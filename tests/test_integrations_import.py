"""The integrations package stays light: importing it imports no framework."""

from __future__ import annotations

from programs import run_python

FRAMEWORKS = ("fastapi", "starlette", "flask", "django", "joblib", "sklearn", "dask")


def test_importing_the_integrations_package_imports_no_framework() -> None:
    code = (
        "import sys, makeparallel, makeparallel.integrations\n"
        f"print(sorted(m for m in {FRAMEWORKS!r} if m in sys.modules))"
    )
    assert run_python("-c", code).stdout.strip() == "[]"
