"""Live = offline: the same file through the live host and through ``render`` plays the same automation.

Both run the shipped mastering bundle at 44.1 kHz and 128-frame blocks, through
the real CLI: ``deepafx-rt live --play F --record R --params-log L`` on a dummy
jackd, and ``deepafx-rt render --bundle B F OUT --params-log L2 --block 128
--keep-latency``. The live controller hears the windows at the same frames as
render does and its predictions steer from the same frames, so the two
parameter logs agree (issue 12: within 0.02, normalized, after the first
prediction) and so do the recordings (≤ −40 dB difference).
"""

from __future__ import annotations

import csv
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from rt_host import unmaster
from rt_host.bundle import bundle_dir, load_bundle
from rt_host.lv2 import Chain
from tests.live_support import dummy_server

RATE, PERIOD = 44100, 128
SECONDS = 10.0


@pytest.fixture(scope="module")
def jack_server():
    with dummy_server("parity", RATE, PERIOD) as server:
        yield server


def read_log(path: Path, chain: Chain) -> tuple[np.ndarray, np.ndarray]:
    """``(times, normalized rows)`` of a parameter log (CSV of port values)."""
    with path.open() as f:
        rows = list(csv.reader(f))
    header, body = rows[0], np.array(rows[1:], dtype=np.float64)
    assert header[1:] == chain.parameter_names
    return body[:, 0], chain.normalize(body[:, 1:])


def run(*args: str, timeout: float = 240) -> subprocess.CompletedProcess:
    proc = subprocess.run(
        [sys.executable, "-m", "rt_host", *args], capture_output=True, text=True, timeout=timeout
    )
    assert proc.returncode == 0, proc.stderr
    return proc


def test_live_and_render_play_the_same_automation_and_audio(jack_server, tmp_path):
    bundle = load_bundle(bundle_dir("mastering"))
    chain = Chain(bundle.chain_spec)
    x, _ = unmaster.example(SECONDS, rate=RATE)
    src = tmp_path / "in.wav"
    sf.write(src, x.T, RATE, subtype="FLOAT")
    live_log, off_log = tmp_path / "live.csv", tmp_path / "offline.csv"
    rec, off = tmp_path / "live.wav", tmp_path / "offline.wav"
    live = run("-q", "live", "--bundle", str(bundle.path), "--play", str(src), "--record", str(rec),
               "--params-log", str(live_log), "--out", "--no-midi")  # fmt: skip
    assert " late" not in live.stdout, live.stdout  # late predictions are named when there are some
    run("-q", "render", str(src), str(off), "--bundle", str(bundle.path), "--params-log", str(off_log),
        "--block", str(PERIOD), "--keep-latency", "--subtype", "FLOAT")  # fmt: skip

    t_live, u_live = read_log(live_log, chain)
    t_off, u_off = read_log(off_log, chain)
    n = min(len(t_off), len(t_live))
    np.testing.assert_allclose(t_live[:n], t_off[:n])  # the same frames
    first = bundle.geometry(RATE).apply_frame(0) / RATE
    after = t_off[:n] >= first
    assert after.sum() > 100
    diff = np.abs(u_live[:n] - u_off[:n])[after]
    assert diff.max() <= 0.02, f"parameters differ by up to {diff.max():.4f} (normalized)"
    assert np.ptp(u_off[after], axis=0).max() > 0.05  # the model moved something: not comparing constants

    y_live, _ = sf.read(rec, dtype="float32", always_2d=True)
    y_off, _ = sf.read(off, dtype="float32", always_2d=True)
    m = min(len(y_live), len(y_off), x.shape[1])
    err = y_live[:m] - y_off[:m]
    ratio_db = 10 * np.log10(np.sum(err.astype(np.float64) ** 2) / np.sum(y_off[:m].astype(np.float64) ** 2))
    assert ratio_db <= -40.0, f"live and offline recordings differ by {ratio_db:.1f} dB"
