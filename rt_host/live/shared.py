"""State shared between the audio callback and the controller, without locks.

One block of memory (a ``multiprocessing.shared_memory`` segment when the
controller is a separate process, plain memory for a thread) holds:

* ``header`` (int64): the counters below;
* ``capture`` (float32 ring): the input, mixed to mono, at the JACK rate; the
  callback is its only writer and publishes how many frames it has written;
* ``params`` (float32, 2 × n): a double buffer; the controller fills the slot
  the callback is not reading, then bumps ``PARAMS_SEQ`` (a single writer, and
  x86 keeps stores in order, so the callback never sees a half-written slot);
* ``inference_ms`` (float32 ring): the controller's recent inference times.
"""

from __future__ import annotations

from dataclasses import dataclass
from multiprocessing import shared_memory

import numpy as np

CAPTURED = 0  # frames the callback has written into the capture ring
PARAMS_SEQ = 1  # predictions published
STOP = 2  # 1: the controller should exit
CONTROLLER_ALIVE = 3  # heartbeat: the controller's loop count
INFERENCES = 4  # inferences done (index into the inference_ms ring)
CONTROLLER_ERROR = 5  # 1: the controller stopped on an error
HEADER_WORDS = 8
INFERENCE_RING = 512


@dataclass(frozen=True)
class Layout:
    capture_frames: int
    n_params: int

    @property
    def sizes(self) -> tuple[int, int, int, int]:
        return (
            HEADER_WORDS * 8,
            self.capture_frames * 4,
            2 * self.n_params * 4,
            INFERENCE_RING * 4,
        )

    @property
    def nbytes(self) -> int:
        return sum(self.sizes)


class SharedState:
    """Numpy views on the shared block; see the module docstring."""

    def __init__(self, layout: Layout, buffer, shm: shared_memory.SharedMemory | None = None) -> None:
        self.layout = layout
        self._shm = shm
        off = 0
        views = []
        for dtype, count, nbytes in zip(
            (np.int64, np.float32, np.float32, np.float32),
            (HEADER_WORDS, layout.capture_frames, 2 * layout.n_params, INFERENCE_RING),
            layout.sizes,
        ):
            views.append(np.ndarray((count,), dtype=dtype, buffer=buffer, offset=off))
            off += nbytes
        self.header, self.capture, params, self.inference_ms = views
        self.params = params.reshape(2, layout.n_params)

    @classmethod
    def local(cls, layout: Layout) -> SharedState:
        """State in this process's memory (controller thread)."""
        return cls(layout, bytearray(layout.nbytes))

    @classmethod
    def create(cls, layout: Layout) -> SharedState:
        """State in a new shared-memory segment (controller process)."""
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

    def close(self, unlink: bool = False) -> None:
        if self._shm is not None:
            # drop our views first: SharedMemory refuses to close with exports alive
            self.header = self.capture = self.params = self.inference_ms = None
            self._shm.close()
            if unlink:
                self._shm.unlink()
            self._shm = None
