"""Which chain should remove breaths and mouth noises? Transparency when open, then static reach, by numbers.

    python -m training.studies.nonspeech_chains [--tracks N] [--seconds S] [--json OUT] [--only NAME …]
                                                [--no-reach] [--tune EVALS [--tune-tracks 10]]

Issue 15, items 1 and 2. The shipped ``nonspeech`` chain (Calf Multiband
Gate) colours speech even fully open — its crossovers shift the phase — and a
gate takes the room floor down with the breath, while the targets keep the
floor. This study measures every candidate chain in two steps on the built
data set (:mod:`training.data.nonspeech`; built first if missing):

1. **Open chain** (:func:`open_table`): each *clean target* excerpt of the
   validation and test splits through the candidate with its predicted ports
   at their "open" values (no attenuation at all), latency compensated, and
   the multi-resolution STFT distance to the target itself
   (:func:`training.evaluation.metrics.mrstft`). A candidate *qualifies* when
   its worst validation excerpt is ≤ :data:`TRANSPARENT` (0.02, ~10× below the
   Calf gate). Also: the latency the plugins report (the host compensates it),
   CPU milliseconds per second of audio for that render (on a shared 2-core
   machine: ±15 % or worse), and how many parameters the model would predict.
2. **Static reach** (:func:`reach`): for the qualifying candidates that have a
   ``grid``, every grid point (one static setting for the whole excerpt) is
   rendered on the *inputs* of the validation split and scored against the
   targets: overall MR-STFT and MFCC cosine distance, speech-segment MR-STFT,
   event attenuation (with its ideal, the events' level above the floor) and
   the level of the room floor in the pauses
   (:func:`training.evaluation.nonspeech.nonspeech_scores`). Reported per
   candidate: the best single setting for all tracks, the best single setting
   that removes ≥ 10 dB of the events (the issue's goal), and the *per-track
   oracle* — the best grid point of each track on its own, a bound on what a
   model that only adapts the setting to the track could reach. The best
   single setting is then also scored on the test split (held out), and the
   per-track oracle is also found there.
   The baselines beside them: the input, the shipped chain at its recipe's
   defaults (crossovers held as ``training/configs/nonspeech.toml`` holds
   them) and fully open.

Excerpts are the middle ``--seconds`` of each track (as ``training/evaluate.py``
takes them), rendered at 128-frame blocks like the product.

The candidates (:func:`candidates`) and why they look the way they do:

* ``calf-mbgate`` — ``chains/nonspeech.toml`` (today's chain), open = every
  band's range at 0 dB;
* ``lsp-mbgate-classic`` / ``-modern``, ``lsp-mbexp-classic`` / ``-modern``,
  ``lsp-mbdyna-modern`` — LSP's multiband gate, expander and dynamic processor
  (its four default bands). *Classic* splits the signal with IIR crossovers;
  *Modern* leaves it whole and applies each band's gain with dynamic filters,
  which are unity when open;
* ``lsp-gate``, ``lsp-scgate``, ``lsp-expander``, ``calf-gate``,
  ``calf-scgate`` — single-band (a broadband gain), with side-chain filters
  where the plugin has them; depth bounded by the gate's reduction/range port;
* ``nonspeech-v2`` (``chains/nonspeech.toml``) — LSP Dynamic Processor
  Mono shaped as a *floor keeper*: identity below the floor level ``F``, flat
  from ``F`` to ``T`` (anything between, i.e. an event, is pulled down towards
  the floor), back to identity at the speech level ``H``; release held long
  after loud (speech) levels, short after quiet ones. The model would shift
  the whole curve to the track's level (side-chain preamp ``scp``: detection
  only, the audio is untouched) and set the depth (``gl1``: 0 dB = open);
* ``lsp-gate>v2`` — two stages: the floor keeper after a gentle LSP gate.

``--tune EVALS`` first tunes the floor keeper's *fixed* ports (curve, timing,
detector filters; :data:`TUNE_SPACE`) by differential evolution on
``--tune-tracks`` training tracks, starting from the chain file, and prints
the best values to copy into ``chains/nonspeech.toml``. It tunes on the
training split on purpose: tuned on the 6 validation tracks, the 11 ports
fitted them and did worse on the test split.

**Result**: see ``training/studies/nonspeech_chains.md`` (the tables this
script prints, with the recommendation).
"""

from __future__ import annotations

import argparse
import copy
import itertools
import json
import logging
import math
import sys
import time
import tomllib
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import scipy.optimize

