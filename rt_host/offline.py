"""Offline inference: a bundle's model drives its chain over a whole file, as the live host would.

    deepafx-rt render --task mastering IN.wav OUT.wav [--params-log A.csv] [--plot A.png]

The live controller predicts from the newest window every hop and the audio
callback glides towards each prediction with a one-pole smoother; this module
does the same on a file, so what you hear offline is what the live host plays
(without JACK, xruns or inference delay):

1. the input, mixed to mono, is resampled once to the model's rate (soxr);
2. every ``hop`` model samples, the ``window`` samples *ending there* go
   through onnxruntime (zeros before the start of the file) — causal, like live;
3. until the first prediction the chain holds its default parameters; after
   it, every ``step`` chain samples the parameters move towards the newest
   prediction by ``alpha = 1 − exp(−step / (τ · rate))`` — the live
   callback's smoother with the same ``τ`` (``smoothing_s``);
4. the chain renders the file with that automation.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass

import numpy as np

from rt_host import audio as audio_io
from rt_host.bundle import Bundle
from rt_host.lv2.chain import Chain


@dataclass
class Automation:
    """Per-step normalized parameters: ``normalized[k]`` applies from ``times[k]`` seconds on."""

    times: np.ndarray  # (steps,)
    normalized: np.ndarray  # (steps, n_params)
    step: int  # chain samples per row
    predictions: int
    inference_ms: np.ndarray  # one entry per prediction


def predict_automation(
    bundle: Bundle,
    chain: Chain,
    audio: np.ndarray,
    rate: int,
    *,
    step: int = 512,
    smoothing_s: float = 0.1,
    session=None,
) -> Automation:
    """The automation the model gives ``audio`` ``(channels, n)`` at the chain rate ``rate``."""
    session = session or bundle.session(threads=1)
    n = audio.shape[1]
    mono = np.mean(np.nan_to_num(audio, nan=0.0, posinf=0.0, neginf=0.0), axis=0, dtype=np.float32)
    view = audio_io.resample(mono[np.newaxis, :], rate, bundle.sample_rate)[0]
    view = np.concatenate([np.zeros(bundle.window, dtype=np.float32), view.astype(np.float32)])
    ends = np.arange(bundle.hop, view.size - bundle.window + 1, bundle.hop)  # in model samples
    predictions = np.empty((len(ends), chain.n_params), dtype=np.float64)
    inference_ms = np.empty(len(ends))
    for k, end in enumerate(ends):
        window = np.ascontiguousarray(view[end : end + bundle.window])  # ends at `end` (view is padded)
        t0 = time.perf_counter()
        u = bundle.predict(session, window)
        inference_ms[k] = (time.perf_counter() - t0) * 1e3
        # a non-finite prediction is ignored, as the live callback ignores it
        predictions[k] = np.clip(u, 0.0, 1.0) if np.all(np.isfinite(u)) else np.nan
    # the chain sample at which each prediction becomes the smoother's goal
    available = np.round(ends * rate / bundle.sample_rate).astype(np.int64)

    steps = max(1, math.ceil(n / step))
    out = np.empty((steps, chain.n_params), dtype=np.float64)
    alpha = 1.0 - math.exp(-step / (max(smoothing_s, 1e-6) * rate))
    goal = chain.default_normalized().astype(np.float64)
    smoothed = goal.copy()
    k = 0
    for s in range(steps):
        start = s * step
        while k < len(ends) and available[k] <= start:
            if np.all(np.isfinite(predictions[k])):
                goal = predictions[k]
            k += 1
        smoothed += alpha * (goal - smoothed)
        out[s] = smoothed
    times = np.arange(steps) * step / rate
    return Automation(times, out.astype(np.float32), step, len(ends), inference_ms)
