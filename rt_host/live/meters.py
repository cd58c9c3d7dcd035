"""Loudness and peak meters of the live host: K-weighting in the callback, readings outside it.

The callback (:func:`rt_host.live.block.cycle`) runs the BS.1770 K-weighting
filters on its input and output and adds each block's mean square (summed
over channels) to running totals in shared memory; it keeps the peaks since
the last reading. :class:`MeterReader`, outside the callback, snapshots the
totals a few times a second and gives short-term (3 s) and momentary (0.4 s)
loudness, peaks and the limiter's gain reduction — for the status line, the
web page and the level-matched A/B bypass. The filters are pyloudnorm's (the
same as :func:`rt_host.loudness.loudness`), so the numbers agree with it.
"""

from __future__ import annotations

import math
import time
from collections import deque

import numpy as np
import pyloudnorm

from rt_host.live import shared

SHORT_TERM_S = 3.0
BYPASS_CEILING_DBFS = -1.0  # the level-matched input's peaks stay below this
MOMENTARY_S = 0.4


def k_weighting(rate: float) -> np.ndarray:
    """The two K-weighting biquads at ``rate`` as float64 ``(2, 6)`` sections ``b0 b1 b2 a0 a1 a2``,
    the passband gains folded in (pyloudnorm's coefficients)."""
    sos = np.zeros((2, 6), dtype=np.float64)
    for i, stage in enumerate(pyloudnorm.Meter(int(rate))._filters.values()):
        b = np.asarray(stage.b, dtype=np.float64) * stage.passband_gain
        a = np.asarray(stage.a, dtype=np.float64)
        sos[i, :3] = b / a[0]
        sos[i, 3:] = a / a[0]
    return sos


def lufs(mean_square: float) -> float:
    """Loudness of a K-weighted mean square summed over channels (BS.1770, channel weights 1)."""
    return -0.691 + 10.0 * math.log10(mean_square) if mean_square > 0 else float("-inf")


class MeterReader:
    """Readings from the callback's running totals; call :meth:`read` a few times a second."""

    def __init__(self, state: shared.SharedState, rate: float) -> None:
        self.state, self.rate = state, float(rate)
        self._history: deque[tuple[float, ...]] = deque()  # (frames, in_k, out_k, chain_k) snapshots
        self._in_peaks: deque[tuple[float, float]] = deque()  # (frames, input peak) per reading
        self.in_peak_db = self.out_peak_db = float("-inf")
        self._last = time.monotonic()

    def read(self) -> dict[str, float | None]:
        m = self.state.meters
        frames, in_k, out_k, chain_k = (
            float(m[shared.METER_FRAMES]),
            float(m[shared.METER_IN_K]),
            float(m[shared.METER_OUT_K]),
            float(m[shared.METER_CHAIN_K]),
        )
        in_peak, out_peak = float(m[shared.METER_IN_PEAK]), float(m[shared.METER_OUT_PEAK])
        m[shared.METER_IN_PEAK] = 0.0  # a race with the callback can lose one block's peak: harmless
        m[shared.METER_OUT_PEAK] = 0.0
        self._history.append((frames, in_k, out_k, chain_k))
        self._in_peaks.append((frames, in_peak))
        while self._in_peaks and frames - self._in_peaks[0][0] > SHORT_TERM_S * self.rate:
            self._in_peaks.popleft()
        while len(self._history) > 2 and frames - self._history[1][0] >= SHORT_TERM_S * self.rate:
            self._history.popleft()
        out = {
            "in_short_term_lufs": self._loudness(SHORT_TERM_S, 1),
            "out_short_term_lufs": self._loudness(SHORT_TERM_S, 2),
            "in_momentary_lufs": self._loudness(MOMENTARY_S, 1),
            "out_momentary_lufs": self._loudness(MOMENTARY_S, 2),
            "in_peak_dbfs": 20 * math.log10(in_peak) if in_peak > 0 else None,
            "out_peak_dbfs": 20 * math.log10(out_peak) if out_peak > 0 else None,
        }
        gr = float(m[shared.METER_GR])
        out["gain_reduction_db"] = None if math.isnan(gr) else gr
        return {k: (None if v is None or not math.isfinite(v) else round(v, 2)) for k, v in out.items()}

    def _loudness(self, seconds: float, column: int) -> float:
        if len(self._history) < 2:
            return float("-inf")
        newest = self._history[-1]
        want = newest[0] - seconds * self.rate
        older = next((h for h in reversed(self._history) if h[0] <= want), self._history[0])
        frames = newest[0] - older[0]
        return lufs((newest[column] - older[column]) / frames) if frames > 0 else float("-inf")

    def bypass_gain(self, ceiling_dbfs: float = BYPASS_CEILING_DBFS) -> float:
        """The gain that brings the input to the chain's short-term loudness (the level-matched A/B).

        It follows the chain's *own* output, which the callback meters also
        while the bypass plays (metering what is played would chase its own
        tail), and it never lifts the input's peaks of the last 3 s above
        ``ceiling_dbfs``: a quiet, peaky input matched to a loud master would clip.
        """
        i = self._loudness(SHORT_TERM_S, 1)
        o = self._loudness(SHORT_TERM_S, 3)
        if not (math.isfinite(i) and math.isfinite(o)):
            return 1.0
        gain_db = max(min(o - i, 40.0), -40.0)
        peak = max((p for _, p in self._in_peaks), default=0.0)
        if peak > 0:
            gain_db = min(gain_db, ceiling_dbfs - 20 * math.log10(peak))
        return float(10 ** (gain_db / 20))
