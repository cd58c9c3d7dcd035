"""Export a trained encoder as a model bundle the live host can run without TensorFlow.

    python training/export.py --task mastering [--checkpoint PATH] [--out exported_models/mastering]
                              [--chain NAME|PATH] [--hop N] [--metrics JSON] [--model-card MD]

A bundle is ``encoder.onnx`` + ``manifest.toml`` + ``MODEL_CARD.md`` (the
format is :mod:`rt_host.bundle`'s). :func:`export_bundle` does, in order:

1. checks the model against the chain (one output per predicted port), the
   window and the sample rate;
2. converts with tf2onnx (opset 17, dynamic batch; input ``audio``
   ``[batch, window]``, output ``params`` ``[batch, n_params]``);
3. **always** loads the file in onnxruntime and compares it with TensorFlow
   on a batch of generated, music-like signals (:func:`probe_signals`), at the
   full batch and one window at a time: the largest difference on the predicted
   parameters must be ≤ 1e-4. tf2onnx can log a conversion error and still
   write a file (``../shared/FACTS.md``), so a file is never trusted unrun;
4. writes ``manifest.toml`` (the chain, predicted ports, rates, window, hop,
   the ports the run held fixed (``[held]``, from the run's ``config.toml``),
   test metrics, library versions) and ``MODEL_CARD.md``;
5. validates the result with :func:`rt_host.bundle.load_bundle` — the host's
   own loader — and only then moves it into ``out_dir``, so a failed export
   never replaces a working bundle.

**Checkpoint format** (what the CLI reads): a Keras 3 ``.keras`` file written
by ``model.save(path)`` of an encoder from :func:`training.models.encoders.build_encoder`
— ``(batch, window)`` audio → ``(batch, n_params)``. A training model that
*contains* such an encoder as a nested model named ``encoder`` also works.
The default path is ``runs/<task>/encoder.keras`` under the project root.
``--metrics`` takes a JSON object of test metrics (numbers, strings, or
nested tables of them) and ``--model-card`` a markdown file (data, training
time, metrics table, limitations); the exporter appends its own "Export"
section either way.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import os
import platform
import shutil
import sys
import tempfile
import time
from collections.abc import Mapping
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np

if __package__ in (None, ""):  # run as a script: make ``training`` and ``rt_host`` importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from rt_host.bundle import FORMAT, bundle_dir, load_bundle, project_root  # noqa: E402
from rt_host.errors import DeepAFxError  # noqa: E402
from rt_host.lv2.spec import ChainSpec  # noqa: E402
from rt_host.steer.held import HeldParameters  # noqa: E402

log = logging.getLogger("training.export")

OPSET = 17
PARITY_TOLERANCE = 1e-4
PARITY_FILE = "parity.npz"  # TensorFlow's outputs on probe_signals(window, rate, PARITY_SEED)
PARITY_SEED = 0
INPUT_NAME = "audio"
OUTPUT_NAME = "params"
MODEL_FILE = "encoder.onnx"
DEFAULT_SAMPLE_RATE = 22050
DEFAULT_HOP = 11025  # 0.5 s at 22,050 Hz: one prediction per half second
FLAT_OUTPUT_SPREAD = 1e-6  # below this the outputs ignore the input: parity would prove nothing


class ExportError(DeepAFxError):
    """A model could not be exported as a valid bundle; the message says why."""


def default_checkpoint(task: str) -> Path:
    """Where the CLI looks for a task's trained encoder: ``runs/<task>/encoder.keras``."""
    return project_root() / "runs" / task / "encoder.keras"


