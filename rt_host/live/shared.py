"""State shared by the audio callback, the controller, the MIDI receiver and the web server, without locks.

One block of memory (a ``multiprocessing.shared_memory`` segment, so the
controller, the MIDI receiver and the web server can live in other processes)
holds:

* ``header`` (int64): the counters below;
* ``capture`` (float32 ring): the input, mixed to mono, at the host's rate; the
  callback is its only writer and publishes how many frames it has written
  (``CAPTURED``, counted from the first cycle: frame 0 of the steering
  geometry, :mod:`rt_host.steer.geometry`);
* ``pred`` (float32, 2 × n) and ``pred_frame`` (int64, 2): a double buffer of
  predictions and the frame each may steer from; the controller fills the slot
  the callback is not reading, then bumps ``PRED_SEQ`` (one writer, and x86
  keeps stores in order, so the callback never sees a half-written slot);
* ``inference_ms`` (float32 ring): the controller's recent inference times;
* event rings, one per source (:data:`MIDI`, :data:`WEB`): parameter, kind,
  value, arrival time; the source writes an event, then bumps its
  ``written`` counter; the callback applies events up to it at the start of
  each block. One writer per ring;
* ``applied`` / ``held`` (n each): what the callback last applied and who sets
  each parameter (0 model, 1 a person, 2 a person's offset), for soft take-over,
  the status line and the web page;
* ``meters`` (float64): running input/output sums for loudness and peaks
  (:mod:`rt_host.live.meters`), written by the callback;
* ``control`` (float64): values the callback reads every block (bypass,
  bypass gain), written by the web server's process; the amount's mirror;
* ``stats`` (float64): figures of the run the host process publishes a few
  times a second (DSP load, xruns, callback and inference times, latency,
  prediction counts) for the web page;
* ``event_latency_us`` (float32 ring): arrival → port write, per MIDI/web event.
"""

from __future__ import annotations

from dataclasses import dataclass
from multiprocessing import shared_memory

import numpy as np

# header words
CAPTURED = 0  # frames the callback has written into the capture ring
PRED_SEQ = 1  # predictions published
STOP = 2  # 1: the controller, the MIDI receiver and the web server should exit
CONTROLLER_ALIVE = 3  # heartbeat: the controller's loop count
INFERENCES = 4  # inferences done (index into the inference_ms ring)
CONTROLLER_ERROR = 5  # 1: the controller stopped on an error
PRED_DROPPED = 6  # predictions with NaN/Inf: not published (the parameters hold)
PRED_SKIPPED = 7  # windows the controller skipped because it fell behind
MIDI_IGNORED = 8  # malformed or unmapped messages
MIDI_RECEIVED = 9  # every message the receiver saw
LATENCIES = 10  # entries written to event_latency_us
MIDI_LEARNED = 11  # learn mode: (channel << 8 | cc) + 1 of the first CC that moved, 0 until then
MIDI_READY = 12  # 1 once the receiver's port is open
MIDI_PICKUP_WAIT = 13  # CC moves ignored while waiting for a knob to reach the value (soft take-over)
MIDI_SYSEX_DROPPED = 14  # unterminated SysEx fragments dropped
WEB_READY = 15  # 1 once the web server listens
MIDI_DROPPED_EVENTS = 22  # MIDI events the native JACK input could not keep (a giant SysEx, a stalled reader)
EVENTS_WRITTEN = 16  # + source: events a source has published
EVENTS_APPLIED = 18  # + source: events the callback has applied
EVENTS_DROPPED = 20  # + source: events lost because the ring was full
HEADER_WORDS = 24

# event sources (one ring each, one writer each)
MIDI, WEB = 0, 1
SOURCES = 2

INFERENCE_RING = 512
EVENT_RING = 4096
LATENCY_RING = 8192

# event kinds
SET = 0  # a person sets the parameter (normalized value)
OFFSET = 1  # a person offsets the model's value (normalized offset)
RELEASE = 2  # hand one parameter back to the model
RELEASE_ALL = 3
AMOUNT = 4  # blend of every model-set parameter between neutral (0) and the model (1); param ignored

# control words (float64, written by the host process, read by the callback)
CTL_AMOUNT = 0  # mirror of the amount the callback applies (for the page)
CTL_BYPASS = 1  # 1: play the input (level-matched) instead of the chain's output
CTL_BYPASS_GAIN = 2  # linear gain on the bypassed input: the output's short-term loudness
CTL_WORDS = 4

# meter words (float64, running sums written by the callback; see rt_host.live.meters)
METER_FRAMES = 0  # frames metered so far
METER_IN_K = 1  # Σ K-weighted mean-square of the input (all channels), per frame
METER_OUT_K = 2  # … of the output
METER_IN_PEAK = 3  # max |input| since the last read (the reader resets it)
METER_OUT_PEAK = 4  # max |output| since the last read
METER_GR = 5  # newest gain reduction meter value read from the chain (dB), NaN when none
METER_CHAIN_K = 6  # Σ K-weighted mean-square of the chain's own output, also while the A/B bypass plays
METER_WORDS = 8

# stats words (float64, written by the host's watch loop ~4 times a second)
STAT_DSP_LOAD = 0  # JACK's DSP load, %
STAT_XRUNS = 1
STAT_CB_P99_US = 2  # over the recent callbacks
STAT_CB_MAX_US = 3
STAT_CB_OVER = 4  # callbacks over the period so far
STAT_PERIOD_US = 5
STAT_INFER_P50_MS = 6
STAT_LATENCY = 7  # the chain's latency, frames
STAT_PREDICTIONS = 8  # applied
STAT_LATE = 9
STAT_SECONDS = 10  # since the audio started
STAT_RATE = 11
STAT_BLOCK = 12
STAT_WORDS = 16


