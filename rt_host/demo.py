"""``deepafx-rt demo``: the live host mastering an example on a dummy JACK server.

It starts ``jackd -d dummy`` (48 kHz, 128 frames) when no server runs, plays an
un-mastered excerpt of a Debian-packaged track through the mastering chain as
a JACK client, records the output, and writes the parameter automation and the
spectra as PNGs. The excerpt is made at start-up the way the data set is
(:func:`rt_host.unmaster.example`: a test-split track, degraded with its
seeded parameters) and is not committed. With
a trained bundle in ``exported_models/mastering`` the model steers the chain;
until one lands the chain runs at its default parameters, and the demo says so.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from rt_host import audio as audio_io
from rt_host.bundle import bundle_dir
from rt_host.errors import DeepAFxError

DEMO_RATE, DEMO_PERIOD = 48000, 128


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
    for x, label in ((before, "input (un-mastered)"), (after, "live output")):
        f, p = welch(x.mean(axis=0), fs=rate, nperseg=8192)
        ax.semilogx(f[1:], 10 * np.log10(p[1:] + 1e-20), label=label)
    ax.set(xlabel="frequency (Hz)", ylabel="power (dB/Hz)", title="Spectra before and after")
    ax.set_xlim(20, rate / 2)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def run_demo(out_dir: Path, seconds: float = 15.0, web: str | None = None) -> int:
    """Master the example live; ``web``: ``"[HOST:]PORT"`` to serve the control page while it plays."""
    from rt_host.live.host import LiveHost, LiveOptions
    from rt_host.live.server import ensure_server

    out_dir.mkdir(parents=True, exist_ok=True)
    src = out_dir / "example-unmastered.wav"
    rec = out_dir / "example-live-mastered.wav"
    from rt_host import unmaster

    example, _ = unmaster.example(seconds)
    print(f"deepafx-rt demo: example: {seconds:g} s of {unmaster.EXAMPLE_TRACK} "
          f"({unmaster.EXAMPLE_PACKAGE}), un-mastered")  # fmt: skip
    audio_io.write_audio(src, example, 44100)
    has_model = (bundle_dir("mastering") / "manifest.toml").is_file()
    if has_model:
        print("deepafx-rt demo: the trained mastering model steers the chain live.")
    else:
        print("deepafx-rt demo: no trained mastering model is bundled yet (exported_models/mastering),")
        print("so the chain runs live at its default parameters.")
    server = ensure_server(DEMO_RATE, DEMO_PERIOD)
    if server is not None:
        print(f"deepafx-rt demo: started jackd -d dummy ({DEMO_RATE} Hz, {DEMO_PERIOD} frames)")
    try:
        options = LiveOptions(
            bundle="mastering" if has_model else None,
            chain=None if has_model else "mastering",
            play=src,
            record=rec,
            params_log=out_dir / "automation.csv",
            plot=out_dir / "automation.png",
            status=True,
            web=web,
        )
        report = LiveHost(options).run()
    finally:
        if server is not None:
            server.stop()
    if not rec.is_file():
        raise DeepAFxError("the live run recorded nothing")
    before, rate_in = audio_io.read_audio(src)
    after, rate_out = audio_io.read_audio(rec)
    before = audio_io.resample(before, rate_in, rate_out)
    plot_spectra(before, after, rate_out, out_dir / "spectra.png")
    print(f"deepafx-rt demo: {report.reason} ({report.xruns} xruns, latency {report.latency} samples)")
    print(f"  input      : {src}  ({_level(before)})")
    print(f"  recording  : {rec}  ({_level(after)})")
    print(f"  automation : {out_dir / 'automation.png'} (and automation.csv)")
    print(f"  spectra    : {out_dir / 'spectra.png'}")
    return report.exit_code