# --- probe signals ----------------------------------------------------------------------
def probe_signals(window: int, sample_rate: int, seed: int = 0) -> np.ndarray:
    """Eight deterministic, music-like windows ``(8, window)`` float32 for parity checks.

    Parity on white noise alone is weak evidence: the front end's log makes
    quiet and tonal inputs (deep spectral valleys) the places where two
    runtimes drift apart. So the batch spans levels from −60 dBFS to near full
    scale, tonal and noisy material, transients and true silence.
    """
    rng = np.random.default_rng(seed)
    t = np.arange(window) / sample_rate

    def pink(level_db: float) -> np.ndarray:
        spec = np.fft.rfft(rng.standard_normal(window))
        k = np.arange(spec.size, dtype=np.float64)
        k[0] = 1.0
        x = np.fft.irfft(spec / np.sqrt(k), window)
        return x / np.abs(x).max() * 10 ** (level_db / 20)

    def chord(level_db: float) -> np.ndarray:
        x = sum(
            np.sin(2 * np.pi * f * h * t + rng.uniform(0, 2 * np.pi)) / h
            for f in (110.0, 138.6, 164.8)
            for h in range(1, 8)
        )
        return x / np.abs(x).max() * 10 ** (level_db / 20)

    def drums(level_db: float) -> np.ndarray:
        x = np.zeros(window)
        beat = max(1, int(0.25 * sample_rate))
        for start in range(0, window, beat):
            n = min(beat, window - start)
            env = np.exp(-np.arange(n) / (0.03 * sample_rate))
            kick = np.sin(2 * np.pi * 55.0 * np.arange(n) / sample_rate)
            x[start : start + n] += env * (0.7 * kick + 0.3 * rng.standard_normal(n))
        return x / np.abs(x).max() * 10 ** (level_db / 20)

    def sweep(level_db: float) -> np.ndarray:
        f0, f1 = 40.0, 0.45 * sample_rate
        phase = 2 * np.pi * f0 * t[-1] / math.log(f1 / f0) * ((f1 / f0) ** (t / t[-1]) - 1)
        return np.sin(phase) * 10 ** (level_db / 20)

    signals = [
        pink(-12.0),
        pink(-60.0),
        chord(-18.0) + pink(-40.0),
        drums(-6.0) + chord(-24.0),
        sweep(-20.0),
        np.clip(1.5 * pink(-1.0), -0.99, 0.99),  # loud, already "limited"
        drums(-30.0),
        np.zeros(window),
    ]
    return np.stack(signals).astype(np.float32)


# --- conversion and parity ------------------------------------------------------------------
def convert(model, window: int, path: Path) -> None:
    """Convert ``model`` to ONNX at ``path`` with tf2onnx: opset 17, input ``[batch, window]``.

    The model is traced in inference mode (batch norm uses its moving
    statistics, dropout is off). Both tensors get the symbolic batch dimension
    ``batch`` instead of tf2onnx's ``unk__N``, so the file documents itself.
    """
    import onnx
    import tensorflow as tf
    import tf2onnx

    logging.getLogger("tf2onnx").setLevel(logging.WARNING)
    spec = (tf.TensorSpec((None, window), tf.float32, name=INPUT_NAME),)

    @tf.function(input_signature=spec)
    def encoder(audio):
        return {OUTPUT_NAME: model(audio, training=False)}

    proto, _ = tf2onnx.convert.from_function(encoder, input_signature=spec, opset=OPSET)
    graph = proto.graph
    if [i.name for i in graph.input] != [INPUT_NAME] or [o.name for o in graph.output] != [OUTPUT_NAME]:
        raise ExportError(
            f"tf2onnx produced inputs {[i.name for i in graph.input]} and outputs "
            f"{[o.name for o in graph.output]}; expected exactly [{INPUT_NAME!r}] and [{OUTPUT_NAME!r}] "
            "(a constant held by a layer can become an extra input: make it inside call())"
        )
    for value in (graph.input[0], graph.output[0]):
        value.type.tensor_type.shape.dim[0].dim_param = "batch"
    proto.doc_string = "deepafx-rt encoder: raw mono audio window in, normalized parameters out"
    onnx.save(proto, str(path))


def ort_session(path: Path, threads: int = 1):
    """A plain CPU onnxruntime session (what the host's :meth:`Bundle.session` makes)."""
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    opts.log_severity_level = 3
    return ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])