if __package__ in (None, ""):  # run as a script: make ``training`` and ``rt_host`` importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from rt_host.lv2 import Chain, ChainSpec  # noqa: E402
from rt_host.steer.automation import DEFAULT_BLOCK  # noqa: E402
from training.data import load_tracks  # noqa: E402
from training.evaluate import excerpt_bounds, render_chain  # noqa: E402
from training.evaluation.metrics import mfcc_cosine, mrstft  # noqa: E402
from training.evaluation.nonspeech import crop_record, nonspeech_scores  # noqa: E402

log = logging.getLogger("training.studies.nonspeech_chains")

RATE = 22050
TRANSPARENT = 0.02  # open-chain MR-STFT a candidate may have (issue 15)
EVENT_GOAL_DB = 10.0  # issue 15: events attenuated by ≥ 10 dB
LSP = "http://lsp-plug.in/plugins/lv2/"
CALF = "http://calf.sourceforge.net/plugins/"
ROOT = Path(__file__).resolve().parents[2]
CURRENT_RECIPE = ROOT / "training" / "configs" / "nonspeech.toml"
V2_CHAIN = ROOT / "chains" / "nonspeech-v2.toml"
SCORES = ("mrstft", "mfcc", "speech_mrstft", "event_db", "ideal_db", "floor_db", "speech_level_db")

Setting = dict[str, float]  # "stage.port" → port value
# −60 dB: the threshold ports' minimum as lilv reads it (float32: a hair above 0.001)
MIN_60DB = float(np.float32(0.001))


def db(x: float) -> float:
    """A level in dB as a linear gain (the LSP and Calf ports take linear gains)."""
    return 10.0 ** (x / 20.0)


def to_db(g: float) -> float:
    return 20.0 * math.log10(g)


@dataclass
class Candidate:
    """A chain to measure; ``open`` and every grid point are port values of ``"stage.port"``.

    ``open``: the predicted ports' values that leave the chain fully open (no
    attenuation); predicted ports it does not name stay at their defaults.
    ``grid``: the static-reach search — a list of axes, each a list of
    settings; a grid point merges one setting of every axis. Keys may be
    predicted ports (they go into the normalized vector) or any other control
    port (it becomes a fixed value of that render).
    """

    name: str
    spec: ChainSpec
    open: Setting
    grid: list[list[Setting]] = field(default_factory=list)
    note: str = ""

    @property
    def n_predicted(self) -> int:
        return sum(len(s.predict) for s in self.spec.stages)

    def grid_points(self) -> list[Setting]:
        return [
            dict(itertools.chain.from_iterable(s.items() for s in combo))
            for combo in itertools.product(*self.grid)
        ]

    def chain(self, setting: Setting | None = None) -> tuple[Chain, np.ndarray]:
        """The chain with ``setting`` applied, and the normalized vector to render it with."""
        spec = copy.deepcopy(self.spec)
        predicted = {f"{s.name}.{p.symbol}" for s in spec.stages for p in s.predict}
        setting = dict(setting or {})
        for key, value in setting.items():
            if key not in predicted:
                stage_name, _, symbol = key.partition(".")
                next(s for s in spec.stages if s.name == stage_name).fixed[symbol] = float(value)
        chain = Chain(spec)
        values = chain.denormalize(chain.default_normalized())
        for j, name in enumerate(chain.parameter_names):
            if name in setting:
                values[j] = setting[name]
        return chain, chain.normalize(values).astype(np.float32)


# --- the candidates ---------------------------------------------------------------------------
def _spec(name: str, *stages: dict, output: str = "direct") -> ChainSpec:
    return ChainSpec.from_dict(
        {"name": name, "channels": 1, "sample_rate": RATE, "output": output, "stage": list(stages)},
        where=name,
    )


def _stage(name: str, plugin: str, fixed: dict | None = None, predict: dict | None = None, **kw) -> dict:
    return {"name": name, "plugin": plugin, "fixed": fixed or {}, "predict": predict or {}, **kw}


# LSP's multiband plugins: the four default bands (splits 100 / 632 / 3984 Hz), band indices 0, 2, 4, 6
_LSP_BANDS = (0, 2, 4, 6)
# the side-chain band-pass that keys on voiced speech: pops (< 150 Hz), clicks and breath hiss (> 1.5 kHz)
# weigh less in the detector; only the detector hears it
_LSP_SC_BANDPASS = {"shpm": 2, "shpf": 150.0, "slpm": 2, "slpf": 1500.0}
_LSP_SC_OFF = {"shpm": 0, "slpm": 0}


