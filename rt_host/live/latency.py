"""JACK's latency API, which JACK-Client does not wrap.

A client that delays its signal must say so: in JACK's latency callback it
adds its own latency to what it sees upstream (capture) and downstream
(playback) and sets those ranges on its ports. The same libjack that
JACK-Client loaded is opened here with cffi (ABI mode) and handed the client's
and ports' C pointers.
"""

from __future__ import annotations

import jack
from cffi import FFI

_ffi = FFI()
_ffi.cdef(
    """
    typedef struct _jack_client jack_client_t;
    typedef struct _jack_port jack_port_t;
    typedef uint32_t jack_nframes_t;
    typedef enum { JackCaptureLatency, JackPlaybackLatency } jack_latency_callback_mode_t;
    typedef struct { jack_nframes_t min; jack_nframes_t max; } jack_latency_range_t;
    typedef void (*JackLatencyCallback)(jack_latency_callback_mode_t mode, void *arg);
    int  jack_set_latency_callback(jack_client_t*, JackLatencyCallback, void*);
    void jack_port_get_latency_range(jack_port_t*, jack_latency_callback_mode_t, jack_latency_range_t*);
    void jack_port_set_latency_range(jack_port_t*, jack_latency_callback_mode_t, jack_latency_range_t*);
    int  jack_recompute_total_latencies(jack_client_t*);
    """
)
_lib = _ffi.dlopen("libjack.so.0")

CAPTURE = 0
PLAYBACK = 1


def _ptr(obj, ctype: str):
    return _ffi.cast(ctype, int(jack._ffi.cast("uintptr_t", obj._ptr)))


def port_latency(port: jack.Port, mode: int) -> tuple[int, int]:
    """``(min, max)`` latency of any port, capture or playback."""
    rng = _ffi.new("jack_latency_range_t*")
    _lib.jack_port_get_latency_range(_ptr(port, "jack_port_t*"), mode, rng)
    return int(rng.min), int(rng.max)


class LatencyReporter:
    """Reports ``latency`` extra frames between a client's inputs and outputs.

    Install before ``client.activate()``; change :attr:`latency` then call
    :meth:`recompute` if the chain's latency changes.
    """

    def __init__(self, client: jack.Client, inports, outports, latency: int) -> None:
        self.client, self.inports, self.outports = client, list(inports), list(outports)
        self.latency = int(latency)
        self._cb = _ffi.callback("void(jack_latency_callback_mode_t, void*)", self._on_latency)
        rc = _lib.jack_set_latency_callback(_ptr(client, "jack_client_t*"), self._cb, _ffi.NULL)
        if rc:
            raise RuntimeError("jack_set_latency_callback failed")

    def _on_latency(self, mode, _arg) -> None:
        try:
            # capture: outputs = inputs' upstream latency + ours; playback: the other way
            src, dst = (self.inports, self.outports) if mode == CAPTURE else (self.outports, self.inports)
            lo = hi = 0
            if src:
                ranges = [port_latency(p, mode) for p in src]
                lo, hi = min(r[0] for r in ranges), max(r[1] for r in ranges)
            rng = _ffi.new("jack_latency_range_t*")
            rng.min, rng.max = lo + self.latency, hi + self.latency
            for p in dst:
                _lib.jack_port_set_latency_range(_ptr(p, "jack_port_t*"), mode, rng)
        except Exception:  # never raise into libjack
            pass

    def recompute(self) -> None:
        _lib.jack_recompute_total_latencies(_ptr(self.client, "jack_client_t*"))
