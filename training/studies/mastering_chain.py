"""How far can each candidate mastering chain get with good static settings per window? (issue 14)

    python training/studies/mastering_chain.py [--windows 4] [--seconds 6] [--json OUT]
    python training/studies/mastering_chain.py --loss OUT.json   # rank systems with the losses

A model can only be as good as its chain lets it be. This study searches, per
window of the mastering *validation* split, for the static settings that bring
each candidate chain closest to the master **at target loudness** (the output
gain-matched to the target before MR-STFT, :mod:`training.evaluation.mastering`),
and reports them against the input gain-matched to the target — the baseline
a mastering chain has to beat by 20 % (issue 14). The candidates (see
:func:`candidates`) keep DeepAFx's compressor → EQ → limiter shape:

* ``v1``: ``chains/mastering.toml`` as shipped (Calf MBC → LSP GEQ x32 →
  LSP limiter with a predicted threshold, no loudness stage), 53 parameters;
* ``v1+gain``: the same, with the limiter as a loudness stage: its input gain
  predicted over 0 … +24 dB, the threshold fixed as a −1.5 dBFS ceiling, 4×
  oversampled peak detection, 53 parameters;
* ``v2``: ``chains/mastering.toml`` (LSP Multiband Compressor in Modern mode
  → LSP GEQ x16 → the loudness-stage limiter), 37 parameters;
* ``v2-x32``: ``v2`` with the 32-band EQ, 53 parameters;
* ``v2-nomakeup``: ``v2`` with the band makeups held at 0 dB (the EQ and the
  limiter's gain do their work), 33 parameters.

**Search** (the same for every candidate; renders of ``seconds`` plus one
second of real audio before, cut): (1) the EQ is matched to the target's
1/3-octave balance in a few closed-loop steps — each EQ band's gain moves by
0.7 × the level-normalized band-level difference at its centre frequency — and a
step is kept only if it lowers the objective; (2) a coordinate search over the
other parameters (normalized steps of 0.3 then 0.12, each direction once); (3)
the EQ matching again. A candidate with a loudness stage is *loudness-locked*:
after each render the stage's gain is corrected by the LUFS error and the
window rendered again, as a model that predicts the right gain would. The
objective is MR-STFT at target loudness + 0.1 per LU of |LUFS error| beyond
0.5 LU, so a chain that cannot reach the loudness pays for it.

Reported per window and on average: MR-STFT at target loudness and as is, MFCC
cosine, LUFS error, true peak, LRA error and 1/3-octave balance error, for the
input as is, the input gain-matched, each chain at its defaults and at the
best settings found. Results and their reading: ``mastering_chain.md`` beside
this file.

``--loss`` re-renders those systems from the JSON a study run wrote and scores
them with the training loss (:class:`training.models.losses.AlignedSpectralLoss`)
as the v1 recipe configures it and with the level options, so the choice of
the loss rests on how it ranks outputs whose quality is known.
"""

from __future__ import annotations

import argparse
import copy
import json
import logging
import math
import re
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

if __package__ in (None, ""):  # run as a script: make ``training`` and ``rt_host`` importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent.parent))

from rt_host.loudness import loudness  # noqa: E402
from rt_host.lv2 import Chain, ChainSpec  # noqa: E402
from rt_host.lv2.spec import PredictSpec, StageSpec  # noqa: E402
from training.data import load_tracks, resolve_cache_dir  # noqa: E402
from training.evaluation.mastering import (  # noqa: E402
    gain_match,
    mastering_scores,
    third_octave_levels,
)
from training.evaluation.metrics import mrstft  # noqa: E402

log = logging.getLogger("training.studies.mastering_chain")

RATE = 44100
PREROLL = RATE  # one second of real audio before each window: the compressors' envelopes settle
LOUDNESS_PARAM = "limiter.g_in"
LUFS_SLACK = 0.5  # LU of |LUFS error| the objective forgives (issue 14's goal)
LUFS_PENALTY = 0.1  # objective per LU beyond the slack
EQ_STEP = 0.7  # fraction of the band-level difference an EQ matching step applies
CEILING = 0.8414  # −1.5 dBFS: the limiter's threshold as a ceiling