def floor_keeper(spec: ChainSpec) -> dict[str, float]:
    """The fixed ports of a chain's floor-keeper stage (``dyna``), e.g. ``chains/nonspeech.toml``."""
    return dict(next(st for st in spec.stages if st.name == "dyna").fixed)


def floor_keeper_levels(fixed: dict[str, float]) -> tuple[float, float, float]:
    """``(F, T, H)`` in dB of a floor keeper's fixed ports: its curve's three points."""
    return to_db(fixed["tl0"]), to_db(fixed["tl1"]), to_db(fixed["tl2"])


def candidates() -> dict[str, Candidate]:
    """Every chain the study measures, by name (see the module docstring)."""
    out: dict[str, Candidate] = {}
    current = ChainSpec.load("nonspeech-v1")
    out["calf-mbgate"] = Candidate(
        "calf-mbgate", current, {f"gate.range{b}": 1.0 for b in range(4)}, note="today's chain (LR4)"
    )

    def multiband(name: str, stage: str, plugin: str, fixed: dict, keys: tuple[str, str], **kw) -> Candidate:
        """An LSP multiband stage predicting ``keys`` per band, opened by the second key at 1.0."""
        ports = {f"{k}_{b}": {} for b in _LSP_BANDS for k in keys}
        spec = _spec(name, _stage(stage, LSP + plugin, fixed, ports))
        return Candidate(name, spec, {f"{stage}.{keys[1]}_{b}": 1.0 for b in _LSP_BANDS}, **kw)

    for mode, label in ((0, "classic"), (1, "modern")):
        # all bands alike: threshold and a bounded reduction
        grid = [
            [{f"gate.gt_{b}": db(t) for b in _LSP_BANDS} for t in (-60, -50, -40)],
            [{f"gate.gr_{b}": db(r) for b in _LSP_BANDS} for r in (-3, -6, -12)],
        ]
        out[f"lsp-mbgate-{label}"] = multiband(
            f"lsp-mbgate-{label}", "gate", "mb_gate_mono", {"mode": mode}, ("gt", "gr"),
            grid=grid if mode == 1 else [],
        )  # fmt: skip
        exp_fixed = {"mode": mode, **{f"em_{b}": 0 for b in _LSP_BANDS}}  # downward
        out[f"lsp-mbexp-{label}"] = multiband(
            f"lsp-mbexp-{label}", "exp", "mb_expander_mono", exp_fixed, ("al", "er")
        )
    out["lsp-mbdyna-modern"] = Candidate(
        "lsp-mbdyna-modern",
        _spec(
            "lsp-mbdyna-modern",
            _stage("dyna", LSP + "mb_dyna_processor_mono", {"mode": 1}, {f"scp_{b}": {} for b in _LSP_BANDS}),
        ),  # fmt: skip
        {},  # its default curve is the identity
    )
    gate_fixed = {"sla": 5.0, "at": 2.0, "rt": 100.0, "scm": 1}
    out["lsp-gate"] = Candidate(
        "lsp-gate",
        _spec(
            "lsp-gate",
            _stage(
                "gate",
                LSP + "gate_mono",
                gate_fixed,
                {
                    "gt": {"min": MIN_60DB, "max": db(-24)},
                    "gr": {
                        "min": db(-20),
                        "max": 1.0,
                    },  # bounded depth: the floor is never gated more than 20 dB
                },
            ),
        ),  # fmt: skip
        {"gate.gr": 1.0},
        grid=[
            [{"gate.gt": db(t)} for t in (-60, -54, -48, -42, -36)],
            [{"gate.gr": db(r)} for r in (-3, -6, -10, -20)],
            [{f"gate.{k}": v for k, v in f.items()} for f in (_LSP_SC_OFF, _LSP_SC_BANDPASS)],
        ],
    )
    out["lsp-scgate"] = Candidate(
        "lsp-scgate",
        _spec("lsp-scgate", _stage("gate", LSP + "sc_gate_mono", {**gate_fixed, "sci": 0},
                                   {"gt": {}, "gr": {"min": db(-20), "max": 1.0}}, adapt="duplicate")),
        {"gate.gr": 1.0},
        note="the same DSP as lsp-gate with an external side-chain input (fed the same signal)",
    )  # fmt: skip
    out["lsp-expander"] = Candidate(
        "lsp-expander",
        _spec("lsp-expander", _stage("exp", LSP + "expander_mono",
                                     {"em": 0, "sla": 5.0, "at": 2.0, "rt": 100.0},
                                     {"al": {"min": MIN_60DB, "max": db(-24)},
                                      "er": {"min": 1.0, "max": 4.0}})),
        {"exp.er": 1.0},
        grid=[[{"exp.al": db(t)} for t in (-60, -50, -40)], [{"exp.er": r} for r in (1.2, 1.5, 2.0)]],
        note="downward expander: no range port, so the quietest (the floor) is cut most",
    )  # fmt: skip
    calf_fixed = {"attack": 2.0, "release": 100.0, "ratio": 4.0}
    out["calf-gate"] = Candidate(
        "calf-gate",
        _spec("calf-gate", _stage("gate", CALF + "Gate", calf_fixed,
                                  {"threshold": {}, "range": {"min": db(-20), "max": 1.0}},
                                  adapt="duplicate"),
              output="mix"),
        {"gate.range": 1.0},
    )  # fmt: skip
    out["calf-scgate"] = Candidate(
        "calf-scgate",
        _spec("calf-scgate", _stage("gate", CALF + "SidechainGate", calf_fixed,
                                    {"threshold": {"min": MIN_60DB, "max": db(-24)},
                                     "range": {"min": db(-20), "max": 1.0}}, adapt="duplicate"),
              output="mix"),
        {"gate.range": 1.0},
        grid=[
            [{"gate.threshold": db(t)} for t in (-60, -52, -44, -36)],
            [{"gate.range": db(r)} for r in (-3, -6, -10, -20)],
            # wideband, or the detector band-passed 150 Hz … 1.5 kHz (mode 9: F1 high-pass, F2 low-pass)
            [{"gate.sc_mode": 0}, {"gate.sc_mode": 9, "gate.f1_freq": 150.0, "gate.f2_freq": 1500.0}],
        ],
    )  # fmt: skip
    if V2_CHAIN.is_file():
        v2 = ChainSpec.load(V2_CHAIN)
        f, t, _ = floor_keeper_levels(floor_keeper(v2))
        depth = next(p for p in v2.stages[0].predict if p.symbol == "gl1")
        out["nonspeech-v2"] = Candidate(
            "nonspeech-v2",
            v2,
            {"dyna.gl1": depth.maximum},  # 0 dB of reduction at T: the identity
            grid=[
                [{"dyna.scp": db(x)} for x in (-9, -6, -3, 0, 3, 6, 9)],
                # depth at T: down to the floor level (T − F), and 10 / 15 / 20 dB (below the floor)
                [{"dyna.gl1": db(t - d)} for d in (t - f, 10.0, 15.0, 20.0)],
            ],
            note="chains/nonspeech.toml: the floor keeper",
        )
        gate = {**gate_fixed, **_LSP_SC_BANDPASS}
        out["lsp-gate>v2"] = Candidate(
            "lsp-gate>v2",
            _spec(
                "lsp-gate>v2",
                _stage(
                    "gate",
                    LSP + "gate_mono",
                    gate,
                    {"gt": {"min": MIN_60DB, "max": db(-24)}, "gr": {"min": db(-20), "max": 1.0}},
                ),
                v2.stages[0].to_toml(),
            ),  # fmt: skip
            {"gate.gr": 1.0, "dyna.gl1": depth.maximum},
            grid=[
                [{"dyna.scp": 1.0}],
                [{"dyna.gl1": db(f)}],
                [{"gate.gt": db(x)} for x in (-54, -48, -42)],
                [{"gate.gr": db(r)} for r in (-1.5, -3)],
            ],
            note="two stages: a gentle side-chain-filtered gate, then the floor keeper",
        )
    return out