@dataclass(frozen=True)
class Layout:
    capture_frames: int
    n_params: int

    def fields(self) -> list[tuple[str, type, tuple[int, ...]]]:
        n = self.n_params
        return [  # 8-byte fields first keep every view aligned
            ("header", np.int64, (HEADER_WORDS,)),
            ("pred_frame", np.int64, (2,)),
            ("event_time", np.int64, (SOURCES, EVENT_RING)),
            ("meters", np.float64, (METER_WORDS,)),
            ("control", np.float64, (CTL_WORDS,)),
            ("stats", np.float64, (STAT_WORDS,)),
            ("capture", np.float32, (self.capture_frames,)),
            ("pred", np.float32, (2, n)),
            ("inference_ms", np.float32, (INFERENCE_RING,)),
            ("event_param", np.int32, (SOURCES, EVENT_RING)),
            ("event_kind", np.int32, (SOURCES, EVENT_RING)),
            ("event_value", np.float32, (SOURCES, EVENT_RING)),
            ("applied", np.float32, (n,)),
            ("held", np.int32, (n,)),
            ("event_latency_us", np.float32, (LATENCY_RING,)),
        ]

    @property
    def nbytes(self) -> int:
        return sum(np.dtype(t).itemsize * int(np.prod(shape)) for _, t, shape in self.fields())


class SharedState:
    """Numpy views on the shared block; see the module docstring."""

    def __init__(self, layout: Layout, buffer, shm: shared_memory.SharedMemory | None = None) -> None:
        self.layout = layout
        self._shm = shm
        off = 0
        for name, dtype, shape in layout.fields():
            count = int(np.prod(shape))
            setattr(self, name, np.ndarray(shape, dtype=dtype, buffer=buffer, offset=off))
            off += np.dtype(dtype).itemsize * count

    @classmethod
    def local(cls, layout: Layout) -> SharedState:
        """State in this process's memory (everything in one process)."""
        state = cls(layout, bytearray(layout.nbytes))
        state.control[CTL_AMOUNT] = 1.0
        return state

    @classmethod
    def create(cls, layout: Layout) -> SharedState:
        """State in a new shared-memory segment (controller, MIDI or web in other processes)."""
        shm = shared_memory.SharedMemory(create=True, size=layout.nbytes)
        state = cls(layout, shm.buf, shm)
        state.header[:] = 0
        state.control[:] = 0.0
        state.control[CTL_AMOUNT] = 1.0
        return state

    @classmethod
    def attach(cls, name: str, layout: Layout) -> SharedState:
        """The segment another process created. (Spawned children share the creator's resource
        tracker, which unlinks the segment if every process using it died without doing so.)"""
        shm = shared_memory.SharedMemory(name=name)
        return cls(layout, shm.buf, shm)

    @property
    def shm_name(self) -> str | None:
        return None if self._shm is None else self._shm.name

    def publish_prediction(self, values: np.ndarray, apply_frame: int) -> None:
        """Controller side: write the free slot (values, the frame they may steer from), then publish it."""
        seq = int(self.header[PRED_SEQ])
        slot = (seq + 1) % 2
        self.pred[slot, :] = values
        self.pred_frame[slot] = apply_frame
        self.header[PRED_SEQ] = seq + 1

    def push_event(self, source: int, param: int, kind: int, value: float, time_ns: int) -> bool:
        """An event source (one writer per source): queue an event; False if its ring is full."""
        written = int(self.header[EVENTS_WRITTEN + source])
        if written - int(self.header[EVENTS_APPLIED + source]) >= EVENT_RING:
            self.header[EVENTS_DROPPED + source] += 1
            return False
        i = written % EVENT_RING
        self.event_param[source, i] = param
        self.event_kind[source, i] = kind
        self.event_value[source, i] = value
        self.event_time[source, i] = time_ns
        self.header[EVENTS_WRITTEN + source] = written + 1
        return True

    def push_midi(self, param: int, kind: int, value: float, time_ns: int) -> bool:
        return self.push_event(MIDI, param, kind, value, time_ns)

    def capture_window(self, end: int, out: np.ndarray) -> bool:
        """Copy the captured frames ``[end − len(out), end)`` into ``out`` (zeros before frame 0).

        False if they are no longer (or not yet) in the ring.
        """
        frames = out.shape[0]
        written = int(self.header[CAPTURED])
        ring = self.capture
        n = ring.shape[0]
        if end > written or written - (end - frames) > n:
            return False
        start = end - frames
        if start < 0:
            out[:-start] = 0.0
            self._copy_ring(0, end, out[-start:])
        else:
            self._copy_ring(start, end, out)
        return True

    def _copy_ring(self, start: int, end: int, out: np.ndarray) -> None:
        ring = self.capture
        n = ring.shape[0]
        a, b = start % n, end % n
        if end - start == 0:
            return
        if a < b:
            out[:] = ring[a:b]
        else:
            k = n - a
            out[:k] = ring[a:]
            out[k:] = ring[:b]

    def event_latencies_us(self) -> np.ndarray:
        n = min(int(self.header[LATENCIES]), LATENCY_RING)
        return np.array(self.event_latency_us[:n], dtype=np.float64)

    def close(self, unlink: bool = False) -> None:
        if self._shm is not None:
            # drop our views first: SharedMemory refuses to close with exports alive
            for name, _, _ in self.layout.fields():
                setattr(self, name, None)
            self._shm.close()
            if unlink:
                self._shm.unlink()
            self._shm = None