# --- candidates ---------------------------------------------------------------------------------
def loudness_limiter(stage: StageSpec) -> StageSpec:
    """The LSP limiter as a loudness stage: input gain 0 … +24 dB predicted, threshold a fixed
    −1.5 dBFS ceiling (boost off), 4× oversampled peak detection ("Half x4"), release predicted."""
    s = copy.deepcopy(stage)
    s.fixed.update({"boost": 0, "th": CEILING, "ovs": 5})
    s.fixed.pop("g_in", None)
    s.predict = [PredictSpec("g_in", 1.0, 15.85, "log", 3.162), PredictSpec("rt", 1.0, 20.0)]
    return s


def candidates() -> dict[str, ChainSpec]:
    """The chains compared (module docstring)."""
    v1 = ChainSpec.load("mastering-v1")
    v1_gain = copy.deepcopy(v1)
    v1_gain.name = "mastering-v1-gain"
    v1_gain.stages[2] = loudness_limiter(v1.stages[2])
    v2 = ChainSpec.load("mastering")
    v2_x32 = copy.deepcopy(v2)
    v2_x32.name = "mastering-v2-x32"
    v2_x32.stages[1] = copy.deepcopy(v1.stages[1])  # the v1 chain's GEQ x32 stage, ±12 dB
    no_makeup = copy.deepcopy(v2)
    no_makeup.name = "mastering-v2-nomakeup"
    mbc = no_makeup.stages[0]
    for p in [p for p in mbc.predict if p.symbol.startswith("mk_")]:
        mbc.predict.remove(p)
        mbc.fixed[p.symbol] = 1.0
    return {"v1": v1, "v1+gain": v1_gain, "v2": v2, "v2-x32": v2_x32, "v2-nomakeup": no_makeup}


# --- windows ------------------------------------------------------------------------------------
@dataclass(frozen=True)
class StudyWindow:
    """One window: ``input`` holds :data:`PREROLL` samples of context before the ``target``'s span."""

    track_id: str
    start: int
    input: np.ndarray  # (2, PREROLL + n)
    target: np.ndarray  # (2, n)

    @property
    def plain_input(self) -> np.ndarray:
        return self.input[:, PREROLL:]


def pick_windows(cache: Path, count: int, seconds: float, seed: int = 0) -> list[StudyWindow]:
    """``count`` windows of ``seconds`` from distinct validation tracks, each from a passage whose
    target is within 6 dB of the track's loudest (what a mastering chain is mostly heard on)."""
    rng = np.random.default_rng(seed)
    tracks = load_tracks(cache, "val")
    if count > len(tracks):
        raise SystemExit(f"the validation split has only {len(tracks)} tracks")
    n = int(seconds * RATE)
    out = []
    for t in [tracks[i] for i in rng.permutation(len(tracks))[:count]]:
        total = t.target.shape[1]
        starts = rng.integers(PREROLL, total - n, size=24)
        levels = [loudness(np.asarray(t.target[:, s : s + n]), RATE) for s in starts]
        good = [s for s, lv in zip(starts, levels) if lv >= max(levels) - 6.0]
        s = int(good[0])
        out.append(
            StudyWindow(
                t.track_id,
                s,
                np.array(t.input[:, s - PREROLL : s + n], dtype=np.float32),
                np.array(t.target[:, s : s + n], dtype=np.float32),
            )
        )
    return out


