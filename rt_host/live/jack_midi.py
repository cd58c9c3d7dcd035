"""A JACK MIDI input with a native process callback: the raw events go to a lock-free ring, parsed outside.

Why not python-rtmidi's JACK input, which the host uses for ALSA: measured
here, it (1) calls the Python callback *inside* the JACK process thread of the
MIDI process, so the first message (numba loading its cached mapping kernel,
~0.3 s) blocked that client, JACK skipped cycles and ten CCs of a knob sweep
were lost — and a late client holds up the whole graph, our audio included;
and (2) glues every event after an unterminated SysEx (``F0 01 02``) to it
until an ``F7`` arrives, so the knob moves after it are lost (issue 13).

:func:`midi_process` is a numba ``cfunc`` that JACK calls every cycle: it
copies each event's bytes and its arrival time (CLOCK_MONOTONIC) into rings;
:meth:`JackMidiIn.read` (a normal thread) takes them out, and
:func:`rt_host.live.midi.parse_midi` splits them the way MIDI 1.0 reads a byte
stream. Nothing of Python runs in the JACK thread.
"""

from __future__ import annotations

import numba
import numpy as np
from llvmlite import ir
from numba import types
from numba.extending import intrinsic

from rt_host.live.jack_process import _clock_gettime, _clock_gettime_address, _get_buffer, _voidptr

BYTE_RING = 1 << 16
EVENT_RING = 4096
MAX_EVENT_BYTES = 4096
# words of the argument table (int64)
A_FN_GET_BUFFER, A_FN_COUNT, A_FN_EVENT, A_FN_CLOCK = 0, 1, 2, 3
A_PORT, A_BYTES, A_EVENTS, A_COUNTERS, A_SCRATCH = 4, 5, 6, 7, 8
A_WORDS = 9
# counters (int64)
C_EVENTS = 0  # events written
C_BYTES = 1  # bytes written (absolute position in the byte ring)
C_DROPPED = 2  # events that did not fit
C_CYCLES = 3
C_WORDS = 4


@intrinsic
def _event_count(typingctx, fn, buf):
    """``uint32_t jack_midi_get_event_count(void* port_buffer)`` at address ``fn``."""

    def codegen(context, builder, signature, args):
        f, b = args
        fnty = ir.FunctionType(ir.IntType(32), [ir.IntType(8).as_pointer()])
        return builder.call(builder.inttoptr(f, fnty.as_pointer()), [b])

    return types.uint32(types.uint64, types.voidptr), codegen


@intrinsic
def _event_get(typingctx, fn, event, buf, index):
    """``int jack_midi_event_get(jack_midi_event_t*, void* port_buffer, uint32_t)`` at address ``fn``."""

    def codegen(context, builder, signature, args):
        f, e, b, i = args
        i8p = ir.IntType(8).as_pointer()
        fnty = ir.FunctionType(ir.IntType(32), [i8p, i8p, ir.IntType(32)])
        return builder.call(builder.inttoptr(f, fnty.as_pointer()), [builder.inttoptr(e, i8p), b, i])

    return types.int32(types.uint64, types.int64, types.voidptr, types.uint32), codegen


@numba.njit(cache=True, nogil=True)
def _collect(nframes, a):
    counters = numba.carray(_voidptr(a[A_COUNTERS]), (C_WORDS,), np.int64)
    data = numba.carray(_voidptr(a[A_BYTES]), (BYTE_RING,), np.uint8)
    events = numba.carray(_voidptr(a[A_EVENTS]), (EVENT_RING, 3), np.int64)
    scratch = numba.carray(_voidptr(a[A_SCRATCH]), (6,), np.int64)  # jack_midi_event_t, then a timespec
    counters[C_CYCLES] += 1
    buf = _get_buffer(np.uint64(a[A_FN_GET_BUFFER]), np.uint64(a[A_PORT]), nframes)
    n = _event_count(np.uint64(a[A_FN_COUNT]), buf)
    if n == 0:
        return
    _clock_gettime(np.uint64(a[A_FN_CLOCK]), 1, a[A_SCRATCH] + 32)
    now = scratch[4] * 1_000_000_000 + scratch[5]
    for i in range(n):
        if _event_get(np.uint64(a[A_FN_EVENT]), a[A_SCRATCH], buf, np.uint32(i)) != 0:
            continue
        size = scratch[1]
        written = counters[C_EVENTS]
        if size > MAX_EVENT_BYTES:  # a giant SysEx: not ours to read
            counters[C_DROPPED] += 1
            continue
        src = numba.carray(_voidptr(scratch[2]), (size,), np.uint8)
        pos = counters[C_BYTES]
        for k in range(size):
            data[(pos + k) % BYTE_RING] = src[k]
        row = written % EVENT_RING
        events[row, 0] = pos
        events[row, 1] = size
        events[row, 2] = now
        counters[C_BYTES] = pos + size
        counters[C_EVENTS] = written + 1


