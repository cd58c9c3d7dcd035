"""Shared fixtures for the rt_host.lv2 tests.

Audio is numpy float32 shaped ``(channels, samples)``, like everything in
:mod:`rt_host.lv2`. The generators are plain functions (usable at import time)
and are also offered as fixtures of the same name.
"""

from __future__ import annotations

import logging

import numpy as np
import pytest


# --- signal generators --------------------------------------------------------
def db_to_amp(db: float) -> float:
    return float(10.0 ** (db / 20.0))


def sine(
    freq: float,
    dbfs: float = -6.0,
    sample_rate: int = 44100,
    seconds: float = 1.0,
    channels: int = 1,
    phase: float = 0.0,
) -> np.ndarray:
    """A sine whose *peak* is ``dbfs`` (0 dBFS = amplitude 1), on every channel."""
    t = np.arange(int(round(seconds * sample_rate))) / sample_rate
    x = db_to_amp(dbfs) * np.sin(2 * np.pi * freq * t + phase)
    return np.repeat(x.astype(np.float32)[np.newaxis, :], channels, axis=0)


def pink_noise(
    seconds: float = 1.0,
    sample_rate: int = 44100,
    channels: int = 1,
    peak_dbfs: float = -6.0,
    seed: int = 0,
) -> np.ndarray:
    """Pink-ish (1/f power) noise, independent per channel, each scaled to ``peak_dbfs``."""
    n = int(round(seconds * sample_rate))
    rng = np.random.default_rng(seed)
    spectrum = np.fft.rfft(rng.standard_normal((channels, n)), axis=1)
    k = np.arange(spectrum.shape[1], dtype=np.float64)
    k[0] = 1.0
    spectrum /= np.sqrt(k)
    spectrum[:, 0] = 0.0  # no DC
    x = np.fft.irfft(spectrum, n, axis=1)
    x *= db_to_amp(peak_dbfs) / np.abs(x).max(axis=1, keepdims=True)
    return x.astype(np.float32)


def bursts(
    levels_dbfs: list[float],
    segment_seconds: float = 0.5,
    freq: float = 500.0,
    sample_rate: int = 44100,
    channels: int = 1,
) -> np.ndarray:
    """Consecutive segments of one continuous sine, each at its own peak level.

    ``levels_dbfs`` may hold ``None`` for a silent segment.
    """
    seg = int(round(segment_seconds * sample_rate))
    t = np.arange(seg * len(levels_dbfs)) / sample_rate
    gain = np.concatenate([np.full(seg, 0.0 if db is None else db_to_amp(db)) for db in levels_dbfs])
    x = gain * np.sin(2 * np.pi * freq * t)
    return np.repeat(x.astype(np.float32)[np.newaxis, :], channels, axis=0)


# --- fixtures -------------------------------------------------------------------
@pytest.fixture(scope="session")
def world():
    """The process-wide lilv world (loaded once per session)."""
    from rt_host.lv2 import World

    return World.default()


@pytest.fixture(name="sine")
def _sine_fixture():
    return sine


@pytest.fixture(name="pink_noise")
def _pink_noise_fixture():
    return pink_noise


@pytest.fixture(name="bursts")
def _bursts_fixture():
    return bursts


@pytest.fixture
def rt_log(caplog):
    """``caplog`` wired straight to the ``rt_host`` logger at WARNING.

    If something (the CLI's logging set-up) turned the logger's propagation
    off, the capture handler is attached to the logger itself.
    """
    logger = logging.getLogger("rt_host")
    old_level = logger.level
    attach = not logger.propagate
    if attach:
        logger.addHandler(caplog.handler)
    logger.setLevel(logging.WARNING)
    caplog.clear()
    try:
        yield caplog
    finally:
        if attach:
            logger.removeHandler(caplog.handler)
        logger.setLevel(old_level)
