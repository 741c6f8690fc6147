"""``python -m makeparallel profile script.py [args]``: a script run under ``mp.profile()``.

The script runs as ``__main__`` (as ``python script.py`` would run it, so its
functions reach worker processes the same way), and the report is printed
when it ends - by returning, ``sys.exit`` or an exception - to stderr, so
that it never mixes with what the script writes to stdout.
"""

from __future__ import annotations

import os
import sys
import types

from .profile import profile


def run(script: str, args: list[str]) -> int:
    try:
        with open(script, "rb") as file:
            source = file.read()
    except OSError as problem:
        print(f"makeparallel profile: cannot read {script!r}: {problem}", file=sys.stderr)
        return 2
    code = compile(source, script, "exec")
    main = types.ModuleType("__main__")
    main.__file__ = script
    main.__builtins__ = __builtins__  # type: ignore[attr-defined]
    saved = sys.modules["__main__"], sys.argv[:], sys.path[0]
    sys.modules["__main__"] = main
    sys.argv[:] = [script, *args]
    sys.path[0] = os.path.dirname(os.path.abspath(script))
    status = 0
    report = profile()
    try:
        with report:
            exec(code, main.__dict__)
    except SystemExit as exit_:
        status = _status(exit_.code)
    finally:
        print(report, file=sys.stderr, flush=True)
        sys.modules["__main__"], sys.argv[:], sys.path[0] = saved
    return status


def _status(code: object) -> int:
    if code is None:
        return 0
    if isinstance(code, int):
        return code
    print(code, file=sys.stderr)
    return 1
