"""The lilv world: every installed LV2 plugin, found by URI or by name."""

from __future__ import annotations

import difflib
import threading
import weakref

from rt_host.errors import PluginNotFound
from rt_host.lv2.binding import ffi, lib
from rt_host.lv2.features import URIDMap
from rt_host.lv2.plugin import Plugin

_default_world: World | None = None
_default_lock = threading.Lock()


def _free_world(c_world, nodes: dict) -> None:
    for node in nodes.values():
        lib.lilv_node_free(node)
    nodes.clear()
    lib.lilv_world_free(c_world)


class World:
    """All LV2 plugins installed on this machine (``LV2_PATH`` or the defaults).

    >>> world = World()
    >>> limiter = world.plugin("LSP Limiter Mono")      # by name, any case
    >>> limiter = world.plugin("http://lsp-plug.in/plugins/lv2/limiter_mono")

    One world also owns the URID table its instances share. Loading takes
    ~30 ms; :meth:`default` returns a shared one.
    """

    def __init__(self) -> None:
        self._c = lib.lilv_world_new()
        lib.lilv_world_load_all(self._c)
        self._nodes: dict[str, object] = {}
        self._plugins: list[Plugin] | None = None
        self._by_uri: dict[str, Plugin] = {}
        self.urid_map = URIDMap()
        self._finalizer = weakref.finalize(self, _free_world, self._c, self._nodes)

    @classmethod
    def default(cls) -> World:
        """A process-wide world, loaded on first use."""
        global _default_world
        with _default_lock:
            if _default_world is None:
                _default_world = cls()
            return _default_world

    def node(self, uri: str):
        """A cached ``LilvNode*`` for ``uri`` (owned by the world)."""
        n = self._nodes.get(uri)
        if n is None:
            n = lib.lilv_new_uri(self._c, uri.encode())
            self._nodes[uri] = n
        return n

    def _index(self) -> dict[str, Plugin]:
        # URIs come from the manifests lilv already read; names need each
        # plugin's data files (~2 s for 300 plugins), so only listing reads them.
        if not self._by_uri:
            c_plugins = lib.lilv_world_get_all_plugins(self._c)
            it = lib.lilv_plugins_begin(c_plugins)
            while not lib.lilv_plugins_is_end(c_plugins, it):
                p = Plugin(self, lib.lilv_plugins_get(c_plugins, it))
                self._by_uri[p.uri] = p
                it = lib.lilv_plugins_next(c_plugins, it)
        return self._by_uri

    @property
    def plugins(self) -> list[Plugin]:
        """Every plugin lilv found, sorted by name (reads every plugin's data)."""
        if self._plugins is None:
            self._plugins = sorted(self._index().values(), key=lambda p: (p.name.lower(), p.uri))
        return self._plugins

    def search(self, query: str) -> list[Plugin]:
        """Plugins whose name or URI contains ``query`` (case-insensitive)."""
        q = query.lower()
        return [p for p in self.plugins if q in p.name.lower() or q in p.uri.lower()]

    def plugin(self, query: str) -> Plugin:
        """The one plugin with this URI or name.

        An exact URI wins, then an exact name (any case), then a single
        plugin whose name or URI contains ``query``. Anything else raises
        :class:`PluginNotFound` naming the candidates or close matches.
        """
        by_uri = self._index()
        if query in by_uri:
            return by_uri[query]
        q = query.lower()
        exact = [p for p in self.plugins if p.name.lower() == q]
        if len(exact) == 1:
            return exact[0]
        hits = self.search(query)
        if len(hits) == 1:
            return hits[0]
        if hits:
            names = ", ".join(f"{p.name!r}" for p in hits[:6])
            more = f" and {len(hits) - 6} more" if len(hits) > 6 else ""
            raise PluginNotFound(
                f"{query!r} matches {len(hits)} plugins ({names}{more}); give a URI or a full name"
            )
        pool = {p.name: p for p in self.plugins} | {p.uri: p for p in self.plugins}
        close = difflib.get_close_matches(query, list(pool), n=3, cutoff=0.5)
        hint = f"; close matches: {', '.join(close)}" if close else ""
        raise PluginNotFound(
            f"no installed LV2 plugin matches {query!r}{hint} "
            "(`deepafx-rt plugins` lists them; ./install.sh installs Calf, LSP and x42)"
        )

    def close(self) -> None:
        """Free the lilv world now (plugins and instances from it become invalid)."""
        self._finalizer()

    def __repr__(self) -> str:
        return f"<World {len(self.plugins)} plugins>"


__all__ = ["World", "ffi"]