def check_parity(model, path: Path, signals: np.ndarray, tolerance: float = PARITY_TOLERANCE) -> dict:
    """Compare TensorFlow and onnxruntime on ``signals``; raise :class:`ExportError` beyond ``tolerance``.

    onnxruntime runs the whole batch and every window alone (the live host
    runs batch 1; a batch-dependent reshape would only show there). Returns
    ``max_abs_diff`` (the larger of both), ``batch_max_abs_diff``,
    ``single_max_abs_diff`` and ``output_spread`` (largest per-parameter range
    of the outputs over the signals: ~0 means the model ignores its input and
    the comparison shows little).
    """
    try:
        session = ort_session(path)
    except Exception as exc:  # onnxruntime raises its own types (e.g. an unregistered op)
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ExportError(f"onnxruntime cannot load the converted encoder ({first})") from None
    expected = np.asarray(model(signals, training=False), dtype=np.float64)
    try:
        batch = np.asarray(session.run([OUTPUT_NAME], {INPUT_NAME: signals})[0], dtype=np.float64)
        single = np.concatenate(
            [session.run([OUTPUT_NAME], {INPUT_NAME: signals[i : i + 1]})[0] for i in range(len(signals))]
        ).astype(np.float64)
    except Exception as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ExportError(f"onnxruntime fails to run the converted encoder ({first})") from None
    if batch.shape != expected.shape or single.shape != expected.shape:
        raise ExportError(
            f"onnxruntime output shape {batch.shape} (batch) / {single.shape} (one at a time) differs "
            f"from TensorFlow's {expected.shape}"
        )
    if not (np.all(np.isfinite(batch)) and np.all(np.isfinite(single))):
        raise ExportError("onnxruntime gives non-finite parameters on the probe signals")
    diff_batch = float(np.max(np.abs(batch - expected)))
    diff_single = float(np.max(np.abs(single - expected)))
    worst = max(diff_batch, diff_single)
    if not worst <= tolerance:
        which = "one window at a time" if diff_single > diff_batch else f"a batch of {len(signals)}"
        raise ExportError(
            f"TensorFlow and onnxruntime disagree: max |difference| {worst:.3g} on the predicted "
            f"parameters ({which}) exceeds the tolerance {tolerance:g}"
        )
    return {
        "max_abs_diff": worst,
        "batch_max_abs_diff": diff_batch,
        "single_max_abs_diff": diff_single,
        "output_spread": float(np.max(np.ptp(expected, axis=0))),
        "signals": len(signals),
        "expected": expected.astype(np.float32),  # TensorFlow's outputs, kept in the bundle
    }


# --- manifest and model card ---------------------------------------------------------------
def library_versions() -> dict[str, str]:
    """Versions of what made the bundle (for ``[versions]``)."""
    versions = {"python": platform.python_version()}
    for dist in ("tensorflow-cpu", "tensorflow", "keras", "tf2onnx", "onnx", "onnxruntime", "numpy"):
        key = "tensorflow" if dist.startswith("tensorflow") else dist
        if key in versions:
            continue
        try:
            versions[key] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            pass
    try:
        versions["deepafx_rt"] = metadata.version("deepafx-rt")
    except metadata.PackageNotFoundError:
        pass
    versions["onnx_opset"] = str(OPSET)
    return versions


def toml_safe(value: Any, where: str = "metrics") -> Any:
    """``value`` as plain TOML data (numpy scalars → Python, tuples → lists); ``None`` entries dropped."""
    if isinstance(value, Mapping):
        return {str(k): toml_safe(v, f"{where}.{k}") for k, v in value.items() if v is not None}
    if isinstance(value, list | tuple | np.ndarray):
        return [toml_safe(v, where) for v in list(value)]
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, bool | int | float | str):
        return value
    raise ExportError(f"{where}: {type(value).__name__} cannot go into manifest.toml")


def metrics_table(metrics: Mapping[str, Any]) -> str:
    """Markdown for a metrics dict: ``{metric: {system: value}}`` as a grid, flat ones as a list."""

    def fmt(v: Any) -> str:
        return f"{v:.4g}" if isinstance(v, float) else str(v)

    nested = {k: v for k, v in metrics.items() if isinstance(v, Mapping)}
    flat = {k: v for k, v in metrics.items() if not isinstance(v, Mapping)}
    lines: list[str] = []
    if nested:
        columns = list(dict.fromkeys(c for row in nested.values() for c in row))
        lines += ["| | " + " | ".join(columns) + " |", "|---" * (len(columns) + 1) + "|"]
        for name, row in nested.items():
            lines.append(f"| {name} | " + " | ".join(fmt(row.get(c, "")) for c in columns) + " |")
    if flat:
        lines += [""] if lines else []
        lines += [f"- {name}: {fmt(value)}" for name, value in flat.items()]
    return "\n".join(lines)


