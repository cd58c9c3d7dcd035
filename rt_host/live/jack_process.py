"""The JACK process callback, compiled: no Python, no GIL, one native call per cycle.

JACK-Client calls a Python function every cycle; that costs ~50 µs of
interpreter work per cycle here (``get_array()`` per port, the cffi callback),
and a Python callback must take the GIL, so the garbage collector, another
thread or a numpy copy in the same process can hold it up for milliseconds
(measured: 5–40 ms stalls with the collector on). :func:`jack_process` is a
C function made by numba (``@cfunc``) that JACK calls directly
(``jack_set_process_callback``): it fetches the port buffers with libjack's own
``jack_port_get_buffer``, runs :func:`rt_host.live.block.cycle` and writes the
outputs; it never enters the interpreter.

It receives one pointer: a table of int64 words that describes every array it
uses (address and shape, :class:`ArgTable`), built from a
:class:`~rt_host.live.block.RealtimeChain` and the ports, and kept alive by
the backend while the client runs. Function pointers (``jack_port_get_buffer``,
libc's ``clock_gettime``) travel in the table too: numba caches the compiled
callback on disk, and addresses differ from process to process.
"""

from __future__ import annotations

import ctypes

import numba
import numpy as np
from llvmlite import ir
from numba import types
from numba.extending import intrinsic

from rt_host.live.block import cycle

# per array in the table: address, ndim, then up to 4 dimensions
WORDS = 6
CLOCK_MONOTONIC = 1
CLOCK_THREAD_CPUTIME_ID = 3  # the callback thread's own CPU time: tells its work from being kept waiting

# slots of the JACK side; the RealtimeChain's arrays follow from FIRST_CHAIN_SLOT on
S_X, S_Y, S_FNS, S_IN, S_OUT, S_TIMES, S_JACK = range(7)
FIRST_CHAIN_SLOT = 7
# S_FNS entries
FN_GET_BUFFER, FN_CLOCK = 0, 1
# S_JACK entries (int64)
J_CYCLES = 0  # callbacks so far
J_BAD = 1  # callbacks with an unexpected frame count (silence out)
J_TS = 2  # two words of scratch for clock_gettime's struct timespec
J_WORDS = 4


@intrinsic
def _voidptr(typingctx, address):
    """An int address as ``void*`` (for numba.carray)."""

    def codegen(context, builder, signature, args):
        return builder.inttoptr(args[0], ir.IntType(8).as_pointer())

    return types.voidptr(types.int64), codegen


@intrinsic
def _get_buffer(typingctx, fn, port, frames):
    """``void* jack_port_get_buffer(jack_port_t*, jack_nframes_t)`` at address ``fn``."""

    def codegen(context, builder, signature, args):
        f, p, n = args
        i8p = ir.IntType(8).as_pointer()
        fnty = ir.FunctionType(i8p, [i8p, ir.IntType(32)])
        return builder.call(builder.inttoptr(f, fnty.as_pointer()), [builder.inttoptr(p, i8p), n])

    return types.voidptr(types.uint64, types.uint64, types.uint32), codegen


@intrinsic
def _clock_gettime(typingctx, fn, clock, timespec):
    """``int clock_gettime(clockid_t, struct timespec*)`` at address ``fn``; ``timespec`` an address."""

    def codegen(context, builder, signature, args):
        f, c, ts = args
        i8p = ir.IntType(8).as_pointer()
        fnty = ir.FunctionType(ir.IntType(32), [ir.IntType(32), i8p])
        return builder.call(builder.inttoptr(f, fnty.as_pointer()), [c, builder.inttoptr(ts, i8p)])

    return types.int32(types.uint64, types.int32, types.int64), codegen


@numba.njit(cache=True)
def _shape(t, slot, k):
    return t[slot * WORDS + 2 + k]


# typed views of table slots (dtype and ndim are fixed per slot; shapes come from the table)
@numba.njit(cache=True)
def _f32_1(t, s):
    return numba.carray(_voidptr(t[s * WORDS]), (_shape(t, s, 0),), np.float32)


@numba.njit(cache=True)
def _f32_2(t, s):
    return numba.carray(_voidptr(t[s * WORDS]), (_shape(t, s, 0), _shape(t, s, 1)), np.float32)


@numba.njit(cache=True)
def _f64_1(t, s):
    return numba.carray(_voidptr(t[s * WORDS]), (_shape(t, s, 0),), np.float64)


@numba.njit(cache=True)
def _f64_2(t, s):
    return numba.carray(_voidptr(t[s * WORDS]), (_shape(t, s, 0), _shape(t, s, 1)), np.float64)


@numba.njit(cache=True)
def _f64_4(t, s):
    shape = (_shape(t, s, 0), _shape(t, s, 1), _shape(t, s, 2), _shape(t, s, 3))
    return numba.carray(_voidptr(t[s * WORDS]), shape, np.float64)


