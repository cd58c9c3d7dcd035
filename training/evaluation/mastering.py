"""Mastering metrics that expose level: gain matching, true peak, loudness range, spectral balance.

A mastering chain makes music louder *and* changes its timbre and dynamics. A
plain gain already does the first: music un-mastered by EQ, expansion and
−6…−20 dB scores MR-STFT ~2.1 against its master as is and ~0.5 once merely
gain-matched (FACTS.md, "a gain is the baseline to beat"). So every score here
can be taken twice — *as is*, and *at target loudness*, after the output has
been gain-matched to the target's integrated loudness (:func:`gain_match`) — and
the second isolates what the processing does beyond level.

==========================  =========================================================  ==========
metric                      what it measures                                           identical
==========================  =========================================================  ==========
:func:`true_peak`           the highest inter-sample peak, dBTP (BS.1770-4 Annex 2)    —
:func:`loudness_range`      EBU Tech 3342 loudness range (LRA), LU                     —
:func:`lra_error`           LRA(estimate) − LRA(reference), LU                         0
:func:`balance_error`       mean |Δ| of level-normalized 1/3-octave band levels, dB    0
==========================  =========================================================  ==========

**True peak** follows ITU-R BS.1770-4 Annex 2: the signal is oversampled 4×
(:func:`scipy.signal.resample_poly`, a Kaiser-windowed (β 8) polyphase low-pass
whose output is time-aligned with its input; flat within 0.001 dB to 19 kHz at
44.1 kHz) and the largest absolute value, over all channels, is the true peak,
``20·log10`` of it in dBTP. Float audio needs none
of the annex's 12 dB integer headroom. An excerpt cut out of a song starts and
ends with a jump from silence that a band-limited interpolator rings on, so the
oversampled values within :data:`TRUE_PEAK_EDGE` input samples of either end are
ignored there and the plain sample peak stands in for them (a true peak is
never below the sample peak). A sine at ``rate / 4`` with a 45° phase has
samples at ±0.707·A and a true peak of A (+3 dB over its sample peak).

**Loudness range** follows EBU Tech 3342: short-term loudness (BS.1770
K-weighting, channels summed with weight 1, 3 s rectangular windows) every
``hop_s`` (0.1 s here: EBU Mode's 10 Hz refresh; libebur128 steps 1 s, which
leaves a 30 s excerpt with only ~28 values); values below −70 LUFS are dropped
(absolute gate), then those more than 20 LU below the power mean of the rest
(relative gate); LRA is the 95th minus the 10th percentile of what remains.
A signal shorter than 3 s has no short-term value and no LRA (NaN).

**Spectral balance** compares long-term 1/3-octave band levels: the power
spectral density (Welch, Hann, :data:`BALANCE_NPERSEG` points — 1.35 Hz
resolution at 44.1 kHz, ~7 bins in the 40 Hz band — half overlap, channels
summed) integrated over the base-10 1/3-octave bands of IEC 61260
(centres ``1000·10^(k/10)`` Hz, edges ``× 10^(±1/20)``) from 40 Hz to 16 kHz
(27 bands), in dB. Each signal's band levels are *level-normalized* by
subtracting their mean over the bands, so a pure gain changes nothing; the
error is the mean absolute difference in dB. A brick-wall shelf of +g dB over
k of the n bands scores ``2·g·k·(n − k)/n²``.
"""

from __future__ import annotations

import math

import numpy as np
import pyloudnorm
import scipy.signal

from rt_host.loudness import loudness
from training.evaluation.metrics import _as_2d, _pair, mfcc_cosine, mrstft

# --- settings (documented in the module docstring) ----------------------------------
TRUE_PEAK_OVERSAMPLING = 4
# Kaiser β 8 instead of resample_poly's default 5: flat within 0.001 dB up to 19 kHz at 44.1 kHz
# (β 5 reads a full-scale sine at 18 kHz 0.036 dB high)
TRUE_PEAK_WINDOW = ("kaiser", 8.0)
TRUE_PEAK_EDGE = 32  # input samples at each end where the interpolator rings on the cut
TRUE_PEAK_CHUNK = 1 << 18  # oversample in pieces: a 10-minute track would be 100 M values at once
SHORT_TERM_S = 3.0
LRA_HOP_S = 0.1
LRA_ABSOLUTE_GATE_LUFS = -70.0
LRA_RELATIVE_GATE_LU = -20.0
LRA_PERCENTILES = (10.0, 95.0)
BALANCE_FMIN = 40.0
BALANCE_FMAX = 16000.0
BALANCE_NPERSEG = 32768
_POWER_FLOOR = 1e-20  # −200 dB: an empty band is very quiet, not −inf

