"""Evaluate a trained encoder against simple baselines on the test split.

    python training/evaluate.py --task mastering [--checkpoint runs/mastering/encoder.keras]
                                [--config FILE] [--seconds 30] [--tracks N] [--out runs/mastering/eval]
                                [--data DIR] [--no-matchering]

The systems are scored against each test track's *target* (the mastered
original, the reference amp's output, the speech without its noises), on the
same excerpt of ``--seconds`` from the middle of the track:

* ``input`` — the un-mastered input itself (what there is to fix);
* ``default_chain`` — the chain at its default parameters (what the plugins do
  unguided);
* ``model`` — the chain driven by the model exactly as ``deepafx-rt render
  --task`` and the live host play it (:func:`rt_host.steer.render_steered`):
  every hop the encoder predicts from the window *ending* there (causal), each
  prediction steers from a fixed delay after its window's end, the live
  one-pole smoother (``--smoothing``, 0.1 s) glides per ``--block`` and the
  ports are written as live. ``--bundle DIR`` scores an exported ONNX bundle
  with onnxruntime instead of a Keras checkpoint;
* ``matchering`` (mastering only) — matchering 2.0 with a *different* test
  track's target as its reference (it never sees the target it is scored against).

``mastering`` adds two baselines that expose level (issue 14; a gain is the
baseline to beat): ``input_gain_matched``, the input brought to the target's
integrated loudness (an oracle: it knows the answer's level), and
``input_normalized``, the input brought to the median integrated loudness of
the *training* split's masters (what a loudness normalizer does, no oracle).
Every mastering system is scored twice (:mod:`training.evaluation.mastering`):
as is, and *at target loudness* — gain-matched to the target first, which
isolates what the processing does beyond level — on MR-STFT, MFCC cosine,
median |LUFS error|, true peak (dBTP, the maximum over tracks and the median),
|LRA error| and the 1/3-octave balance error.

``nonspeech`` adds speech preservation and event attenuation per system
(:mod:`training.evaluation.nonspeech`); the goals in ``metrics.md`` are each
task's issue's (:data:`GOALS`).

Metrics (:mod:`training.evaluation.metrics`): MFCC cosine distance, multi-resolution
STFT distance (lower is better) and the LUFS error (BS.1770, output minus
target; the table gives the median of its absolute value). Chain renders are
latency-compensated so that output and target line up sample for sample.

Writes to ``--out``: ``metrics.json`` (a JSON object ``{metric: {system:
value}}`` plus flat numbers — exactly what ``python training/export.py
--metrics`` takes), ``metrics.md`` (the table, per-track rows and the goals of
issue 6), ``tracks.json`` (per-track numbers), ``automation.png`` (the
predicted parameters over one test track) and ``spectra.png`` (long-term
spectra of input, target, default chain and model output on that track).
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import os
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

if __package__ in (None, ""):  # run as a script: make ``training`` and ``rt_host`` importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from rt_host.bundle import project_root  # noqa: E402
from rt_host.errors import DeepAFxError  # noqa: E402
from rt_host.steer import DEFAULT_SMOOTHING_S, Predictor  # noqa: E402
from rt_host.steer.automation import DEFAULT_BLOCK  # noqa: E402

log = logging.getLogger("training.evaluate")

# every system any task scores, in the order the tables of distortion and nonspeech show theirs
SYSTEMS = ("input", "input_gain_matched", "input_normalized", "default_chain", "model", "matchering")
# mastering: the level baselines join (module docstring), in the order the tables show them
MASTERING_SYSTEMS = (
    "input",
    "input_gain_matched",
    "input_normalized",
    "default_chain",
    "matchering",
    "model",
)

# What each task's issue asks of the model: (flat metric key, minimum in %, label).
# The flat keys are relative improvements written by summarize() (positive = the model is closer).
GOALS: dict[str, list[tuple[str, float, str]]] = {
    "mastering": [  # issue 14: at target loudness first — the line between mastering and a gain knob
        (
            "mrstft_at_target_model_vs_input_gain_matched_pct",
            20,
            "at target loudness: MR-STFT closer than the gain-matched input",
        ),
        (
            "mfcc_cosine_at_target_model_vs_input_gain_matched_pct",
            0,
            "at target loudness: MFCC cosine no higher than the gain-matched input's",
        ),
        ("mrstft_model_vs_input_pct", 60, "as is: MR-STFT closer than the input"),
        ("mrstft_model_vs_matchering_pct", 25, "as is: MR-STFT closer than matchering"),
        ("mfcc_cosine_model_vs_matchering_pct", 0, "as is: MFCC cosine no worse than matchering"),
    ],
    "distortion": [  # issue 16 (+ ESR ≤ 0.1 on every track, in markdown())
        ("mrstft_model_vs_input_pct", 50, "MR-STFT closer than the input"),
        ("mrstft_model_vs_default_chain_pct", 35, "MR-STFT closer than the default chain"),
        ("mfcc_cosine_model_vs_input_pct", 25, "MFCC closer than the input"),
    ],
    "nonspeech": [  # issue 15 (+ events ≥ 10 dB down, speech within 0.1 MR-STFT, in markdown())
        ("mrstft_model_vs_input_pct", 25, "MR-STFT closer than the input"),
        ("mfcc_cosine_model_vs_input_pct", 10, "MFCC closer than the input"),
        ("mrstft_model_vs_default_chain_pct", 25, "MR-STFT closer than the default chain"),
        ("mfcc_cosine_model_vs_default_chain_pct", 25, "MFCC closer than the default chain"),
    ],
    "default": [
        ("mfcc_cosine_model_vs_input_pct", 25, "MFCC closer than the input"),
        ("mrstft_model_vs_input_pct", 25, "MR-STFT closer than the input"),
        ("mfcc_cosine_model_vs_default_chain_pct", 25, "MFCC closer than the default chain"),
        ("mrstft_model_vs_default_chain_pct", 25, "MR-STFT closer than the default chain"),
    ],
}
ESR_GOAL, ESR_STRETCH = (
    0.1,
    0.035,
)  # issue 16: per test track; Neural Amp Modeler's "might sound ok" / "not bad"
EVENT_GOAL_DB, SPEECH_GOAL = 10.0, 0.1  # issue 15
ISSUE = {"mastering": 14, "distortion": 16, "nonspeech": 15}
# issue 14's absolute limits on the model: (metric, system-independent label, at most)
MASTERING_LIMITS = (
    ("lufs_error_abs_median", "median |LUFS error|", 0.5, "LU"),
    ("true_peak_dbtp_max", "true peak on every track", -1.0, "dBTP"),
)


def task_extra_metrics(task: str):
    """Task-specific scores of one system's output on one excerpt, or ``None``.

    The function takes ``(output, input, target, track, start, rate)`` — ``start``
    is the excerpt's first sample in the track — and returns ``{name: value}``.
    """
    if task == "nonspeech":
        from training.evaluation.nonspeech import crop_record, nonspeech_scores

        keys = ("speech_mrstft", "event_attenuation_db", "event_attenuation_ideal_db")

        def scores(output, x, y, track, start: int, rate: int) -> dict[str, float]:
            record = crop_record(track.meta, start, start + x.shape[1])
            s = nonspeech_scores(output, x, y, record, rate)
            return {k: float(s[k]) for k in keys}

        return scores
    if task == "distortion":
        from training.evaluation.distortion import aligned_esr

        def esr_score(output, x, y, track, start: int, rate: int) -> dict[str, float]:
            # amp modellers' error-to-signal ratio, aligned within ±64 samples, no polarity flip
            return {"esr": float(aligned_esr(output, y, ESR_MAX_LAG))}

        return esr_score
    return None


ESR_MAX_LAG = 64  # samples: the distortion chains have no latency; the loss aligns within the same


class EvaluateError(DeepAFxError):
    """The evaluation cannot run; the message says why."""


# --- the model as the product runs it --------------------------------------------------------
@dataclass
class SteeringModel:
    """A trained encoder as the product runs it: what it predicts for, and how."""

    task: str
    chain_spec: Any  # rt_host.lv2.ChainSpec
    model_rate: int
    window: int  # samples at model_rate
    hop: int  # samples at model_rate
    held: dict[str, float]  # port units
    predict: Predictor
    source: str  # the checkpoint or bundle it came from

    @classmethod
    def from_bundle(cls, path: str | Path) -> SteeringModel:
        """The shipped ONNX encoder (onnxruntime, as ``deepafx-rt render --bundle`` runs it)."""
        from rt_host.bundle import load_bundle

        b = load_bundle(path)
        return cls(b.task, b.chain_spec, b.sample_rate, b.window, b.hop, dict(b.held.port) if b.held else {},
                   b.predictor(b.session(threads=2)), str(b.path))  # fmt: skip

    @classmethod
    def from_checkpoint(cls, encoder, cfg: dict[str, Any], source: str = "") -> SteeringModel:
        """A Keras encoder and its recipe."""
        from rt_host.lv2 import ChainSpec

        r = cfg["rates"]

        def predict(views: np.ndarray) -> np.ndarray:
            return np.asarray(encoder(views, training=False), dtype=np.float32)

        return cls(
            str(cfg.get("task", "mastering")),
            ChainSpec.load(cfg["chain"]["name"]),
            int(r["encoder_rate"]),
            int(r["encoder_window"]),
            int(r["hop"]),
            dict(cfg["chain"].get("held", {})),
            predict,
            source,
        )


def render_model(model: SteeringModel, chain, x: np.ndarray, rate: int, smoothing_s: float, block: int):
    """``(output, automation)``: the chain on ``x`` steered by ``model`` as ``render --task`` plays it."""
    from rt_host.steer import Geometry, HeldParameters, render_steered

    geometry = Geometry.at(rate, model.model_rate, model.window, model.hop)
    held = HeldParameters(chain.parameters, model.held) if model.held else None
    return render_steered(
        chain, x, rate, model.predict, geometry, held=held, smoothing_s=smoothing_s, block=block
    )


def render_chain(chain, x: np.ndarray, rate: int, params: np.ndarray, block: int) -> np.ndarray:
    """The chain on ``x`` at fixed parameters, latency-compensated so the output lines up with the target."""
    return chain(x, rate, params=params, block_size=block, compensate_latency=True)


# --- evaluation -------------------------------------------------------------------------------
def excerpt_bounds(track, seconds: float | None) -> tuple[int, int]:
    """``[start, stop)`` of the middle ``seconds`` of a track (all of it when ``None`` or longer)."""
    n = track.target.shape[1]
    m = n if seconds is None else min(n, int(seconds * track.rate))
    s = (n - m) // 2
    return s, s + m


def excerpt(track, seconds: float | None) -> tuple[np.ndarray, np.ndarray]:
    """The middle ``seconds`` of a track's input and target (all of it when ``None`` or longer)."""
    s, e = excerpt_bounds(track, seconds)
    return (
        np.array(track.input[:, s:e], dtype=np.float32),
        np.array(track.target[:, s:e], dtype=np.float32),
    )


