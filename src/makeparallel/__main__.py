"""``python -m makeparallel demo | bench | doctor | profile script.py [args]``."""

from __future__ import annotations

import argparse
import sys


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m makeparallel")
    commands = parser.add_subparsers(dest="command", required=True)
    demo = commands.add_parser("demo", help="show the speed-up on this machine (< 1 minute)")
    demo.add_argument("--blocks", type=int, default=None, help="number of work blocks")
    demo.add_argument("--block-size", type=int, default=None, help="numbers per block")
    bench = commands.add_parser("bench", help="a quick speed check of this machine (< 1 minute)")
    bench.add_argument("--rounds", type=int, default=3, help="repetitions (median is shown)")
    commands.add_parser("doctor", help="print what makeparallel sees on this machine")
    profile = commands.add_parser(
        "profile", help="run a script and print where its tasks' time went when it ends"
    )
    profile.add_argument("script", help="the Python script to run")
    profile.add_argument("args", nargs=argparse.REMAINDER, help="the script's arguments")
    args = parser.parse_args(argv)
    if args.command == "demo":
        from . import _demo

        _demo.run(
            blocks=args.blocks or _demo.BLOCKS, block_size=args.block_size or _demo.BLOCK_SIZE
        )
        return 0
    if args.command == "bench":
        from . import _bench

        return _bench.run(rounds=max(1, args.rounds))
    if args.command == "profile":
        from .observe import profile_script

        return profile_script.run(args.script, args.args)
    from . import _doctor

    return _doctor.run()


if __name__ == "__main__":
    sys.exit(main())
