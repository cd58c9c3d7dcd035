"""A model's automation over a whole file: the same windows, the same smoother, the same writes as live.

:func:`predict_automation` takes *any* predictor — onnxruntime for the
product (:meth:`rt_host.bundle.Bundle.predictor`), the Keras encoder for
evaluation — and returns what the chain's ports hold during every block:

1. every ``hop`` the window that ends there (:mod:`rt_host.steer.geometry`)
   goes through :func:`~rt_host.steer.view.encoder_view` and the predictor;
2. held parameters are put at their values (:mod:`rt_host.steer.held`); a
   prediction with NaN/Inf is dropped (the parameters hold) and counted;
3. block by block, :func:`rt_host.steer.kernel.step` glides towards each
   prediction from its apply frame on and decides which ports are written.

:func:`render_steered` then renders the chain with that automation, one row
per block. At the live host's block size and rate, this is what the live host
plays (``tests/test_live_parity.py`` checks it on a real JACK server).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

import numba
import numpy as np

from rt_host.steer import kernel
from rt_host.steer.geometry import Geometry
from rt_host.steer.held import HeldParameters
from rt_host.steer.view import encoder_view

Predictor = Callable[[np.ndarray], np.ndarray]  # (batch, window) float32 → (batch, n_params) in [0, 1]
DEFAULT_BLOCK = 128  # frames per automation row: the live host's usual JACK period


def log_rows(
    applied: np.ndarray, block: int, rate: int, first_block: int = 0, previous: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """``(times in s, rows)`` of the parameter log from per-block rows: the first block and every
    block in which a port was written — what the ports held, exactly, in a fraction of the rows.

    ``previous``: the row before ``applied[0]`` (when the rows come in pieces, as live).
    """
    if len(applied) == 0:
        return np.zeros(0), applied
    before = applied[0] + 1.0 if previous is None else previous
    changed = np.any(applied != np.vstack([before[np.newaxis], applied[:-1]]), axis=1)
    b = np.arange(first_block, first_block + len(applied))[changed]
    return b * block / rate, applied[changed]


@dataclass
class Automation:
    """What the ports hold during each block of ``block`` frames, normalized: ``applied[b]``."""

    rate: int
    block: int
    applied: np.ndarray  # (blocks, n_params) float64
    ends: np.ndarray  # (predictions,) the frame each prediction's window ends at
    predictions: np.ndarray  # (predictions, n_params) after held values; rows of NaN were dropped
    dropped: int  # predictions with NaN/Inf: ignored, the parameters held
    inference_ms: np.ndarray  # per batch, divided by its size: per prediction
    writes: int  # port writes over the file (parameters × blocks)

    @property
    def times(self) -> np.ndarray:
        """Start of each block in seconds."""
        return np.arange(len(self.applied)) * self.block / self.rate

    @property
    def n_predictions(self) -> int:
        return len(self.ends)

    def log(self) -> tuple[np.ndarray, np.ndarray]:
        """``(times, rows)`` for the parameter log and plot (:func:`log_rows`)."""
        return log_rows(self.applied, self.block, self.rate)


def predict_windows(
    predict: Predictor, audio: np.ndarray, geometry: Geometry, *, batch: int = 1, progress: bool = False
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(window ends, raw predictions (k, n), ms per prediction)`` for ``audio`` ``(channels, n)``."""
    ends = geometry.ends(audio.shape[1])
    raw, ms = [], []
    bar = None
    if progress and len(ends) > 8:
        from tqdm import tqdm

        bar = tqdm(total=len(ends), desc="predicting", unit="window", leave=False, dynamic_ncols=True)
    for i in range(0, len(ends), batch):
        chunk = np.stack([geometry.window_of(audio, int(e)) for e in ends[i : i + batch]])
        view = encoder_view(chunk, geometry.rate, geometry.model_rate, geometry.window)
        t0 = time.perf_counter()
        out = np.asarray(predict(view), dtype=np.float64).reshape(len(chunk), -1)
        ms.extend([(time.perf_counter() - t0) * 1e3 / len(chunk)] * len(chunk))
        raw.append(out)
        if bar is not None:
            bar.update(len(chunk))
    if bar is not None:
        bar.close()
    n = raw[0].shape[1] if raw else 0
    return ends, (np.concatenate(raw) if raw else np.zeros((0, n))), np.asarray(ms)


