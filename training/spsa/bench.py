"""``deepafx-rt bench spsa``: how fast the SPSA layer's renders go, with and without workers.

One training step's plugin work for a batch: every window rendered at its
parameters (the forward pass) and at ``u ± εΔ`` (one SPSA draw) — 3 renders per
example, as :class:`~training.spsa.layer.LV2Layer` does them. Default: 16 windows of
40,960 samples at 22,050 Hz through the ``mastering`` chain (stereo, 53
parameters), windows starting from fresh plugins.

Cases, timed in turns (``--repeats`` rounds, each case once per round, so slow
spells of a shared machine hit all cases alike); figures use each case's
median batch time:

* ``in-process`` — the same tasks, serially, in this process: the baseline.
* ``1 worker`` / ``2 workers`` — :class:`~training.spsa.workers.LocalPool`.
* ``in-process, continue`` — no reset between renders (plugins carry their
  state on): what the exact fresh start of every window costs.
* ``ray, N workers`` with ``--ray`` — timed after the others, alone (Ray's
  daemons would otherwise take CPU from them).

Goals (issue 4): 2 workers ≥ 1.8 × 1 worker on 2 cores; the pool's overhead
(1 worker against in-process) ≤ 10 %.

On a machine shared with other work both ratios mostly measure the other work.
Two figures tell the pool's part apart: "workers busy" (the share of the
workers' wall time spent inside tasks — the rest is the pool's own cost), and
the machine's ceiling, measured before and after the rounds: how many renders
per second 1 and 2 plain processes manage side by side, with no pool at all.
"""

from __future__ import annotations

import argparse
import os
import pickle
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from tqdm import tqdm

from rt_host.bench import write_results
from rt_host.lv2 import Chain
from rt_host.signals import unmastered_mix
from training.spsa.renderer import RenderSettings
from training.spsa.workers import InProcessPool, WorkerPool, create_pool

GOAL_SCALING = 1.8
GOAL_OVERHEAD = 0.10


def make_batch(channels: int, n_params: int, batch: int, samples: int, rate: int, seed: int = 0):
    """Windows cut from a generated mix, random parameters, a random output gradient."""
    rng = np.random.default_rng(seed)
    mix = unmastered_mix(batch * samples / rate + 1.0, rate, seed=seed)
    x = np.stack([mix[:, i * samples : (i + 1) * samples] for i in range(batch)])
    if channels == 1:
        x = x.mean(axis=1, keepdims=True)
    u = rng.uniform(0.1, 0.9, size=(batch, n_params))
    dy = rng.standard_normal((batch, channels, samples)).astype(np.float32) * 1e-3
    delta = rng.choice([-1.0, 1.0], size=(batch, 1, n_params))
    return x.astype(np.float32), u, dy, delta


def one_step(pool: WorkerPool, batch, epsilon: float) -> tuple[float, float | None]:
    """Seconds for the forward renders plus one SPSA draw per example, and the
    seconds local workers spent inside tasks meanwhile (None for other pools)."""
    x, u, dy, delta = batch
    busy_before = getattr(pool, "busy_seconds", None)
    start = time.perf_counter()
    pool.forward(x, u)
    pool.gradients(x, u, dy, epsilon=epsilon, delta=delta)
    wall = time.perf_counter() - start
    busy = None if busy_before is None else pool.busy_seconds - busy_before
    return wall, busy


_CEILING_PROBE = """
import pickle, sys, time
from training.spsa.renderer import Renderer
settings, x, u = pickle.load(open(sys.argv[1], "rb"))
start, seconds = float(sys.argv[2]), float(sys.argv[3])
r = Renderer(settings)
r.render(x, u)
while time.time() < start:
    time.sleep(0.001)
n = 0
while time.time() < start + seconds:
    r.render(x, u)
    n += 1
print(n / (time.time() - start))
"""


def machine_ceiling(settings: RenderSettings, x, u, seconds: float) -> dict[str, float]:
    """Renders per second of 1 and of 2 plain processes side by side (no pool, no messages)."""
    rates = {}
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "window.pkl"
        path.write_bytes(pickle.dumps((settings, x, u)))
        for n in (1, 2):
            start = time.time() + 8.0  # every process imported and warm by then
            procs = [
                subprocess.Popen(
                    [sys.executable, "-c", _CEILING_PROBE, str(path), str(start), str(seconds)],
                    stdout=subprocess.PIPE,
                    text=True,
                )
                for _ in range(n)
            ]
            rates[n] = sum(float(p.communicate()[0]) for p in procs)
    return {
        "renders_per_s_1_process": rates[1],
        "renders_per_s_2_processes": rates[2],
        "ratio": rates[2] / rates[1],
    }


