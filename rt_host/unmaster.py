"""Un-mastering: a seeded process that makes a finished (mastered) track sound un-mastered.

It makes the inputs of the ``mastering`` data set (``training/data/mastering.py``)
and the demo's example (:func:`example`), so the demo plays material made
exactly the way the model's training inputs were. Steps, each drawn per track
from :class:`MasteringDegradation`:

1. EQ: a spectral tilt (± dB/octave about 1 kHz) and a few broad peaking moves;
2. dynamic expansion: a gain computer on a smoothed RMS envelope pushes every
   level away from a pivot near the track's loud passages by a ratio > 1 —
   quiet parts down, peaks up — the inverse of what a compressor does;
3. level: the result is set 6 … 20 dB *below the target's integrated loudness*
   (BS.1770), lower still within that range if needed to keep its peaks under
   −1 dBFS. No limiting and no clipping anywhere.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import scipy.signal

from rt_host.loudness import loudness
from rt_host.signals import track_rng

# The demo's example: a track of the Debian package fretsonfire-songs-sectoid that lands in the
# *test* split of the mastering data set (seed 0; tests/test_data.py checks it), so no shipped model
# has trained on it.
EXAMPLE_TRACK = Path("/usr/share/games/fretsonfire/data/songs/sectoid/War of freedom/song.ogg")
EXAMPLE_TRACK_ID = "fof-sectoid-war-of-freedom"
EXAMPLE_PACKAGE = "fretsonfire-songs-sectoid"


@dataclass(frozen=True)
class MasteringDegradation:
    """Ranges of the random "un-mastering" of a track (each parameter drawn uniformly per track).

    The chain undoes it in its own order: the compressor with make-up gain
    undoes level and expansion, the graphic EQ (±12 dB per band) the EQ.
    """

    level_db: tuple[float, float] = (-20.0, -6.0)  # input loudness − target loudness (LU)
    peak_ceiling_dbfs: float = -1.0  # the level is drawn lower (within level_db) to keep peaks below
    tilt_db_per_octave: tuple[float, float] = (-1.0, 1.0)  # about tilt_pivot_hz; at most ±4.5 dB at 40 Hz
    tilt_pivot_hz: float = 1000.0
    eq_bands: tuple[int, int] = (2, 4)  # number of peaking moves (inclusive)
    eq_freq_hz: tuple[float, float] = (60.0, 12000.0)  # log-uniform
    eq_gain_db: tuple[float, float] = (-6.0, 6.0)
    eq_q: tuple[float, float] = (0.5, 1.2)  # broad: Q 0.5 ≈ 2.5 octaves, 1.2 ≈ 1.2 octaves
    expansion_ratio: tuple[float, float] = (1.2, 1.8)  # level changes are multiplied by this
    expansion_pivot_below_loud_db: tuple[float, float] = (0.0, 6.0)  # pivot under the envelope's P95
    expansion_time_ms: tuple[float, float] = (30.0, 120.0)  # RMS envelope time constant
    expansion_max_cut_db: float = 18.0
    expansion_max_boost_db: float = 6.0
    expansion_floor_below_pivot_db: float = 40.0  # quieter than this is treated as this (no fade to −∞)


def draw_mastering_params(rng: np.random.Generator, ranges: MasteringDegradation) -> dict[str, Any]:
    """One track's degradation parameters, drawn in a fixed order from ``rng`` (JSON-ready)."""
    r = ranges
    u_level = float(rng.uniform())  # mapped onto the allowed level range once the peaks are known
    tilt = float(rng.uniform(*r.tilt_db_per_octave))
    n_eq = int(rng.integers(r.eq_bands[0], r.eq_bands[1] + 1))
    eq = []
    for _ in range(n_eq):
        f = float(np.exp(rng.uniform(np.log(r.eq_freq_hz[0]), np.log(r.eq_freq_hz[1]))))
        eq.append(
            {"freq_hz": f, "gain_db": float(rng.uniform(*r.eq_gain_db)), "q": float(rng.uniform(*r.eq_q))}
        )
    return {
        "level_u": u_level,
        "tilt_db_per_octave": tilt,
        "eq": eq,
        "expansion_ratio": float(rng.uniform(*r.expansion_ratio)),
        "expansion_pivot_below_loud_db": float(rng.uniform(*r.expansion_pivot_below_loud_db)),
        "expansion_time_ms": float(rng.uniform(*r.expansion_time_ms)),
    }


