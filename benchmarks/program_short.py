"""A short script: import its module, map that module's function over a few items, exit.

    python benchmarks/program_short.py CONTENDER WORKERS ITEMS LOOPS

``whole_program.py`` runs it in a fresh interpreter for each sample and
times it from start to exit. The module, ``task_numpy.py``, imports NumPy
and a dozen standard-library modules, and is imported at the top, as a
script imports its own code (a ``forkserver`` preloads it with the script).
Each of the ITEMS items is about LOOPS turns of pure-Python arithmetic; the
script prints the sum of the results. CONTENDER is a key of
``program_pools.map_all``.
"""

from __future__ import annotations

import sys

from program_pools import map_all
from task_numpy import crunch


def main(argv: list[str]) -> None:
    key, workers, items, loops = argv
    work = [int(loops) + i for i in range(int(items))]
    print(sum(map_all(key, crunch, work, int(workers))))


if __name__ == "__main__":
    main(sys.argv[1:])
