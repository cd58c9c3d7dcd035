"""The mastering metrics (training/evaluation/mastering.py) on synthetic cases with known answers."""

from __future__ import annotations

import math

import numpy as np
import pytest

from rt_host.loudness import loudness
from training.evaluation import mastering as M

RATE = 44100


def noise(seconds: float, seed: int = 0, channels: int = 2) -> np.ndarray:
    """Stereo white noise at about −20 dBFS RMS, float32."""
    rng = np.random.default_rng(seed)
    return (0.1 * rng.standard_normal((channels, int(seconds * RATE)))).astype(np.float32)


def at_lufs(x: np.ndarray, lufs: float) -> np.ndarray:
    return M.gain_to_loudness(x, lufs, RATE)[0]


# --- level ----------------------------------------------------------------------------------
def test_gain_matching_brings_a_signal_to_the_targets_loudness_and_says_by_how_much():
    target = noise(5)
    quiet = target * np.float32(10 ** (-12 / 20))
    matched, g_db = M.gain_match(quiet, target, RATE)
    assert g_db == pytest.approx(12.0, abs=1e-4)
    assert loudness(matched, RATE) == pytest.approx(loudness(target, RATE), abs=1e-3)
    normalized, _ = M.gain_to_loudness(quiet, -14.0, RATE)
    assert loudness(normalized, RATE) == pytest.approx(-14.0, abs=1e-3)


def test_a_pure_gain_scores_zero_at_target_loudness_and_is_charged_only_as_is():
    # noise with a slow envelope, so that it has dynamics for the LRA to see
    x = noise(12, seed=1)
    x *= (0.5 + 0.5 * np.sin(2 * np.pi * 0.2 * np.arange(x.shape[1]) / RATE)).astype(np.float32)
    quieter = x * np.float32(10 ** (-9 / 20))
    as_is, at_target = M.scores_as_is_and_at_target(quieter, x, RATE)
    assert as_is["lufs_error"] == pytest.approx(-9.0, abs=1e-3)
    assert as_is["mrstft"] > 1.0  # 9 dB of log-magnitude alone is ~1.04
    assert at_target["gain_db"] == pytest.approx(9.0, abs=1e-3)
    assert at_target["mrstft"] < 1e-3
    assert at_target["lufs_error"] == pytest.approx(0.0, abs=1e-3)
    assert at_target["true_peak_dbtp"] == pytest.approx(as_is["true_peak_dbtp"] + 9.0, abs=1e-3)
    for key in ("balance_error_db", "lra_error"):  # level-independent: 0 either way
        assert as_is[key] == pytest.approx(0.0, abs=1e-6)
        assert at_target[key] == pytest.approx(0.0, abs=1e-6)
    assert at_target["mfcc_cosine"] == pytest.approx(0.0, abs=1e-6)


# --- true peak ------------------------------------------------------------------------------
def test_a_sine_at_a_quarter_of_the_rate_with_a_45_degree_phase_peaks_3_db_over_its_samples():
    amplitude = 0.5
    n = np.arange(RATE)
    x = (amplitude * np.sin(np.pi / 2 * n + np.pi / 4))[np.newaxis].astype(np.float32)
    sample_peak = 20 * math.log10(float(np.max(np.abs(x))))
    assert sample_peak == pytest.approx(20 * math.log10(amplitude) - 3.01, abs=0.01)
    assert M.true_peak(x) == pytest.approx(20 * math.log10(amplitude), abs=0.01)