def evaluate(
    model: SteeringModel,
    tracks: list,
    out: Path,
    *,
    seconds: float | None = 30.0,
    smoothing_s: float = DEFAULT_SMOOTHING_S,
    block: int = DEFAULT_BLOCK,
    matchering: bool = True,
    normalize_lufs: float | None = None,
) -> dict[str, Any]:
    """Score the systems on ``tracks``; write the files listed in the module docstring.

    ``matchering`` only applies to the mastering task (it is a mastering tool).
    ``normalize_lufs`` (mastering) is the level of the ``input_normalized``
    baseline: the training split's median master loudness
    (:func:`training.evaluation.mastering.median_loudness`); without it that
    baseline is left out. Returns the metrics dict written to ``metrics.json``.
    """
    from rt_host.lv2 import Chain
    from training.evaluation.metrics import compare, matchering_master

    if not tracks:
        raise EvaluateError("no test tracks to evaluate")
    out.mkdir(parents=True, exist_ok=True)
    spec = model.chain_spec
    chain = Chain(spec)
    rate = int(spec.sample_rate or tracks[0].rate)
    defaults = chain.default_normalized()
    per_track: list[dict[str, Any]] = []
    shown: dict[str, Any] = {}
    t0 = time.monotonic()
    task = model.task
    mastering = task == "mastering"
    matchering = matchering and mastering
    extra_metrics = task_extra_metrics(task)
    if mastering:
        from training.evaluation.mastering import gain_match, gain_to_loudness, scores_as_is_and_at_target
    excerpts = [excerpt(t, seconds) for t in tracks]
    for i, (track, (x, y)) in enumerate(zip(tracks, excerpts)):
        if track.rate != rate:
            raise EvaluateError(f"track {track.track_id} is at {track.rate} Hz; the chain renders at {rate}")
        outputs: dict[str, np.ndarray] = {"input": x}
        if mastering:  # the level baselines: an oracle gain, and a loudness normalizer
            outputs["input_gain_matched"] = gain_match(x, y, rate)[0]
            if normalize_lufs is not None:
                outputs["input_normalized"] = gain_to_loudness(x, normalize_lufs, rate)[0]
        outputs["default_chain"] = render_chain(chain, x, rate, defaults, block)
        outputs["model"], automation = render_model(model, chain, x, rate, smoothing_s, block)
        if matchering and len(tracks) > 1:
            ref = excerpts[(i + 1) % len(tracks)][1]  # another track's master: never the scored target
            try:
                outputs["matchering"] = matchering_master(x, ref, rate)
            except ValueError as exc:
                log.warning("matchering failed on %s: %s", track.track_id, exc)
        row: dict[str, Any] = {"track": track.track_id, "seconds": round(x.shape[1] / rate, 2)}
        start = excerpt_bounds(track, seconds)[0]
        for system, audio in outputs.items():
            if mastering:  # as is at the top (the keys of compare()), at target loudness nested
                as_is, at_target = scores_as_is_and_at_target(audio, y, rate)
                row[system] = {**as_is, "at_target": at_target}
                continue
            row[system] = compare(audio, y, rate)
            if extra_metrics is not None:
                row[system].update(extra_metrics(audio, x, y, track, start, rate))
        per_track.append(row)
        if mastering:
            log.info(
                "[%d/%d] %s at target loudness: mrstft gain-matched input %.3f · model %.3f",
                i + 1, len(tracks), track.track_id, row["input_gain_matched"]["at_target"]["mrstft"],
                row["model"]["at_target"]["mrstft"],
            )  # fmt: skip
        log.info(
            "[%d/%d] %s: mrstft input %.3f · default %.3f · model %.3f%s (%.0f s)",
            i + 1, len(tracks), track.track_id, row["input"]["mrstft"], row["default_chain"]["mrstft"],
            row["model"]["mrstft"],
            f" · matchering {row['matchering']['mrstft']:.3f}" if "matchering" in row else "",
            time.monotonic() - t0,
        )  # fmt: skip
        if i == 0:
            times, rows = automation.log()
            shown = {"track": track.track_id, "times": times, "u": rows, "target": y, **outputs}
    chain.close()

    metrics = summarize_mastering(per_track) if mastering else summarize(per_track)
    if mastering and normalize_lufs is not None:
        metrics["input_normalized_lufs"] = round(float(normalize_lufs), 2)
    metrics["task"] = task
    metrics["tracks"] = len(per_track)
    metrics["seconds_per_track"] = float(np.mean([r["seconds"] for r in per_track]))
    metrics["smoothing_s"] = smoothing_s
    metrics["block"] = block
    metrics["model_source"] = model.source
    (out / "metrics.json").write_text(json.dumps(metrics, indent=1) + "\n")
    (out / "tracks.json").write_text(json.dumps(per_track, indent=1) + "\n")
    (out / "metrics.md").write_text((markdown_mastering if mastering else markdown)(metrics, per_track))
    plot_automation(shown, spec, rate, out / "automation.png")
    plot_spectra(shown, rate, out / "spectra.png")
    return metrics


