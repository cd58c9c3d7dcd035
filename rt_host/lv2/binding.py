"""The cffi handle on Debian's liblilv (ABI mode: no compiler needed).

Everything else in :mod:`rt_host.lv2` goes through ``ffi`` and ``lib`` from here,
plus a few helpers that turn lilv's nodes and collections into Python values.
"""

from __future__ import annotations

from collections.abc import Iterator

from cffi import FFI

from rt_host.errors import SetupError
from rt_host.lv2._cdefs import CDEFS

LIBRARY = "liblilv-0.so.0"

ffi = FFI()
ffi.cdef(CDEFS)

try:
    lib = ffi.dlopen(LIBRARY)
except OSError as exc:  # pragma: no cover - depends on the machine
    raise SetupError(
        f"cannot load {LIBRARY} ({exc}); install it with ./install.sh or `apt-get install liblilv-0-0`"
    ) from None


def text(char_p) -> str | None:
    """A ``const char*`` from lilv as ``str`` (None for NULL)."""
    if char_p == ffi.NULL:
        return None
    return ffi.string(char_p).decode("utf-8", "replace")


def node_value(node) -> str | float | int | bool | None:
    """The Python value of a borrowed ``LilvNode*`` (None for NULL)."""
    if node == ffi.NULL:
        return None
    if lib.lilv_node_is_int(node):
        return int(lib.lilv_node_as_int(node))
    if lib.lilv_node_is_float(node):
        return float(lib.lilv_node_as_float(node))
    if lib.lilv_node_is_bool(node):
        return text(lib.lilv_node_as_string(node)) == "true"
    return text(lib.lilv_node_as_string(node))


def owned_node_value(node) -> str | float | int | bool | None:
    """Like :func:`node_value` for a node the caller owns; frees it."""
    try:
        return node_value(node)
    finally:
        if node != ffi.NULL:
            lib.lilv_node_free(node)


def iter_nodes(nodes) -> Iterator:
    """Borrowed ``LilvNode*`` items of a ``LilvNodes*`` collection."""
    if nodes == ffi.NULL:
        return
    it = lib.lilv_nodes_begin(nodes)
    while not lib.lilv_nodes_is_end(nodes, it):
        yield lib.lilv_nodes_get(nodes, it)
        it = lib.lilv_nodes_next(nodes, it)


def owned_nodes_values(nodes) -> list:
    """Values of an owned ``LilvNodes*`` collection; frees it."""
    try:
        return [node_value(n) for n in iter_nodes(nodes)]
    finally:
        if nodes != ffi.NULL:
            lib.lilv_nodes_free(nodes)