@numba.njit(cache=True, nogil=True)
def _simulate(
    rows, flags, ints, floats, budget, nxt, table, ptr, idx, scratch, preds, apply_at, block, n_frames, out
):
    k = 0
    b = 0
    start = 0
    while start < n_frames:
        frames = min(block, n_frames - start)
        # a prediction arrives before the block in which its apply frame falls (the live controller
        # publishes within milliseconds; the delay is 100 ms), and takes over at the next block start
        while k < preds.shape[0] and apply_at[k] < start + frames:
            if np.all(np.isfinite(preds[k])):
                kernel.receive(rows, ints, preds[k], apply_at[k])
            k += 1
        kernel.step(rows, flags, ints, floats, budget, nxt, table, ptr, idx, scratch, frames)
        for j in range(rows.shape[1]):
            out[b, j] = rows[kernel.APPLIED, j]
        b += 1
        start += frames


def predict_automation(
    predict: Predictor,
    audio: np.ndarray,
    rate: int,
    geometry: Geometry,
    chain,
    *,
    held: HeldParameters | None = None,
    smoothing_s: float = kernel.DEFAULT_SMOOTHING_S,
    block: int = DEFAULT_BLOCK,
    amount: float = 1.0,
    batch: int = 1,
    progress: bool = False,
) -> Automation:
    """The automation ``predict`` gives ``audio`` ``(channels, n)`` at ``rate``, for ``chain``.

    ``batch``: windows per predictor call. 1, like the live controller: an
    encoder's outputs differ in the last bits between batch sizes, and LSP's
    graphic EQ turns a 1e-7 change of a gain into a −50 dB difference in the
    audio (measured), so the product's paths all predict one window at a time.

    Starts at the chain's defaults (held parameters at their values) until the
    first prediction takes over, exactly like the live host.
    """
    if rate != geometry.rate:
        raise ValueError(f"audio at {rate} Hz but the geometry is for {geometry.rate} Hz")
    if block < 1:
        raise ValueError("block must be ≥ 1 frame")
    ends, raw, ms = predict_windows(predict, audio, geometry, batch=batch, progress=progress)
    n_params = chain.n_params
    if len(raw) == 0:  # no window at all (audio shorter than one): the defaults throughout
        raw = np.zeros((0, n_params))
    elif raw.shape[1] != n_params:
        raise ValueError(f"the predictor gives {raw.shape[1]} parameters; the chain predicts {n_params}")
    finite = np.all(np.isfinite(raw), axis=1)
    preds = np.clip(np.where(finite[:, None], raw, np.nan), 0.0, 1.0)
    if held is not None:
        preds[finite] = held.apply(preds[finite])
    state = new_state(chain, rate, smoothing_s=smoothing_s, held=held)
    state.floats[kernel.AMOUNT] = amount
    groups_ptr, groups_idx = np.arange(n_params + 1, dtype=np.int64), np.arange(n_params, dtype=np.int64)
    scratch = np.zeros(n_params, dtype=np.float32)  # stands in for the ports
    n_blocks = max(1, -(-audio.shape[1] // block))
    out = np.zeros((n_blocks, n_params), dtype=np.float64)  # as the live kernel holds them
    apply_at = ends + geometry.delay
    _simulate(
        state.rows, state.flags, state.ints, state.floats, state.group_budget, state.group_next,
        chain.table.table, groups_ptr, groups_idx, scratch, np.ascontiguousarray(preds),
        apply_at.astype(np.int64), int(block), int(audio.shape[1]), out,
    )  # fmt: skip
    return Automation(
        rate=int(rate),
        block=int(block),
        applied=out,
        ends=ends,
        predictions=preds.astype(np.float32),
        dropped=int(np.sum(~finite)),
        inference_ms=ms,
        writes=int(state.ints[kernel.WRITES]),
    )


def new_state(
    chain, rate: float, *, smoothing_s: float, held: HeldParameters | None, **kw
) -> kernel.SteerState:
    """The steering state of ``chain`` at its defaults (held parameters at their values)."""
    neutral = chain.default_normalized().astype(np.float64)
    if held is not None:
        held.apply(neutral)
    groups, budgets = kernel.write_groups(chain)
    return kernel.SteerState(
        neutral, frame_rate=rate, smoothing_s=smoothing_s, groups=groups, budgets=budgets, **kw
    )


def render_steered(
    chain,
    audio: np.ndarray,
    rate: int,
    predict: Predictor,
    geometry: Geometry,
    *,
    held: HeldParameters | None = None,
    smoothing_s: float = kernel.DEFAULT_SMOOTHING_S,
    block: int = DEFAULT_BLOCK,
    compensate_latency: bool = True,
    progress: bool = False,
) -> tuple[np.ndarray, Automation]:
    """``chain`` on ``audio`` steered by ``predict`` as the product plays it: ``(output, automation)``."""
    automation = predict_automation(
        predict,
        audio,
        rate,
        geometry,
        chain,
        held=held,
        smoothing_s=smoothing_s,
        block=block,
        progress=progress,
    )
    y = chain(
        audio, rate, params=automation.applied, step_length=block, block_size=block,
        compensate_latency=compensate_latency,
    )  # fmt: skip
    return y, automation