def test_the_cut_ends_of_an_excerpt_do_not_ring_into_a_false_peak():
    # a full-scale 1 kHz sine cut mid-swing at both ends: 0 dBTP, not the +1…2 dB an
    # interpolator's Gibbs ringing on the jump from silence would read
    t = np.arange(RATE // 2) / RATE
    x = np.sin(2 * np.pi * 1000.0 * t + 1.3)[np.newaxis].astype(np.float32)
    assert M.true_peak(x) == pytest.approx(0.0, abs=0.01)


def test_true_peak_is_found_across_the_pieces_it_is_computed_in():
    n = 2 * M.TRUE_PEAK_CHUNK
    x = np.zeros((2, n), dtype=np.float32)
    burst = np.arange(-200, 200)
    i = M.TRUE_PEAK_CHUNK + burst  # straddles the boundary between two pieces
    x[1, i] = np.sin(np.pi / 2 * i + np.pi / 4) * np.hanning(len(burst))
    peak = M.true_peak(x)
    assert peak > 20 * math.log10(float(np.max(np.abs(x)))) + 2.5
    assert peak == pytest.approx(0.0, abs=0.05)


def test_silence_has_no_peak():
    assert M.true_peak(np.zeros((2, 1000), dtype=np.float32)) == float("-inf")


# --- loudness range ------------------------------------------------------------------------
def test_short_term_loudness_of_steady_noise_is_its_integrated_loudness():
    x = noise(6, seed=2)
    st = M.short_term_loudness(x, RATE)
    assert st.size == int((6 - 3) / M.LRA_HOP_S) + 1
    assert np.allclose(st, loudness(x, RATE), atol=0.1)


def test_lra_of_two_sections_at_known_loudness_is_their_difference_and_ignores_a_gated_third():
    # 20 s at −20 LUFS, 20 s at −30 LUFS, 10 s at −60 LUFS: the last falls under the relative gate
    # (−20 LU below the power mean, about −43.6 LUFS), so LRA = 95th − 10th percentile ≈ 10 LU
    x = np.concatenate(
        [at_lufs(noise(20, 3), -20.0), at_lufs(noise(20, 4), -30.0), at_lufs(noise(10, 5), -60.0)], axis=1
    )
    assert M.loudness_range(x, RATE) == pytest.approx(10.0, abs=0.2)
    steady = at_lufs(noise(20, 6), -20.0)
    assert M.loudness_range(steady, RATE) < 0.2
    assert M.lra_error(steady, x, RATE) == pytest.approx(-10.0, abs=0.3)
    assert math.isnan(M.loudness_range(noise(2), RATE))  # shorter than one 3 s window


# --- spectral balance ----------------------------------------------------------------------
def brick_shelf(x: np.ndarray, edge_hz: float, gain_db: float) -> np.ndarray:
    """``x`` with every frequency at and above ``edge_hz`` raised by ``gain_db`` (an FFT-domain shelf)."""
    spec = np.fft.rfft(x, axis=-1)
    f = np.fft.rfftfreq(x.shape[-1], 1 / RATE)
    spec[:, f >= edge_hz] *= 10 ** (gain_db / 20)
    return np.fft.irfft(spec, n=x.shape[-1], axis=-1).astype(np.float32)


def test_a_brick_shelf_on_a_band_edge_gives_the_balance_error_its_band_count_predicts():
    bands = M.third_octave_bands()
    n = len(bands)
    assert n == 27 and bands[0, 1] == pytest.approx(39.81, abs=0.01)
    assert bands[-1, 1] == pytest.approx(15849, abs=1)
    x = noise(20, seed=7)
    edge = bands[15, 0]  # the lower edge of band 15 (1 kHz): bands 15…26 are raised
    k = n - 15
    g = 6.0
    expected = 2 * g * k * (n - k) / n**2
    shelved = brick_shelf(x, edge, g)
    assert M.balance_error(shelved, x, RATE) == pytest.approx(expected, abs=0.05)
    # the same shelf at any level: the balance error ignores level
    assert M.balance_error(shelved * np.float32(0.1), x, RATE) == pytest.approx(expected, abs=0.05)
    assert M.balance_error(x * np.float32(3.0), x, RATE) == pytest.approx(0.0, abs=1e-6)


# --- the training loss's level option (training/models/losses.py) -------------------------------
def test_the_level_matched_loss_ignores_level_and_its_loudness_term_charges_it_in_lu():
    pytest.importorskip("tensorflow")
    from training.models.losses import AlignedSpectralLoss

    t = noise(1, seed=8).T[np.newaxis]  # (1, N, 2): the loss takes (batch, samples, channels)
    quieter = t * np.float32(10 ** (-6 / 20))
    default = AlignedSpectralLoss(0, (1024, 256))
    assert float(default(t, quieter)) > 0.5  # as it always was: 6 dB of level is a big loss
    matched = AlignedSpectralLoss(0, (1024, 256), level_match=True)
    assert float(matched(t, quieter)) == pytest.approx(0.0, abs=1e-3)
    loud = AlignedSpectralLoss(0, (1024, 256), level_match=True, loudness_weight=0.5)
    assert float(loud(t, quieter)) == pytest.approx(0.5 * 6.0, abs=0.01)
    # the K-weighting: a low band counts less in LU than a mid band the same number of dB up
    assert M.k_weighting_power(4096, RATE)[np.searchsorted(np.fft.rfftfreq(4096, 1 / RATE), 30.0)] < 0.5