def _first_order_shelf(f0: float, gain_db: float, rate: int) -> tuple[np.ndarray, np.ndarray, float]:
    """Zero, pole and gain of a first-order high shelf: 0 dB at DC, ``gain_db`` at Nyquist, centred on f0."""
    g = 10.0 ** (gain_db / 20.0)
    w0 = 2.0 * rate * np.tan(np.pi * f0 / rate)  # pre-warped: the transition lands on f0 after bilinear
    z, p, k = scipy.signal.bilinear_zpk([-w0 / np.sqrt(g)], [-w0 * np.sqrt(g)], g, rate)
    return z, p, k


def tilt_sos(db_per_octave: float, rate: int, pivot_hz: float = 1000.0) -> np.ndarray:
    """A spectral tilt of ``db_per_octave`` (0 dB at ``pivot_hz``) as second-order sections.

    A cascade of first-order high shelves one octave apart (31 Hz … 16 kHz),
    each adding ``db_per_octave``: their overlapping 6 dB/octave transitions
    add up to a straight line in dB over log-frequency, within 0.2 dB of it
    from 60 Hz to 10 kHz at ±1 dB/octave, levelling off towards the band
    edges (1 dB/octave: −4.5 dB at 40 Hz, +3.9 dB at 16 kHz).
    """
    centres = [pivot_hz * 2.0**k for k in range(-5, 5)]
    zeros, poles, gain = [], [], 1.0
    for f0 in centres:
        if f0 < 0.45 * rate:
            z, p, k = _first_order_shelf(f0, db_per_octave, rate)
            zeros.extend(z)
            poles.extend(p)
            gain *= k
    sos = scipy.signal.zpk2sos(np.array(zeros), np.array(poles), gain)
    _, h = scipy.signal.sosfreqz(sos, worN=[pivot_hz], fs=rate)
    sos[0, :3] /= abs(h[0])  # 0 dB at the pivot
    return sos


def peaking_sos(freq_hz: float, gain_db: float, q: float, rate: int) -> np.ndarray:
    """One peaking EQ band (RBJ Audio EQ Cookbook) as a ``(1, 6)`` section."""
    a = 10.0 ** (gain_db / 40.0)
    w = 2.0 * np.pi * freq_hz / rate
    alpha = np.sin(w) / (2.0 * q)
    b = [1 + alpha * a, -2 * np.cos(w), 1 - alpha * a]
    den = [1 + alpha / a, -2 * np.cos(w), 1 - alpha / a]
    return np.array([[*(np.array(b) / den[0]), 1.0, den[1] / den[0], den[2] / den[0]]])


def mastering_eq_sos(params: dict[str, Any], rate: int, pivot_hz: float = 1000.0) -> np.ndarray:
    """The whole EQ of a degradation (tilt, then peaking moves) as second-order sections."""
    parts = [tilt_sos(params["tilt_db_per_octave"], rate, pivot_hz)]
    parts += [
        peaking_sos(b["freq_hz"], b["gain_db"], b["q"], rate)
        for b in params["eq"]
        if b["freq_hz"] < 0.45 * rate
    ]
    return np.vstack(parts)


def sosfilt_chunked(sos: np.ndarray, x: np.ndarray, chunk: int = 1 << 20) -> np.ndarray:
    """``scipy.signal.sosfilt`` along the last axis in float64, in chunks; float32 out.

    Chunking (with the filter state carried over) keeps the float64 working
    copy small on 10-minute tracks; the result is identical to one call.
    """
    out = np.empty(x.shape, dtype=np.float32)
    zi = np.zeros((sos.shape[0], x.shape[0], 2))
    for i in range(0, x.shape[1], chunk):
        y, zi = scipy.signal.sosfilt(sos, x[:, i : i + chunk].astype(np.float64), axis=-1, zi=zi)
        out[:, i : i + chunk] = y
    return out


ENVELOPE_HOP = 32  # the envelope and gain are computed every 32 samples (0.7 ms) and interpolated


def rms_envelope_db(x: np.ndarray, rate: int, time_ms: float) -> np.ndarray:
    """Smoothed RMS level in dB of ``x`` (all channels linked), one value per :data:`ENVELOPE_HOP` samples.

    Mean square over channels and a 32-sample hop, then a one-pole smoother of
    time constant ``time_ms`` — an RMS detector like a compressor's.
    """
    n = x.shape[1] // ENVELOPE_HOP * ENVELOPE_HOP
    ms = np.mean(np.square(x[:, :n], dtype=np.float64).reshape(x.shape[0], -1, ENVELOPE_HOP), axis=(0, 2))
    if n < x.shape[1]:
        ms = np.append(ms, np.mean(np.square(x[:, n:], dtype=np.float64)))
    a = math.exp(-ENVELOPE_HOP / (time_ms * 1e-3 * rate))
    smooth, _ = scipy.signal.lfilter([1.0 - a], [1.0, -a], ms, zi=[a * ms[0]])
    return 10.0 * np.log10(np.maximum(smooth, 1e-12))


