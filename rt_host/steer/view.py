"""What the encoder hears of the audio: one function, for training, evaluation, offline render and live.

The encoder takes mono audio at its own rate (the bundle's ``sample_rate``),
exactly ``window`` samples. Every path builds that input with
:func:`encoder_view` from the audio frames a prediction may hear (see
:mod:`rt_host.steer.geometry`): the channels are averaged, the frames are
resampled with soxr at :data:`RESAMPLER_QUALITY`, and the *newest* ``window``
samples are kept (zeros in front when there are fewer: the start of a file or
of a live stream). Training windows are resampled the same way one window at a
time, so the model hears in the product exactly what it heard in training.
"""

from __future__ import annotations

import math

import numpy as np
import soxr

# One resampler setting everywhere. "HQ" (soxr's 20-bit quality) costs ~1 ms per 1.9 s window here;
# its error is far below what the log-mel front end resolves.
RESAMPLER_QUALITY = "HQ"


def window_frames(window: int, model_rate: int, rate: int) -> int:
    """Frames at ``rate`` that hold a ``window``-sample window at ``model_rate`` (rounded up)."""
    return math.ceil(window * rate / model_rate)


def encoder_view(audio: np.ndarray, rate: int, model_rate: int, window: int) -> np.ndarray:
    """The encoder's input for ``audio``: ``(channels, n)`` → ``(window,)``, ``(batch, channels, n)`` →
    ``(batch, window)``, float32.

    Mono mix, soxr to ``model_rate``, the newest ``window`` samples (zero-padded
    in front if shorter). Non-finite samples count as silence.
    """
    a = np.asarray(audio, dtype=np.float32)
    single = a.ndim == 2
    if single:
        a = a[np.newaxis]
    if a.ndim != 3:
        raise ValueError(f"audio must be (channels, n) or (batch, channels, n), got shape {a.shape}")
    mono = np.nan_to_num(a.mean(axis=1), nan=0.0, posinf=0.0, neginf=0.0)  # (B, n)
    if model_rate != rate and mono.shape[1] > 0:
        mono = np.asarray(
            soxr.resample(np.ascontiguousarray(mono.T), rate, model_rate, quality=RESAMPLER_QUALITY),
            dtype=np.float32,
        ).T
    n = mono.shape[1]
    if n >= window:
        out = mono[:, n - window :]
    else:
        out = np.pad(mono, ((0, 0), (window - n, 0)))
    out = np.ascontiguousarray(out, dtype=np.float32)
    return out[0] if single else out