@numba.njit(cache=True)
def _i64_1(t, s):
    return numba.carray(_voidptr(t[s * WORDS]), (_shape(t, s, 0),), np.int64)


@numba.njit(cache=True)
def _i64_2(t, s):
    return numba.carray(_voidptr(t[s * WORDS]), (_shape(t, s, 0), _shape(t, s, 1)), np.int64)


@numba.njit(cache=True)
def _i32_1(t, s):
    return numba.carray(_voidptr(t[s * WORDS]), (_shape(t, s, 0),), np.int32)


@numba.njit(cache=True)
def _i32_2(t, s):
    return numba.carray(_voidptr(t[s * WORDS]), (_shape(t, s, 0), _shape(t, s, 1)), np.int32)


@numba.njit(cache=True)
def _u32_1(t, s):
    return numba.carray(_voidptr(t[s * WORDS]), (_shape(t, s, 0),), np.uint32)


@numba.njit(cache=True)
def _u32_2(t, s):
    return numba.carray(_voidptr(t[s * WORDS]), (_shape(t, s, 0), _shape(t, s, 1)), np.uint32)


@numba.njit(cache=True)
def _u64_1(t, s):
    return numba.carray(_voidptr(t[s * WORDS]), (_shape(t, s, 0),), np.uint64)


@numba.njit(cache=True)
def _now_ns(fns, jack_ints, ts_address, clock=CLOCK_MONOTONIC):
    _clock_gettime(fns[FN_CLOCK], clock, ts_address)
    return jack_ints[J_TS] * 1_000_000_000 + jack_ints[J_TS + 1]


@numba.njit(cache=True, nogil=True)
def _run(jack_frames, t):
    nframes = np.int64(jack_frames)  # JACK's count is unsigned: -nframes must not wrap
    c0 = FIRST_CHAIN_SLOT
    fns = _u64_1(t, S_FNS)
    jack_ints = _i64_1(t, S_JACK)
    ts_address = t[S_JACK * WORDS] + J_TS * 8
    t0 = _now_ns(fns, jack_ints, ts_address)
    cpu0 = _now_ns(fns, jack_ints, ts_address, CLOCK_THREAD_CPUTIME_ID)
    x = _f32_2(t, S_X)
    y = _f32_2(t, S_Y)
    ins = _u64_1(t, S_IN)
    outs = _u64_1(t, S_OUT)
    jack_ints[J_CYCLES] += 1
    if nframes != x.shape[1]:  # JACK changed its buffer size: stay silent, count
        jack_ints[J_BAD] += 1
        for c in range(outs.shape[0]):
            buf = numba.carray(_get_buffer(fns[FN_GET_BUFFER], outs[c], jack_frames), (nframes,), np.float32)
            for i in range(nframes):
                buf[i] = 0.0
        return
    for c in range(ins.shape[0]):
        buf = numba.carray(_get_buffer(fns[FN_GET_BUFFER], ins[c], jack_frames), (nframes,), np.float32)
        for i in range(nframes):
            x[c, i] = buf[i]
    cycle(
        x, y, nframes, t0,
        _i64_1(t, c0 + 0), _f32_1(t, c0 + 1), _f32_2(t, c0 + 2), _i64_1(t, c0 + 3), _i32_2(t, c0 + 4),
        _i32_2(t, c0 + 5), _f32_2(t, c0 + 6), _i64_2(t, c0 + 7), _f32_1(t, c0 + 8), _i32_1(t, c0 + 9),
        _f32_1(t, c0 + 10), _f64_1(t, c0 + 11), _f64_1(t, c0 + 12),
        _i64_1(t, c0 + 13), _i64_1(t, c0 + 14), _f32_2(t, c0 + 15), _f32_2(t, c0 + 16), _f64_2(t, c0 + 17),
        _i64_1(t, c0 + 18), _f64_2(t, c0 + 19), _f64_4(t, c0 + 20),
        _f64_2(t, c0 + 21), _i64_2(t, c0 + 22), _i64_1(t, c0 + 23), _f64_1(t, c0 + 24), _i64_1(t, c0 + 25),
        _i64_1(t, c0 + 26), _f64_2(t, c0 + 27), _i64_1(t, c0 + 28), _i64_1(t, c0 + 29),
        _i64_1(t, c0 + 30), _i64_1(t, c0 + 31), _f32_2(t, c0 + 32), _i64_2(t, c0 + 33), _i64_1(t, c0 + 34),
        _u64_1(t, c0 + 35), _u64_1(t, c0 + 36), _u32_2(t, c0 + 37), _u32_1(t, c0 + 38), _f32_1(t, c0 + 39),
        _i64_1(t, c0 + 40), _f32_2(t, c0 + 41), _i64_1(t, c0 + 42), _i64_1(t, c0 + 43),
    )  # fmt: skip
    for c in range(outs.shape[0]):
        buf = numba.carray(_get_buffer(fns[FN_GET_BUFFER], outs[c], jack_frames), (nframes,), np.float32)
        for i in range(nframes):
            buf[i] = y[c, i]
    times = _i64_2(t, S_TIMES)  # row 0: wall-clock time of the call, row 1: this thread's CPU time in it
    k = (jack_ints[J_CYCLES] - 1) % times.shape[1]
    times[0, k] = _now_ns(fns, jack_ints, ts_address) - t0
    times[1, k] = _now_ns(fns, jack_ints, ts_address, CLOCK_THREAD_CPUTIME_ID) - cpu0