def expansion_gain_db(
    env_db: np.ndarray, ratio: float, pivot_db: float, floor_db: float, max_cut_db: float, max_boost_db: float
) -> np.ndarray:
    """Gain (dB) of an expander around ``pivot_db``: ``(ratio − 1)·(level − pivot)``, clamped.

    Below the pivot it is a downward expander, above it an upward one; a level
    below ``floor_db`` counts as ``floor_db`` (silence is not pushed to −∞).
    """
    g = (ratio - 1.0) * (np.maximum(env_db, floor_db) - pivot_db)
    return np.clip(g, -max_cut_db, max_boost_db)


def _peak_dbfs(x: np.ndarray) -> float:
    peak = float(np.max(np.abs(x)))
    return 20.0 * math.log10(peak) if peak > 0 else float("-inf")


def degrade_mastering(
    target: np.ndarray, rate: int, params: dict[str, Any], ranges: MasteringDegradation
) -> tuple[np.ndarray, dict[str, Any]]:
    """The "un-mastered" input for ``target`` (float32 ``(channels, samples)``) and what was done.

    EQ → expansion → level, as described in the module docstring. Returns the
    input and a JSON-ready record: the realised level (LU), gain, pivot,
    loudness and peaks of target and input.
    """
    r = ranges
    eq = sosfilt_chunked(mastering_eq_sos(params, rate, r.tilt_pivot_hz), target)
    env = rms_envelope_db(eq, rate, params["expansion_time_ms"])
    loud = float(np.percentile(env, 95))
    pivot = loud - params["expansion_pivot_below_loud_db"]
    g_db = expansion_gain_db(
        env,
        params["expansion_ratio"],
        pivot,
        pivot - r.expansion_floor_below_pivot_db,
        r.expansion_max_cut_db,
        r.expansion_max_boost_db,
    )
    # gain per sample: the block gains placed at block centres, linearly interpolated
    centres = np.arange(len(g_db)) * ENVELOPE_HOP + ENVELOPE_HOP / 2
    gain = np.interp(np.arange(eq.shape[1]), centres, 10.0 ** (g_db / 20.0)).astype(np.float32)
    expanded = eq * gain

    l_target = loudness(target, rate)
    l_expanded = loudness(expanded, rate)
    if not (math.isfinite(l_target) and math.isfinite(l_expanded)):
        raise ValueError("the track is silent (its loudness is −inf)")
    lo, hi = r.level_db
    # the loudest level (relative to the target) that keeps the input's peaks under the ceiling
    peak_limited = r.peak_ceiling_dbfs - _peak_dbfs(expanded) + l_expanded - l_target
    upper = min(hi, max(lo, peak_limited))
    level = lo + params["level_u"] * (upper - lo)
    gain_db = l_target + level - l_expanded
    x = (expanded * np.float32(10.0 ** (gain_db / 20.0))).astype(np.float32)
    return x, {
        "level_db": level,
        "level_upper_db": upper,
        "gain_db": gain_db,
        "expansion_pivot_dbfs": pivot,
        "expansion_gain_db_range": [float(g_db.min()), float(g_db.max())],
        "target_lufs": l_target,
        "input_lufs": l_target + level,
        "target_peak_dbfs": _peak_dbfs(target),
        "input_peak_dbfs": _peak_dbfs(x),
    }


def example(seconds: float = 15.0, seed: int = 0, rate: int = 44100) -> tuple[np.ndarray, np.ndarray]:
    """``(un-mastered input, mastered original)`` of the demo: the middle ``seconds`` of
    :data:`EXAMPLE_TRACK`, degraded with that track's seeded parameters, as the data set does."""
    from rt_host import audio as audio_io
    from rt_host.errors import AudioFileError

    if not EXAMPLE_TRACK.is_file():
        raise AudioFileError(
            f"the demo's example track is missing ({EXAMPLE_TRACK}); ./install.sh installs {EXAMPLE_PACKAGE}"
        )
    target, file_rate = audio_io.read_audio(EXAMPLE_TRACK)
    target = audio_io.map_channels(target, 2, "duplicate")
    target = audio_io.trim_silence(audio_io.resample(target, file_rate, rate))
    n = min(target.shape[1], int(seconds * rate))
    start = (target.shape[1] - n) // 2
    target = np.ascontiguousarray(target[:, start : start + n])
    ranges = MasteringDegradation()
    params = draw_mastering_params(track_rng(seed, EXAMPLE_TRACK_ID), ranges)
    x, _ = degrade_mastering(target, rate, params, ranges)
    return x, target