# The metric names of :func:`mastering_scores`, in table order, with their units.
SCORE_UNITS = {
    "mrstft": "",
    "mfcc_cosine": "",
    "lufs_error": "LU",
    "true_peak_dbtp": "dBTP",
    "lra_error": "LU",
    "balance_error_db": "dB",
}


# --- level ------------------------------------------------------------------------------
def gain_to_match(x: np.ndarray, target: np.ndarray, rate: int) -> float:
    """The gain in dB that brings ``x`` to ``target``'s integrated loudness (BS.1770-4).

    ``0.0`` when either is silent (gated to −inf): there is no level to match.
    """
    lx = loudness(_as_2d(x, "x"), rate)
    lt = loudness(_as_2d(target, "target"), rate)
    if math.isinf(lx) or math.isinf(lt):
        return 0.0
    return lt - lx


def gain_match(x: np.ndarray, target: np.ndarray, rate: int) -> tuple[np.ndarray, float]:
    """``(x · g, g in dB)`` with ``g`` from :func:`gain_to_match`: ``x`` at the target's loudness.

    The result is float32 like the project's audio and may exceed 0 dBFS: it
    is for scoring, not for playing.
    """
    g_db = gain_to_match(x, target, rate)
    return (np.asarray(x, dtype=np.float32) * np.float32(10.0 ** (g_db / 20.0))), g_db


def gain_to_loudness(x: np.ndarray, lufs: float, rate: int) -> tuple[np.ndarray, float]:
    """``(x · g, g in dB)`` at an integrated loudness of ``lufs`` — what a loudness normalizer does."""
    lx = loudness(_as_2d(x, "x"), rate)
    g_db = 0.0 if math.isinf(lx) else float(lufs) - lx
    return (np.asarray(x, dtype=np.float32) * np.float32(10.0 ** (g_db / 20.0))), g_db


def median_loudness(tracks) -> float:
    """The median integrated loudness (LUFS) of the tracks' *targets*, each measured whole.

    For the mastering evaluation's ``input_normalized`` baseline: called on the
    training split, it is the level a loudness normalizer tuned on the masters
    the model learns from would choose, with no knowledge of the test target.
    """
    values = [loudness(np.asarray(t.target), t.rate) for t in tracks]
    values = [v for v in values if math.isfinite(v)]
    if not values:
        raise ValueError("no track with a measurable loudness")
    return float(np.median(values))


# --- true peak --------------------------------------------------------------------------
def true_peak(x: np.ndarray, oversampling: int = TRUE_PEAK_OVERSAMPLING) -> float:
    """The true peak of ``x`` in dBTP (BS.1770-4 Annex 2: 4× oversampling); −inf for silence.

    Works in pieces with overlap so memory stays bounded on whole tracks; see
    the module docstring for the handling of the excerpt's two ends.
    """
    a = _as_2d(x, "x").astype(np.float64, copy=False)
    n = a.shape[1]
    peak = float(np.max(np.abs(a)))
    margin = TRUE_PEAK_EDGE
    for start in range(0, n, TRUE_PEAK_CHUNK):
        stop = min(n, start + TRUE_PEAK_CHUNK)
        lo, hi = max(0, start - margin), min(n, stop + margin)
        up = scipy.signal.resample_poly(a[:, lo:hi], oversampling, 1, axis=1, window=TRUE_PEAK_WINDOW)
        # oversampled index j is input time lo + j / oversampling: keep this piece's own span,
        # minus the rings at the signal's true ends
        keep_lo = max(start, margin) - lo
        keep_hi = min(stop, n - margin) - lo
        if keep_hi > keep_lo:
            seg = up[:, keep_lo * oversampling : keep_hi * oversampling]
            peak = max(peak, float(np.max(np.abs(seg))))
    return 20.0 * math.log10(peak) if peak > 0 else float("-inf")


