"""Train an encoder to drive a plugin chain (DeepAFx with SPSA), on CPU.

    python training/train.py --task mastering [--config FILE] [--steps N] [--out runs/mastering]
                             [--resume] [--workers N|ray|ray://HOST:PORT] [--data DIR]

**The model** (one Keras graph, trained with ``model.fit`` in graph mode)::

    input window, 44.1 kHz stereo (preroll + N) ─────────────────────────────┐
    encoder view (mono, 22,050 Hz, 40,960) → encoder → sigmoid (53) → free ─→ LV2Layer → output (N)

The encoder (:func:`training.models.encoders.build_encoder`) hears the downsampled
mono view of the window (:func:`training.data.encoder_view`, computed in the
data pipeline with soxr), but the chain renders the window at the music's own
rate (:class:`training.spsa.layer.LV2Layer`): mastering happens above 11 kHz too.
The encoder always predicts *every* chain parameter, so the saved
``encoder.keras`` is exactly what :mod:`training.export` bundles; a stage that
holds some parameters fixed simply feeds the layer the other columns.

**Loss** (:mod:`training.models.losses`, built from the recipe's ``[loss]``):
a multi-resolution spectral distance plus a time-domain L1 on the output aligned
to the target by cross-correlation (the chain's latency), optionally with the
level matched first and the loudness error charged on its own (mastering), and
an *event term* for what the input holds and the target does not (nonspeech).

**Schedule** (``training/configs/<task>.toml``):

1. *pre-training*: the encoder alone, MSE towards the chain's default
   parameters (no renders, seconds per epoch) — an untrained sigmoid says 0.5
   everywhere, far from a neutral mastering setting;
2. *progressive chain training*: ``[[stages]]`` each name the chain stages
   trained; the others are held at their defaults through the layer's
   ``fixed``, and ``[train] anchor_weight`` keeps the encoder's outputs for
   them near those defaults (:class:`AnchorToDefaults`). Each stage gets its
   ``fraction`` of ``steps``, may set its own ``learning_rate``, and starts
   from the best encoder so far. One Adam optimizer carries over from stage to
   stage; ReduceLROnPlateau and EarlyStopping watch ``val_loss`` within a
   stage (early stopping ends the *stage*, not the run).

Time is counted in epochs of ``steps_per_epoch`` steps, numbered globally over
the phases. After each epoch: a row in ``history.csv`` (+ ``history.png``),
the encoder in ``checkpoints/last.keras``, the optimizer's state in
``checkpoints/optimizer.npz``, ``state.json`` (epochs done, learning rate),
and ``encoder.keras`` — the encoder with the lowest ``val_loss`` so far, also
in ``checkpoints/best.keras`` (what ``training/export.py`` reads). ``--resume`` loads
those and continues the same plan from the next epoch (without it, a run
already in ``--out`` is started over); with a larger
``--steps`` the plan is longer and the run continues into it. Windows are
drawn from a seed and the batch counter, so a resumed run does not repeat the
windows it has already trained on.
"""

from __future__ import annotations

import argparse
import csv
import json
import logging
import math
import os
import shutil
import sys
import threading
import time
import tomllib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import keras
import numpy as np

if __package__ in (None, ""):  # run as a script: make ``training`` and ``rt_host`` importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from rt_host.bundle import project_root  # noqa: E402
from rt_host.errors import DeepAFxError  # noqa: E402
from rt_host.steer.held import HeldParameters  # noqa: E402
from training.models.losses import AlignedSpectralLoss  # noqa: E402

log = logging.getLogger("training.train")

CONFIG_DIR = Path(__file__).resolve().parent / "configs"
HISTORY_FIELDS = (
    "epoch",
    "phase",
    "step",
    "loss",
    "val_loss",
    "learning_rate",
    "seconds",
    "s_per_step",
    "examples_per_s",
    "worker_restarts",  # plugin workers restarted after dying or hanging, over the whole run so far
)


class TrainError(DeepAFxError):
    """Training cannot start or continue; the message says why."""


# --- configuration ---------------------------------------------------------------------------
def config_path(task: str) -> Path:
    """The default recipe of a task: ``training/configs/<task>.toml``."""
    return CONFIG_DIR / f"{task}.toml"