def run(args: argparse.Namespace) -> dict:
    settings = RenderSettings.for_chain(args.chain, args.rate, block_size=args.block)
    continue_settings = RenderSettings.for_chain(
        args.chain, args.rate, block_size=args.block, window_start="continue"
    )
    worker_counts = [int(w) for w in args.workers.split(",")]
    load_at_start = os.getloadavg()[0]
    print(
        f"bench spsa: {args.batch} windows × {args.samples} samples at {args.rate} Hz through "
        f"{args.chain!r}, forward + 1 SPSA draw (3 renders per window), {args.repeats} rounds; "
        f"{os.cpu_count()} cores, load {os.getloadavg()[0]:.2f}"
    )
    factories = {"in-process": lambda: InProcessPool(settings)}
    for n in worker_counts:
        factories[f"{n} worker{'s' if n > 1 else ''}"] = lambda n=n: create_pool(settings, n)
    factories["in-process, continue"] = lambda: InProcessPool(continue_settings)
    times: dict[str, list[float]] = {}
    busy: dict[str, list[float]] = {}
    workers: dict[str, int] = {}
    groups = [factories]  # cases timed in turns
    if args.ray:  # timed on its own: Ray's daemons would otherwise load the local cases
        most = max(worker_counts)
        groups.append({f"ray, {most} workers": lambda: create_pool(settings, "ray", n_workers=most)})
    chain = Chain(settings.spec())
    batch = make_batch(chain.channels, chain.n_params, args.batch, args.samples, args.rate)
    ceiling = []
    if args.ceiling_seconds > 0:
        print("machine ceiling: 1 and 2 plain render processes …")
        ceiling.append(machine_ceiling(settings, batch[0][0], batch[1][0], args.ceiling_seconds))
    total = sum((args.repeats + 1) * len(g) for g in groups)
    with tqdm(total=total, desc="batches", unit="batch") as bar:
        for group in groups:
            pools: dict[str, WorkerPool] = {}
            try:
                for name, make in group.items():
                    pools[name] = make()
                    workers[name] = pools[name].n_workers
                    times[name], busy[name] = [], []
                for pool in pools.values():  # warm-up: first instantiations, numba cache
                    one_step(pool, batch, args.epsilon)
                    bar.update(1)
                for _ in range(args.repeats):
                    for name, pool in pools.items():
                        wall, in_tasks = one_step(pool, batch, args.epsilon)
                        times[name].append(wall)
                        if in_tasks is not None:
                            busy[name].append(in_tasks / (pool.n_workers * wall))
                        bar.update(1)
            finally:
                for pool in pools.values():
                    pool.close()

    if args.ceiling_seconds > 0:
        ceiling.append(machine_ceiling(settings, batch[0][0], batch[1][0], args.ceiling_seconds))

    renders = 3 * args.batch
    cases = {
        name: {
            "examples_per_s": args.batch / statistics.median(t),
            "batch_seconds_median": statistics.median(t),
            "batch_seconds_best": min(t),
            "batch_seconds": t,
            "ms_per_render": 1e3 * statistics.median(t) / renders,
            "workers": workers[name],
            # share of the workers' wall time spent inside tasks (local pools only):
            # what is left is the pool's own cost — messages, copies, idle ends of a batch
            "worker_utilization": statistics.median(busy[name]) if busy[name] else None,
        }
        for name, t in times.items()
    }
    base = cases["in-process"]["batch_seconds_median"]
    ratios: dict[str, float] = {}
    one = cases.get("1 worker")
    if one:
        ratios["pool_overhead"] = one["batch_seconds_median"] / base - 1.0
        two = cases.get("2 workers")
        if two:
            ratios["scaling_2w_over_1w"] = two["examples_per_s"] / one["examples_per_s"]
    ratios["fresh_start_cost"] = base / cases["in-process, continue"]["batch_seconds_median"] - 1.0
    if ceiling:
        ratios["machine_ceiling_2_over_1"] = statistics.mean(c["ratio"] for c in ceiling)
        if "scaling_2w_over_1w" in ratios:
            ratios["scaling_of_ceiling"] = ratios["scaling_2w_over_1w"] / ratios["machine_ceiling_2_over_1"]
    goals = {}
    if "scaling_2w_over_1w" in ratios:
        goals["scaling_2w_over_1w >= 1.8"] = ratios["scaling_2w_over_1w"] >= GOAL_SCALING
    if "pool_overhead" in ratios:
        goals["pool_overhead <= 10 %"] = ratios["pool_overhead"] <= GOAL_OVERHEAD
    return {
        "config": {
            "chain": args.chain,
            "sample_rate": args.rate,
            "batch": args.batch,
            "samples": args.samples,
            "block_size": args.block,
            "epsilon": args.epsilon,
            "repeats": args.repeats,
            "renders_per_batch": renders,
        },
        "machine": {
            "cores": os.cpu_count(),
            "load_avg_1min_at_start": load_at_start,
            "load_avg_1min_at_end": os.getloadavg()[0],
            "ceiling_before_and_after": ceiling,
        },
        "cases": cases,
        "ratios": ratios,
        "goals_met": goals,
    }


