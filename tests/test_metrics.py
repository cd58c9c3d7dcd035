"""Objective metrics (training/evaluation/metrics.py) and the matchering baseline, on generated signals."""

from __future__ import annotations

import numpy as np
import pyloudnorm
import pytest
import scipy.signal

from training.evaluation import metrics as M

RATE = 44100


def music_like(seconds: float = 3.0, channels: int = 2, seed: int = 0, rate: int = RATE) -> np.ndarray:
    """Harmonic tones over pink-ish noise with a level contour: (channels, samples) float32."""
    rng = np.random.default_rng(seed)
    n = int(seconds * rate)
    t = np.arange(n) / rate
    tones = sum(
        np.sin(2 * np.pi * f * t + rng.uniform(0, 6)) / (k + 1) for k, f in enumerate((110, 220, 330, 587))
    )
    spec = np.fft.rfft(rng.standard_normal((channels, n)), axis=1)
    k = np.arange(spec.shape[1], dtype=np.float64)
    k[0] = 1.0
    noise = np.fft.irfft(spec / np.sqrt(k), n, axis=1)
    x = 0.3 * tones / np.abs(tones).max() + 0.2 * noise / np.abs(noise).max()
    x *= 0.6 + 0.4 * np.sin(2 * np.pi * 0.7 * t)
    return (0.8 * x / np.abs(x).max()).astype(np.float32)


@pytest.fixture(scope="module")
def x() -> np.ndarray:
    return music_like()


def test_identical_signals_give_zero(x):
    assert M.mfcc_cosine(x, x, RATE) == 0.0
    assert M.mrstft(x, x) == 0.0
    assert M.lufs_error(x, x, RATE) == 0.0
    assert M.compare(x, x, RATE) == {"mfcc_cosine": 0.0, "mrstft": 0.0, "lufs_error": 0.0}


@pytest.mark.parametrize("gain_db", [-12.0, -3.5, 4.0])
def test_a_gain_change_is_a_lufs_error_of_that_many_db(x, gain_db):
    y = (x * 10 ** (gain_db / 20)).astype(np.float32)
    assert M.lufs_error(y, x, RATE) == pytest.approx(gain_db, abs=1e-3)
    assert M.lufs_error(x, y, RATE) == pytest.approx(-gain_db, abs=1e-3)
    # MFCC cosine ignores level; the log-magnitude term of MR-STFT sees exactly |gain| in nepers
    assert M.mfcc_cosine(y, x, RATE) < 1e-6
    terms = M.mrstft_terms(y, x)
    assert terms["log_magnitude"] == pytest.approx(abs(gain_db) * np.log(10) / 20, rel=1e-3)
    assert terms["spectral_convergence"] == pytest.approx(abs(10 ** (gain_db / 20) - 1), rel=1e-3)


def test_loudness_is_pyloudnorms_bs1770_number():
    rng = np.random.default_rng(1)
    for n, channels in [(17640, 1), (30000, 2), (5 * RATE + 123, 2), (3 * RATE, 1)]:
        sig = (rng.standard_normal((channels, n)) * np.linspace(0.001, 0.4, n)).astype(np.float32)
        ref = pyloudnorm.Meter(RATE).integrated_loudness(sig.T.astype(np.float64))
        assert M.loudness(sig, RATE) == pytest.approx(ref, abs=1e-9)
    # BS.1770 calibration: a 0 dBFS 997 Hz sine in one channel reads −3.01 LUFS
    sine = np.sin(2 * np.pi * 997 * np.arange(5 * 48000) / 48000)[np.newaxis].astype(np.float32)
    assert M.loudness(sine, 48000) == pytest.approx(-3.01, abs=0.05)
    assert M.loudness(np.zeros((2, RATE), np.float32), RATE) == float("-inf")
    assert np.isnan(M.lufs_error(np.zeros((2, RATE), np.float32), music_like(1.0), RATE))


def distortions(x: np.ndarray) -> list[list[np.ndarray]]:
    """Two families of ever more damaged copies of ``x``: harder soft-clipping, louder added noise."""
    clipped = [(np.tanh(d * x) / np.tanh(d)).astype(np.float32) for d in (1.5, 3.0, 6.0, 12.0, 40.0)]
    noise = np.random.default_rng(7).standard_normal(x.shape) * np.sqrt(np.mean(x.astype(np.float64) ** 2))
    noisy = [(x + noise * 10 ** (-snr / 20)).astype(np.float32) for snr in (40, 30, 20)]
    return [clipped, noisy]


