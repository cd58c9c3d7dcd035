"""Loudness after ITU-R BS.1770-4 (pyloudnorm's K-weighting and gating), one place for the product
and for training: the data sets set levels with it, evaluation scores with it, the demo reports it.

Audio is numpy ``(channels, samples)``; a 1-D array is mono.
"""

from __future__ import annotations

import numpy as np
import pyloudnorm
import scipy.signal

LUFS_BLOCK_SECONDS = 0.4  # BS.1770 gating block


def loudness(x: np.ndarray, rate: int) -> float:
    """Integrated loudness in LUFS (ITU-R BS.1770-4), ``-inf`` for silence.

    Numerically pyloudnorm's ``Meter(rate).integrated_loudness`` (K-weighting,
    400 ms blocks with 75 % overlap, absolute gate −70 LUFS, relative gate
    −10 LU), vectorised. Channels are weighted 1 (left, right, centre) as in
    pyloudnorm; at most five channels.
    """
    a = np.atleast_2d(np.asarray(x, dtype=np.float64))
    if not np.all(np.isfinite(a)):
        raise ValueError("loudness: the audio holds NaN or Inf")
    if a.shape[0] > 5:
        raise ValueError(f"BS.1770 loudness takes at most 5 channels, got {a.shape[0]}")
    block = LUFS_BLOCK_SECONDS
    if a.shape[1] < block * rate:
        raise ValueError(
            f"loudness needs more than {block} s of audio ({a.shape[1]} samples at {rate} Hz given)"
        )
    # pyloudnorm's own K-weighting coefficients, so the numbers match it; all channels in one call
    a = a.astype(np.float64)
    for stage in pyloudnorm.Meter(rate)._filters.values():
        a = stage.passband_gain * scipy.signal.lfilter(stage.b, stage.a, a, axis=-1)
    # block boundaries computed with the very float expressions pyloudnorm uses
    step = 1.0 - 0.75
    seconds = a.shape[1] / rate
    n_blocks = int(np.round((seconds - block) / (block * step))) + 1
    j = np.arange(n_blocks, dtype=np.float64)
    lo = (block * (j * step) * rate).astype(np.int64)
    hi = np.minimum((block * (j * step + 1) * rate).astype(np.int64), a.shape[1])
    csum = np.cumsum(np.square(a, out=a), axis=1, out=a)  # in place: long tracks are big

    def total_before(i: np.ndarray) -> np.ndarray:  # Σ of the first i squared samples
        return np.where(i > 0, csum[:, np.maximum(i - 1, 0)], 0.0)

    z = (total_before(hi) - total_before(lo)) / (block * rate)  # (channels, blocks) mean squares
    gains = np.array([1.0, 1.0, 1.0, 1.41, 1.41])[: a.shape[0], np.newaxis]
    with np.errstate(divide="ignore"):
        block_lufs = -0.691 + 10.0 * np.log10(np.sum(gains * z, axis=0))
        above_abs = block_lufs >= -70.0
        if not above_abs.any():
            return float("-inf")
        mean_abs = z[:, above_abs].mean(axis=1, keepdims=True)
        rel_gate = -0.691 + 10.0 * np.log10(np.sum(gains * mean_abs)) - 10.0
        gated = (block_lufs > rel_gate) & (block_lufs > -70.0)
        if not gated.any():
            return float("-inf")
        return float(-0.691 + 10.0 * np.log10(np.sum(gains * z[:, gated].mean(axis=1, keepdims=True))))