# --- excerpts and scores ----------------------------------------------------------------------
@dataclass(frozen=True)
class Excerpt:
    track_id: str
    input: np.ndarray  # (1, n) float32
    target: np.ndarray  # (1, n)
    record: dict[str, Any]  # the track's record cropped to the excerpt


def excerpts(
    cache: Path, split: str, tracks: int | None, seconds: float | None, spread: bool = False
) -> list[Excerpt]:
    """The middle ``seconds`` of the first ``tracks`` tracks of ``split`` (as ``evaluate.py`` takes them);
    ``spread``: ``tracks`` tracks evenly spaced over the split instead (languages vary along it)."""
    every = load_tracks(cache, split)
    if spread and tracks is not None and tracks < len(every):
        chosen = [every[int(i)] for i in np.linspace(0, len(every) - 1, tracks).round()]
    else:
        chosen = every[:tracks]
    out = []
    for t in chosen:
        s, e = excerpt_bounds(t, seconds)
        out.append(
            Excerpt(
                t.track_id,
                np.array(t.input[:, s:e], dtype=np.float32),
                np.array(t.target[:, s:e], dtype=np.float32),
                crop_record(t.meta, s, e),
            )
        )
    return out


def score(output: np.ndarray, ex: Excerpt) -> dict[str, float]:
    """Every figure of one output against its excerpt's target (names: :data:`SCORES`)."""
    s = nonspeech_scores(output, ex.input, ex.target, ex.record, RATE)
    return {
        "mrstft": mrstft(output, ex.target),
        "mfcc": mfcc_cosine(output, ex.target, RATE),
        "speech_mrstft": s["speech_mrstft"],
        "event_db": s["event_attenuation_db"],
        "ideal_db": s["event_attenuation_ideal_db"],
        "floor_db": s["floor_level_db"],
        "speech_level_db": s["speech_level_db"],
    }