def load_config(path: str | Path) -> dict[str, Any]:
    """Read and check a training recipe (see ``training/configs/mastering.toml`` for every key)."""
    path = Path(path)
    try:
        cfg = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise TrainError(f"cannot read the config {path}: {exc}") from None
    for section in ("chain", "rates", "encoder", "train", "loss", "schedule", "pretrain", "stages"):
        if section not in cfg:
            raise TrainError(f"{path}: missing [{section}]")
    r = cfg["rates"]
    if r["window"] * r["encoder_rate"] != r["encoder_window"] * r["chain_rate"]:
        # the encoder must hear the very audio the chain renders, no more, no less
        raise TrainError(
            f"{path}: window {r['window']} at {r['chain_rate']} Hz is not encoder_window "
            f"{r['encoder_window']} at {r['encoder_rate']} Hz"
        )
    if "fixed" in cfg["chain"]:
        raise TrainError(
            f"{path}: [chain] fixed is gone; hold predicted ports with [chain] held, in port units "
            '(e.g. held = { "gate.freq1" = 1000.0 })'
        )
    fractions = [float(s["fraction"]) for s in cfg["stages"]]
    if not cfg["stages"] or any(f < 0 for f in fractions) or not math.isclose(sum(fractions), 1.0):
        raise TrainError(f"{path}: [[stages]] fractions must be ≥ 0 and sum to 1 (got {fractions})")
    return cfg


# --- the plan: phases in global epochs -------------------------------------------------------
@dataclass(frozen=True)
class Phase:
    """A stretch of training: ``pretrain`` or a chain stage, over global epochs [start, end)."""

    name: str
    kind: str  # "pretrain" | "chain"
    start: int
    end: int
    stages: tuple[str, ...] = ()
    learning_rate: float | None = None  # set when the stage starts; None: carry on with the optimizer's


def plan(cfg: dict[str, Any], steps: int | None = None) -> list[Phase]:
    """The phases of a run; ``steps`` overrides ``[train] steps`` (chain steps, pre-training apart).

    Epoch boundaries of the stages fall at the rounded cumulative fractions of
    the chain epochs, so the stage lengths always add up to the whole.
    """
    spe = int(cfg["train"]["steps_per_epoch"])
    steps = int(cfg["train"]["steps"] if steps is None else steps)
    pre = math.ceil(int(cfg["pretrain"]["steps"]) / spe)
    chain_epochs = max(1, math.ceil(steps / spe))
    phases = [Phase("pretrain", "pretrain", 0, pre)] if pre else []
    cum, begin = 0.0, pre
    for s in cfg["stages"]:
        cum += float(s["fraction"])
        end = pre + int(math.floor(cum * chain_epochs + 0.5))
        if s is cfg["stages"][-1]:
            end = pre + chain_epochs
        if end > begin:
            lr = float(s["learning_rate"]) if "learning_rate" in s else None
            phases.append(Phase(str(s["name"]), "chain", begin, end, tuple(s["stages"]), lr))
        begin = max(begin, end)
    return phases


# --- data ---------------------------------------------------------------------------------------
class WindowBatches(keras.utils.PyDataset):
    """Random training batches ``((chain_audio, encoder_audio), target)``, channels last.

    Batch ``k`` (counted over the whole run, see :attr:`served`) comes from a
    :class:`~training.data.WindowSampler` seeded with ``(seed, k)``: any batch
    is reproducible, and a resumed run (``served`` set to the batches already
    trained) draws new ones. ``targets="defaults"`` gives the encoder-only
    pre-training pairs ``(encoder_audio, default parameters)`` instead.
    """

    def __init__(
        self,
        tracks: list,
        cfg: dict[str, Any],
        steps: int,
        seed: int,
        served: int = 0,
        targets: str = "audio",
        defaults: np.ndarray | None = None,
    ) -> None:
        super().__init__()
        self.tracks, self.cfg, self.steps, self.seed = tracks, cfg, steps, seed
        self.served, self.targets, self.defaults = served, targets, defaults
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return self.steps

    def __getitem__(self, index: int):
        from rt_host.steer.view import encoder_view
        from training.data import WindowSampler

        r, batch = self.cfg["rates"], int(self.cfg["train"]["batch"])
        with self._lock:
            k = self.served
            self.served += 1
        sampler = WindowSampler(self.tracks, r["window"], r["preroll"], seed=self.seed * 1_000_003 + k)
        x, y = sampler.batch(batch)  # (B, C, preroll + N), (B, C, N)
        e = encoder_view(x[:, :, r["preroll"] :], r["chain_rate"], r["encoder_rate"], r["encoder_window"])
        if self.targets == "defaults":
            return e, np.tile(self.defaults, (batch, 1)).astype(np.float32)
        y = with_residual(x, y, self.cfg)
        return (np.ascontiguousarray(x.transpose(0, 2, 1)), e), np.ascontiguousarray(y.transpose(0, 2, 1))


