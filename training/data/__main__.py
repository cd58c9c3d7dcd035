"""``python -m training.data TASK``: build a task's data set into its cache (reused on the next run)."""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence

from rt_host.errors import DeepAFxError
from training.data.builder import BUILDERS, summary


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m training.data TASK [--cache DIR] [--seed N] [--force] [--workers N]``."""
    parser = argparse.ArgumentParser(
        prog="python -m training.data",
        description="Build a task's data set from Debian-packaged audio into a cache outside git "
        "(reused on the next run).",
    )
    parser.add_argument("task", choices=sorted(BUILDERS), help="which data set")
    parser.add_argument(
        "--cache",
        metavar="DIR",
        help="cache folder (default: $DEEPAFX_DATA/TASK or ~/.cache/deepafx-rt/data/TASK)",
    )
    parser.add_argument(
        "--seed", type=int, default=0, help="seed of the split and the degradations (default 0)"
    )
    parser.add_argument("--force", action="store_true", help="rebuild even if a matching cache exists")
    parser.add_argument("--workers", type=int, default=None, help="worker processes (default: all cores)")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    if args.workers is not None and args.workers < 1:
        parser.error("--workers must be ≥ 1")
    try:
        cache = BUILDERS[args.task](
            args.cache, args.seed, force=args.force, workers=args.workers, progress=not args.quiet
        )
        print(summary(cache))
    except DeepAFxError as exc:
        print(f"training.data: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(
            "training.data: interrupted; the cache is left unfinished and will rebuild next time",
            file=sys.stderr,
        )
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