# --- loudness range ---------------------------------------------------------------------
def _k_weighted(a: np.ndarray, rate: int) -> np.ndarray:
    """``a`` through BS.1770's K-weighting, with pyloudnorm's coefficients as
    :func:`rt_host.loudness.loudness` uses them (so the two agree)."""
    out = np.asarray(a, dtype=np.float64)
    for stage in pyloudnorm.Meter(rate)._filters.values():
        out = stage.passband_gain * scipy.signal.lfilter(stage.b, stage.a, out, axis=-1)
    return out


def k_weighting_power(n_fft: int, rate: int) -> np.ndarray:
    """``|K(f)|²`` of BS.1770's K-weighting on the ``n_fft // 2 + 1`` bins of an ``n_fft``-point rFFT.

    The same filters as :func:`_k_weighted`, as a magnitude response: what the
    training loss weights an STFT's power with to estimate loudness without
    running IIR filters in the graph.
    """
    f = np.fft.rfftfreq(n_fft, 1.0 / rate)
    power = np.ones_like(f)
    for stage in pyloudnorm.Meter(rate)._filters.values():
        _, h = scipy.signal.freqz(stage.b, stage.a, worN=f, fs=rate)
        power *= np.abs(stage.passband_gain * h) ** 2
    return power


def short_term_loudness(
    x: np.ndarray, rate: int, window_s: float = SHORT_TERM_S, hop_s: float = LRA_HOP_S
) -> np.ndarray:
    """BS.1770 short-term loudness (LUFS) of every ``window_s`` window, one every ``hop_s``.

    Channels are summed with weight 1 (left/right, as :func:`loudness`). Empty
    when ``x`` is shorter than one window. Silence is −inf.
    """
    a = _as_2d(x, "x")
    if a.shape[0] > 2:
        raise ValueError("short_term_loudness takes mono or stereo audio")
    w, h = int(round(window_s * rate)), max(1, int(round(hop_s * rate)))
    if a.shape[1] < w:
        return np.zeros(0)
    power = np.square(_k_weighted(a, rate)).sum(axis=0)
    csum = np.concatenate([[0.0], np.cumsum(power)])
    starts = np.arange(0, a.shape[1] - w + 1, h)
    mean_square = np.maximum((csum[starts + w] - csum[starts]) / w, 0.0)  # cumsum rounding can dip < 0
    with np.errstate(divide="ignore"):
        return -0.691 + 10.0 * np.log10(mean_square)


def loudness_range(x: np.ndarray, rate: int, hop_s: float = LRA_HOP_S) -> float:
    """EBU Tech 3342 loudness range in LU (see the module docstring); NaN when undefined.

    Undefined: shorter than 3 s, or no short-term value above the gates.
    """
    st = short_term_loudness(x, rate, hop_s=hop_s)
    st = st[st > LRA_ABSOLUTE_GATE_LUFS]
    if st.size == 0:
        return float("nan")
    mean_power = np.mean(10.0 ** (st / 10.0))
    gate = 10.0 * math.log10(mean_power) + LRA_RELATIVE_GATE_LU
    st = st[st > gate]
    if st.size == 0:
        return float("nan")
    lo, hi = np.percentile(st, LRA_PERCENTILES)
    return float(hi - lo)


def lra_error(estimate: np.ndarray, reference: np.ndarray, rate: int, hop_s: float = LRA_HOP_S) -> float:
    """``LRA(estimate) − LRA(reference)`` in LU: negative = the estimate is more compressed."""
    return loudness_range(estimate, rate, hop_s) - loudness_range(reference, rate, hop_s)


