"""A running plugin: connect ports, activate, run blocks, deactivate, free.

lilv's ``lilv_instance_*`` helpers are inline in lilv.h, so this class calls the
plugin through its ``LV2_Descriptor`` exactly as they do.
"""

from __future__ import annotations

import weakref
from typing import TYPE_CHECKING

import numpy as np

from rt_host.errors import InstantiationError
from rt_host.lv2 import uris
from rt_host.lv2.binding import ffi, lib
from rt_host.lv2.features import InstanceFeatures

if TYPE_CHECKING:
    from rt_host.lv2.plugin import Plugin, Port

ATOM_CAPACITY = 8192  # bytes each atom output may fill (and the options' sequenceSize)
ATOM_WORDS = ATOM_CAPACITY // 4 + 4  # uint32 words per atom output buffer, header included


def _free_instance(c_instance, state: dict) -> None:
    if state.get("active"):
        deactivate = c_instance.lv2_descriptor.deactivate
        if deactivate != ffi.NULL:
            deactivate(c_instance.lv2_handle)
        state["active"] = False
    lib.lilv_instance_free(c_instance)


class Instance:
    """One instantiated plugin, with every port connected to a host buffer.

    * ``controls``: one float32 array indexed by port index; control inputs
      start at their defaults (or minimum, maximum, 0 where a plugin gives
      none, as ``lv2bench`` does). Writing ``controls[i]`` *is* a parameter
      change: the plugin reads it at its next :meth:`run`.
    * ``audio_in`` / ``audio_out``: float32 ``(ports, max_block_length)``
      buffers the audio ports start connected to; :meth:`connect` points a
      port elsewhere (zero-copy) as long as the buffer outlives the run.
    * Atom inputs receive an empty sequence; atom outputs get a fresh
      capacity before every run. CV inputs read silence.

    Use it as a context manager, or call :meth:`free` (garbage collection
    also frees it).
    """

    def __init__(
        self,
        plugin: Plugin,
        sample_rate: float,
        max_block_length: int,
        nominal_block_length: int | None = None,
        *,
        controls: np.ndarray | None = None,
        atom_out: np.ndarray | None = None,
    ) -> None:
        self.plugin = plugin
        self.sample_rate = sample_rate
        self.max_block_length = max_block_length
        world = plugin.world
        self._features = InstanceFeatures(world.urid_map, sample_rate, max_block_length, nominal_block_length)
        c = lib.lilv_plugin_instantiate(plugin._c, sample_rate, self._features.array)
        if c == ffi.NULL:
            raise InstantiationError(
                f"plugin {plugin.name!r} failed to instantiate at {sample_rate:g} Hz "
                f"(it requires: {', '.join(plugin.required_features) or 'no features'})"
            )
        self._c = c
        self._state = {"active": False}
        self._finalizer = weakref.finalize(self, _free_instance, c, self._state)
        desc = c.lv2_descriptor
        self.handle = c.lv2_handle
        self.run_function = desc.run  # (handle, n_frames); see Chain for the hot loop
        self._connect_port = desc.connect_port
        self._activate = desc.activate
        self._deactivate = desc.deactivate
        self._connected: dict[int, object] = {}
        self._connect_all(world, controls, atom_out)

    @staticmethod
    def atom_output_count(plugin: Plugin) -> int:
        return sum(1 for p in plugin.ports if p.kind == "atom" and p.is_output)

    @property
    def run_address(self) -> int:
        """Address of the plugin's ``run`` function (for native block loops)."""
        return int(ffi.cast("uintptr_t", self.run_function))

    @property
    def handle_address(self) -> int:
        return int(ffi.cast("uintptr_t", self.handle))

    # --- set-up ---------------------------------------------------------------
    def _connect_all(self, world, controls, atom_out) -> None:
        ports = self.plugin.ports
        if controls is None:
            controls = np.zeros(len(ports), dtype=np.float32)
        if controls.shape != (len(ports),) or controls.dtype != np.float32:
            raise ValueError(f"controls must be float32 of shape ({len(ports)},)")
        self.controls = controls
        for p in ports:
            if p.kind == "control" and p.is_input:
                self.controls[p.index] = _initial_value(p)
        self._controls_c = ffi.from_buffer("float[]", self.controls)
        audio_in = [p for p in ports if p.kind == "audio" and p.is_input]
        audio_out = [p for p in ports if p.kind == "audio" and p.is_output]
        self.audio_in = np.zeros((len(audio_in), self.max_block_length), dtype=np.float32)
        self.audio_out = np.zeros((len(audio_out), self.max_block_length), dtype=np.float32)
        self._silence = np.zeros(self.max_block_length, dtype=np.float32)
        self._scratch = np.zeros(self.max_block_length, dtype=np.float32)

        m = world.urid_map.map
        self._atom_seq, self._atom_chunk = m(uris.ATOM_SEQUENCE), m(uris.ATOM_CHUNK)
        n_atom_in = sum(1 for p in ports if p.kind == "atom" and p.is_input)
        n_atom_out = sum(1 for p in ports if p.kind == "atom" and p.is_output)
        # header words: [size, type, unit, pad]; outputs get a fresh capacity every run.
        self._atom_in = np.zeros((max(n_atom_in, 1), 4), dtype=np.uint32)
        self._atom_in[:, 0] = 8  # sizeof(LV2_Atom_Sequence_Body): empty sequence
        self._atom_in[:, 1] = self._atom_seq
        if atom_out is None:
            atom_out = np.zeros((max(n_atom_out, 1), ATOM_WORDS), dtype=np.uint32)
        if atom_out.shape != (max(n_atom_out, 1), ATOM_WORDS) or atom_out.dtype != np.uint32:
            raise ValueError(f"atom_out must be uint32 of shape ({max(n_atom_out, 1)}, {ATOM_WORDS})")
        self._atom_out = atom_out
        self._atom_out_reset = np.array([ATOM_CAPACITY, self._atom_chunk], dtype=np.uint32)
        self._has_atom_out = n_atom_out > 0
        self._atom_out[:, :2] = self._atom_out_reset

        i_in = i_out = a_in = a_out = 0
        for p in ports:
            if p.kind == "control":
                self._connect_port(self.handle, p.index, self._controls_c + p.index)
            elif p.kind == "audio" and p.is_input:
                self.connect(p.index, self.audio_in[i_in])
                i_in += 1
            elif p.kind == "audio":
                self.connect(p.index, self.audio_out[i_out])
                i_out += 1
            elif p.kind == "cv":
                self.connect(p.index, self._silence if p.is_input else self._scratch)
            elif p.kind == "atom" and p.is_input:
                self.connect(p.index, self._atom_in[a_in])
                a_in += 1
            elif p.kind == "atom":
                self.connect(p.index, self._atom_out[a_out])
                a_out += 1
            elif not p.optional:
                self.free()
                raise InstantiationError(
                    f"plugin {self.plugin.name!r} has a {p.kind} port {p.symbol!r} this host cannot connect"
                )

    # --- ports ------------------------------------------------------------------
    def connect(self, index: int, buffer: np.ndarray) -> None:
        """Point port ``index`` at ``buffer`` (a C-contiguous numpy array).

        The instance keeps a reference, so the buffer lives while connected.
        """
        if not buffer.flags.c_contiguous:
            raise ValueError("port buffers must be C-contiguous")
        cbuf = ffi.from_buffer(buffer)
        self._connected[index] = (buffer, cbuf)
        self._connect_port(self.handle, index, cbuf)

    def port(self, symbol: str) -> Port:
        return self.plugin.port(symbol)

    def __getitem__(self, symbol: str) -> float:
        """The current value of a control port, by symbol."""
        return float(self.controls[self.plugin.port(symbol).index])

    def __setitem__(self, symbol: str, value: float) -> None:
        """Set a control input by symbol (no clamping: see :meth:`set_control`)."""
        port = self.plugin.port(symbol)
        if not port.is_control_input:
            raise ValueError(f"port {symbol!r} is not a control input")
        self.controls[port.index] = value

    def set_control(self, symbol: str, value: float) -> float:
        """Set a control input, clamped to its range; returns the value set."""
        port = self.plugin.port(symbol)
        if not port.is_control_input:
            raise ValueError(f"port {symbol!r} is not a control input")
        value = port.clamp(float(value))
        self.controls[port.index] = value
        return value

    @property
    def latency(self) -> int:
        """Latency in samples from the plugin's latency port (0 if none).

        Plugins write it during :meth:`run`: it reads 0 before the first one.
        """
        port = self.plugin.latency_port
        return int(round(float(self.controls[port.index]))) if port else 0

    # --- life cycle ---------------------------------------------------------
    @property
    def active(self) -> bool:
        return self._state["active"]

    def activate(self) -> None:
        """Get ready to run; the LV2 spec says this resets the plugin's state."""
        if not self._state["active"]:
            if self._activate != ffi.NULL:
                self._activate(self.handle)
            self._state["active"] = True

    def deactivate(self) -> None:
        if self._state["active"]:
            if self._deactivate != ffi.NULL:
                self._deactivate(self.handle)
            self._state["active"] = False

    def reset(self) -> None:
        """Clear the plugin's internal state: deactivate, then activate."""
        self.deactivate()
        self.activate()

    def run(self, n_frames: int) -> None:
        """Process ``n_frames`` (≤ ``max_block_length``) from/to the connected buffers."""
        if not 0 <= n_frames <= self.max_block_length:
            raise ValueError(
                f"block of {n_frames} frames; this instance takes at most {self.max_block_length}"
            )
        if not self._state["active"]:
            self.activate()
        if self._has_atom_out:
            self._atom_out[:, :2] = self._atom_out_reset
        self.run_function(self.handle, n_frames)

    def reset_atom_outputs(self) -> None:
        """Give atom outputs a fresh capacity; call before each direct run_function call."""
        if self._has_atom_out:
            self._atom_out[:, :2] = self._atom_out_reset

    @property
    def has_atom_outputs(self) -> bool:
        return self._has_atom_out

    def free(self) -> None:
        """Deactivate and free the plugin now; the instance is unusable after."""
        self._finalizer()
        self._connected.clear()

    def __enter__(self) -> Instance:
        return self

    def __exit__(self, *exc) -> None:
        self.free()

    def __repr__(self) -> str:
        return f"<Instance {self.plugin.name!r} @ {self.sample_rate:g} Hz>"


def _initial_value(port: Port) -> float:
    for v in (port.default, port.minimum, port.maximum):
        if v is not None:
            return v
    return 0.0
