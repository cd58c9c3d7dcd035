"""Named numpy arrays in one block of shared memory, for moving audio to workers.

The parent creates a :class:`SharedArrays` for a batch, writes its inputs into
the arrays, and sends workers only the small picklable :attr:`SharedArrays.handle`;
a worker :meth:`~SharedArrays.attach`\\ es to it once and reads and writes the
same memory — audio is never pickled.

Only the creator unlinks the block. Python 3.11 registers every *attached*
block with the resource tracker too, which would unlink it (with a warning)
when a worker exits; :meth:`SharedArrays.attach` skips that registration.
"""

from __future__ import annotations

import secrets
from multiprocessing import resource_tracker
from multiprocessing.shared_memory import SharedMemory

import numpy as np

ALIGN = 64  # bytes; every array starts on a cache line

Layout = dict[str, tuple[tuple[int, ...], str]]  # name → (shape, dtype string)


def _offsets(layout: Layout) -> tuple[dict[str, int], int]:
    offsets, end = {}, 0
    for name, (shape, dtype) in layout.items():
        end = -(-end // ALIGN) * ALIGN
        offsets[name] = end
        end += int(np.prod(shape, dtype=np.int64)) * np.dtype(dtype).itemsize
    return offsets, max(end, 1)


class SharedArrays:
    """Arrays ``name → (shape, dtype)`` laid out in one shared-memory block.

    >>> arena = SharedArrays({"x": ((16, 2, 40960), "float32"), "u": ((16, 53), "float64")})
    >>> arena["x"][:] = batch               # the parent writes
    >>> remote = SharedArrays.attach(arena.handle)   # in a worker: the same memory
    >>> arena.close(); arena.unlink()       # the creator frees it
    """

    def __init__(self, layout: Layout, *, _shm: SharedMemory | None = None) -> None:
        self.layout = {
            k: (tuple(int(d) for d in shape), str(np.dtype(dt))) for k, (shape, dt) in layout.items()
        }
        offsets, size = _offsets(self.layout)
        self.owner = _shm is None
        # Short random names: macOS limits them to 31 characters.
        self._shm = _shm or SharedMemory(name=f"dafx-{secrets.token_hex(6)}", create=True, size=size)
        self.arrays = {
            name: np.ndarray(shape, dtype=dtype, buffer=self._shm.buf, offset=offsets[name])
            for name, (shape, dtype) in self.layout.items()
        }

    @property
    def name(self) -> str:
        return self._shm.name

    @property
    def handle(self) -> tuple[str, Layout]:
        """What a worker needs to attach: the block's name and the layout."""
        return self._shm.name, self.layout

    @classmethod
    def attach(cls, handle: tuple[str, Layout]) -> SharedArrays:
        """The arrays of a block another process created (not unlinked by us)."""
        name, layout = handle
        register = resource_tracker.register
        resource_tracker.register = lambda *args, **kwargs: None
        try:
            shm = SharedMemory(name=name)
        finally:
            resource_tracker.register = register
        return cls(layout, _shm=shm)

    def fits(self, layout: Layout) -> bool:
        """True when this block already has exactly ``layout``."""
        other = {k: (tuple(int(d) for d in s), str(np.dtype(t))) for k, (s, t) in layout.items()}
        return other == self.layout

    def __getitem__(self, name: str) -> np.ndarray:
        return self.arrays[name]

    def close(self) -> None:
        """Drop this process's mapping (the arrays become unusable)."""
        self.arrays = {}
        try:
            self._shm.close()
        except BufferError:  # a view escaped; the mapping goes when it is collected
            pass

    def unlink(self) -> None:
        """Free the block for everyone (creator only)."""
        if self.owner:
            try:
                self._shm.unlink()
            except FileNotFoundError:
                pass