def mean_scores(rows: Sequence[dict[str, float]]) -> dict[str, float]:
    """Mean over excerpts of every score (NaN where an excerpt had nothing to score is left out)."""
    out = {}
    for k in SCORES:
        v = np.array([r[k] for r in rows], dtype=np.float64)
        v = v[np.isfinite(v)]
        out[k] = float(v.mean()) if v.size else float("nan")
    return out


def render(chain: Chain, u: np.ndarray, audio: np.ndarray) -> np.ndarray:
    """``audio`` through ``chain`` at ``u``, latency compensated, in the product's 128-frame blocks."""
    return render_chain(chain, audio, RATE, u, DEFAULT_BLOCK)


# --- 1. the open chain --------------------------------------------------------------------------
def open_row(c: Candidate, splits: dict[str, list[Excerpt]]) -> dict[str, Any]:
    """Open-chain MR-STFT on the clean targets per split (mean, worst), latency, CPU cost, predicted count."""
    chain, u = c.chain(c.open)
    row: dict[str, Any] = {"candidate": c.name, "predicted": c.n_predicted, "note": c.note}
    cpu = audio_s = 0.0
    for split, exs in splits.items():
        d = []
        for ex in exs:
            t0 = time.process_time()
            y = render(chain, u, ex.target)
            cpu += time.process_time() - t0
            audio_s += ex.target.shape[1] / RATE
            d.append(mrstft(y, ex.target))
        row[f"{split}_mean"] = float(np.mean(d))
        row[f"{split}_max"] = float(np.max(d))
    row["latency"] = chain.latency
    row["cpu_ms_per_s"] = 1e3 * cpu / audio_s
    row["qualifies"] = row.get("val_max", math.inf) <= TRANSPARENT
    chain.close()
    return row


def open_table(rows: Sequence[dict[str, Any]]) -> str:
    head = (
        "| candidate | open MR-STFT val (worst) | test (worst) | latency | CPU ms/s | predicted | qualifies |"
    )
    lines = [head, "|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(
            f"| {r['candidate']} | {r['val_mean']:.4f} ({r['val_max']:.4f}) | {r['test_mean']:.4f} "
            f"({r['test_max']:.4f}) | {r['latency']} | {r['cpu_ms_per_s']:.1f} | {r['predicted']} | "
            f"{'yes' if r['qualifies'] else 'no'} |"
        )
    return "\n".join(lines)


# --- 2. static reach ------------------------------------------------------------------------------
def evaluate_setting(c: Candidate, setting: Setting, exs: Sequence[Excerpt]) -> list[dict[str, float]]:
    """Per-excerpt scores of ``c`` at one static ``setting`` rendered on the inputs."""
    chain, u = c.chain(setting)
    rows = [score(render(chain, u, ex.input), ex) for ex in exs]
    chain.close()
    return rows


def baselines(exs: Sequence[Excerpt]) -> dict[str, list[dict[str, float]]]:
    """Per-excerpt scores of the input and of today's chain at its recipe's defaults and fully open."""
    out = {"input": [score(ex.input, ex) for ex in exs]}
    held = tomllib.loads(CURRENT_RECIPE.read_text())["chain"].get("held", {})
    current = candidates()["calf-mbgate"]
    chain, u = current.chain(held)
    out["calf-mbgate default"] = [score(render(chain, u, ex.input), ex) for ex in exs]
    chain, u = current.chain({**held, **current.open})
    out["calf-mbgate open"] = [score(render(chain, u, ex.input), ex) for ex in exs]
    return out


