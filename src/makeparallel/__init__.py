"""makeparallel: run Python functions on all your cores with one decorator.

    import makeparallel as mp

    @mp.parallel
    def crunch(n: int) -> int: ...

    handles = [crunch(n) for n in range(8)]   # returns at once
    results = mp.gather(handles)

The public names load on first use, so that a worker process, which needs
only the small worker loop, starts fast.
"""

from __future__ import annotations

import sys

# typing is not imported at run time: worker processes import this package
# and should start fast (mypy reads this block as the real imports).
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

    from . import testing
    from ._async_api import agather, aimap
    from .api import (
        ParallelFunction,
        as_completed,
        configure,
        gather,
        imap,
        parallel,
        parallel_map,
        shutdown,
    )
    from .errors import (
        BrokenPoolError,
        CircuitOpenError,
        MemoryLimitError,
        PoolFullError,
        SerializationError,
        TaskCancelledError,
        TaskError,
        TaskTimeoutError,
        WorkerCrashedError,
    )
    from .handle import Handle, TaskState
    from .health import HealthReport
    from .observe.events import TaskEvent, add_listener, remove_listener
    from .observe.metrics import FunctionMetrics, Metrics, TaskInfo, Timing
    from .observe.overall import metrics
    from .observe.profile import Profile, profile
    from .policies import CircuitBreaker, CircuitState, Exponential, Fixed, Retry
    from .pool import Pool, ShutdownSummary
    from .signals import install_signal_handlers
    from .task import TaskContext, current_task, report_progress

__version__ = "0.3.0.dev0"

_WHERE = {
    "agather": "_async_api",
    "aimap": "_async_api",
    "ParallelFunction": "api",
    "as_completed": "api",
    "configure": "api",
    "gather": "api",
    "imap": "api",
    "parallel": "api",
    "parallel_map": "api",
    "shutdown": "api",
    "BrokenPoolError": "errors",
    "CircuitOpenError": "errors",
    "MemoryLimitError": "errors",
    "PoolFullError": "errors",
    "SerializationError": "errors",
    "TaskCancelledError": "errors",
    "TaskError": "errors",
    "TaskTimeoutError": "errors",
    "WorkerCrashedError": "errors",
    "Handle": "handle",
    "TaskState": "handle",
    "HealthReport": "health",
    "TaskEvent": "observe.events",
    "add_listener": "observe.events",
    "remove_listener": "observe.events",
    "FunctionMetrics": "observe.metrics",
    "Metrics": "observe.metrics",
    "TaskInfo": "observe.metrics",
    "Timing": "observe.metrics",
    "metrics": "observe.overall",
    "Profile": "observe.profile",
    "profile": "observe.profile",
    "CircuitBreaker": "policies",
    "CircuitState": "policies",
    "Exponential": "policies",
    "Fixed": "policies",
    "Retry": "policies",
    "Pool": "pool",
    "ShutdownSummary": "pool",
    "install_signal_handlers": "signals",
    "TaskContext": "task",
    "current_task": "task",
    "report_progress": "task",
}

__all__ = [
    "BrokenPoolError",
    "CircuitBreaker",
    "CircuitOpenError",
    "CircuitState",
    "Exponential",
    "Fixed",
    "FunctionMetrics",
    "Handle",
    "HealthReport",
    "MemoryLimitError",
    "Metrics",
    "ParallelFunction",
    "Pool",
    "PoolFullError",
    "Profile",
    "Retry",
    "SerializationError",
    "ShutdownSummary",
    "TaskCancelledError",
    "TaskContext",
    "TaskError",
    "TaskEvent",
    "TaskInfo",
    "TaskState",
    "TaskTimeoutError",
    "Timing",
    "WorkerCrashedError",
    "__version__",
    "add_listener",
    "agather",
    "aimap",
    "as_completed",
    "configure",
    "current_task",
    "gather",
    "imap",
    "install_signal_handlers",
    "metrics",
    "parallel",
    "parallel_map",
    "profile",
    "remove_listener",
    "report_progress",
    "shutdown",
    "testing",
]

_SUBMODULES = ("testing",)  # public subpackages, imported on first use


def __getattr__(name: str) -> Any:
    module = _WHERE.get(name)
    if module is None and name in _SUBMODULES:
        __import__(f"{__name__}.{name}")
        return sys.modules[f"{__name__}.{name}"]
    if module is None:
        raise AttributeError(f"module 'makeparallel' has no attribute {name!r}")
    # __import__, not importlib.import_module: importlib imports warnings, and every
    # worker process imports this package
    qualified = f"{__name__}.{module}"
    __import__(qualified)
    value = getattr(sys.modules[qualified], name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(__all__)
