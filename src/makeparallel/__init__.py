"""makeparallel: run Python functions on all your cores with one decorator.

import makeparallel as mp

@mp.parallel
def crunch(n: int) -> int: ...

handles = [crunch(n) for n in range(8)]   # returns at once
results = mp.gather(handles)
"""

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
    CircuitOpenError,
    SerializationError,
    TaskCancelledError,
    TaskError,
    TaskTimeoutError,
    WorkerCrashedError,
)
from .handle import Handle, TaskState
from .policies import CircuitBreaker, CircuitState, Exponential, Fixed, Retry
from .pool import Pool
from .task import TaskContext, current_task, report_progress

__version__ = "0.3.0.dev0"

__all__ = [
    "CircuitBreaker",
    "CircuitOpenError",
    "CircuitState",
    "Exponential",
    "Fixed",
    "Handle",
    "ParallelFunction",
    "Pool",
    "Retry",
    "SerializationError",
    "TaskCancelledError",
    "TaskContext",
    "TaskError",
    "TaskState",
    "TaskTimeoutError",
    "WorkerCrashedError",
    "__version__",
    "as_completed",
    "configure",
    "current_task",
    "gather",
    "imap",
    "parallel",
    "parallel_map",
    "report_progress",
    "shutdown",
]
