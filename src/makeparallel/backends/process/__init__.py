"""The process engine: a package of small modules, one job each (see ``engine``)."""

from __future__ import annotations

from .engine import ProcessBackend

__all__ = ["ProcessBackend"]