# --- the search ---------------------------------------------------------------------------------
class Search:
    """Renders and scores one candidate on one window; counts renders."""

    def __init__(self, chain: Chain, w: StudyWindow) -> None:
        self.chain, self.w = chain, w
        self.names = chain.parameter_names
        self.loud = self.names.index(LOUDNESS_PARAM) if LOUDNESS_PARAM in self.names else None
        self.eq = [j for j, n in enumerate(self.names) if re.fullmatch(r"geq\.g_\d+", n)]
        self.eq_hz = np.array([band_hz(chain.parameter(self.names[j]).port.name) for j in self.eq])
        self.target_lufs = loudness(w.target, RATE)
        _, lt = third_octave_levels(w.target, RATE, 20.0, 20000.0)
        self.target_balance = lt - lt.mean()
        self.renders = 0

    def render(self, u: np.ndarray) -> np.ndarray:
        self.renders += 1
        y = self.chain(self.w.input, RATE, params=u, compensate_latency=True)
        return y[:, PREROLL:]

    def set_db(self, u: np.ndarray, j: int, db: float) -> np.ndarray:
        """``u`` with parameter ``j`` (a linear gain port) at ``db``, clipped to its range."""
        p = self.chain.parameter(self.names[j])
        values = self.chain.denormalize(u)
        values[j] = float(np.clip(10.0 ** (db / 20.0), p.minimum, p.maximum))
        return np.clip(self.chain.normalize(values), 0.0, 1.0)

    def port_db(self, u: np.ndarray, j: int) -> float:
        return 20.0 * math.log10(float(self.chain.denormalize(u)[j]))

    def evaluate(self, u: np.ndarray) -> tuple[float, np.ndarray, np.ndarray]:
        """``(objective, u, output)``; with a loudness stage, ``u``'s gain is corrected first
        (up to two corrections, loudness-locked)."""
        y = self.render(u)
        if self.loud is not None:
            for _ in range(2):
                err = loudness(y, RATE) - self.target_lufs
                if abs(err) <= 0.3:
                    break
                u2 = self.set_db(u, self.loud, self.port_db(u, self.loud) - err)
                if np.allclose(u2, u):
                    break  # at the end of its range
                u, y = u2, self.render(u2)
        return self.objective(y), u, y

    def objective(self, y: np.ndarray) -> float:
        err = loudness(y, RATE) - self.target_lufs
        matched, _ = gain_match(y, self.w.target, RATE)
        return mrstft(matched, self.w.target) + LUFS_PENALTY * max(0.0, abs(err) - LUFS_SLACK)

    def match_eq(self, u: np.ndarray, best: float, steps: int) -> tuple[np.ndarray, float]:
        """Closed-loop EQ matching to the target's 1/3-octave balance; keeps only improving steps."""
        if not self.eq:
            return u, best
        for _ in range(steps):
            y = self.render(u)
            centres, lo = third_octave_levels(y, RATE, 20.0, 20000.0)
            diff = self.target_balance - (lo - lo.mean())
            corr = np.interp(np.log(self.eq_hz), np.log(centres), diff)
            u2 = u.copy()
            for j, c in zip(self.eq, corr):
                u2 = self.set_db(u2, j, self.port_db(u2, j) + EQ_STEP * float(c))
            f, u2, _ = self.evaluate(u2)
            if f >= best:
                break
            u, best = u2, f
        return u, best

    def run(self, u0: np.ndarray, eq_steps: int = 4, steps: Sequence[float] = (0.3, 0.12)) -> dict:
        """EQ matching → coordinate search over the rest → EQ matching; the best ``u`` and its score."""
        best, u, _ = self.evaluate(u0)
        u, best = self.match_eq(u, best, eq_steps)
        others = [j for j in range(len(self.names)) if j not in self.eq and j != self.loud]
        for step in steps:
            for j in others:
                for d in (step, -step):
                    u2 = u.copy()
                    u2[j] = float(np.clip(u2[j] + d, 0.0, 1.0))
                    if u2[j] == u[j]:
                        continue
                    f, u2, _ = self.evaluate(u2)
                    if f < best:
                        u, best = u2, f
                        break
        u, best = self.match_eq(u, best, eq_steps - 1)
        return {"u": u, "objective": best}


def band_hz(port_name: str) -> float:
    """The centre frequency in an LSP graphic EQ band's port name: ``"Band gain 1.6K"`` → 1600."""
    m = re.search(r"([\d.]+)\s*(K?)\s*$", port_name)
    if not m:
        raise ValueError(f"no frequency in the port name {port_name!r}")
    return float(m.group(1)) * (1000.0 if m.group(2) else 1.0)


def scores(y: np.ndarray, w: StudyWindow) -> dict[str, float]:
    """Mastering scores as is, plus MR-STFT at target loudness."""
    s = mastering_scores(y, w.target, RATE)
    s["mrstft_at_target"] = mrstft(gain_match(y, w.target, RATE)[0], w.target)
    return {k: round(float(v), 4) for k, v in s.items()}