@numba.cfunc(types.int32(types.uint32, types.voidptr), cache=True)
def jack_process(nframes, arg):
    """``int process(jack_nframes_t, void *arg)``: ``arg`` is an :class:`ArgTable`'s words."""
    _run(nframes, numba.carray(arg, (1 << 20,), np.int64))
    return 0


# dtype and ndim of every chain slot, in RealtimeChain.arrays order: checked when a table is built
CHAIN_SLOTS = (
    (np.int64, 1), (np.float32, 1), (np.float32, 2), (np.int64, 1), (np.int32, 2), (np.int32, 2),
    (np.float32, 2), (np.int64, 2), (np.float32, 1), (np.int32, 1), (np.float32, 1), (np.float64, 1),
    (np.float64, 1), (np.int64, 1), (np.int64, 1), (np.float32, 2), (np.float32, 2), (np.float64, 2),
    (np.int64, 1), (np.float64, 2), (np.float64, 4), (np.float64, 2), (np.int64, 2), (np.int64, 1),
    (np.float64, 1), (np.int64, 1), (np.int64, 1), (np.float64, 2), (np.int64, 1), (np.int64, 1),
    (np.int64, 1), (np.int64, 1), (np.float32, 2), (np.int64, 2), (np.int64, 1), (np.uint64, 1),
    (np.uint64, 1), (np.uint32, 2), (np.uint32, 1), (np.float32, 1), (np.int64, 1), (np.float32, 2),
    (np.int64, 1), (np.int64, 1),
)  # fmt: skip


def _clock_gettime_address() -> int:
    return ctypes.cast(ctypes.CDLL(None).clock_gettime, ctypes.c_void_p).value


class ArgTable:
    """The words :func:`jack_process` reads: every array's address and shape. Keeps the arrays alive."""

    def __init__(
        self, rtc, in_ports: list[int], out_ports: list[int], get_buffer: int, times: np.ndarray
    ) -> None:
        self.fns = np.array([get_buffer, _clock_gettime_address()], dtype=np.uint64)
        self.in_ports = np.array(in_ports, dtype=np.uint64)
        self.out_ports = np.array(out_ports, dtype=np.uint64)
        self.jack = np.zeros(J_WORDS, dtype=np.int64)
        self.times = times
        side = [rtc.x, rtc.y, self.fns, self.in_ports, self.out_ports, self.times, self.jack]
        chain = list(rtc.arrays)
        if len(chain) != len(CHAIN_SLOTS):
            raise RuntimeError("RealtimeChain.arrays and jack_process.CHAIN_SLOTS disagree")
        for k, (a, (dtype, ndim)) in enumerate(zip(chain, CHAIN_SLOTS)):
            # uintp and uint64 are the same type on the 64-bit machines this runs on
            if (
                a.ndim != ndim
                or np.dtype(a.dtype).itemsize != np.dtype(dtype).itemsize
                or a.dtype.kind != np.dtype(dtype).kind
            ):
                raise RuntimeError(f"chain slot {k}: {a.dtype}/{a.ndim}d, expected {np.dtype(dtype)}/{ndim}d")
        self.arrays = side + chain  # referenced here: alive as long as the table
        self.words = np.zeros(len(self.arrays) * WORDS, dtype=np.int64)
        for k, a in enumerate(self.arrays):
            if not a.flags.c_contiguous:
                raise RuntimeError(f"array {k} of the process callback is not C-contiguous")
            if a.ndim > 4:
                raise RuntimeError(f"array {k} has {a.ndim} dimensions")
            self.words[k * WORDS] = a.ctypes.data
            self.words[k * WORDS + 1] = a.ndim
            self.words[k * WORDS + 2 : k * WORDS + 2 + a.ndim] = a.shape

    @property
    def address(self) -> int:
        return int(self.words.ctypes.data)

    @property
    def cycles(self) -> int:
        return int(self.jack[J_CYCLES])

    @property
    def bad_cycles(self) -> int:
        return int(self.jack[J_BAD])
