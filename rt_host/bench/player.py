"""A JACK client that loops a sound file into the graph (the benchmark's player).

    python -m rt_host.bench.player FILE [--name player]

Runs until SIGTERM/SIGINT, or until its JACK server goes away (so a killed
benchmark leaves no player behind). Ports: ``NAME:out_1``, ``NAME:out_2``.
"""

from __future__ import annotations

import argparse
import gc
import signal
import threading

import jack
import numpy as np

from rt_host import audio as audio_io


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m rt_host.bench.player")
    parser.add_argument("file")
    parser.add_argument("--name", default="player")
    args = parser.parse_args(argv)
    client = jack.Client(args.name, no_start_server=True)
    audio, rate = audio_io.read_audio(args.file)
    audio = audio_io.map_channels(audio_io.resample(audio, rate, client.samplerate), 2, "auto")
    audio = np.ascontiguousarray(audio, dtype=np.float32)
    n = audio.shape[1]
    ports = [client.outports.register(f"out_{c + 1}") for c in range(2)]
    pos = [0]

    def process(frames: int) -> None:
        p = pos[0]
        if p + frames > n:
            p = 0
        for c, port in enumerate(ports):
            port.get_array()[:] = audio[c, p : p + frames]
        pos[0] = p + frames

    client.set_process_callback(process)
    done = threading.Event()
    client.set_shutdown_callback(lambda *_: done.set())  # the server died: nothing left to play to
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: done.set())
    gc.collect()
    gc.freeze()
    gc.disable()
    with client:
        done.wait()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
