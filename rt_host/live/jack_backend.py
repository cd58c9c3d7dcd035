"""The JACK side of the live host: the client, its ports, latency, connections and the native callback.

An audio backend gives the host a rate and a block size, drives a
:class:`~rt_host.live.block.RealtimeChain` once per block, and reports what
the audio system saw (xruns, load, callback times). Everything JACK-specific
lives here; :mod:`rt_host.live.host` (the run: player, recorder, controller,
MIDI, web, status) only talks to this interface, so another backend could sit
beside it.
"""

from __future__ import annotations

import difflib
import threading

import jack
import numpy as np

from rt_host.errors import DeepAFxError
from rt_host.live.block import RealtimeChain
from rt_host.live.jack_process import ArgTable, jack_process
from rt_host.live.latency import LatencyReporter
from rt_host.live.server import JackServerError, _quiet_libjack

CALLBACK_RING = 1 << 16  # callback durations kept for the status line and the benchmarks


class JackBackend:
    """A JACK client whose process callback is :func:`rt_host.live.jack_process.jack_process`."""

    def __init__(
        self, client_name: str, inputs: list[str] | None, outputs: list[str] | None, *, playing: bool
    ):
        self.client_name = client_name
        self.inputs, self.outputs, self.playing = inputs, outputs, playing
        self.client: jack.Client | None = None
        self.xruns = 0
        self.xrun_cycles: list[int] = []  # callbacks run when each xrun was reported
        self.server_gone = threading.Event()
        self.gone_reason = ""
        self.times_ns = np.zeros((2, CALLBACK_RING), dtype=np.int64)  # wall clock, thread CPU
        self._table: ArgTable | None = None

    # --- before the audio starts -----------------------------------------------------------
    def open(self) -> tuple[int, int]:
        """Connect to the running server; ``(sample rate, block size)``."""
        with _quiet_libjack():
            try:
                self.client = jack.Client(self.client_name, no_start_server=True)
            except jack.JackOpenError:
                raise JackServerError(
                    "no JACK server is running; start one (e.g. `jackd -d dummy -r 48000 -p 128`) "
                    "or run `deepafx-rt demo`, which starts its own"
                ) from None
        return int(self.client.samplerate), int(self.client.blocksize)

    def start(self, rtc: RealtimeChain, latency: int, on_gone=None) -> None:
        """Register ports, report ``latency``, install the native callback, activate, connect."""
        client = self.client
        channels = rtc.chain.channels
        self.inports = [client.inports.register(f"in_{c + 1}") for c in range(channels)]
        self.outports = [client.outports.register(f"out_{c + 1}") for c in range(channels)]
        self.latency_reporter = LatencyReporter(client, self.inports, self.outports, latency)
        ffi, lib = jack._ffi, jack._lib

        def address(obj) -> int:
            return int(ffi.cast("uintptr_t", obj))

        self._table = ArgTable(
            rtc,
            [address(p._ptr) for p in self.inports],
            [address(p._ptr) for p in self.outports],
            address(ffi.addressof(lib, "jack_port_get_buffer")),
            self.times_ns,
        )
        rc = lib.jack_set_process_callback(
            client._ptr,
            ffi.cast("JackProcessCallback", jack_process.address),
            ffi.cast("void*", self._table.address),
        )
        if rc:
            raise DeepAFxError("JACK refused the process callback (jack_set_process_callback failed)")
        client.set_xrun_callback(self._on_xrun)

        def shutdown(_status, reason: str) -> None:
            self.gone_reason = reason.strip() or "no reason given"
            self.server_gone.set()
            if on_gone is not None:
                on_gone()

        client.set_shutdown_callback(shutdown)
        self._check_port_names()
        client.activate()
        self.connect()

    def _on_xrun(self, _delay_us: float) -> None:
        self.xruns += 1
        if len(self.xrun_cycles) < 1000:  # where they fall, for the report (JACK's thread, not the audio's)
            self.xrun_cycles.append(self.cycles)

    # --- the graph ----------------------------------------------------------------------------
    def _pairs(self) -> list[tuple[str, str]]:
        client = self.client
        ins, outs = self.inputs, self.outputs
        if ins is None:
            physical = client.get_ports(is_audio=True, is_output=True, is_physical=True)
            ins = [] if self.playing else [p.name for p in physical]
        if outs is None:
            outs = [p.name for p in client.get_ports(is_audio=True, is_input=True, is_physical=True)]
        pairs = [(src, mine.name) for src, mine in zip(ins, self.inports)]
        return pairs + [(mine.name, dst) for mine, dst in zip(self.outports, outs)]

    def _check_port_names(self) -> None:
        """Names are checked once, up front: a typo is an error. A port that vanishes later is a
        client going away, and :meth:`connect` connects it again when it comes back."""
        client = self.client
        for src, dst in self._pairs():
            for name in (src, dst):
                try:
                    client.get_port_by_name(name)
                except jack.JackError:
                    mine = f"{client.name}:"
                    known = [p.name for p in client.get_ports(is_audio=True) if not p.name.startswith(mine)]
                    near = difflib.get_close_matches(name, known, n=4, cutoff=0.3) or known[:6]
                    hint = f"; ports like it: {', '.join(near)}" if near else "; JACK has no audio ports"
                    raise DeepAFxError(f"there is no JACK port {name!r}{hint}") from None

    def connect(self) -> None:
        """Make the wanted connections that are missing (the host calls it twice a second)."""
        client = self.client
        for src, dst in self._pairs():
            try:
                port = client.get_port_by_name(src)
                if dst not in [p.name for p in client.get_all_connections(port)]:
                    client.connect(src, dst)
            except jack.JackError:
                pass  # the port is gone for now; the next pass tries again

    # --- while it runs ------------------------------------------------------------------------
    @property
    def cycles(self) -> int:
        return 0 if self._table is None else self._table.cycles

    @property
    def bad_cycles(self) -> int:
        return 0 if self._table is None else self._table.bad_cycles

    def cpu_load(self) -> float:
        return float(self.client.cpu_load()) if self.client is not None else 0.0

    def callback_us(self, cpu: bool = False) -> np.ndarray:
        """Durations of the most recent callbacks (µs, oldest first): wall-clock time, or with ``cpu``
        the callback thread's own CPU time in each. A call whose wall-clock time is over the period while
        its CPU time is not was kept waiting (preempted, or its virtual CPU not running), not busy."""
        times = self.times_ns[1 if cpu else 0]
        n = self.cycles
        k = min(n, CALLBACK_RING)
        if n <= CALLBACK_RING:
            return times[:k].astype(np.float64) / 1e3
        i = n % CALLBACK_RING
        return np.concatenate([times[i:], times[:i]]).astype(np.float64) / 1e3

    @property
    def period_us(self) -> float:
        return 1e6 * self.client.blocksize / self.client.samplerate

    def stop(self) -> None:
        """Deactivate and close (the callback never runs again after this returns)."""
        if self.client is None:
            return
        try:
            self.client.deactivate()
        except jack.JackError:
            pass
        self.client.close()
        self.client = None
