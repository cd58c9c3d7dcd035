"""Which chain should learn the distortion task? Calf MBC alone vs. MBC plus a saturation stage, by numbers.

    python training/studies/distortion_chain.py [--windows 6] [--evals 400] [--seconds 2] [--json OUT]

The issue (#7) asks for the paper's chain — Calf Multiband Compressor
(``chains/distortion-v1.toml``) — "plus any stage that measurably helps (e.g. a
saturator), justified by numbers". This script measures how close each
candidate chain *can* get to the reference tube preamp
(``chains/distortion-reference.toml``) on a few short windows of the distortion
data set, giving every candidate the same search budget:

* ``mbc``: ``chains/distortion-v1.toml`` as it is (28 predicted parameters);
* ``tape>mbc``: a Calf Tape Simulator before it (4 more: input gain −12 …
  +24 dB into the tape saturation, output gain, low-pass, dry/wet mix; noise
  and wow/flutter off) — the tape stage makes the harmonics, the compressor's
  bands shape them afterwards like an amp's tone stack;
* ``mbc>tape``: the same stage after the compressor — the bands' gains decide
  how hard each band drives the saturation.

The issue's example, Calf Saturator, is no candidate: at 22,050 Hz it outputs
NaN, and Calf's Exciter, Bass Enhancer and Multiband Enhancer output NaN or
~1e35 (see :func:`tape_stage`); the Tape Simulator is the one Calf saturation
that works at the task's rate (guitarix, the other family installed, is the
reference's).

Per window and candidate, :func:`scipy.optimize.differential_evolution`
searches the normalized parameters (population 16, the chain's defaults as one
member, fixed seed) for ``evals`` renders, minimising the multi-resolution STFT
distance (:func:`training.evaluation.metrics.mrstft`) to the target. Each render starts
fresh (the chain's reset) with ``preroll`` samples of real audio before the
window, cut afterwards. Reported per window and on average: MR-STFT and MFCC
cosine distance (:func:`training.evaluation.metrics.mfcc_cosine`) of the unprocessed
input, each chain at its defaults, and each chain at the best parameters found.
A per-window optimum is what an encoder that predicts parameters per window
could reach at best, so it bounds what training can do with each chain.

The windows come from the built data set (built or reused first, see
:mod:`training.data.distortion`), drawn with a fixed seed from distinct tracks:
guitar and bass songs and recorded guitars in turn.

**Result** (defaults: 6 windows of 2 s, 400 renders each, seed 0; 613 s of CPU
under ``nice`` on 2 vCPUs shared with a training run). Mean MR-STFT (MFCC
cosine):

===========  ==============  ==============
setting      at defaults     best found
===========  ==============  ==============
input        3.589 (0.208)
mbc          3.514 (0.204)   1.073 (0.138)
tape>mbc     3.042 (0.193)   1.104 (0.191)
mbc>tape     3.065 (0.191)   1.065 (0.160)
===========  ==============  ==============

Against the compressor alone, per window: ``mbc>tape`` −19, +2, +18, −28,
+48, −2 % MR-STFT; ``tape>mbc`` −8, +4, +35, −20, +10, +12 % (it helps on the
two MIDI guitar windows, hurts on bass and strums), and both are worse in MFCC
distance on average. Within this budget the extra stage does not measurably
help, so ``chains/distortion-v1.toml`` stays the paper's compressor alone.
"""

from __future__ import annotations

import argparse
import copy
import json
import logging
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import scipy.optimize

if __package__ in (None, ""):  # run as a script: make ``training`` and ``rt_host`` importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from rt_host.lv2 import Chain, ChainSpec  # noqa: E402
from rt_host.lv2.spec import PredictSpec, StageSpec  # noqa: E402
from training.data import load_tracks  # noqa: E402
from training.evaluation.metrics import mfcc_cosine, mrstft  # noqa: E402

log = logging.getLogger("training.studies.distortion_chain")

RATE = 22050
TAPE = "http://calf.sourceforge.net/plugins/TapeSimulator"
POPULATION = 16


