"""Figures of a live run, as the benchmark and the status line report them."""

from __future__ import annotations

import json
import resource
import sys
from pathlib import Path

import numpy as np


def percentiles(x: np.ndarray, qs=(50, 99, 99.9)) -> dict:
    if len(x) == 0:
        return {f"p{q:g}": None for q in qs} | {"mean": None, "max": None}
    out = {f"p{q:g}": float(np.percentile(x, q)) for q in qs}
    return out | {"mean": float(np.mean(x)), "max": float(np.max(x))}


def memory_mb(pid: int | str = "self") -> dict:
    """RSS of a process, with and without JACK's shared memory.

    Every JACK client maps the server's ``/dev/shm/jack-*`` segments (~105 MB
    on a dummy server here); they count in each client's RSS but belong to the
    server, so the figure to compare is ``rss_without_jack``.
    """
    total = jack_shm = 0
    name = ""
    try:
        with open(f"/proc/{pid}/smaps") as f:
            for line in f:
                if not line[0].isupper():  # a mapping header: address range … path
                    parts = line.split()
                    name = parts[5] if len(parts) > 5 else ""
                elif line.startswith("Rss:"):
                    kb = int(line.split()[1])
                    total += kb
                    if name.startswith("/dev/shm/jack"):
                        jack_shm += kb
    except OSError:
        return {"rss": None, "rss_without_jack": None}
    return {"rss": total / 1024, "rss_without_jack": (total - jack_shm) / 1024}


def run_stats(report) -> dict:
    period_us = 1e6 * report.block / report.sample_rate if report.sample_rate else None
    cb = report.callback_us[10:]  # the first callbacks include activation
    cpu = report.callback_cpu_us[10:]
    return {
        "seconds": report.seconds,
        "sample_rate": report.sample_rate,
        "block": report.block,
        "period_us": period_us,
        "xruns_seen_by_client": report.xruns,
        "callback_us": percentiles(cb),
        "callbacks_over_period": int(np.sum(cb > period_us)) if period_us else None,
        # of those, the ones whose own CPU time was over the period too (the rest were kept waiting)
        "callbacks_cpu_over_period": int(np.sum(cpu > period_us)) if period_us else None,
        "callback_cpu_us": percentiles(cpu),
        "callbacks": int(len(cb)),
        "inference_ms": percentiles(report.inference_ms, (50, 99)),
        "predictions": report.predictions,
        "steering": report.steering,  # received / applied / late predictions, port writes, blocks
        "dropped_predictions": report.dropped_predictions,
        "skipped_windows": report.skipped_windows,
        "callback_errors": report.callback_errors,
        "nonfinite_out": int(report.nonfinite_out),
        "latency": report.latency,
        "memory_mb": report.memory_mb,
        "peak_rss_mb_controller_process": resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024,
        "tensorflow_imported": "tensorflow" in sys.modules,
        "midi": report.midi,
        "event_latency_us": percentiles(report.midi_latency_us, (50, 99)),
        "recorder_overflows": report.recorder_overflows,
        "controller_cpu_s": report.controller_cpu_s,
        "controller_cpu_share": (report.controller_cpu_s / report.seconds)
        if report.controller_cpu_s is not None and report.seconds > 0
        else None,
    }


def write_stats(report, path: Path) -> None:
    Path(path).write_text(json.dumps(run_stats(report), indent=2))
