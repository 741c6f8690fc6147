"""The first batch after one warm task, when the batch needs a module the workers lack.

    python benchmarks/program_first_batch.py CONTENDER WORKERS TASKS LOOPS

Creates a pool (``program_pools.executor``), runs one tiny task on it and
waits for the result. Only then does it import ``task_pytest.py``, whose
module imports pytest, and times a batch of TASKS calls of its function
(about LOOPS turns of pure-Python arithmetic each): from the first submit
to the last result. Then it shuts the pool down and times the same calls
one after the other, here. It prints both times as JSON; ``whole_program.py``
reports their ratio, the batch's speed-up.
"""

from __future__ import annotations

import sys
import time

from program_pools import executor
from workloads import echo


def main(argv: list[str]) -> None:
    key, workers, tasks, loops = argv[0], int(argv[1]), int(argv[2]), int(argv[3])
    pool = executor(key, workers)
    if pool.submit(echo, 1).result() != 1:
        raise SystemExit("wrong result from the warm-up task")
    from task_pytest import crunch  # a heavy import the workers have not done

    started = time.perf_counter()
    futures = [pool.submit(crunch, loops) for _ in range(tasks)]
    batch = [future.result() for future in futures]
    batch_s = time.perf_counter() - started
    pool.shutdown()

    started = time.perf_counter()
    serial = [crunch(loops) for _ in range(tasks)]
    serial_s = time.perf_counter() - started
    if batch != serial:
        raise SystemExit(f"wrong results: {batch} != {serial}")
    import json

    print(json.dumps({"batch_s": batch_s, "serial_s": serial_s}))


if __name__ == "__main__":
    main(sys.argv[1:])