def reach(c: Candidate, exs: Sequence[Excerpt]) -> dict[str, Any]:
    """The grid of ``c`` on ``exs``: best single setting, best with ≥ 10 dB, per-track oracle."""
    points = c.grid_points()
    per_point = []
    t0 = time.process_time()
    for i, setting in enumerate(points):
        rows = evaluate_setting(c, setting, exs)
        per_point.append({"setting": setting, "tracks": rows, "mean": mean_scores(rows)})
        m = per_point[-1]["mean"]
        log.info(
            "%s %d/%d  MR-STFT %.3f  MFCC %.4f  speech %.3f  events %.1f dB  floor %.1f dB  %s",
            c.name, i + 1, len(points), m["mrstft"], m["mfcc"], m["speech_mrstft"], m["event_db"],
            m["floor_db"], readable(setting),
        )  # fmt: skip
    best = min(per_point, key=lambda p: p["mean"]["mrstft"])
    loud = [p for p in per_point if p["mean"]["event_db"] >= EVENT_GOAL_DB]
    best_goal = min(loud, key=lambda p: p["mean"]["mrstft"]) if loud else None
    oracle_rows = []
    oracle_settings = []
    for k in range(len(exs)):
        p = min(per_point, key=lambda p: p["tracks"][k]["mrstft"])
        oracle_rows.append(p["tracks"][k])
        oracle_settings.append(readable(p["setting"]))
    return {
        "candidate": c.name,
        "points": len(points),
        "cpu_s": time.process_time() - t0,
        "best": {"setting": best["setting"], "mean": best["mean"]},
        "best_goal": None
        if best_goal is None
        else {"setting": best_goal["setting"], "mean": best_goal["mean"]},
        "max_event_db": max(p["mean"]["event_db"] for p in per_point),
        "oracle": {"mean": mean_scores(oracle_rows), "settings": oracle_settings},
        "all": [{"setting": p["setting"], "mean": p["mean"]} for p in per_point],
    }


def readable(setting: Setting) -> str:
    """A setting in the units a person reads: gains and levels in dB, the rest as they are."""
    parts = []
    for k, v in setting.items():
        sym = k.partition(".")[2].rstrip("_0123456789")
        if sym in {"gt", "gr", "al", "threshold", "range", "scp", "gl", "tl"} and v > 0:
            parts.append(f"{k}={to_db(v):+.1f}dB")
        else:
            parts.append(f"{k}={v:g}")
    return " ".join(parts)


def reach_table(base: dict[str, dict[str, float]], results: Sequence[dict[str, Any]]) -> str:
    """One row per baseline and per candidate's best setting / best with ≥ 10 dB / per-track oracle."""
    head = "| system | MR-STFT | MFCC | speech MR-STFT | events dB (ideal) | floor dB |"
    lines = [head, "|---|---|---|---|---|---|"]

    def row(label: str, m: dict[str, float]) -> str:
        return (
            f"| {label} | {m['mrstft']:.3f} | {m['mfcc']:.4f} | {m['speech_mrstft']:.3f} | "
            f"{m['event_db']:.1f} ({m['ideal_db']:.1f}) | {m['floor_db']:.1f} |"
        )

    for label, m in base.items():
        lines.append(row(label, m))
    for r in results:
        lines.append(row(f"{r['candidate']} best static", r["best"]["mean"]))
        if r["best_goal"] is not None:
            lines.append(row(f"{r['candidate']} best static with ≥ 10 dB", r["best_goal"]["mean"]))
        else:
            lines.append(
                f"| {r['candidate']} best static with ≥ 10 dB | none in the grid (at most "
                f"{r['max_event_db']:.1f} dB) | | | | |"
            )
        lines.append(row(f"{r['candidate']} per-track oracle", r["oracle"]["mean"]))
    return "\n".join(lines)


