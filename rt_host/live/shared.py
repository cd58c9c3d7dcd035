"""State shared by the audio callback, the controller and the MIDI receiver, without locks.

One block of memory (a ``multiprocessing.shared_memory`` segment, so the
controller and the MIDI receiver can live in other processes) holds:

* ``header`` (int64): the counters below;
* ``capture`` (float32 ring): the input, mixed to mono, at the JACK rate; the
  callback is its only writer and publishes how many frames it has written;
* ``params`` (float32, 2 × n): a double buffer; the controller fills the slot
  the callback is not reading, then bumps ``PARAMS_SEQ`` (a single writer, and
  x86 keeps stores in order, so the callback never sees a half-written slot);
* ``inference_ms`` (float32 ring): the controller's recent inference times;
* ``midi_*`` (rings): events from the MIDI receiver — parameter, kind, value,
  arrival time; the receiver writes an event, then bumps ``MIDI_WRITTEN``; the
  callback applies events up to it at the start of each block;
* ``applied`` / ``held`` (n each): what the callback last applied and which
  parameters a person holds, for the receiver's soft take-over and the status;
* ``midi_latency_us`` (float32 ring): arrival → port write, per event.
"""

from __future__ import annotations

from dataclasses import dataclass
from multiprocessing import shared_memory

import numpy as np

CAPTURED = 0  # frames the callback has written into the capture ring
PARAMS_SEQ = 1  # predictions published
STOP = 2  # 1: the controller and the MIDI receiver should exit
CONTROLLER_ALIVE = 3  # heartbeat: the controller's loop count
INFERENCES = 4  # inferences done (index into the inference_ms ring)
CONTROLLER_ERROR = 5  # 1: the controller stopped on an error
MIDI_WRITTEN = 6  # events the MIDI receiver has published
MIDI_APPLIED = 7  # events the callback has applied
MIDI_DROPPED = 8  # events lost because the ring was full (the callback fell behind)
MIDI_IGNORED = 9  # malformed or unmapped messages
MIDI_RECEIVED = 10  # every message the receiver saw
MIDI_LATENCIES = 11  # entries written to midi_latency_us
MIDI_LEARNED = 12  # learn mode: (channel << 8 | cc) + 1 of the first CC that moved, 0 until then
MIDI_READY = 13  # 1 once the receiver's port is open
MIDI_PICKUP_WAIT = 14  # CC moves ignored while waiting for a knob to reach the value (soft take-over)
HEADER_WORDS = 16
INFERENCE_RING = 512
MIDI_RING = 4096
LATENCY_RING = 8192

# event kinds
SET = 0  # a person sets the parameter (normalized value)
OFFSET = 1  # a person offsets the model's value (normalized offset)
RELEASE = 2  # hand one parameter back to the model
RELEASE_ALL = 3


@dataclass(frozen=True)
class Layout:
    capture_frames: int
    n_params: int

    def fields(self) -> list[tuple[str, type, int]]:
        n = self.n_params
        return [
            ("header", np.int64, HEADER_WORDS),
            ("midi_time", np.int64, MIDI_RING),
            ("capture", np.float32, self.capture_frames),
            ("params", np.float32, 2 * n),
            ("inference_ms", np.float32, INFERENCE_RING),
            ("midi_param", np.int32, MIDI_RING),
            ("midi_kind", np.int32, MIDI_RING),
            ("midi_value", np.float32, MIDI_RING),
            ("applied", np.float32, n),
            ("held", np.int32, n),
            ("midi_latency_us", np.float32, LATENCY_RING),
        ]

    @property
    def nbytes(self) -> int:
        return sum(np.dtype(t).itemsize * count for _, t, count in self.fields())


class SharedState:
    """Numpy views on the shared block; see the module docstring."""

    def __init__(self, layout: Layout, buffer, shm: shared_memory.SharedMemory | None = None) -> None:
        self.layout = layout
        self._shm = shm
        off = 0
        for name, dtype, count in layout.fields():  # 8-byte fields first keep every view aligned
            setattr(self, name, np.ndarray((count,), dtype=dtype, buffer=buffer, offset=off))
            off += np.dtype(dtype).itemsize * count
        self.params = self.params.reshape(2, layout.n_params)

    @classmethod
    def local(cls, layout: Layout) -> SharedState:
        """State in this process's memory (everything in one process)."""
        return cls(layout, bytearray(layout.nbytes))

    @classmethod
    def create(cls, layout: Layout) -> SharedState:
        """State in a new shared-memory segment (controller or MIDI in other processes)."""
        shm = shared_memory.SharedMemory(create=True, size=layout.nbytes)
        state = cls(layout, shm.buf, shm)
        state.header[:] = 0
        return state

    @classmethod
    def attach(cls, name: str, layout: Layout) -> SharedState:
        shm = shared_memory.SharedMemory(name=name)
        return cls(layout, shm.buf, shm)

    @property
    def shm_name(self) -> str | None:
        return None if self._shm is None else self._shm.name

    def publish_params(self, values: np.ndarray) -> None:
        """Controller side: write the free slot, then publish it."""
        seq = int(self.header[PARAMS_SEQ])
        self.params[(seq + 1) % 2, :] = values
        self.header[PARAMS_SEQ] = seq + 1

    def push_midi(self, param: int, kind: int, value: float, time_ns: int) -> bool:
        """MIDI side (one writer): queue an event; False if the ring is full."""
        written = int(self.header[MIDI_WRITTEN])
        if written - int(self.header[MIDI_APPLIED]) >= MIDI_RING:
            self.header[MIDI_DROPPED] += 1
            return False
        i = written % MIDI_RING
        self.midi_param[i] = param
        self.midi_kind[i] = kind
        self.midi_value[i] = value
        self.midi_time[i] = time_ns
        self.header[MIDI_WRITTEN] = written + 1
        return True

    def newest_capture(self, frames: int, out: np.ndarray) -> int:
        """Copy the newest ``frames`` captured samples into ``out``; returns the capture count."""
        written = int(self.header[CAPTURED])
        ring = self.capture
        n = ring.shape[0]
        end = written % n
        start = end - frames
        if start >= 0:
            out[:] = ring[start:end]
        else:
            out[:-start] = ring[start:]
            out[-start:] = ring[:end]
        return written

    def midi_latencies_us(self) -> np.ndarray:
        n = min(int(self.header[MIDI_LATENCIES]), LATENCY_RING)
        return np.array(self.midi_latency_us[:n], dtype=np.float64)

    def close(self, unlink: bool = False) -> None:
        if self._shm is not None:
            # drop our views first: SharedMemory refuses to close with exports alive
            for name, _, _ in self.layout.fields():
                setattr(self, name, None)
            self._shm.close()
            if unlink:
                self._shm.unlink()
            self._shm = None