def study(windows: Sequence[StudyWindow], names: Sequence[str] | None = None) -> dict:
    """Every candidate on every window: defaults and the best static settings found."""
    specs = candidates()
    if names:
        specs = {k: v for k, v in specs.items() if k in names}
    chains = {k: Chain(s) for k, s in specs.items()}
    rows = []
    for i, w in enumerate(windows):
        row: dict = {"track": w.track_id, "start": w.start}
        row["input"] = scores(w.plain_input, w)
        row["input_gain_matched"] = scores(gain_match(w.plain_input, w.target, RATE)[0], w)
        for name, chain in chains.items():
            t0 = time.process_time()
            search = Search(chain, w)
            _, u_def, y_def = search.evaluate(chain.default_normalized())
            row[f"{name}@defaults"] = scores(y_def, w)
            found = search.run(u_def)
            u = found["u"]
            row[name] = {
                **scores(search.render(u), w),
                "renders": search.renders,
                "cpu_s": round(time.process_time() - t0, 1),
                "u": [round(float(v), 5) for v in u],
                "params": {
                    p: round(float(v), 4) for p, v in zip(chain.parameter_names, chain.denormalize(u))
                },
            }
            log.info(
                "window %d %-28s %-12s at target %.3f (defaults %.3f, gain-matched input %.3f), "
                "LUFS %+.2f, TP %+.2f, %d renders, %.0f s CPU",
                i, w.track_id, name, row[name]["mrstft_at_target"],
                row[f"{name}@defaults"]["mrstft_at_target"], row["input_gain_matched"]["mrstft_at_target"],
                row[name]["lufs_error"], row[name]["true_peak_dbtp"], search.renders, row[name]["cpu_s"],
            )  # fmt: skip
        rows.append(row)
    return {
        "candidates": {k: {"parameters": chains[k].n_params, "chain": s.dumps()} for k, s in specs.items()},
        "windows": rows,
    }


# --- report -------------------------------------------------------------------------------------
COLUMNS = (
    ("mrstft_at_target", "MR-STFT@target", "{:.3f}"),
    ("mrstft", "MR-STFT", "{:.3f}"),
    ("mfcc_cosine", "MFCC", "{:.4f}"),
    ("lufs_error", "LUFS err", "{:+.2f}"),
    ("true_peak_dbtp", "TP dBTP", "{:+.2f}"),
    ("lra_error", "LRA err", "{:+.2f}"),
    ("balance_error_db", "balance dB", "{:.2f}"),
)


def table(result: dict) -> str:
    """Means over windows per setting, then MR-STFT at target loudness per window."""
    rows = result["windows"]
    settings = [c for c in rows[0] if isinstance(rows[0][c], dict)]
    lines = ["| setting | params | " + " | ".join(c[1] for c in COLUMNS) + " |"]
    lines.append("|---" * (len(COLUMNS) + 2) + "|")
    for s in settings:
        base = s.split("@")[0]
        n = result["candidates"].get(base, {}).get("parameters", "")
        cells = []
        for key, _, fmt in COLUMNS:
            v = [r[s][key] for r in rows if np.isfinite(r[s][key])]
            cells.append(fmt.format(float(np.mean(v))) if v else "n/a")
        lines.append(f"| {s} | {n} | " + " | ".join(cells) + " |")
    lines += ["", "| window | " + " | ".join(settings) + " |", "|---" * (len(settings) + 1) + "|"]
    for r in rows:
        lines.append(
            f"| {r['track']} | " + " | ".join(f"{r[s]['mrstft_at_target']:.3f}" for s in settings) + " |"
        )
    for s in settings:
        if "renders" in rows[0][s]:
            cpu = sum(r[s]["cpu_s"] for r in rows)
            renders = sum(r[s]["renders"] for r in rows)
            lines.append(f"\n{s}: {renders} renders in all, {cpu:.0f} s CPU")
    return "\n".join(lines)