def _model_card(
    task: str,
    given: str | None,
    info: dict,
    parity: dict,
    onnx_bytes: int,
    chain: ChainSpec,
    n_params: int,
    metrics: Mapping[str, Any] | None,
    versions: dict[str, str],
) -> str:
    if given is not None:
        head = given.rstrip() + "\n"
    else:
        head = f"# {task} encoder (deepafx-rt)\n\n"
        head += (
            f"Predicts {n_params} normalized parameters of the `{chain.name}` chain "
            f"({len(chain.stages)} stages: {', '.join(s.name for s in chain.stages)}) from "
            f"{info.get('window', '?')} samples of mono audio at {info.get('sample_rate', '?')} Hz.\n\n"
        )
        head += "## Test metrics\n\n"
        head += (metrics_table(metrics) if metrics else "None were provided to the exporter.") + "\n\n"
        head += (
            "## Data and training\n\nNot recorded by the exporter (pass `model_card=` / `--model-card`).\n\n"
            "## Limitations\n\n"
            "- The encoder hears the mean of the channels, resampled to its own rate: it cannot see "
            "stereo width, nor anything above half its sample rate.\n"
            "- One prediction per hop from the last window only; the host smooths the automation.\n"
        )
    lines = [
        "",
        "## Export",
        "",
        f"- `{MODEL_FILE}`: {onnx_bytes / 1e6:.2f} MB, ONNX opset {OPSET}; input `{INPUT_NAME}` "
        f"float32 `[batch, {info.get('window', '?')}]`, output `{OUTPUT_NAME}` float32 `[batch, {n_params}]` "
        "in [0, 1].",
    ]
    if "n_fft" in info:
        lines.append(
            f"- Front end inside the graph: {info['n_fft']}-point frames every {info['stft_hop']} samples "
            f"(periodic Hann, {info['frames']} frames), folded real DFT of the {info['dft_bins']} bins the "
            f"mel bank uses, power, {info['n_mels']} mel bands, log."
        )
        backbone = info["backbone"] + (f" (α {info['alpha']:g})" if "alpha" in info else "")
        lines.append(f"- Backbone: {backbone}; {info['weights']:,} weights; Dense + sigmoid.")
    lines.append(
        f"- Parity: max |TensorFlow − onnxruntime| = {parity['max_abs_diff']:.2g} on the parameters "
        f"over {parity['signals']} generated signals (batch and one at a time; tolerance "
        f"{PARITY_TOLERANCE:g}); output spread over them {parity['output_spread']:.3g}. "
        f"`{PARITY_FILE}` keeps TensorFlow's outputs on them (`training.export.probe_signals`, seed "
        f"{PARITY_SEED}), so the shipped ONNX file is re-checked without TensorFlow "
        "(`tests/test_shipped_bundles.py`)."
    )
    lines.append("- Versions: " + ", ".join(f"{k} {v}" for k, v in versions.items()) + ".")
    return head + "\n".join(lines) + "\n"


def _describe(model) -> dict:
    try:
        from training.models.encoders import describe

        return describe(model)
    except (ValueError, AttributeError, IndexError):  # not built by build_encoder: say less
        return {"window": int(model.input_shape[-1])}