# --- tuning the floor keeper's fixed ports ------------------------------------------------------------
# (name, low, high, log): the structure differential evolution searches (levels in dB, times in ms)
TUNE_SPACE = (
    ("scp_db", -9.0, 12.0, False),  # the detector's preamp: shifts the curve; redundant with F, so bounded
    ("F", -64.0, -48.0, False),
    ("T-F", 4.0, 20.0, False),
    ("H-T", 4.0, 16.0, False),
    ("hold-H", -6.0, 12.0, False),  # the level above which the long release holds
    ("hold_ms", 50.0, 800.0, True),
    ("atd", 0.5, 20.0, True),
    ("sla", 0.0, 20.0, False),
    ("rtd", 1.0, 100.0, True),
    ("shpf", 10.0, 300.0, True),  # the detector's 24 dB/oct high-pass (10 Hz: as good as off)
    ("slpf", 1500.0, 9900.0, True),  # … and low-pass (9.9 kHz: as good as off at 22,050 Hz)
)


def tune_setting(z: Sequence[float]) -> Setting:
    """The floor keeper's ports for one point ``z`` of :data:`TUNE_SPACE` (events at T pulled to F)."""
    v = {name: float(np.exp(x)) if log else float(x) for (name, _, _, log), x in zip(TUNE_SPACE, z)}
    f, t = v["F"], v["F"] + v["T-F"]
    h = t + v["H-T"]
    return {
        "dyna.scp": db(v["scp_db"]), "dyna.tl0": db(f), "dyna.gl0": db(f), "dyna.tl1": db(t),
        "dyna.gl1": db(f), "dyna.tl2": db(h), "dyna.gl2": db(h), "dyna.rl2": db(h + v["hold-H"]),
        "dyna.rt2": v["hold_ms"], "dyna.atd": v["atd"], "dyna.sla": v["sla"], "dyna.rtd": v["rtd"],
        "dyna.shpm": 2, "dyna.shpf": v["shpf"], "dyna.slpm": 2, "dyna.slpf": v["slpf"],
    }  # fmt: skip