def _nanmean(values: list[float]) -> float | None:
    v = np.array([x for x in values if x is not None and np.isfinite(x)], dtype=np.float64)
    return float(v.mean()) if v.size else None


def summarize(per_track: list[dict[str, Any]]) -> dict[str, Any]:
    """``{metric: {system: value}}`` (means of MFCC and MR-STFT, median |LUFS error|) plus the
    relative improvements of issue 6's goals as flat numbers (positive = the model is closer)."""
    systems = [s for s in SYSTEMS if any(s in r for r in per_track)]
    metrics: dict[str, Any] = {"mfcc_cosine": {}, "mrstft": {}, "lufs_error_abs_median": {}}
    standard = {"mfcc_cosine", "mrstft", "lufs_error"}
    extra = sorted({k for r in per_track for s in systems if s in r for k in r[s]} - standard)
    for key in extra:  # task-specific scores (means over tracks)
        metrics[key] = {}
    for s in systems:
        rows = [r[s] for r in per_track if s in r]
        metrics["mfcc_cosine"][s] = _nanmean([r["mfcc_cosine"] for r in rows])
        metrics["mrstft"][s] = _nanmean([r["mrstft"] for r in rows])
        lufs = np.array([abs(r["lufs_error"]) for r in rows if np.isfinite(r["lufs_error"])])
        metrics["lufs_error_abs_median"][s] = float(np.median(lufs)) if lufs.size else None
        for key in extra:
            metrics[key][s] = _nanmean([r.get(key) for r in rows])
    for metric in ("mfcc_cosine", "mrstft"):
        m = metrics[metric]
        for base in ("input", "default_chain", "matchering"):
            if m.get(base) and m.get("model") is not None:
                metrics[f"{metric}_model_vs_{base}_pct"] = round(100.0 * (1.0 - m["model"] / m[base]), 2)
    return metrics


