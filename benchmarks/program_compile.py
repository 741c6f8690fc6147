"""A whole program: compile every file of a list in parallel, print how many compiled, exit.

    python benchmarks/program_compile.py CONTENDER WORKERS CHUNKSIZE FILE_LIST

``whole_program.py`` runs it in a fresh interpreter for each sample and
times it from start to exit. FILE_LIST names a file with one path per line
(the standard library's ``.py`` files); CONTENDER is a key of
``program_pools.map_all``; CHUNKSIZE 0 leaves the library's default.
"""

from __future__ import annotations

import sys

from program_pools import map_all
from workloads import compile_file


def main(argv: list[str]) -> None:
    key, workers, chunksize, listing = argv
    with open(listing) as paths:
        files = paths.read().splitlines()
    print(sum(map_all(key, compile_file, files, int(workers), int(chunksize) or None)))


if __name__ == "__main__":
    main(sys.argv[1:])