def tape_stage(adapt: str) -> StageSpec:
    """The candidate Calf Tape Simulator stage: noise and wow/flutter off, four ports predicted.

    Calf's Saturator, Exciter, Bass Enhancer and Multiband Enhancer cannot be
    candidates: at 22,050 Hz they output NaN or ~1e35 (their shared 2×
    oversampler low-passes at 25 kHz, above the oversampled Nyquist); they work
    from 32 kHz up. The Tape Simulator's saturation works at 22,050 Hz (its
    12.5 kHz low-pass default is clamped below Nyquist by the chain).
    """
    return StageSpec(
        name="tape",
        plugin=TAPE,
        adapt=adapt,
        fixed={"bypass": 0, "noise": 0, "mechanical": 0, "magnetical": 1, "post": 0, "speed": 1},
        predict=[
            PredictSpec("level_in", 0.25, 16.0, "log"),  # −12 … +24 dB into the saturation
            PredictSpec("level_out", 0.0625, 2.0, "log"),  # −24 … +6 dB after it
            PredictSpec("lowpass", 1000.0, 9900.0, "log"),  # below 0.45 × 22,050 Hz
            PredictSpec("mix", None, None, "linear"),  # 0 = dry: the search can switch the stage off
        ],
    )


def candidates() -> dict[str, ChainSpec]:
    """The chains compared: ``mbc`` (chains/distortion-v1.toml), ``tape>mbc`` and ``mbc>tape``."""
    base = ChainSpec.load("distortion-v1")
    first = copy.deepcopy(base)
    first.name = "distortion-tape-mbc"
    mbc = first.stages[0]
    mbc.adapt = "direct"  # the tape stage already gives two channels
    first.stages = [tape_stage("duplicate"), mbc]
    after = copy.deepcopy(base)
    after.name = "distortion-mbc-tape"
    after.stages = [*after.stages, tape_stage("direct")]
    return {"mbc": base, "tape>mbc": first, "mbc>tape": after}


@dataclass(frozen=True)
class StudyWindow:
    """One window: ``input`` holds ``preroll`` samples of context before the ``target``'s span."""

    track_id: str
    instrument: str
    start: int
    input: np.ndarray  # (1, preroll + n)
    target: np.ndarray  # (1, n)


def pick_windows(
    cache: Path, count: int, seconds: float, preroll: int, seed: int = 0, min_rms_dbfs: float = -35.0
) -> list[StudyWindow]:
    """``count`` windows from distinct tracks, cycling MIDI guitar, MIDI bass and recorded guitar."""
    rng = np.random.default_rng(seed)
    tracks = load_tracks(cache)
    kinds = [
        [t for t in tracks if t.meta.get("origin") == "midi" and t.meta.get("instrument") == "guitar"],
        [t for t in tracks if t.meta.get("origin") == "midi" and t.meta.get("instrument") == "bass"],
        [t for t in tracks if t.meta.get("origin") == "recorded"],
    ]
    n = int(seconds * RATE)
    out: list[StudyWindow] = []
    used: set[str] = set()
    while len(out) < count:
        pool = [t for t in kinds[len(out) % 3] if t.track_id not in used and t.target.shape[1] > preroll + n]
        if not pool:
            raise SystemExit("the data set has too few tracks for that many windows")
        t = pool[int(rng.integers(len(pool)))]
        for _ in range(50):
            start = int(rng.integers(preroll, t.target.shape[1] - n + 1))
            y = np.array(t.target[:, start : start + n], dtype=np.float32)
            if 10 * np.log10(np.mean(np.square(y, dtype=np.float64)) + 1e-20) >= min_rms_dbfs:
                break
        x = np.array(t.input[:, start - preroll : start + n], dtype=np.float32)
        out.append(StudyWindow(t.track_id, str(t.meta.get("instrument")), start, x, y))
        used.add(t.track_id)
    return out


def render(chain: Chain, w: StudyWindow, u: np.ndarray) -> np.ndarray:
    """The window through ``chain`` at normalized parameters ``u``, context cut: ``(1, n)``."""
    y = chain(w.input, RATE, params=u)
    return y[:, w.input.shape[1] - w.target.shape[1] :]


def scores(y: np.ndarray, w: StudyWindow) -> dict[str, float]:
    return {"mrstft": mrstft(y, w.target), "mfcc": mfcc_cosine(y, w.target, RATE)}


