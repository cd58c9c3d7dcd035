"""Find a running JACK server, or start ``jackd -d dummy`` for the demo and tests."""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import tempfile
import time

import jack

from rt_host.errors import DeepAFxError


class JackServerError(DeepAFxError):
    """No JACK server could be reached or started."""


@contextlib.contextmanager
def _quiet_libjack():
    # libjack prints "Cannot connect to server socket" and friends while we probe
    jack.set_error_function(lambda _msg: None)
    jack.set_info_function(lambda _msg: None)
    try:
        yield
    finally:
        jack.set_error_function()
        jack.set_info_function()


def server_running(server_name: str | None = None) -> bool:
    """True if a JACK server answers (probes with a short-lived client)."""
    with _quiet_libjack():
        try:
            client = jack.Client("deepafx-rt-probe", no_start_server=True, servername=server_name)
        except jack.JackOpenError:
            return False
        client.close()
        return True


class DummyServer:
    """``jackd -d dummy`` as a child process: started, waited for, stopped.

    >>> with DummyServer(rate=48000, period=128) as server:
    ...     ...  # clients connect to the default server
    """

    def __init__(self, rate: int = 48000, period: int = 128, name: str | None = None) -> None:
        self.rate, self.period, self.name = rate, period, name
        self.process: subprocess.Popen | None = None
        # jackd's messages go to a file, not a pipe: nobody drains a pipe while audio runs, and a server
        # blocked on a full pipe (it writes a line per xrun) would stall every client
        self._log = tempfile.TemporaryFile(mode="w+", prefix="deepafx-jackd-")

    def messages(self) -> list[str]:
        """What jackd printed so far (xrun reports, errors)."""
        self._log.flush()
        self._log.seek(0)
        return self._log.read().splitlines()

    def start(self, timeout: float = 10.0) -> DummyServer:
        exe = shutil.which("jackd")
        if exe is None:
            raise JackServerError("jackd not found: install jackd2 (./install.sh does)")
        cmd = [exe, "--no-realtime"] if os.environ.get("DEEPAFX_JACK_NO_RT") else [exe]
        if self.name:
            cmd += ["-n", self.name]
        cmd += ["-d", "dummy", "-r", str(self.rate), "-p", str(self.period)]
        self.process = subprocess.Popen(
            cmd, stdout=subprocess.DEVNULL, stderr=self._log, text=True, start_new_session=True
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                err = self.messages()
                raise JackServerError(
                    f"jackd exited at start ({err[-1] if err else 'no message'}); is another server running?"
                )
            if server_running(self.name):
                return self
            time.sleep(0.05)
        self.stop()
        raise JackServerError(f"jackd did not answer within {timeout:g} s")

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(5)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.process = None

    def __enter__(self) -> DummyServer:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


def ensure_server(rate: int = 48000, period: int = 128) -> DummyServer | None:
    """None if a server already runs; otherwise a started :class:`DummyServer`."""
    if server_running():
        return None
    return DummyServer(rate, period).start()


def connect_when_active(client: jack.Client, src: str, dst: str, timeout: float = 20.0) -> None:
    """Connect two ports once both exist and their clients are active (JACK refuses before)."""
    end = time.monotonic() + timeout
    while True:
        try:
            client.connect(src, dst)
            return
        except jack.JackError:
            if time.monotonic() > end:
                raise
            time.sleep(0.05)