def with_residual(x: np.ndarray, y: np.ndarray, cfg: dict[str, Any]) -> np.ndarray:
    """The target ``(B, C, N)``, plus — when ``[loss] event_weight`` > 0 — the residual
    ``input − target`` as C more channels, which :class:`AlignedSpectralLoss` reads to find the
    frames where the input holds something the target does not (nonspeech: the events)."""
    if float(cfg["loss"].get("event_weight", 0.0)) <= 0:
        return y
    n = y.shape[-1]
    return np.concatenate([y, x[..., x.shape[-1] - n :] - y], axis=1).astype(np.float32)


def validation_set(tracks: list, cfg: dict[str, Any]) -> tuple[tuple[np.ndarray, np.ndarray], np.ndarray]:
    """``val_windows`` fixed windows spread evenly over the validation tracks' grid (same every epoch)."""
    from rt_host.steer.view import encoder_view
    from training.data import iter_windows

    r = cfg["rates"]
    grid = list(iter_windows(tracks, r["window"], preroll=r["preroll"]))
    if not grid:
        raise TrainError("the validation tracks are too short for one window")
    n = min(int(cfg["train"]["val_windows"]), len(grid))
    picks = [grid[int(i)] for i in np.linspace(0, len(grid) - 1, n).round()]
    x = np.stack([w.input for w in picks])
    y = with_residual(x, np.stack([w.target for w in picks]), cfg)
    e = encoder_view(x[:, :, r["preroll"] :], r["chain_rate"], r["encoder_rate"], r["encoder_window"])
    return (np.ascontiguousarray(x.transpose(0, 2, 1)), e), np.ascontiguousarray(y.transpose(0, 2, 1))


# --- model --------------------------------------------------------------------------------------
def chain_latency(spec, rate: int) -> int:
    """The chain's reported latency at ``rate`` (instantiates its plugins once, in this process)."""
    from rt_host.lv2 import Chain

    chain = Chain(spec)
    try:
        chain.prepare(rate)
        return int(chain.latency)
    finally:
        chain.close()


def build_encoder_from_config(n_params: int, cfg: dict[str, Any]):
    """The encoder a config describes (its rate and window, backbone, width)."""
    from training.models.encoders import build_encoder

    e, r = cfg["encoder"], cfg["rates"]
    return build_encoder(
        n_params,
        window=int(r["encoder_window"]),
        sample_rate=int(r["encoder_rate"]),
        backbone=e["backbone"],
        alpha=float(e.get("alpha", 0.35)),
        dropout=float(e.get("dropout", 0.0)),
        bn_momentum=float(e.get("bn_momentum", 0.99)),
    )


def stage_fixed(names: list[str], defaults: np.ndarray, trained: Sequence[str], fixed: dict) -> dict:
    """``fixed`` for an LV2Layer: the config's fixed ports, plus every port of an untrained stage at
    its default."""
    out = {k: float(v) for k, v in fixed.items()}
    for name, u in zip(names, defaults):
        if name.split(".", 1)[0] not in trained and name not in out:
            out[name] = float(u)
    return out


class AnchorToDefaults(keras.layers.Layer):
    """Identity on the parameter vector that adds ``weight · mean((u[held] − defaults[held])²)`` to the loss.

    A stage holds the ports of later stages at their defaults, so their
    outputs get no gradient, yet the shared backbone moves under them: in a
    trial run the EQ outputs had drifted far from neutral by the time the EQ
    stage began, and its first validation loss jumped from 4.3 to 6.2. This
    term (pre-training's target, kept on for the held ports) keeps them where
    the pre-training put them, so a stage starts where the last one ended.
    """

    def __init__(self, held: Sequence[int], defaults: np.ndarray, weight: float, **kwargs) -> None:
        super().__init__(**kwargs)
        self.held = [int(i) for i in held]
        self.targets = [float(defaults[i]) for i in self.held]
        self.weight = float(weight)

    def call(self, u):
        from keras import ops

        index = np.asarray(self.held, dtype=np.int32)
        held = ops.take(u, index, axis=1)
        target = ops.convert_to_tensor(np.asarray(self.targets, dtype=np.float32)[None, :])
        self.add_loss(self.weight * ops.mean(ops.square(held - target)))
        return u