@numba.cfunc(types.int32(types.uint32, types.voidptr), cache=True)
def midi_process(nframes, arg):
    """``int process(jack_nframes_t, void *arg)`` for :class:`JackMidiIn`."""
    _collect(nframes, numba.carray(arg, (A_WORDS,), np.int64))
    return 0


class JackMidiIn:
    """A JACK client with one MIDI input port, read from a normal thread with :meth:`read`."""

    def __init__(self, client_name: str, port_name: str = "midi_in") -> None:
        import jack

        from rt_host.live.server import JackServerError, _quiet_libjack

        with _quiet_libjack():
            try:
                self.client = jack.Client(client_name, no_start_server=True)
            except jack.JackOpenError:
                raise JackServerError("no JACK server is running for the MIDI input") from None
        self.port = self.client.midi_inports.register(port_name)
        self.data = np.zeros(BYTE_RING, dtype=np.uint8)
        self.events = np.zeros((EVENT_RING, 3), dtype=np.int64)
        self.counters = np.zeros(C_WORDS, dtype=np.int64)
        self.scratch = np.zeros(6, dtype=np.int64)
        ffi, lib = jack._ffi, jack._lib

        def address(obj) -> int:
            return int(ffi.cast("uintptr_t", obj))

        self.args = np.zeros(A_WORDS, dtype=np.int64)
        self.args[A_FN_GET_BUFFER] = address(ffi.addressof(lib, "jack_port_get_buffer"))
        self.args[A_FN_COUNT] = address(ffi.addressof(lib, "jack_midi_get_event_count"))
        self.args[A_FN_EVENT] = address(ffi.addressof(lib, "jack_midi_event_get"))
        self.args[A_FN_CLOCK] = _clock_gettime_address()
        self.args[A_PORT] = address(self.port._ptr)
        self.args[A_BYTES] = self.data.ctypes.data
        self.args[A_EVENTS] = self.events.ctypes.data
        self.args[A_COUNTERS] = self.counters.ctypes.data
        self.args[A_SCRATCH] = self.scratch.ctypes.data
        rc = lib.jack_set_process_callback(
            self.client._ptr,
            ffi.cast("JackProcessCallback", midi_process.address),
            ffi.cast("void*", self.args.ctypes.data),
        )
        if rc:
            raise RuntimeError("jack_set_process_callback failed for the MIDI input")
        self._read = 0
        self._lost = 0

    @property
    def name(self) -> str:
        return self.port.name

    def activate(self) -> None:
        self.client.activate()

    def connect(self, source: str) -> None:
        """Connect a JACK MIDI output (``client:port``) to this input."""
        self.client.connect(source, self.port)

    def read(self) -> list[tuple[bytes, int]]:
        """The events that arrived since the last call: ``[(raw bytes, arrival time in ns)]``."""
        written = int(self.counters[C_EVENTS])
        out = []
        if written - self._read > EVENT_RING:  # the reader fell far behind: skip to what is left
            self._lost += written - self._read - EVENT_RING
            self._read = written - EVENT_RING
        while self._read < written:
            pos, size, t = self.events[self._read % EVENT_RING]
            idx = (np.arange(pos, pos + size) % BYTE_RING).astype(np.int64)
            out.append((bytes(self.data[idx]), int(t)))
            self._read += 1
        return out

    @property
    def dropped(self) -> int:
        return int(self.counters[C_DROPPED]) + self._lost

    def close(self) -> None:
        try:
            self.client.deactivate()
        except Exception:
            pass
        self.client.close()