def markdown(metrics: dict[str, Any], per_track: list[dict[str, Any]]) -> str:
    """The results as markdown: the summary table, the goals, one row per track."""
    from training.export import metrics_table

    task = str(metrics.get("task", "mastering"))
    lines = [
        "# Evaluation on the test split",
        "",
        f"{metrics['tracks']} track(s), {metrics['seconds_per_track']:.1f} s each (the middle of the track). "
        "MFCC cosine and MR-STFT: means (lower is better); LUFS: median |output − target| in LU.",
        "",
        metrics_table({k: v for k, v in metrics.items() if isinstance(v, dict)}),
        "",
        f"## Goals (issue {ISSUE.get(task, '?')})",
        "",
    ]

    def goal(key: str, need: float, label: str) -> str:
        v = metrics.get(key)
        if v is None:
            return f"- {label}: n/a"
        return f"- {label}: {v:+.1f} % (goal ≥ {need:g} %) — {'met' if v >= need else 'missed'}"

    lines += [goal(key, need, label) for key, need, label in GOALS.get(task, GOALS["default"])]
    lufs = metrics["lufs_error_abs_median"].get("model")
    if lufs is not None and task == "mastering":
        lines.append(
            f"- median |LUFS error| of the model: {lufs:.2f} LU (goal ≤ 1) — "
            + ("met" if lufs <= 1 else "missed")
        )
    if task == "distortion" and per_track and "esr" in per_track[0].get("model", {}):
        esr = [r["model"]["esr"] for r in per_track]
        worst = max(esr)
        lines.append(
            f"- ESR on every track ≤ {ESR_GOAL:g} (stretch ≤ {ESR_STRETCH:g}): worst {worst:.3f}, median "
            f"{np.median(esr):.3f}, {sum(e <= ESR_GOAL for e in esr)} of {len(esr)} tracks ≤ {ESR_GOAL:g} — "
            + ("met" if worst <= ESR_GOAL else "missed")
        )
    if task == "nonspeech" and "event_attenuation_db" in metrics:
        att = metrics["event_attenuation_db"].get("model")
        speech = metrics.get("speech_mrstft", {}).get("model")
        if att is not None:
            lines.append(f"- events attenuated by ≥ {EVENT_GOAL_DB:g} dB: {att:.1f} dB — "
                         + ("met" if att >= EVENT_GOAL_DB else "missed"))  # fmt: skip
        if speech is not None:
            verdict = "met" if speech <= SPEECH_GOAL else "missed"
            lines.append(f"- speech within {SPEECH_GOAL:g} MR-STFT of clean: {speech:.3f} — {verdict}")
    extra = "" if task != "distortion" else " / ESR"
    lines += ["", f"## Per track (MR-STFT / MFCC cosine / LUFS error{extra})", ""]
    systems = [s for s in SYSTEMS if any(s in r for r in per_track)]
    lines += ["| track | " + " | ".join(systems) + " |", "|---" * (len(systems) + 1) + "|"]
    for r in per_track:
        cells = [
            f"{r[s]['mrstft']:.3f} / {r[s]['mfcc_cosine']:.4f} / {r[s]['lufs_error']:+.1f}"
            + (f" / {r[s]['esr']:.3f}" if "esr" in r[s] else "")
            if s in r
            else ""
            for s in systems
        ]
        lines.append(f"| {r['track']} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


# --- mastering: as is and at target loudness (issue 14) ------------------------------------------
# (key in metrics.json, column title, how the tracks combine, format); "abs_*" take |value| first
MASTERING_COLUMNS = (
    ("mrstft", "MR-STFT", "mean", "{:.3f}"),
    ("mfcc_cosine", "MFCC cos", "mean", "{:.4f}"),
    ("lufs_error_abs_median", "median \\|LUFS err\\| (LU)", "abs_median", "{:.2f}"),
    ("true_peak_dbtp_max", "true peak max (dBTP)", "max", "{:+.2f}"),
    ("true_peak_dbtp_median", "true peak median (dBTP)", "median", "{:+.2f}"),
    ("lra_error_abs_mean", "mean \\|LRA err\\| (LU)", "abs_mean", "{:.2f}"),
    ("balance_error_db", "1/3-oct balance err (dB)", "mean", "{:.2f}"),
)
_MASTERING_SOURCE = {  # the per-track score each summary column reads
    "mrstft": "mrstft",
    "mfcc_cosine": "mfcc_cosine",
    "lufs_error_abs_median": "lufs_error",
    "true_peak_dbtp_max": "true_peak_dbtp",
    "true_peak_dbtp_median": "true_peak_dbtp",
    "lra_error_abs_mean": "lra_error",
    "balance_error_db": "balance_error_db",
}


def _combine(values: list[float], how: str) -> float | None:
    v = np.array([x for x in values if x is not None and np.isfinite(x)], dtype=np.float64)
    if not v.size:
        return None
    if how.startswith("abs_"):
        v, how = np.abs(v), how[4:]
    return float({"mean": np.mean, "median": np.median, "max": np.max}[how](v))


def summarize_mastering(per_track: list[dict[str, Any]]) -> dict[str, Any]:
    """``{metric: {system: value}}`` as is (keys of :data:`MASTERING_COLUMNS`) and at target loudness
    (the same keys + ``_at_target``), plus the relative improvements of the model over every other
    system on MR-STFT and MFCC cosine in both views (flat, in %, positive = the model is closer)."""
    systems = [s for s in MASTERING_SYSTEMS if any(s in r for r in per_track)]
    metrics: dict[str, Any] = {}
    for suffix in ("", "_at_target"):
        for key, _, how, _ in MASTERING_COLUMNS:
            metrics[key + suffix] = {}
            for s in systems:
                rows = [r[s]["at_target"] if suffix else r[s] for r in per_track if s in r]
                metrics[key + suffix][s] = _combine([r[_MASTERING_SOURCE[key]] for r in rows], how)
    for suffix in ("", "_at_target"):
        for metric in ("mrstft", "mfcc_cosine"):
            m = metrics[metric + suffix]
            for base in systems:
                if base != "model" and m.get(base) and m.get("model") is not None:
                    key = f"{metric}{suffix}_model_vs_{base}_pct"
                    metrics[key] = round(100.0 * (1.0 - m["model"] / m[base]), 2)
    return metrics


def markdown_mastering(metrics: dict[str, Any], per_track: list[dict[str, Any]]) -> str:
    """The mastering results: the table as is, the table at target loudness, issue 14's goals, per track."""
    systems = [s for s in MASTERING_SYSTEMS if s in metrics["mrstft"]]

    def table(suffix: str) -> list[str]:
        lines = ["| system | " + " | ".join(c[1] for c in MASTERING_COLUMNS) + " |"]
        lines.append("|---" * (len(MASTERING_COLUMNS) + 1) + "|")
        for s in systems:
            cells = []
            for key, _, _, fmt in MASTERING_COLUMNS:
                v = metrics[key + suffix].get(s)
                cells.append("n/a" if v is None else fmt.format(v))
            lines.append(f"| {s} | " + " | ".join(cells) + " |")
        return lines

    lufs = metrics.get("input_normalized_lufs")
    lines = [
        "# Evaluation on the test split (mastering)",
        "",
        f"{metrics['tracks']} track(s), {metrics['seconds_per_track']:.1f} s each (the middle of the track). "
        "MR-STFT, MFCC cosine, |LRA error| and balance error: means over tracks (lower is better); LUFS: "
        "median |output − target|; true peak: the output's own, the maximum and the median over tracks.",
        "",
        "Systems: `input_gain_matched` is the input at the target's integrated loudness (an oracle); "
        "`input_normalized` the input at the training masters' median loudness"
        + (f" ({lufs:.2f} LUFS)" if lufs is not None else "")
        + " (no oracle); matchering's reference is another test track's master.",
        "",
        "## As is",
        "",
        *table(""),
        "",
        "## At target loudness",
        "",
        "Each output gain-matched to its target's integrated loudness before scoring: what the processing "
        "does beyond level. (LUFS error is 0 here by construction; MFCC cosine, LRA and balance error "
        "ignore level, so they equal the table above.)",
        "",
        *table("_at_target"),
        "",
        f"## Goals (issue {ISSUE['mastering']})",
        "",
    ]
    for key, need, label in GOALS["mastering"]:
        v = metrics.get(key)
        verdict = (
            "n/a" if v is None else f"{v:+.1f} % (goal ≥ {need:g} %) — {'met' if v >= need else 'missed'}"
        )
        lines.append(f"- {label}: {verdict}")
    for key, label, limit, unit in MASTERING_LIMITS:
        v = metrics.get(key, {}).get("model")
        verdict = (
            "n/a"
            if v is None
            else f"{v:+.2f} {unit} (goal ≤ {limit:g}) — {'met' if v <= limit else 'missed'}"
        )
        lines.append(f"- {label}: {verdict}")
    lines += ["", "## Per track (MR-STFT as is / at target loudness, LUFS error, true peak dBTP)", ""]
    lines += ["| track | " + " | ".join(systems) + " |", "|---" * (len(systems) + 1) + "|"]
    for r in per_track:
        cells = []
        for s in systems:
            if s not in r:
                cells.append("")
                continue
            a = r[s]
            cells.append(
                f"{a['mrstft']:.3f} / {a['at_target']['mrstft']:.3f}, {a['lufs_error']:+.1f}, "
                f"{a['true_peak_dbtp']:+.1f}"
            )
        lines.append(f"| {r['track']} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


# --- figures ----------------------------------------------------------------------------------
def plot_automation(shown: dict[str, Any], spec, rate: int, path: Path) -> None:
    """The predicted (smoothed) normalized parameters over time on one track: a heat map of all of
    them, and lines for the few that vary most."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from rt_host.lv2.chain import Chain

    names = Chain(spec).parameter_names
    u, t = shown["u"], shown["times"]
    fig, (ax_map, ax_lines) = plt.subplots(2, 1, figsize=(10, 9), height_ratios=(3, 2))
    extent = (float(t[0]), float(t[-1]) if len(t) > 1 else float(t[0]) + 1.0, len(names) - 0.5, -0.5)
    im = ax_map.imshow(u.T, aspect="auto", interpolation="nearest", vmin=0, vmax=1, extent=extent)
    ax_map.set_yticks(range(len(names)))
    ax_map.set_yticklabels(names, fontsize=5)
    fig.colorbar(im, ax=ax_map, label="normalized value")
    ax_map.set_title(f"automation as played, {shown['track']} (causal, live smoother)")
    top = np.argsort(-np.ptp(u, axis=0))[:6]
    for j in top:
        ax_lines.plot(t, u[:, j], label=names[j])
    ax_lines.set_xlabel("time in the excerpt (s)")
    ax_lines.set_ylabel("normalized value")
    ax_lines.set_ylim(0, 1)
    ax_lines.legend(fontsize=7, ncol=3)
    ax_lines.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def plot_spectra(shown: dict[str, Any], rate: int, path: Path) -> None:
    """Long-term average spectra (Welch, mono mix) of input, target, default chain, model output."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import scipy.signal

    fig, ax = plt.subplots(figsize=(9, 5))
    for key, style in (("input", ":"), ("target", "-"), ("default_chain", "--"), ("model", "-")):
        if key not in shown:
            continue
        mono = np.asarray(shown[key], dtype=np.float64).mean(axis=0)
        f, p = scipy.signal.welch(mono, rate, nperseg=min(8192, len(mono)))
        ax.semilogx(f[1:], 10 * np.log10(p[1:] + 1e-20), style, label=key, lw=1.2)
    ax.set_xlim(20, rate / 2)
    ax.set_xlabel("frequency (Hz)")
    ax.set_ylabel("power spectral density (dB)")
    ax.set_title(f"long-term spectra, {shown['track']}")
    ax.grid(alpha=0.3, which="both")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


# --- command line -----------------------------------------------------------------------------
def main(argv: Sequence[str] | None = None) -> int:
    """``python training/evaluate.py --task TASK …``; returns the exit code."""
    parser = argparse.ArgumentParser(
        prog="evaluate.py",
        description="Score a trained encoder against the input and the default chain (and, for "
        "mastering, matchering) on the test split.",
    )
    parser.add_argument("--task", required=True, help="task name, e.g. mastering")
    parser.add_argument("--checkpoint", type=Path, help="encoder .keras (default: runs/TASK/encoder.keras)")
    parser.add_argument(
        "--bundle", type=Path, metavar="DIR",
        help="score an exported bundle instead (onnxruntime, as the product runs it; no TensorFlow)",
    )  # fmt: skip
    parser.add_argument(
        "--config", type=Path, help="recipe (default: config.toml next to the checkpoint, else the task's)"
    )
    parser.add_argument("--seconds", type=float, default=30.0, help="excerpt per track (default 30; 0 = all)")
    parser.add_argument("--tracks", type=int, help="evaluate only the first N test tracks")
    parser.add_argument(
        "--smoothing", type=float, default=DEFAULT_SMOOTHING_S, metavar="SECONDS",
        help="time constant of the live smoother (default %(default)g s, as render and live)",
    )  # fmt: skip
    parser.add_argument(
        "--block", type=int, default=DEFAULT_BLOCK, help="frames per automation step (default %(default)d)"
    )
    parser.add_argument("--out", type=Path, help="results folder (default: the checkpoint's folder /eval)")
    parser.add_argument("--data", help="data cache folder (default: $DEEPAFX_DATA/TASK or ~/.cache/…)")
    parser.add_argument("--no-matchering", action="store_true", help="skip the matchering baseline")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    if not (math.isfinite(args.smoothing) and args.smoothing >= 0):
        parser.error("--smoothing must be a time constant in seconds ≥ 0")
    if args.block < 1:
        parser.error("--block must be ≥ 1")
    checkpoint = args.checkpoint or project_root() / "runs" / args.task / "encoder.keras"
    if args.bundle is None and not checkpoint.is_file():
        print(
            f"evaluate.py: error: no trained encoder at {checkpoint}; train one "
            f"(python training/train.py --task {args.task}), pass --checkpoint, or score a bundle "
            "with --bundle",
            file=sys.stderr,
        )
        return 2
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    try:
        from training.data import load_tracks, resolve_cache_dir

        if args.bundle is not None:
            model = SteeringModel.from_bundle(args.bundle)
            if model.task != args.task:
                raise EvaluateError(f"the bundle {args.bundle} is for task {model.task!r}, not {args.task!r}")
            cache = args.data
            out = args.out or Path(args.bundle) / "eval"
        else:
            from training.export import load_checkpoint
            from training.train import config_path, load_config

            cfg_file = args.config
            if cfg_file is None:
                beside = checkpoint.parent / "config.toml"
                cfg_file = beside if beside.is_file() else config_path(args.task)
            cfg = load_config(cfg_file)
            model = SteeringModel.from_checkpoint(load_checkpoint(checkpoint), cfg, str(checkpoint))
            cache = args.data or cfg.get("data", {}).get("cache")
            out = args.out or checkpoint.parent / "eval"
        tracks = load_tracks(resolve_cache_dir(args.task, cache), "test")
        if args.tracks:
            tracks = tracks[: args.tracks]
        normalize_lufs = None
        if args.task == "mastering":  # the loudness normalizer's level: the training masters' median
            from training.evaluation.mastering import median_loudness

            normalize_lufs = median_loudness(load_tracks(resolve_cache_dir(args.task, cache), "train"))
        metrics = evaluate(
            model,
            tracks,
            out,
            seconds=args.seconds or None,
            smoothing_s=args.smoothing,
            block=args.block,
            matchering=not args.no_matchering,
            normalize_lufs=normalize_lufs,
        )
    except DeepAFxError as exc:
        print(f"evaluate.py: error: {exc}", file=sys.stderr)
        return 2
    print((out / "metrics.md").read_text())
    print(f"written: {out}/metrics.json (for export.py --metrics), metrics.md, automation.png, spectra.png")
    return 0 if all(math.isfinite(v) for v in metrics["mrstft"].values() if v is not None) else 1


if __name__ == "__main__":
    sys.exit(main())