# --- spectral balance -------------------------------------------------------------------
def third_octave_bands(fmin: float = BALANCE_FMIN, fmax: float = BALANCE_FMAX) -> np.ndarray:
    """IEC 61260 base-10 1/3-octave bands with centres in [fmin, fmax]: ``(n, 3)`` rows of
    (lower edge, centre, upper edge) in Hz."""
    # the bands whose nominal centres are fmin and fmax, and every band between (40 Hz is 39.8 Hz exactly)
    k = np.arange(round(10 * math.log10(fmin / 1000.0)), round(10 * math.log10(fmax / 1000.0)) + 1)
    centres = 1000.0 * 10.0 ** (k / 10.0)
    return np.stack([centres * 10.0**-0.05, centres, centres * 10.0**0.05], axis=1)


def third_octave_levels(
    x: np.ndarray, rate: int, fmin: float = BALANCE_FMIN, fmax: float = BALANCE_FMAX
) -> tuple[np.ndarray, np.ndarray]:
    """``(centres in Hz, long-term band levels in dB)`` of ``x`` (channels summed; Welch PSD).

    Levels are ``10·log10`` of the band's power (PSD × bin width, summed over
    the bins whose centre lies in the band), not normalized.
    """
    a = _as_2d(x, "x").astype(np.float64, copy=False)
    bands = third_octave_bands(fmin, min(fmax, 0.45 * rate))
    nperseg = min(BALANCE_NPERSEG, a.shape[1])
    f, psd = scipy.signal.welch(a, rate, window="hann", nperseg=nperseg, axis=-1)
    psd = psd.sum(axis=0) * (f[1] - f[0])
    which = np.searchsorted(bands[:, 0], f, side="right") - 1  # band whose lower edge is below f
    inside = (which >= 0) & (f < bands[np.clip(which, 0, None), 2])
    power = np.bincount(which[inside], weights=psd[inside], minlength=len(bands))
    return bands[:, 1], 10.0 * np.log10(power + _POWER_FLOOR)


def balance_error(
    estimate: np.ndarray,
    reference: np.ndarray,
    rate: int,
    fmin: float = BALANCE_FMIN,
    fmax: float = BALANCE_FMAX,
) -> float:
    """Mean |Δ| in dB of the level-normalized 1/3-octave band levels (0 = same balance).

    Each signal's band levels have their mean over the bands subtracted, so the
    error ignores overall level and charges only the *shape* of the spectrum.
    """
    _, le = third_octave_levels(estimate, rate, fmin, fmax)
    _, lr = third_octave_levels(reference, rate, fmin, fmax)
    return float(np.mean(np.abs((le - le.mean()) - (lr - lr.mean()))))


# --- everything at once ----------------------------------------------------------------
def mastering_scores(estimate: np.ndarray, reference: np.ndarray, rate: int) -> dict[str, float]:
    """Every mastering metric of ``estimate`` against ``reference`` as it is (keys: :data:`SCORE_UNITS`).

    ``lufs_error`` is output minus target (positive = louder); ``true_peak_dbtp``
    is the estimate's own true peak.
    """
    est, ref = _pair(estimate, reference)
    l_est, l_ref = loudness(est, rate), loudness(ref, rate)
    return {
        "mrstft": mrstft(est, ref),
        "mfcc_cosine": mfcc_cosine(est, ref, rate),
        "lufs_error": l_est - l_ref if math.isfinite(l_est) and math.isfinite(l_ref) else float("nan"),
        "true_peak_dbtp": true_peak(est),
        "lra_error": lra_error(est, ref, rate),
        "balance_error_db": balance_error(est, ref, rate),
    }


def scores_as_is_and_at_target(
    estimate: np.ndarray, reference: np.ndarray, rate: int
) -> tuple[dict[str, float], dict[str, float]]:
    """``(as_is, at_target)``: :func:`mastering_scores` of the estimate, and of the estimate
    gain-matched to the reference's integrated loudness (plus ``gain_db``, the gain that took).

    At target loudness ``lufs_error`` is 0 by construction, and MFCC cosine,
    LRA and balance error are level-independent by design (equal up to
    rounding); MR-STFT and the true peak are what change.
    """
    as_is = mastering_scores(estimate, reference, rate)
    matched, g_db = gain_match(estimate, reference, rate)
    at_target = mastering_scores(matched, reference, rate)
    at_target["gain_db"] = g_db
    return as_is, at_target
