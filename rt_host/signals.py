"""Our own test and demo signals (seeded, nothing downloaded).

All return float32 ``(channels, samples)``.
"""

from __future__ import annotations

import zlib

import numpy as np


def track_rng(seed: int, track_id: str) -> np.random.Generator:
    """The random generator of one track (of a data set, or the demo's example): it depends only on
    the seed and the id, not on other tracks."""
    return np.random.default_rng(np.random.SeedSequence([seed, zlib.crc32(track_id.encode())]))


def db_to_gain(db: float) -> float:
    return float(10.0 ** (db / 20.0))


def sine(freq: float, seconds: float, rate: int, dbfs: float = -6.0, channels: int = 1) -> np.ndarray:
    """A sine with peak ``dbfs``."""
    t = np.arange(int(seconds * rate)) / rate
    x = db_to_gain(dbfs) * np.sin(2 * np.pi * freq * t)
    return np.repeat(x[np.newaxis, :], channels, axis=0).astype(np.float32)


def pink_noise(seconds: float, rate: int, dbfs: float = -12.0, channels: int = 1, seed: int = 0):
    """Pink (1/f) noise with RMS ``dbfs``, shaped in the frequency domain."""
    rng = np.random.default_rng(seed)
    n = int(seconds * rate)
    spec = np.fft.rfft(rng.standard_normal((channels, n)), axis=1)
    f = np.fft.rfftfreq(n, 1 / rate)
    spec[:, 1:] /= np.sqrt(f[1:])
    spec[:, 0] = 0
    x = np.fft.irfft(spec, n=n, axis=1)
    x *= db_to_gain(dbfs) / (np.sqrt(np.mean(x**2)) + 1e-12)
    return x.astype(np.float32)


def unmastered_mix(seconds: float = 20.0, rate: int = 44100, seed: int = 0, peak_dbfs: float = -9.0):
    """A stereo drums + bass + chords loop, dull and quiet like a mix before mastering."""
    rng = np.random.default_rng(seed)
    n = int(seconds * rate)
    bpm = 104.0
    beat = 60.0 / bpm
    mix = np.zeros((2, n))

    def place(sound: np.ndarray, start_s: float, pan: float, gain: float) -> None:
        i = int(start_s * rate)
        if i >= n:
            return
        seg = sound[: n - i] * gain
        mix[0, i : i + len(seg)] += seg * np.cos((pan + 1) * np.pi / 4)
        mix[1, i : i + len(seg)] += seg * np.sin((pan + 1) * np.pi / 4)

    tk = np.arange(int(0.35 * rate)) / rate
    kick = np.sin(2 * np.pi * (45 + 80 * np.exp(-tk * 30)) * tk) * np.exp(-tk * 9)
    ts = np.arange(int(0.2 * rate)) / rate
    snare = (rng.standard_normal(len(ts)) * 0.6 + np.sin(2 * np.pi * 190 * ts)) * np.exp(-ts * 18)
    th = np.arange(int(0.05 * rate)) / rate
    hat = np.diff(rng.standard_normal(len(th) + 1)) * np.exp(-th * 80) * 0.3
    n_beats = int(seconds / beat)
    for b in range(n_beats):
        s = b * beat
        if b % 2 == 0:
            place(kick, s, 0.0, 0.9)
        else:
            place(snare, s, 0.1, 0.5 * (0.8 + 0.4 * rng.random()))
        for h in range(2):
            place(hat, s + h * beat / 2, -0.4, 0.3 * (0.6 + 0.8 * rng.random()))
    roots = [55.0, 55.0 * 2 ** (8 / 12), 55.0 * 2 ** (3 / 12), 55.0 * 2 ** (10 / 12)]
    bar = 4 * beat
    for k in range(int(seconds / bar) + 1):
        root = roots[k % 4]
        for q in range(8):
            s = k * bar + q * beat / 2
            tb = np.arange(int(beat / 2 * rate)) / rate
            saw = sum(np.sin(2 * np.pi * root * h * tb) / h for h in range(1, 12))
            place(saw * np.exp(-tb * 4), s, 0.0, 0.25)
        tc = np.arange(int(bar * rate)) / rate
        pad = sum(
            np.sin(2 * np.pi * root * 4 * r * tc + rng.random() * 6)
            for r in (1.0, 2 ** (4 / 12), 2 ** (7 / 12))
        )
        env = np.minimum(1.0, tc / 0.3) * np.minimum(1.0, (bar - tc) / 0.3)
        place(pad * env, k * bar, 0.5 * (-1) ** k, 0.06)
    # dull it: a gentle one-pole low-pass, as an unmastered mix often is
    alpha = np.exp(-2 * np.pi * 5000 / rate)
    from scipy.signal import lfilter

    mix = lfilter([1 - alpha], [1, -alpha], mix, axis=1)
    mix *= db_to_gain(peak_dbfs) / np.max(np.abs(mix))
    return mix.astype(np.float32)
