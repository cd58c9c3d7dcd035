"""``deepafx-rt demo``: master a generated example and show what changed.

Until the live host and the trained model land, the demo renders offline
through the mastering chain at its default parameters, and says so.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from rt_host import audio as audio_io
from rt_host.lv2 import Chain
from rt_host.render import render_file
from rt_host.signals import unmastered_mix


def _level(x: np.ndarray) -> str:
    peak = 20 * np.log10(np.max(np.abs(x)) + 1e-12)
    rms = 20 * np.log10(np.sqrt(np.mean(x.astype(np.float64) ** 2)) + 1e-12)
    return f"peak {peak:6.1f} dBFS, RMS {rms:6.1f} dBFS"


def plot_spectra(before: np.ndarray, after: np.ndarray, rate: int, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from scipy.signal import welch

    fig, ax = plt.subplots(figsize=(8, 4.5))
    for x, label in ((before, "input (un-mastered)"), (after, "mastering chain output")):
        f, p = welch(x.mean(axis=0), fs=rate, nperseg=8192)
        ax.semilogx(f[1:], 10 * np.log10(p[1:] + 1e-20), label=label)
    ax.set(xlabel="frequency (Hz)", ylabel="power (dB/Hz)", title="Spectra before and after")
    ax.set_xlim(20, rate / 2)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def run_demo(out_dir: Path, seconds: float = 20.0) -> None:
    out_dir.mkdir(parents=True, exist_ok=True)
    chain = Chain.load("mastering")
    rate = chain.sample_rate or 44100
    src = out_dir / "example-unmastered.wav"
    dst = out_dir / "example-mastered.wav"
    png = out_dir / "example-spectra.png"
    audio_io.write_audio(src, unmastered_mix(seconds, rate), rate)
    print("deepafx-rt demo: no trained mastering model is bundled yet, so the chain runs at its")
    print("default parameters (Calf MBC → LSP GEQ x32 → LSP Limiter, stereo, 44.1 kHz).")
    report = render_file(src, dst, chain)
    before, _ = audio_io.read_audio(src)
    after, _ = audio_io.read_audio(dst)
    plot_spectra(before, after, rate, png)
    print(f"  input : {src}  ({_level(before)})")
    print(f"  output: {dst}  ({_level(after)})")
    print(f"  plot  : {png}")
    print(
        f"  {report.seconds:.0f} s rendered at {report.realtime_factor:.0f}× real time; "
        f"latency {report.latency_samples} samples compensated"
    )
