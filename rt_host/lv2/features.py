"""The LV2 host features this host offers, declared in one place (as jalv does).

``SUPPORTED_FEATURES`` is what a plugin may require; anything else it requires
makes :meth:`rt_host.lv2.Plugin.instantiate` fail with a message naming it.

* ``urid:map`` / ``urid:unmap`` — one URI table per :class:`~rt_host.lv2.World`,
  shared by all its instances (LSP maps ~560 URIs when it is instantiated).
* ``options:options`` — sample rate and min/max/nominal block length.
* ``buf-size:boundedBlockLength`` — the host never runs more than the maximum
  block length it announced.
"""

from __future__ import annotations

import threading

from rt_host.lv2 import uris
from rt_host.lv2.binding import ffi

SUPPORTED_FEATURES = frozenset(
    {
        uris.URID_MAP,
        uris.URID_UNMAP,
        uris.OPTIONS_OPTIONS,
        uris.BOUNDED_BLOCK_LENGTH,
    }
)

_OPTIONS_CONTEXT_INSTANCE = 0


class URIDMap:
    """A URI ↔ integer table exposed to plugins as ``urid:map`` and ``urid:unmap``.

    Plugins call it from C through cffi callbacks; the table lives as long as
    the :class:`URIDMap`. Mapping the same URI twice gives the same id.
    """

    def __init__(self) -> None:
        self._ids: dict[bytes, int] = {}
        self._uris: list = [ffi.NULL]  # id 0 is reserved ("no URI")
        self._lock = threading.Lock()
        self._map_cb = ffi.callback("LV2_URID(LV2_URID_Map_Handle, const char*)", self._c_map)
        self._unmap_cb = ffi.callback("const char*(LV2_URID_Unmap_Handle, LV2_URID)", self._c_unmap)
        self.map_struct = ffi.new("LV2_URID_Map*", [ffi.NULL, self._map_cb])
        self.unmap_struct = ffi.new("LV2_URID_Unmap*", [ffi.NULL, self._unmap_cb])
        self._map_uri = ffi.new("char[]", uris.URID_MAP.encode())
        self._unmap_uri = ffi.new("char[]", uris.URID_UNMAP.encode())
        self.map_feature = ffi.new("LV2_Feature*", [self._map_uri, self.map_struct])
        self.unmap_feature = ffi.new("LV2_Feature*", [self._unmap_uri, self.unmap_struct])

    def map(self, uri: str | bytes) -> int:
        """The id of ``uri``, allocating one on first use."""
        key = uri.encode() if isinstance(uri, str) else uri
        urid = self._ids.get(key)
        if urid is None:
            with self._lock:
                urid = self._ids.get(key)
                if urid is None:
                    urid = len(self._uris)
                    self._uris.append(ffi.new("char[]", key))
                    self._ids[key] = urid
        return urid

    def unmap(self, urid: int) -> str | None:
        """The URI of ``urid``, or None if it was never mapped."""
        if 0 < urid < len(self._uris):
            return ffi.string(self._uris[urid]).decode()
        return None

    def __len__(self) -> int:
        return len(self._ids)

    def _c_map(self, _handle, uri_p) -> int:
        if uri_p == ffi.NULL:
            return 0
        return self.map(ffi.string(uri_p))

    def _c_unmap(self, _handle, urid):
        if 0 < urid < len(self._uris):
            return self._uris[urid]
        return ffi.NULL


class InstanceFeatures:
    """The NULL-terminated ``LV2_Feature*`` array handed to one instantiation.

    Holds every C object the array points to, so keep it alive as long as the
    instance (plugins may keep the pointers they were given).
    """

    def __init__(
        self,
        urid_map: URIDMap,
        sample_rate: float,
        max_block_length: int,
        nominal_block_length: int | None = None,
        min_block_length: int = 1,
    ) -> None:
        nominal = nominal_block_length or max_block_length
        m = urid_map.map
        self._ints = ffi.new("int32_t[]", [min_block_length, max_block_length, nominal, 8192])
        self._rate = ffi.new("float*", float(sample_rate))
        atom_int, atom_float = m(uris.ATOM_INT), m(uris.ATOM_FLOAT)
        options = [
            (m(uris.MIN_BLOCK_LENGTH), 4, atom_int, self._ints + 0),
            (m(uris.MAX_BLOCK_LENGTH), 4, atom_int, self._ints + 1),
            (m(uris.NOMINAL_BLOCK_LENGTH), 4, atom_int, self._ints + 2),
            (m(uris.SEQUENCE_SIZE), 4, atom_int, self._ints + 3),
            (m(uris.SAMPLE_RATE), 4, atom_float, self._rate),
        ]
        self._options = ffi.new("LV2_Options_Option[]", len(options) + 1)  # zeroed terminator
        for slot, (key, size, type_, value) in zip(self._options, options):
            slot.context = _OPTIONS_CONTEXT_INSTANCE
            slot.subject = 0
            slot.key = key
            slot.size = size
            slot.type = type_
            slot.value = value
        self._uri_strings = [
            ffi.new("char[]", uri.encode()) for uri in (uris.OPTIONS_OPTIONS, uris.BOUNDED_BLOCK_LENGTH)
        ]
        self._own = ffi.new(
            "LV2_Feature[]",
            [[self._uri_strings[0], self._options], [self._uri_strings[1], ffi.NULL]],
        )
        self._urid_map = urid_map  # keeps the map's structs alive
        self.array = ffi.new(
            "LV2_Feature*[]",
            [urid_map.map_feature, urid_map.unmap_feature, self._own + 0, self._own + 1, ffi.NULL],
        )
