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
* ``model`` — the chain driven by the model the way the product runs it: every
  hop the encoder predicts from the window *ending* there (causal, like the
  live controller; its view of the input: mono at the encoder's rate), the
  predictions are smoothed over time
  (exponential, ``--smoothing``) and interpolated to one value per
  ``step_length`` block, and the chain renders the whole excerpt offline at
  the music's rate with ``Chain(x, rate, params=U, step_length=…)``;
* ``matchering`` (mastering only) — matchering 2.0 with a *different* test
  track's target as its reference (it never sees the target it is scored against).

``nonspeech`` adds speech preservation and event attenuation per system
(:mod:`training.nonspeech_metrics`); the goals in ``metrics.md`` are each
task's issue's (:data:`GOALS`).

Metrics (:mod:`training.metrics`): MFCC cosine distance, multi-resolution
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
from pathlib import Path
from typing import Any

import numpy as np

if __package__ in (None, ""):  # run as a script: make ``training`` and ``rt_host`` importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from rt_host.bundle import project_root  # noqa: E402
from rt_host.errors import DeepAFxError  # noqa: E402

log = logging.getLogger("training.evaluate")

SYSTEMS = ("input", "default_chain", "model", "matchering")
STEP_LENGTH = 1024  # chain samples between automation values (23 ms at 44.1 kHz)

# What each task's issue asks of the model: (flat metric key, minimum in %, label).
# The flat keys are relative improvements written by summarize() (positive = the model is closer).
GOALS: dict[str, list[tuple[str, float, str]]] = {
    "mastering": [  # issue 6
        ("mfcc_cosine_model_vs_input_pct", 40, "MFCC closer than the input"),
        ("mrstft_model_vs_input_pct", 40, "MR-STFT closer than the input"),
        ("mfcc_cosine_model_vs_default_chain_pct", 25, "MFCC closer than the default chain"),
        ("mrstft_model_vs_default_chain_pct", 25, "MR-STFT closer than the default chain"),
        ("mrstft_model_vs_matchering_pct", 0, "MR-STFT closer than matchering"),
    ],
    "default": [  # issue 7: distortion, nonspeech
        ("mfcc_cosine_model_vs_input_pct", 25, "MFCC closer than the input"),
        ("mrstft_model_vs_input_pct", 25, "MR-STFT closer than the input"),
        ("mfcc_cosine_model_vs_default_chain_pct", 25, "MFCC closer than the default chain"),
        ("mrstft_model_vs_default_chain_pct", 25, "MR-STFT closer than the default chain"),
    ],
}
ISSUE = {"mastering": 6, "distortion": 7, "nonspeech": 7}


def task_extra_metrics(task: str):
    """Task-specific scores of one system's output on one excerpt, or ``None``.

    The function takes ``(output, input, target, track, start, rate)`` — ``start``
    is the excerpt's first sample in the track — and returns ``{name: value}``.
    """
    if task == "nonspeech":
        from training.nonspeech_metrics import crop_record, nonspeech_scores

        keys = ("speech_mrstft", "event_attenuation_db", "event_attenuation_ideal_db")

        def scores(output, x, y, track, start: int, rate: int) -> dict[str, float]:
            record = crop_record(track.meta, start, start + x.shape[1])
            s = nonspeech_scores(output, x, y, record, rate)
            return {k: float(s[k]) for k in keys}

        return scores
    return None


class EvaluateError(DeepAFxError):
    """The evaluation cannot run; the message says why."""


# --- the model as the product runs it --------------------------------------------------------
def predict_automation(
    encoder,
    x: np.ndarray,
    cfg: dict[str, Any],
    smoothing: float = 0.5,
    batch: int = 16,
) -> tuple[np.ndarray, np.ndarray]:
    """Predictions every hop over ``x`` ``(C, n)`` at the chain rate: ``(ends, U)``.

    ``ends`` are the chain-rate sample positions the windows end at (one every
    ``hop`` encoder samples, converted to chain samples; zeros before the
    start), so a prediction only uses audio that has already been heard, as
    live;
    ``U`` is ``(len(centres), n_params)`` after exponential smoothing
    ``u_k ← smoothing · u_{k−1} + (1 − smoothing) · prediction_k`` — parameter
    jumps between neighbouring windows would otherwise be audible as zipper
    changes of gain and EQ.
    """
    from training.data import encoder_view

    r = cfg["rates"]
    rate, window = int(r["chain_rate"]), int(r["window"])
    hop = int(round(int(r["hop"]) * rate / int(r["encoder_rate"])))
    n = x.shape[1]
    centres = np.arange(hop, n + hop, hop)  # window ends (named centres for automation_steps)
    padded = np.pad(x, ((0, 0), (window, hop)))  # zeros before the start / after the end
    preds = []
    for i in range(0, len(centres), batch):
        chunk = np.stack([padded[:, c : c + window] for c in centres[i : i + batch]])
        view = encoder_view(chunk, rate, int(r["encoder_rate"]), int(r["encoder_window"]))
        preds.append(np.asarray(encoder(view, training=False), dtype=np.float64))
    raw = np.concatenate(preds)
    fixed = cfg["chain"].get("fixed", {})
    if fixed:
        from rt_host.lv2 import ChainSpec
        from rt_host.lv2.chain import Chain

        names = Chain(ChainSpec.load(cfg["chain"]["name"])).parameter_names
        for name, value in fixed.items():
            raw[:, names.index(name)] = float(value)
    smooth = np.empty_like(raw)
    acc = raw[0]
    for k, u in enumerate(raw):
        acc = smoothing * acc + (1.0 - smoothing) * u if k else u
        smooth[k] = acc
    return centres, smooth


def automation_steps(centres: np.ndarray, u: np.ndarray, n: int, step_length: int) -> np.ndarray:
    """One parameter vector per ``step_length`` block of ``n`` samples, linearly interpolated between
    the prediction centres (held constant before the first and after the last)."""
    mids = np.arange(0, n, step_length) + step_length / 2
    return np.stack([np.interp(mids, centres, u[:, j]) for j in range(u.shape[1])], axis=1)


def render_chain(chain, x: np.ndarray, rate: int, params: np.ndarray, step_length: int) -> np.ndarray:
    """The chain on ``x`` with latency compensation, so the output lines up with the target."""
    return chain(x, rate, params=params, step_length=step_length, compensate_latency=True)


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
    encoder,
    cfg: dict[str, Any],
    tracks: list,
    out: Path,
    *,
    seconds: float | None = 30.0,
    smoothing: float = 0.5,
    matchering: bool = True,
) -> dict[str, Any]:
    """Score the systems on ``tracks``; write the files listed in the module docstring.

    ``matchering`` only applies to the mastering task (it is a mastering tool).
    Returns the metrics dict written to ``metrics.json``.
    """
    from rt_host.lv2 import Chain, ChainSpec
    from training.metrics import compare, matchering_master

    if not tracks:
        raise EvaluateError("no test tracks to evaluate")
    out.mkdir(parents=True, exist_ok=True)
    spec = ChainSpec.load(cfg["chain"]["name"])
    chain = Chain(spec)
    rate = int(cfg["rates"]["chain_rate"])
    defaults = chain.default_normalized()
    per_track: list[dict[str, Any]] = []
    shown: dict[str, Any] = {}
    t0 = time.monotonic()
    task = str(cfg.get("task", "mastering"))
    matchering = matchering and task == "mastering"
    extra_metrics = task_extra_metrics(task)
    excerpts = [excerpt(t, seconds) for t in tracks]
    for i, (track, (x, y)) in enumerate(zip(tracks, excerpts)):
        if track.rate != rate:
            raise EvaluateError(f"track {track.track_id} is at {track.rate} Hz; the chain renders at {rate}")
        outputs: dict[str, np.ndarray] = {"input": x}
        outputs["default_chain"] = render_chain(chain, x, rate, defaults, STEP_LENGTH)
        centres, u = predict_automation(encoder, x, cfg, smoothing)
        steps = automation_steps(centres, u, x.shape[1], STEP_LENGTH)
        outputs["model"] = render_chain(chain, x, rate, steps, STEP_LENGTH)
        if matchering and len(tracks) > 1:
            ref = excerpts[(i + 1) % len(tracks)][1]  # another track's master: never the scored target
            try:
                outputs["matchering"] = matchering_master(x, ref, rate)
            except ValueError as exc:
                log.warning("matchering failed on %s: %s", track.track_id, exc)
        row: dict[str, Any] = {"track": track.track_id, "seconds": round(x.shape[1] / rate, 2)}
        start = excerpt_bounds(track, seconds)[0]
        for system, audio in outputs.items():
            row[system] = compare(audio, y, rate)
            if extra_metrics is not None:
                row[system].update(extra_metrics(audio, x, y, track, start, rate))
        per_track.append(row)
        log.info(
            "[%d/%d] %s: mrstft input %.3f · default %.3f · model %.3f%s (%.0f s)",
            i + 1, len(tracks), track.track_id, row["input"]["mrstft"], row["default_chain"]["mrstft"],
            row["model"]["mrstft"],
            f" · matchering {row['matchering']['mrstft']:.3f}" if "matchering" in row else "",
            time.monotonic() - t0,
        )  # fmt: skip
        if i == 0:
            shown = {"track": track.track_id, "centres": centres, "u": u, "target": y, **outputs}
    chain.close()

    metrics = summarize(per_track)
    metrics["task"] = task
    metrics["tracks"] = len(per_track)
    metrics["seconds_per_track"] = float(np.mean([r["seconds"] for r in per_track]))
    metrics["smoothing"] = smoothing
    (out / "metrics.json").write_text(json.dumps(metrics, indent=1) + "\n")
    (out / "tracks.json").write_text(json.dumps(per_track, indent=1) + "\n")
    (out / "metrics.md").write_text(markdown(metrics, per_track))
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
    lines += ["", "## Per track (MR-STFT / MFCC cosine / LUFS error)", ""]
    systems = [s for s in SYSTEMS if any(s in r for r in per_track)]
    lines += ["| track | " + " | ".join(systems) + " |", "|---" * (len(systems) + 1) + "|"]
    for r in per_track:
        cells = [
            f"{r[s]['mrstft']:.3f} / {r[s]['mfcc_cosine']:.4f} / {r[s]['lufs_error']:+.1f}" if s in r else ""
            for s in systems
        ]
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
    u, t = shown["u"], shown["centres"] / rate
    fig, (ax_map, ax_lines) = plt.subplots(2, 1, figsize=(10, 9), height_ratios=(3, 2))
    extent = (float(t[0]), float(t[-1]) if len(t) > 1 else float(t[0]) + 1.0, len(names) - 0.5, -0.5)
    im = ax_map.imshow(u.T, aspect="auto", interpolation="nearest", vmin=0, vmax=1, extent=extent)
    ax_map.set_yticks(range(len(names)))
    ax_map.set_yticklabels(names, fontsize=5)
    fig.colorbar(im, ax=ax_map, label="normalized value")
    ax_map.set_title(f"predicted automation, {shown['track']} (smoothed, one prediction per hop)")
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
        "--config", type=Path, help="recipe (default: config.toml next to the checkpoint, else the task's)"
    )
    parser.add_argument("--seconds", type=float, default=30.0, help="excerpt per track (default 30; 0 = all)")
    parser.add_argument("--tracks", type=int, help="evaluate only the first N test tracks")
    parser.add_argument("--smoothing", type=float, default=0.5, help="automation smoothing per hop, 0 … <1")
    parser.add_argument("--out", type=Path, help="results folder (default: the checkpoint's folder /eval)")
    parser.add_argument("--data", help="data cache folder (default: $DEEPAFX_DATA/TASK or ~/.cache/…)")
    parser.add_argument("--no-matchering", action="store_true", help="skip the matchering baseline")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    if not 0.0 <= args.smoothing < 1.0:
        parser.error("--smoothing must be in [0, 1)")
    checkpoint = args.checkpoint or project_root() / "runs" / args.task / "encoder.keras"
    if not checkpoint.is_file():
        print(
            f"evaluate.py: error: no trained encoder at {checkpoint}; train one "
            f"(python training/train.py --task {args.task}) or pass --checkpoint",
            file=sys.stderr,
        )
        return 2
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    try:
        from training.data import load_tracks, resolve_cache_dir
        from training.export import load_checkpoint
        from training.train import config_path, load_config

        cfg_file = args.config
        if cfg_file is None:
            beside = checkpoint.parent / "config.toml"
            cfg_file = beside if beside.is_file() else config_path(args.task)
        cfg = load_config(cfg_file)
        tracks = load_tracks(
            resolve_cache_dir(args.task, args.data or cfg.get("data", {}).get("cache")), "test"
        )
        if args.tracks:
            tracks = tracks[: args.tracks]
        encoder = load_checkpoint(checkpoint)
        out = args.out or checkpoint.parent / "eval"
        metrics = evaluate(
            encoder,
            cfg,
            tracks,
            out,
            seconds=args.seconds or None,
            smoothing=args.smoothing,
            matchering=not args.no_matchering,
        )
    except DeepAFxError as exc:
        print(f"evaluate.py: error: {exc}", file=sys.stderr)
        return 2
    print((out / "metrics.md").read_text())
    print(f"written: {out}/metrics.json (for export.py --metrics), metrics.md, automation.png, spectra.png")
    return 0 if all(math.isfinite(v) for v in metrics["mrstft"].values() if v is not None) else 1


if __name__ == "__main__":
    sys.exit(main())