# --- the export ------------------------------------------------------------------------------
def export_bundle(
    model,
    chain_spec: ChainSpec,
    out_dir: str | Path,
    *,
    task: str,
    sample_rate: int,
    window: int,
    hop: int,
    metrics: Mapping[str, Any] | None = None,
    model_card: str | None = None,
    held: Mapping[str, float] | None = None,
) -> Path:
    """Write a validated bundle for ``model`` (a Keras encoder) driving ``chain_spec`` to ``out_dir``.

    ``sample_rate``, ``window`` and ``hop`` describe what the encoder hears
    (the model's rate, not the chain's); ``window`` must be the model's input
    length. ``held`` (the run's ``[chain] held``: port values of predicted
    ports the recipe held) goes to ``[held]``, so the host plays them as
    training and evaluation did. ``metrics`` (test metrics) go to ``[metrics]`` and, when no
    ``model_card`` markdown is given, into a generated card. Raises
    :class:`ExportError` (or the host's ``BundleError``/``ChainError``) with a
    clear reason; ``out_dir`` is only replaced once the new bundle loads in
    :func:`rt_host.bundle.load_bundle`. Returns ``out_dir``.
    """
    import tomli_w

    from rt_host.lv2.chain import Chain

    out_dir = Path(out_dir)
    started = time.perf_counter()
    in_shape, out_shape = tuple(model.input_shape), tuple(model.output_shape)
    if len(in_shape) != 2 or in_shape[1] != window:
        raise ExportError(f"the model takes {in_shape}; the bundle needs (batch, {window}) audio windows")
    names = Chain(chain_spec).parameter_names
    if len(out_shape) != 2 or out_shape[1] != len(names):
        raise ExportError(
            f"the model predicts {out_shape[-1]} values but the chain {chain_spec.name!r} has "
            f"{len(names)} predicted parameters"
        )
    if not 0 < hop <= window:
        raise ExportError(f"hop must be between 1 and the window ({window}), got {hop}")
    try:  # the host's own check: names, finite, inside the ranges, port units
        HeldParameters(Chain(chain_spec).parameters, dict(held or {}), "held")
    except DeepAFxError as exc:
        raise ExportError(str(exc)) from None
    info = _describe(model)
    if info.get("sample_rate", sample_rate) != sample_rate:
        raise ExportError(
            f"the model's mel bank was built for {info['sample_rate']} Hz, not the bundle's {sample_rate} Hz"
        )

    out_dir.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.", dir=out_dir.parent))
    umask = os.umask(0)
    os.umask(umask)
    staging.chmod(0o777 & ~umask)  # mkdtemp makes it 0700; the bundle folder follows the umask
    try:
        onnx_path = staging / MODEL_FILE
        convert(model, window, onnx_path)
        parity = check_parity(model, onnx_path, probe_signals(window, sample_rate, PARITY_SEED))
        # TensorFlow's answers to the probe signals travel with the bundle, so the shipped ONNX
        # file can be checked against them later without TensorFlow or the checkpoint
        np.savez(staging / PARITY_FILE, tensorflow=parity.pop("expected"), seed=PARITY_SEED)
        if parity["output_spread"] < FLAT_OUTPUT_SPREAD:
            log.warning(
                "the encoder's outputs do not change with its input (untrained?): parity proves little"
            )
        versions = library_versions()
        manifest = {
            "format": FORMAT,
            "task": task,
            "model": MODEL_FILE,
            "sample_rate": int(sample_rate),
            "window": int(window),
            "hop": int(hop),
            "input_channels": 1,
            "parameters": names,
            "chain": chain_spec.to_dict(),
        }
        if held:
            manifest["held"] = {k: float(v) for k, v in held.items()}
        manifest["parity"] = {
            "file": PARITY_FILE,
            "probe_seed": PARITY_SEED,
            "tolerance": PARITY_TOLERANCE,
            "max_abs_diff": parity["max_abs_diff"],
        }
        if metrics:
            manifest["metrics"] = toml_safe(dict(metrics))
        manifest["versions"] = versions
        (staging / "manifest.toml").write_text(tomli_w.dumps(manifest), encoding="utf-8")
        card = _model_card(
            task,
            model_card,
            info,
            parity,
            onnx_path.stat().st_size,
            chain_spec,
            len(names),
            metrics,
            versions,
        )
        (staging / "MODEL_CARD.md").write_text(card, encoding="utf-8")
        _copy_midi_map(chain_spec, names, staging)
        load_bundle(staging)  # the host's own validator, before anything is replaced
        _replace_dir(staging, out_dir)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    log.info(
        "exported %s: %.2f MB, parity %.2g, %.0f s",
        out_dir,
        bundle_size(out_dir) / 1e6,
        parity["max_abs_diff"],
        time.perf_counter() - started,
    )
    return out_dir


def _copy_midi_map(chain_spec, names: list[str], staging: Path) -> None:
    """Ship the chain's default MIDI map (``chains/NAME.midi.toml``) inside the bundle, checked against
    the bundle's own parameters: the host looks in the bundle first, so a later change of the chain
    files cannot break a shipped model's knobs."""
    from rt_host.live.midi import MidiError, MidiMap
    from rt_host.lv2.spec import builtin_chain_dir

    source = builtin_chain_dir() / f"{chain_spec.name}.midi.toml"
    if not source.is_file():
        return
    try:
        MidiMap.load(source, names)
    except MidiError as exc:
        log.warning("not shipping %s with the bundle: %s", source.name, exc)
        return
    shutil.copyfile(source, staging / "midi-map.toml")


def _replace_dir(new: Path, target: Path) -> None:
    """Move ``new`` to ``target``; an old ``target`` is removed only once the new one is in place."""
    old = None
    if target.exists():
        old = target.with_name(f".{target.name}.old-{os.getpid()}")
        target.rename(old)
    new.rename(target)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def bundle_size(path: str | Path) -> int:
    """Bytes of every file in a bundle folder."""
    return sum(f.stat().st_size for f in Path(path).rglob("*") if f.is_file())