def build_training_model(
    encoder, layer, cfg: dict[str, Any], names: list[str], defaults: np.ndarray | None = None
):
    """``[chain_audio (B, preroll + N, C), encoder_audio (B, W)] → chain output (B, N, C)``.

    With ``defaults`` and ``[train] anchor_weight`` > 0, the outputs of the
    ports the layer holds fixed are pulled towards ``defaults`` (:class:`AnchorToDefaults`);
    ``[train] prior_weight`` > 0 pulls the trained ones there too, more weakly.
    """
    from keras import ops

    r = cfg["rates"]
    audio = keras.Input((r["preroll"] + r["window"], layer.channels), name="chain_audio")
    view = keras.Input((r["encoder_window"],), name="encoder_audio")
    u = encoder(view)
    free = [names.index(n) for n in layer.free_parameter_names]
    held = [i for i in range(len(names)) if i not in free]
    weight = float(cfg["train"].get("anchor_weight", 0.0))
    if held and defaults is not None and weight > 0:
        u = AnchorToDefaults(held, defaults, weight, name="anchor_to_defaults")(u)
    prior = float(cfg["train"].get("prior_weight", 0.0))
    if free and defaults is not None and prior > 0:
        # a weak pull of the trained ports towards the chain's neutral defaults: SPSA's noisy steps
        # otherwise random-walk parameters the loss is flat in (measured: mastering's EQ drifted)
        u = AnchorToDefaults(free, defaults, prior, name="prior_to_defaults")(u)
    if len(free) != len(names):
        index = np.asarray(free, dtype=np.int32)
        u = keras.layers.Lambda(lambda v: ops.take(v, index, axis=1), name="free_params")(u)
    return keras.Model([audio, view], layer([audio, u]), name="trainer")


# --- callbacks ----------------------------------------------------------------------------------
class RunRecorder(keras.callbacks.Callback):
    """After every epoch: history row (+ PNG), checkpoints and ``state.json``; times the steps."""

    def __init__(self, out: Path, phase: Phase, encoder, optimizer, cfg: dict, extra_state: dict) -> None:
        super().__init__()
        self.out, self.phase, self.encoder, self.opt, self.cfg = out, phase, encoder, optimizer, cfg
        self.extra_state = extra_state
        self._t_epoch = self._t_batch = 0.0
        self._batch_times: list[float] = []
        self._pool = None
        self._restarts_seen = 0

    def watch(self, pool) -> None:
        """Count ``pool``'s worker restarts into the history and ``state.json`` (``worker_restarts``)."""
        self._pool, self._restarts_seen = pool, pool.restarts

    def on_epoch_begin(self, epoch: int, logs=None) -> None:
        self._t_epoch = time.monotonic()
        self._batch_times = []

    def on_train_batch_begin(self, batch: int, logs=None) -> None:
        self._t_batch = time.monotonic()

    def on_train_batch_end(self, batch: int, logs=None) -> None:
        self._batch_times.append(time.monotonic() - self._t_batch)

    def on_epoch_end(self, epoch: int, logs=None) -> None:
        logs = dict(logs or {})
        spe = int(self.cfg["train"]["steps_per_epoch"])
        batch = int(self.cfg["train"]["batch"])
        # the first step of a phase includes tracing and the pool's start: the median is the honest rate
        s_step = float(np.median(self._batch_times)) if self._batch_times else float("nan")
        lr = logs.get("learning_rate", _lr(self.opt))
        if self._pool is not None:  # a run total: resumed runs start from the saved count
            new = self._pool.restarts - self._restarts_seen
            self._restarts_seen = self._pool.restarts
            self.extra_state["worker_restarts"] = self.extra_state.get("worker_restarts", 0) + new
        row = {
            "epoch": epoch + 1,
            "phase": self.phase.name,
            "step": (epoch + 1) * spe,
            "loss": logs.get("loss"),
            "val_loss": logs.get("val_loss"),
            "learning_rate": lr,
            "seconds": round(time.monotonic() - self._t_epoch, 2),
            "s_per_step": round(s_step, 4),
            "examples_per_s": round(batch / s_step, 3) if s_step > 0 else None,
            "worker_restarts": self.extra_state.get("worker_restarts", 0),
        }
        append_history(self.out / "history.csv", row)
        plot_history(self.out / "history.csv", self.out / "history.png")
        val = row["val_loss"]
        best = self.extra_state.get("best")
        improved = val is not None and math.isfinite(val) and (best is None or val < best["val_loss"])
        if improved:
            self.extra_state["best"] = {"val_loss": float(val), "epoch": epoch + 1, "phase": self.phase.name}
        save_checkpoint(
            self.out, self.encoder, self.opt, epoch + 1, self.phase, lr, self.extra_state, best=improved
        )