def tune_floor_keeper(exs: Sequence[Excerpt], evals: int, seed: int = 0) -> dict[str, Any]:
    """Differential evolution of the floor keeper's fixed ports on ``exs``, minimising the mean MR-STFT.

    Starts from ``chains/nonspeech.toml`` as it is (one member of the
    first population); ``evals`` renders of every excerpt in all. Returns the
    best setting with its scores, and the file's own scores for comparison.
    """
    c = candidates()["nonspeech-v2"]
    fixed = floor_keeper(c.spec)
    f, t, h = floor_keeper_levels(fixed)
    x0 = np.array([
        0.0, f, t - f, h - t, to_db(fixed["rl2"]) - h, math.log(fixed["rt2"]), math.log(fixed["atd"]),
        fixed["sla"], math.log(fixed["rtd"]),
        math.log(fixed["shpf"]) if fixed.get("shpm") else math.log(10.0),
        math.log(fixed["slpf"]) if fixed.get("slpm") else math.log(9900.0),
    ])  # fmt: skip
    bounds = [(math.log(lo), math.log(hi)) if log else (lo, hi) for _, lo, hi, log in TUNE_SPACE]
    lo, hi = np.array(bounds).T
    x0 = np.clip(x0, lo + 1e-9 * (hi - lo), hi - 1e-9 * (hi - lo))  # scipy checks x0 strictly inside
    seen: list[tuple[float, np.ndarray, dict[str, float]]] = []

    def objective(z: np.ndarray) -> float:
        m = mean_scores(evaluate_setting(c, tune_setting(z), exs))
        seen.append((m["mrstft"], np.array(z), m))
        if m["mrstft"] <= min(s[0] for s in seen):
            log.info("tune %d: MR-STFT %.4f  events %.1f dB  speech %.3f  %s", len(seen), m["mrstft"],
                     m["event_db"], m["speech_mrstft"], readable(tune_setting(z)))  # fmt: skip
        return m["mrstft"]

    start = objective(x0)
    population = 1 << math.ceil(math.log2(2 * len(bounds)))  # sobol's initial population: a power of 2
    scipy.optimize.differential_evolution(
        objective, bounds, popsize=2, maxiter=max(0, evals // population - 1), polish=False, tol=0.0,
        seed=seed, x0=x0, init="sobol",
    )  # fmt: skip
    best = min(seen, key=lambda s: s[0])
    return {
        "evals": len(seen),
        "start_mrstft": start,
        "input": mean_scores([score(ex.input, ex) for ex in exs]),
        "best": {"setting": tune_setting(best[1]), "mean": best[2], "z": best[1].tolist()},
    }


# --- the command ---------------------------------------------------------------------------------
def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m training.studies.nonspeech_chains",
                                     description=__doc__.split("\n\n")[0])  # fmt: skip
    parser.add_argument("--cache", metavar="DIR", help="the nonspeech data set (default: its usual cache)")
    parser.add_argument("--tracks", type=int, default=None, help="tracks per split (default: all)")
    parser.add_argument("--seconds", type=float, default=20.0, help="excerpt length (default 20 s)")
    parser.add_argument("--only", nargs="+", metavar="NAME", help="measure only these candidates")
    parser.add_argument("--no-reach", action="store_true", help="the open-chain table only")
    parser.add_argument(
        "--tune", type=int, default=0, metavar="EVALS",
        help="first tune the floor keeper's fixed ports (differential evolution, EVALS renders per excerpt)",
    )  # fmt: skip
    parser.add_argument("--tune-tracks", type=int, default=10, help="training tracks the tuning uses (10)")
    parser.add_argument("--tune-seconds", type=float, default=12.0, help="their excerpt length (12 s)")
    parser.add_argument("--json", metavar="OUT", help="write every number here")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    from training.data.nonspeech import build_nonspeech

    cache = build_nonspeech(args.cache, progress=False)
    t_start = time.process_time()
    splits = {s: excerpts(cache, s, args.tracks, args.seconds) for s in ("val", "test")}
    cands = candidates()
    if args.only:
        unknown = set(args.only) - set(cands)
        if unknown:
            parser.error(f"unknown candidate(s) {sorted(unknown)}; known: {', '.join(cands)}")
        cands = {k: v for k, v in cands.items() if k in args.only}
    result: dict[str, Any] = {"settings": {k: v for k, v in vars(args).items()}}
    if args.tune:
        # tuned on the training split: the validation split then scores it honestly (tuned on the
        # validation tracks themselves, 11 ports fit those 6 tracks and did worse on the test split)
        tuning = excerpts(cache, "train", args.tune_tracks, args.tune_seconds, spread=True)
        tuned = tune_floor_keeper(tuning, args.tune)
        result["tune"] = tuned
        print(f"tuned floor keeper ({tuned['evals']} evaluations; the chain file as it is: "
              f"MR-STFT {tuned['start_mrstft']:.4f}, the input {tuned['input']['mrstft']:.4f}):")  # fmt: skip
        print("  " + json.dumps({k: round(v, 7) for k, v in tuned["best"]["setting"].items()}))
        print("  " + json.dumps({k: round(v, 4) for k, v in tuned["best"]["mean"].items()}))
    opened = []
    for c in cands.values():
        opened.append(open_row(c, splits))
        log.info("open %-20s val %.4f (worst %.4f)  test %.4f  latency %d  %.1f ms/s",
                 c.name, opened[-1]["val_mean"], opened[-1]["val_max"], opened[-1]["test_mean"],
                 opened[-1]["latency"], opened[-1]["cpu_ms_per_s"])  # fmt: skip
    result["open"] = opened
    print(open_table(opened))
    if not args.no_reach:
        base = {k: mean_scores(v) for k, v in baselines(splits["val"]).items()}
        result["baselines_val"] = base
        qualifying = [c for c, r in zip(cands.values(), opened) if r["qualifies"] and c.grid]
        reached = [reach(c, splits["val"]) for c in qualifying]
        for c, r in zip(qualifying, reached):  # the best single setting, held out; the oracle's bound there
            r["best"]["test"] = mean_scores(evaluate_setting(c, r["best"]["setting"], splits["test"]))
            r["test_oracle"] = reach(c, splits["test"])["oracle"]
        result["reach"] = reached
        result["baselines_test"] = {k: mean_scores(v) for k, v in baselines(splits["test"]).items()}
        print()
        print("validation split:")
        print(reach_table(base, reached))
        print()
        print("test split (the best validation setting of each candidate, held out):")
        print(reach_table(result["baselines_test"], []))
        for r in reached:
            for label, m in (
                ("val's best static", r["best"]["test"]),
                ("per-track oracle", r["test_oracle"]["mean"]),
            ):
                print(
                    f"  {r['candidate']} {label}: MR-STFT {m['mrstft']:.3f}  MFCC {m['mfcc']:.4f}  speech "
                    f"{m['speech_mrstft']:.3f}  events {m['event_db']:.1f} ({m['ideal_db']:.1f}) dB  floor "
                    f"{m['floor_db']:.1f} dB"
                )
            print(f"    val's best static: {readable(r['best']['setting'])}")
    result["cpu_s"] = round(time.process_time() - t_start, 1)
    print(f"CPU: {result['cpu_s']:.0f} s")
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=1, default=float) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