def test_distances_grow_with_distortion(x):
    for family in distortions(x):
        mfcc = [M.mfcc_cosine(d, x, RATE) for d in family]
        mr = [M.mrstft(d, x) for d in family]
        assert all(a < b for a, b in zip(mfcc, mfcc[1:])), mfcc
        assert all(a < b for a, b in zip(mr, mr[1:])), mr
        assert mfcc[0] > 0 and mr[0] > 0


def test_symmetry_where_the_definitions_are_symmetric(x):
    y = distortions(x)[0][1]
    assert M.mfcc_cosine(x, y, RATE) == pytest.approx(M.mfcc_cosine(y, x, RATE), rel=1e-3)
    a, b = M.mrstft_terms(x, y), M.mrstft_terms(y, x)
    assert a["log_magnitude"] == pytest.approx(b["log_magnitude"], rel=1e-6)
    # spectral convergence is normalised by the reference: halving vs doubling differ
    half = (0.5 * x).astype(np.float32)
    assert M.mrstft_terms(half, x)["spectral_convergence"] == pytest.approx(0.5, rel=1e-3)
    assert M.mrstft_terms(x, half)["spectral_convergence"] == pytest.approx(1.0, rel=1e-3)
    assert M.lufs_error(x, y, RATE) == pytest.approx(-M.lufs_error(y, x, RATE), abs=1e-9)


def test_mel_filterbank_and_mfcc_shapes():
    fb = M.mel_filterbank(RATE, 1024, 128)
    assert fb.shape == (128, 513) and np.all(fb >= 0)
    centres = np.argmax(fb, axis=1)
    assert np.all(np.diff(centres) >= 0)  # bands rise in frequency
    df = RATE / 1024
    area = fb.sum(axis=1) * df
    assert np.allclose(area[60:], 1.0, atol=0.03)  # Slaney normalisation: unit area where bands span bins
    assert np.mean(area) == pytest.approx(1.0, abs=0.02)
    assert M.mel_to_hz(M.hz_to_mel(np.array([100.0, 1000.0, 6400.0]))) == pytest.approx([100, 1000, 6400])
    assert M.hz_to_mel(1000.0) == pytest.approx(15.0)
    c = M.mfcc(music_like(1.0), RATE)
    assert c.shape == (13, 1 + RATE // 256)


def test_bad_inputs_are_refused_clearly(x):
    with pytest.raises(ValueError, match="differ in shape"):
        M.mrstft(x[:, :-1], x)
    with pytest.raises(ValueError, match="NaN"):
        bad = x.copy()
        bad[0, 5] = np.nan
        M.mfcc_cosine(bad, x, RATE)
    with pytest.raises(ValueError, match="more than 0.4 s"):
        M.loudness(x[:, :1000], RATE)
    with pytest.raises(ValueError, match="channels, samples"):
        M.mrstft(x[np.newaxis], x[np.newaxis])


def test_matchering_moves_loudness_and_spectrum_towards_the_reference():
    dull = music_like(8.0, seed=3)
    sos = scipy.signal.butter(2, 1500, fs=RATE, output="sos")
    quiet_dull = (0.1 * scipy.signal.sosfilt(sos, dull, axis=-1)).astype(np.float32)
    reference = music_like(8.0, seed=4)  # another "mastered" track: louder and brighter
    out = M.matchering_master(quiet_dull, reference, RATE)
    assert out.shape == quiet_dull.shape and out.dtype == np.float32
    before = abs(M.lufs_error(quiet_dull, reference, RATE))
    after = abs(M.lufs_error(out, reference, RATE))
    assert before > 10 and after < before / 3

    def hf_share(a: np.ndarray) -> float:  # energy above 3 kHz relative to the whole
        f, p = scipy.signal.welch(a.mean(axis=0), RATE, nperseg=4096)
        return float(p[f > 3000].sum() / p.sum())

    assert hf_share(out) > 3 * hf_share(quiet_dull)


def test_matchering_handles_mono_and_other_rates():
    rate = 48000
    x = music_like(6.0, channels=1, seed=5, rate=rate) * 0.2
    ref = music_like(6.0, channels=2, seed=6, rate=rate)
    out = M.matchering_master(x, ref, rate)
    assert out.shape == x.shape
    assert abs(M.lufs_error(out, ref, rate)) < abs(M.lufs_error(x, ref, rate))
