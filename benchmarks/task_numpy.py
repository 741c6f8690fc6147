"""The function of ``program_short.py``, in a module that imports a lot when it is imported.

The short script of ``whole_program.py`` maps ``crunch`` over a few items.
Like the module of a real program, this one imports NumPy and a dozen
standard-library modules at import time, used or not: every worker that
runs ``crunch`` imports them first, unless it is a fork of a process that
already has. The work itself is pure Python (``workloads.spin``).
"""

# ruff: noqa: F401  (the imports are the point: what a real module costs to import)

from __future__ import annotations

import argparse
import csv
import dataclasses
import decimal
import email.message
import email.parser
import fractions
import http.client
import json
import logging
import statistics

import numpy

from workloads import spin


def crunch(n: int) -> int:
    """``n`` turns of pure-Python arithmetic (about 20 ms for the calibrated ``n``)."""
    return spin(n)