def _lr(optimizer) -> float:
    return float(np.asarray(optimizer.learning_rate))


def append_history(path: Path, row: dict) -> None:
    """Add one row to ``history.csv`` (header on first write); a resumed run appends."""
    new = not path.exists()
    old = read_history(path)
    if old and list(old[0]) != list(HISTORY_FIELDS):  # written before a column was added: rewrite it
        path.unlink()
        for r in old:
            append_history(path, r)
        new = False
    with path.open("a", newline="") as f:
        w = csv.DictWriter(f, fieldnames=HISTORY_FIELDS)
        if new:
            w.writeheader()
        w.writerow({k: ("" if row.get(k) is None else row[k]) for k in HISTORY_FIELDS})


def read_history(path: Path) -> list[dict]:
    """The rows of ``history.csv`` (strings)."""
    if not path.exists():
        return []
    with path.open(newline="") as f:
        return list(csv.DictReader(f))


def plot_history(csv_path: Path, png_path: Path) -> None:
    """Training and validation loss per step, one colour per phase, learning rate on a second axis."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = read_history(csv_path)
    if not rows:
        return

    def col(key: str, sub: list[dict]) -> np.ndarray:
        return np.array([float(r[key]) if r[key] not in ("", None) else np.nan for r in sub])

    fig, (ax, ax_lr) = plt.subplots(2, 1, figsize=(9, 6), sharex=True, height_ratios=(3, 1))
    for i, phase in enumerate(dict.fromkeys(r["phase"] for r in rows)):
        sub = [r for r in rows if r["phase"] == phase]
        steps = col("step", sub)
        colour = f"C{i}"
        ax.plot(steps, col("loss", sub), "-o", ms=3, color=colour, label=f"{phase}: train")
        if np.isfinite(col("val_loss", sub)).any():
            ax.plot(steps, col("val_loss", sub), "--s", ms=3, color=colour, label=f"{phase}: val")
    ax.set_ylabel("loss (pre-training: MSE)")
    ax.set_yscale("log")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    ax_lr.plot(col("step", rows), col("learning_rate", rows), color="k")
    ax_lr.set_yscale("log")
    ax_lr.set_ylabel("learning rate")
    ax_lr.set_xlabel("step (global, pre-training included)")
    ax_lr.grid(alpha=0.3)
    fig.suptitle(f"training history ({csv_path.parent.name})")
    fig.tight_layout()
    fig.savefig(png_path, dpi=100)
    plt.close(fig)


def save_checkpoint(
    out: Path,
    encoder,
    optimizer,
    epochs_done: int,
    phase: Phase,
    lr: float,
    extra: dict,
    best: bool = False,
):
    """Encoder + optimizer state + ``state.json``, each written to a temporary name then renamed, so an
    interrupted save never leaves a half-written checkpoint for ``--resume``.

    ``encoder.keras`` is the encoder with the lowest validation loss so far
    (``best``; also in ``checkpoints/best.keras``); before the first
    validation, the latest one (pre-training).
    """
    ck = out / "checkpoints"
    ck.mkdir(parents=True, exist_ok=True)
    tmp = ck / "last.tmp.keras"
    encoder.save(tmp)
    os.replace(tmp, ck / "last.keras")
    if best or "best" not in extra:
        shutil.copyfile(ck / "last.keras", out / "encoder.tmp.keras")
        os.replace(out / "encoder.tmp.keras", out / "encoder.keras")
    if best:
        shutil.copyfile(ck / "last.keras", ck / "best.tmp.keras")
        os.replace(ck / "best.tmp.keras", ck / "best.keras")
    if phase.kind == "chain" and optimizer.built:
        values = {f"v{i}": np.asarray(v) for i, v in enumerate(optimizer.variables)}
        with open(ck / "optimizer.tmp.npz", "wb") as f:
            np.savez(f, **values)
        os.replace(ck / "optimizer.tmp.npz", ck / "optimizer.npz")
    state = {
        **extra,
        "epochs_done": epochs_done,
        "phase": phase.name,
        "learning_rate": lr,
        "graph_mode": AlignedSpectralLoss.traced_in_graph or extra.get("graph_mode", False),
        "saved": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }
    (out / "state.tmp.json").write_text(json.dumps(state, indent=1) + "\n")
    os.replace(out / "state.tmp.json", out / "state.json")


def restore_optimizer(optimizer, variables, path: Path) -> bool:
    """Load Adam's moments saved by :func:`save_checkpoint`; ``False`` (and a warning) if they don't fit."""
    if not path.exists():
        return False
    optimizer.build(variables)
    saved = np.load(path)
    if len(saved.files) != len(optimizer.variables):
        log.warning("optimizer state in %s does not match this model; starting Adam afresh", path)
        return False
    for i, v in enumerate(optimizer.variables):
        value = saved[f"v{i}"]
        if tuple(value.shape) != tuple(v.shape):
            log.warning("optimizer state in %s does not match this model; starting Adam afresh", path)
            return False
    for i, v in enumerate(optimizer.variables):
        v.assign(saved[f"v{i}"])
    return True


# --- the run ------------------------------------------------------------------------------------
def parse_workers(text: str | None) -> int | str | None:
    """``--workers``: a number of local processes, ``ray`` or ``ray://HOST:PORT`` (default: one per core)."""
    if text is None:
        return None
    if text.isdigit():
        return int(text)
    if text == "ray" or text.startswith("ray://"):
        return text
    raise TrainError(f"--workers {text!r}: give a number, 'ray' or 'ray://HOST:PORT'")