# --- the loss on known systems ------------------------------------------------------------------
LOSS_VARIANTS = {
    # name: AlignedSpectralLoss keyword arguments beyond max_lag and fft_sizes (v1 recipe: l1 10)
    "v1 loss (raw pair)": {"l1_weight": 10.0},
    "level-matched, no loudness term": {"l1_weight": 10.0, "level_match": True},
    "level-matched + 0.1/LU": {"l1_weight": 10.0, "level_match": True, "loudness_weight": 0.1},
    "level-matched + 0.3/LU": {"l1_weight": 10.0, "level_match": True, "loudness_weight": 0.3},
    "level-matched + 0.1/LU, no L1": {"l1_weight": 0.0, "level_match": True, "loudness_weight": 0.1},
}


def loss_ranking(result: dict, windows: Sequence[StudyWindow], seconds: float = 1.86) -> dict:
    """Every loss variant on known systems, per window: the first ``seconds`` of each study
    window (a training window's length), as training would score it (batch of one)."""
    import tensorflow as tf

    from training.models.losses import AlignedSpectralLoss

    specs = candidates()
    n = int(seconds * RATE)
    systems: dict[str, list[np.ndarray]] = {}
    for w, row in zip(windows, result["windows"]):
        outs = {
            "input": w.plain_input,
            "input_gain_matched": gain_match(w.plain_input, w.target, RATE)[0],
        }
        for name in ("v1", "v2"):
            if name in row:
                chain = Chain(specs[name])
                outs[f"{name}@defaults"] = chain(w.input, RATE, params=Search(chain, w).evaluate(
                    chain.default_normalized())[1], compensate_latency=True)[:, PREROLL:]  # fmt: skip
                outs[f"{name} best static"] = chain(
                    w.input, RATE, params=np.array(row[name]["u"]), compensate_latency=True
                )[:, PREROLL:]
        for k, y in outs.items():
            systems.setdefault(k, []).append(y[:, :n])
    target = [w.target[:, :n] for w in windows]
    out: dict = {}
    for lname, kw in LOSS_VARIANTS.items():
        loss = AlignedSpectralLoss(256, (4096, 1024, 256), sample_rate=RATE, **kw)
        out[lname] = {}
        for sname, ys in systems.items():
            vals = [
                float(loss(tf.constant(t.T[None]), tf.constant(y.T[None].astype(np.float32))))
                for t, y in zip(target, ys)
            ]
            out[lname][sname] = {
                "mean": round(float(np.mean(vals)), 4),
                "per_window": [round(v, 4) for v in vals],
            }
    return out


def loss_table(ranking: dict) -> str:
    systems = list(next(iter(ranking.values())))
    lines = ["| loss | " + " | ".join(systems) + " |", "|---" * (len(systems) + 1) + "|"]
    for lname, row in ranking.items():
        lines.append(f"| {lname} | " + " | ".join(f"{row[s]['mean']:.3f}" for s in systems) + " |")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="mastering_chain.py", description=__doc__.split("\n\n")[0])
    parser.add_argument("--cache", metavar="DIR", help="the mastering data set (default: its usual cache)")
    parser.add_argument(
        "--windows", type=int, default=4, help="windows, from distinct val tracks (default 4)"
    )
    parser.add_argument("--seconds", type=float, default=6.0, help="window length (default 6 s)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--only", nargs="*", help="candidates to run (default: all)")
    parser.add_argument("--json", metavar="OUT", help="write every number and the best parameters here")
    parser.add_argument("--loss", metavar="STUDY_JSON", help="rank known systems with the loss variants")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    cache = resolve_cache_dir("mastering", args.cache)
    if args.loss:
        result = json.loads(Path(args.loss).read_text())
        s = result["settings"]
        windows = pick_windows(cache, s["windows"], s["seconds"], s["seed"])
        ranking = loss_ranking(result, windows)
        print(loss_table(ranking))
        if args.json:
            Path(args.json).write_text(json.dumps(ranking, indent=1) + "\n")
        return 0
    windows = pick_windows(cache, args.windows, args.seconds, args.seed)
    t0 = time.process_time()
    result = study(windows, args.only)
    result["settings"] = {k: v for k, v in vars(args).items() if k != "loss"}
    result["settings"]["cpu_s"] = round(time.process_time() - t0, 1)
    print(table(result))
    print(f"CPU: {result['settings']['cpu_s']:.0f} s")
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    from training.studies.mastering_chain import main as _main

    sys.exit(_main())
