"""Benchmarks behind ``deepafx-rt bench``: figures and ratios against a named
baseline measured in the same run, printed and written as JSON."""

import json
from pathlib import Path


def write_results(result: dict, path: Path | None) -> None:
    """Write a benchmark's results as JSON (creating the folder) and say where."""
    if path:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(result, indent=2))
        print(f"\nwrote {path}")