def train(
    task: str,
    cfg: dict[str, Any],
    out: Path,
    *,
    steps: int | None = None,
    resume: bool = False,
    workers: int | str | None = None,
    data_dir: str | Path | None = None,
    verbose: int | None = None,
) -> dict[str, Any]:
    """Run (or continue) the plan of ``cfg`` into ``out``; returns the final ``state.json`` contents."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    from rt_host.lv2 import Chain, ChainSpec
    from training.data import BUILDERS, load_tracks, resolve_cache_dir
    from training.models.encoders import calibrate_batch_norm
    from training.spsa.layer import LV2Layer
    from training.spsa.renderer import RenderSettings
    from training.spsa.workers import create_pool

    keras.backend.clear_session()
    out.mkdir(parents=True, exist_ok=True)
    verbose = (1 if sys.stdout.isatty() else 2) if verbose is None else verbose
    t_start = time.monotonic()

    # data: reuse the cache, or build it (the builder says when it reuses)
    data_dir = data_dir or cfg.get("data", {}).get("cache")
    cache = resolve_cache_dir(task, data_dir)
    if not (cache / "manifest.json").exists():
        if task not in BUILDERS:
            raise TrainError(f"no data set at {cache} and no builder for task {task!r}")
        BUILDERS[task](data_dir, int(cfg.get("data", {}).get("seed", 0)))
    train_tracks, val_tracks = load_tracks(cache, "train"), load_tracks(cache, "val")

    spec = ChainSpec.load(cfg["chain"]["name"])
    probe = Chain(spec)
    names = probe.parameter_names
    defaults = probe.default_normalized().astype(np.float32)
    held = HeldParameters(probe.parameters, dict(cfg["chain"].get("held", {})), "[chain] held")
    config_fixed = dict(held.normalized)  # the layer holds them (normalized)
    defaults = held.apply(defaults)  # the encoder's target for a held port is its held value
    r, tcfg = cfg["rates"], cfg["train"]
    latency = chain_latency(spec, int(r["chain_rate"]))
    max_lag = latency + int(cfg["loss"]["max_lag_margin"])
    phases = plan(cfg, steps)
    spe, seed = int(tcfg["steps_per_epoch"]), int(tcfg.get("seed", 0))

    state_path = out / "state.json"
    done = 0
    if resume:
        if not state_path.exists() or not (out / "checkpoints" / "last.keras").exists():
            raise TrainError(f"--resume: no checkpoint in {out} (state.json, checkpoints/last.keras)")
        state = json.loads(state_path.read_text())
        done = int(state["epochs_done"])
        encoder = keras.models.load_model(out / "checkpoints" / "last.keras", compile=False)
        log.info("resuming from %s after epoch %d (%s)", out, done, state["phase"])
    else:
        for stale in ("history.csv", "history.png", "state.json"):
            (out / stale).unlink(missing_ok=True)
        shutil.rmtree(out / "checkpoints", ignore_errors=True)
        state = {}
        encoder = build_encoder_from_config(len(names), cfg)
        # start batch norm from real statistics, not (0, 1): see calibrate_batch_norm
        calib = WindowBatches(train_tracks, cfg, 1, seed + 7, targets="defaults", defaults=defaults)
        views = np.concatenate([calib[0][0] for _ in range(max(1, 16 // int(tcfg["batch"])))])
        calibrate_batch_norm(encoder, views)
    (out / "config.toml").write_bytes(_dump_toml(cfg))
    extra = {
        "task": task,
        "chain": spec.name,
        "parameters": names,
        "chain_latency": latency,
        "max_lag": max_lag,
        "plan": [p.__dict__ | {"stages": list(p.stages)} for p in phases],
        "data": str(cache),
        "graph_mode": bool(state.get("graph_mode", False)),
        "train_seconds_before": float(state.get("train_seconds_total", 0.0)),
        "worker_restarts": int(state.get("worker_restarts", 0)),
    }
    if "best" in state:
        extra["best"] = state["best"]
    total_epochs = phases[-1].end if phases else 0
    if done >= total_epochs:
        log.info("nothing to do: %d of %d epochs already done (raise --steps to go on)", done, total_epochs)

    x_val, y_val = validation_set(val_tracks, cfg)
    optimizer = keras.optimizers.Adam(float(state.get("learning_rate", tcfg["learning_rate"])))
    optimizer_restored = False
    settings = RenderSettings.for_chain(spec, int(r["chain_rate"]), preroll=int(r["preroll"]))
    pool = None
    try:
        for index, phase in enumerate(phases):
            if phase.end <= done:
                continue
            first = max(phase.start, done)
            log.info(
                "phase %s: epochs %d–%d of %d (%d steps of batch %d)",
                phase.name, first + 1, phase.end, total_epochs, (phase.end - first) * spe, tcfg["batch"],
            )  # fmt: skip
            recorder = RunRecorder(out, phase, encoder, optimizer, cfg, extra)
            if phase.kind == "pretrain":
                pre_opt = keras.optimizers.Adam(float(cfg["pretrain"]["learning_rate"]))
                encoder.compile(optimizer=pre_opt, loss="mse", jit_compile=False)
                recorder.opt = pre_opt
                data = WindowBatches(
                    train_tracks, cfg, spe, seed + 1, first * spe, targets="defaults", defaults=defaults
                )
                encoder.fit(
                    data, epochs=phase.end, initial_epoch=first, callbacks=[recorder], verbose=verbose
                )
                continue
            best_path = out / "checkpoints" / "best.keras"
            if first == phase.start and best_path.exists():
                # a stage starts from the best encoder so far, not from where the last one wandered
                encoder.set_weights(keras.models.load_model(best_path, compile=False).get_weights())
                log.info("stage %s starts from the best encoder so far (%s)", phase.name, extra["best"])
            if first == phase.start and phase.learning_rate is not None:
                optimizer.learning_rate = phase.learning_rate
            if pool is None:
                pool = create_pool(settings, workers)  # one pool for every stage: its chain never changes
            recorder.watch(pool)
            layer = LV2Layer(
                spec,
                int(r["chain_rate"]),
                workers=pool,
                epsilon=float(tcfg.get("epsilon", 0.03)),
                spsa_draws=int(tcfg.get("spsa_draws", 1)),
                fixed=stage_fixed(names, defaults, phase.stages, config_fixed),
                preroll=int(r["preroll"]),
                seed=seed * 1009 + 31 * index + first,
                name=f"chain_{index}",
            )
            model = build_training_model(encoder, layer, cfg, names, defaults)
            loss = AlignedSpectralLoss.from_recipe(max_lag, cfg["loss"], int(r["chain_rate"]))
            model.compile(optimizer=optimizer, loss=loss, jit_compile=False, run_eagerly=False)
            if resume and not optimizer_restored:
                optimizer_restored = restore_optimizer(
                    optimizer, model.trainable_variables, out / "checkpoints" / "optimizer.npz"
                )
            sched = cfg["schedule"]
            callbacks = [
                keras.callbacks.ReduceLROnPlateau(
                    monitor="val_loss",
                    factor=float(sched["plateau_factor"]),
                    patience=int(sched["plateau_patience"]),
                    min_lr=float(sched["min_learning_rate"]),
                    verbose=1,
                ),
                keras.callbacks.EarlyStopping(
                    monitor="val_loss", patience=int(sched["early_stopping_patience"]), verbose=1
                ),
                recorder,  # last: it records the learning rate after ReduceLROnPlateau's decision
            ]
            data = WindowBatches(train_tracks, cfg, spe, seed + 2, (first - _pre_epochs(phases)) * spe)
            model.fit(
                data,
                epochs=phase.end,
                initial_epoch=first,
                validation_data=(x_val, y_val),
                validation_batch_size=int(tcfg["batch"]),
                callbacks=callbacks,
                verbose=verbose,
            )
            extra["graph_mode"] = extra["graph_mode"] or AlignedSpectralLoss.traced_in_graph
            done = max(done, phase.end)  # early stopping ends the stage; the plan goes on
            if model.stop_training:
                log.info("early stopping ended stage %s", phase.name)
    finally:
        if pool is not None:
            pool.close()
    state = json.loads(state_path.read_text()) if state_path.exists() else {}
    elapsed = time.monotonic() - t_start
    state["train_seconds_this_run"] = round(elapsed, 1)
    state["train_seconds_total"] = round(extra["train_seconds_before"] + elapsed, 1)
    state_path.write_text(json.dumps(state, indent=1) + "\n")
    log.info("done in %.0f s; encoder: %s", elapsed, out / "encoder.keras")
    return state


def _pre_epochs(phases: list[Phase]) -> int:
    return sum(p.end - p.start for p in phases if p.kind == "pretrain")


def _dump_toml(cfg: dict) -> bytes:
    import tomli_w

    return tomli_w.dumps(cfg).encode()


def main(argv: Sequence[str] | None = None) -> int:
    """``python training/train.py --task TASK …``; returns the exit code."""
    parser = argparse.ArgumentParser(
        prog="train.py", description="Train an encoder to drive a plugin chain (SPSA through real plugins)."
    )
    parser.add_argument("--task", required=True, help="task name, e.g. mastering")
    parser.add_argument("--config", type=Path, help="recipe (default: training/configs/TASK.toml)")
    parser.add_argument("--steps", type=int, help="chain-training steps (overrides the config)")
    parser.add_argument("--out", type=Path, help="run folder (default: runs/TASK)")
    parser.add_argument("--resume", action="store_true", help="continue the run in --out")
    parser.add_argument("--workers", help="plugin workers: N local processes, 'ray' or 'ray://HOST:PORT'")
    parser.add_argument("--data", help="data cache folder (default: $DEEPAFX_DATA/TASK or ~/.cache/…)")
    parser.add_argument("--quiet", action="store_true", help="one line per epoch instead of a progress bar")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    if args.steps is not None and args.steps < 1:
        parser.error("--steps must be ≥ 1")
    try:
        cfg = load_config(args.config or config_path(args.task))
        out = args.out or project_root() / "runs" / args.task
        train(
            args.task,
            cfg,
            out,
            steps=args.steps,
            resume=args.resume,
            workers=parse_workers(args.workers),
            data_dir=args.data,
            verbose=2 if args.quiet else None,
        )
    except DeepAFxError as exc:
        print(f"train.py: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("train.py: interrupted; continue with --resume (from the last finished epoch)", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