def report(result: dict) -> None:
    print(
        f"\n{'case':<22} {'examples/s':>11} {'batch s (median)':>17} {'best':>7} {'ms/render':>10} "
        f"{'workers busy':>13}"
    )
    for name, c in result["cases"].items():
        util = "" if c["worker_utilization"] is None else f"{100 * c['worker_utilization']:.1f} %"
        print(
            f"{name:<22} {c['examples_per_s']:>11.2f} {c['batch_seconds_median']:>17.3f} "
            f"{c['batch_seconds_best']:>7.3f} {c['ms_per_render']:>10.1f} {util:>13}"
        )
    r = result["ratios"]
    print()
    if "scaling_2w_over_1w" in r:
        print(f"2 workers / 1 worker:     {r['scaling_2w_over_1w']:.2f}×   (goal ≥ {GOAL_SCALING}×)")
    if "pool_overhead" in r:
        overhead = 100 * r["pool_overhead"]
        print(f"pool overhead (1 worker): {overhead:+.1f} %  (goal ≤ {100 * GOAL_OVERHEAD:.0f} %)")
    print(f"fresh start per render:   {100 * r['fresh_start_cost']:+.1f} % over continuing (no reset)")
    if "machine_ceiling_2_over_1" in r:
        before_after = " / ".join(f"{c['ratio']:.2f}×" for c in result["machine"]["ceiling_before_and_after"])
        print(
            f"machine ceiling now:      {before_after} (2 plain render processes / 1, before / after); "
            f"the pool reached {100 * r.get('scaling_of_ceiling', float('nan')):.0f} % of it"
        )


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="deepafx-rt bench spsa",
        description="How fast the SPSA layer's renders go: in-process, 1 and 2 worker processes (and Ray).",
    )
    p.add_argument("--chain", default="mastering", help="chain name or .toml file (default mastering)")
    p.add_argument("--rate", type=int, default=22050, help="sample rate in Hz (default 22050)")
    p.add_argument("--batch", type=int, default=16, help="windows per batch (default 16)")
    p.add_argument("--samples", type=int, default=40960, help="samples per window (default 40960)")
    p.add_argument("--block", type=int, default=1024, help="frames per plugin run (default 1024)")
    p.add_argument("--workers", default="1,2", help="local worker counts to time (default 1,2)")
    p.add_argument("--ray", action="store_true", help="also time a local Ray with the largest worker count")
    p.add_argument("--epsilon", type=float, default=0.03, help="SPSA step (default 0.03)")
    p.add_argument("--repeats", type=int, default=5, help="timed rounds (default 5)")
    p.add_argument(
        "--ceiling-seconds",
        type=float,
        default=5.0,
        help="seconds per machine-ceiling probe, before and after the rounds (0: skip; default 5)",
    )
    p.add_argument("--json", type=Path, default=Path("bench-results/spsa.json"), help="results file (JSON)")
    return p


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark; print figures and ratios and write JSON. Returns an exit code."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.batch < 1 or args.samples < 1 or args.repeats < 1:
        parser.error("--batch, --samples and --repeats must be ≥ 1")
    try:
        counts = [int(w) for w in args.workers.split(",")]
    except ValueError:
        counts = []
    if not counts or min(counts) < 1:
        parser.error(f"--workers takes worker counts ≥ 1 separated by commas, e.g. 1,2; not {args.workers!r}")
    result = run(args)
    report(result)
    write_results(result, args.json)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