# --- command line ---------------------------------------------------------------------------
def load_checkpoint(path: Path):
    """The encoder in a ``.keras`` checkpoint (see the module docstring for the format)."""
    import keras

    import training.models.encoders  # noqa: F401  (registers LogMelSpectrogram for deserialization)

    try:
        model = keras.models.load_model(path, compile=False)
    except Exception as exc:  # keras raises many types for a bad or foreign file
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ExportError(f"cannot load the checkpoint {path} ({first})") from None
    if len(model.inputs) == 1 and len(model.input_shape) == 2 and len(model.output_shape) == 2:
        return model
    nested = [layer for layer in model.layers if isinstance(layer, keras.Model) and layer.name == "encoder"]
    if nested:
        return nested[0]
    raise ExportError(
        f"{path} holds a model taking {model.input_shape} and no nested model named 'encoder'; "
        "expected an encoder (batch, window) → (batch, n_params)"
    )


def main(argv: list[str] | None = None) -> int:
    """``python training/export.py --task TASK [--checkpoint PATH] [--out DIR] …``; returns the exit code."""
    parser = argparse.ArgumentParser(
        prog="export.py",
        description="Export a trained encoder as an ONNX model bundle (encoder.onnx, manifest.toml, "
        "MODEL_CARD.md) checked for TF/onnxruntime parity and validated by the host's loader.",
    )
    parser.add_argument("--task", required=True, help="task name, e.g. mastering")
    parser.add_argument(
        "--checkpoint", type=Path, help="trained encoder, a .keras file (default: runs/TASK/encoder.keras)"
    )
    parser.add_argument("--out", type=Path, help="bundle folder (default: exported_models/TASK)")
    parser.add_argument(
        "--chain", help="chain name or file (default: the run's config.toml beside the checkpoint, else TASK)"
    )
    parser.add_argument(
        "--sample-rate", type=int, help="the encoder's rate (default: the run's config, else 22050)"
    )
    parser.add_argument(
        "--hop", type=int, help="samples between predictions at the encoder's rate (default: the run's)"
    )
    parser.add_argument(
        "--metrics", type=Path, help="JSON test metrics (default: the run's eval/metrics.json, if any)"
    )
    parser.add_argument("--model-card", type=Path, help="markdown: data, training time, metrics, limitations")
    args = parser.parse_args(argv)

    checkpoint = args.checkpoint or default_checkpoint(args.task)
    out = args.out or bundle_dir(args.task)
    # every missing input is reported before TensorFlow is imported (3 s, 600 MB)
    if not checkpoint.is_file():
        print(
            f"export.py: error: no trained checkpoint for task {args.task!r} at {checkpoint} — "
            f"train one (python training/train.py --task {args.task}) or pass --checkpoint PATH",
            file=sys.stderr,
        )
        return 2
    # what the run recorded beside its checkpoint: its recipe and its evaluation
    run_cfg: dict = {}
    if (checkpoint.parent / "config.toml").is_file():
        import tomllib

        run_cfg = tomllib.loads((checkpoint.parent / "config.toml").read_text(encoding="utf-8"))
    rates = run_cfg.get("rates", {})
    chain_name = args.chain or run_cfg.get("chain", {}).get("name") or args.task
    sample_rate = args.sample_rate or int(rates.get("encoder_rate", DEFAULT_SAMPLE_RATE))
    hop = args.hop or int(rates.get("hop", DEFAULT_HOP))
    if args.metrics is None and (checkpoint.parent / "eval" / "metrics.json").is_file():
        args.metrics = checkpoint.parent / "eval" / "metrics.json"
        print(f"export.py: test metrics from {args.metrics}")
    for flag, path in (("--metrics", args.metrics), ("--model-card", args.model_card)):
        if path is not None and not path.is_file():
            print(f"export.py: error: {flag} file {path} does not exist", file=sys.stderr)
            return 2
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    try:
        spec = ChainSpec.load(chain_name)
        metrics = json.loads(args.metrics.read_text(encoding="utf-8")) if args.metrics else None
        if metrics is not None and not isinstance(metrics, dict):
            raise ExportError(f"{args.metrics}: expected a JSON object of metrics")
        card = args.model_card.read_text(encoding="utf-8") if args.model_card else None
        model = load_checkpoint(checkpoint)
        path = export_bundle(
            model,
            spec,
            out,
            task=args.task,
            sample_rate=sample_rate,
            window=int(model.input_shape[-1]),
            hop=hop,
            metrics=metrics,
            model_card=card,
            held=run_cfg.get("chain", {}).get("held") or None,
        )
    except (DeepAFxError, json.JSONDecodeError) as exc:
        print(f"export.py: error: {exc}", file=sys.stderr)
        return 2
    print(f"bundle: {path} ({bundle_size(path) / 1e6:.2f} MB)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