def optimise(chain: Chain, w: StudyWindow, evals: int, seed: int) -> tuple[np.ndarray, float, int]:
    """Differential evolution on MR-STFT for ``evals`` renders; (best u, its distance, renders used)."""
    d = chain.n_params
    rng = np.random.default_rng(seed)
    init = rng.uniform(size=(POPULATION, d))
    init[0] = chain.default_normalized()
    count = 0

    def f(u: np.ndarray) -> float:
        nonlocal count
        count += 1
        return mrstft(render(chain, w, u), w.target)

    res = scipy.optimize.differential_evolution(
        f,
        [(0.0, 1.0)] * d,
        init=init,
        maxiter=max(0, evals // POPULATION - 1),
        polish=False,
        tol=0.0,
        mutation=(0.5, 1.0),
        recombination=0.7,
        rng=seed,
    )
    return np.asarray(res.x), float(res.fun), count


def study(windows: Sequence[StudyWindow], evals: int, seed: int = 0) -> dict:
    """Every candidate on every window: defaults and optimum, with the CPU seconds spent."""
    specs = candidates()
    chains = {k: Chain(s) for k, s in specs.items()}
    rows = []
    for i, w in enumerate(windows):
        row: dict = {"track": w.track_id, "instrument": w.instrument, "start": w.start}
        row["input"] = scores(w.input[:, -w.target.shape[1] :], w)
        for name, chain in chains.items():
            t0 = time.process_time()
            row[f"{name}@defaults"] = scores(render(chain, w, chain.default_normalized()), w)
            u, best, used = optimise(chain, w, evals, seed + i)
            row[name] = {**scores(render(chain, w, u), w), "renders": used, "cpu_s": time.process_time() - t0}
            row[name]["params"] = {
                p: round(float(v), 4) for p, v in zip(chain.parameter_names, chain.denormalize(u))
            }
            log.info(
                "window %d (%s, %s) %-8s MR-STFT %.3f (defaults %.3f, input %.3f)  %d renders, %.0f s CPU",
                i,
                w.track_id,
                w.instrument,
                name,
                row[name]["mrstft"],
                row[f"{name}@defaults"]["mrstft"],
                row["input"]["mrstft"],
                used,
                row[name]["cpu_s"],
            )
        rows.append(row)
    return {"candidates": {k: s.dumps() for k, s in specs.items()}, "windows": rows}


def table(result: dict) -> str:
    """Per-window MR-STFT (MFCC cosine in brackets) and the means, one column per setting."""
    rows = result["windows"]
    cols = [c for c in rows[0] if isinstance(rows[0][c], dict)]
    head = f"{'window':<28}" + "".join(f"{c:>20}" for c in cols)
    lines = [head, "-" * len(head)]
    for r in rows:
        cells = "".join(f"{r[c]['mrstft']:>11.3f} ({r[c]['mfcc']:.3f})" for c in cols)
        lines.append(f"{(r['track'] + ' ' + r['instrument'])[:27]:<28}" + cells)
    means = "".join(
        f"{np.mean([r[c]['mrstft'] for r in rows]):>11.3f} ({np.mean([r[c]['mfcc'] for r in rows]):.3f})"
        for c in cols
    )
    lines += ["-" * len(head), f"{'mean':<28}" + means]
    for c in cols:
        if "renders" in rows[0][c]:
            cpu = sum(r[c]["cpu_s"] for r in rows)
            lines.append(f"  {c}: {rows[0][c]['renders']} renders per window, {cpu:.0f} s CPU in all")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="distortion_chain_study.py", description=__doc__.split("\n\n")[0])
    parser.add_argument("--cache", metavar="DIR", help="the distortion data set (default: its usual cache)")
    parser.add_argument("--windows", type=int, default=6, help="windows (default 6)")
    parser.add_argument("--seconds", type=float, default=2.0, help="window length (default 2 s)")
    parser.add_argument("--preroll", type=int, default=4096, help="context samples before each window")
    parser.add_argument(
        "--evals", type=int, default=400, help="renders per window and candidate (default 400)"
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", metavar="OUT", help="write every number and the best parameters here")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    from training.data.distortion import build_distortion

    cache = build_distortion(args.cache, progress=False)
    windows = pick_windows(cache, args.windows, args.seconds, args.preroll, args.seed)
    t0 = time.process_time()
    result = study(windows, args.evals, args.seed)
    result["settings"] = vars(args) | {"cpu_s": round(time.process_time() - t0, 1)}
    print(table(result))
    print(f"CPU: {result['settings']['cpu_s']:.0f} s")
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    from training.studies.distortion_chain import main as _main

    sys.exit(_main())
