"""Helpers for tests that need a real JACK server (dummy backend)."""

from __future__ import annotations

import contextlib
import os
import threading

import numpy as np

from rt_host.live.host import LiveHost, LiveOptions, LiveReport


def unique_server_name(role: str = "main") -> str:
    """A JACK server name for tests, fixed per role.

    JACK2 keeps 8 server slots and reclaims a dead server's slot only when a
    server of the *same name* starts again: a fresh name per run would leak the
    slot of every server a test kills (and start failing with "Too many servers
    already active").
    """
    return f"deepafx-test-{role}"


class HostThread:
    """Runs a LiveHost in a thread (signal handlers are only installed in the main thread)."""

    def __init__(self, options: LiveOptions) -> None:
        self.host = LiveHost(options)
        self.report: LiveReport | None = None
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        try:
            self.report = self.host.run()
        except BaseException as exc:  # surfaced by join()
            self.error = exc

    def start(self) -> HostThread:
        self.thread.start()
        return self

    def stop(self) -> None:
        self.host._stop.set()

    def join(self, timeout: float = 60.0) -> LiveReport:
        self.thread.join(timeout)
        assert not self.thread.is_alive(), "the live host did not stop"
        if self.error is not None:
            raise self.error
        assert self.report is not None
        return self.report


def level_steps(rate: int, seconds_each: float, levels_db: list[float], channels: int = 2, seed: int = 0):
    """Noise whose level steps through ``levels_db`` (RMS dBFS)."""
    rng = np.random.default_rng(seed)
    parts = []
    for db in levels_db:
        n = int(seconds_each * rate)
        parts.append(rng.standard_normal((channels, n)) * 10 ** (db / 20))
    return np.concatenate(parts, axis=1).astype(np.float32)


@contextlib.contextmanager
def dummy_server(role: str, rate: int = 48000, period: int = 128):
    """A dummy jackd that this process's JACK clients use by default while it runs."""
    from rt_host.live.server import DummyServer

    name = unique_server_name(role)
    old = os.environ.get("JACK_DEFAULT_SERVER")
    os.environ["JACK_DEFAULT_SERVER"] = name
    server = DummyServer(rate, period, name=name).start()
    try:
        yield server
    finally:
        server.stop()
        if old is None:
            os.environ.pop("JACK_DEFAULT_SERVER", None)
        else:
            os.environ["JACK_DEFAULT_SERVER"] = old
