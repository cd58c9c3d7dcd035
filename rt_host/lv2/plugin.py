"""Plugins and their ports, as lilv describes them (no instance needed)."""

from __future__ import annotations

import difflib
import math
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from rt_host.errors import InstantiationError, PortNotFound
from rt_host.lv2 import uris
from rt_host.lv2.binding import (
    ffi,
    lib,
    node_value,
    owned_node_value,
    owned_nodes_values,
    text,
)

if TYPE_CHECKING:
    from rt_host.lv2.instance import Instance
    from rt_host.lv2.world import World

_KINDS = (
    ("audio", uris.AUDIO_PORT),
    ("control", uris.CONTROL_PORT),
    ("atom", uris.ATOM_PORT),
    ("cv", uris.CV_PORT),
    ("event", uris.EVENT_PORT),
)


# units:* names (http://lv2plug.in/ns/extensions/units) as people write them
UNIT_LABELS = {"hz": "Hz", "khz": "kHz", "db": "dB", "ms": "ms", "s": "s", "pc": "%", "coef": "",
               "bpm": "BPM", "semitone12TET": "semitones", "cent": "cents", "oct": "octaves"}  # fmt: skip


@dataclass(frozen=True)
class Port:
    """One port of a plugin: what it carries, which way, and its value range.

    ``minimum``/``maximum``/``default`` are None where the plugin gives none.
    ``is_latency`` marks the control output through which a plugin reports
    its latency in samples.
    """

    index: int
    symbol: str
    name: str
    direction: str  # "input" or "output"
    kind: str  # "audio", "control", "atom", "cv", "event" or "unknown"
    minimum: float | None = None
    maximum: float | None = None
    default: float | None = None
    toggled: bool = False
    integer: bool = False
    enumeration: bool = False
    logarithmic: bool = False
    optional: bool = False
    is_latency: bool = False
    unit: str | None = None
    scale_points: tuple[tuple[float, str], ...] = field(default=())

    @property
    def is_input(self) -> bool:
        return self.direction == "input"

    @property
    def is_output(self) -> bool:
        return self.direction == "output"

    @property
    def is_control_input(self) -> bool:
        return self.kind == "control" and self.direction == "input"

    @property
    def is_hz(self) -> bool:
        return self.unit == uris.UNIT_HZ

    @property
    def unit_label(self) -> str:
        """The unit as people write it ("Hz", "dB", "ms", "%" …), "" when the plugin names none."""
        if not self.unit:
            return ""
        short = self.unit.rsplit("#", 1)[-1]
        return UNIT_LABELS.get(short, short)

    def clamp(self, value: float) -> float:
        """``value`` limited to the port's declared range."""
        if self.minimum is not None and value < self.minimum:
            return self.minimum
        if self.maximum is not None and value > self.maximum:
            return self.maximum
        return value

    def describe_range(self) -> str:
        """A short human summary: range, default and the port's properties."""

        def fmt(v: float | None) -> str:
            return "?" if v is None else f"{v:g}"

        flags = [
            name
            for name, on in (
                ("toggled", self.toggled),
                ("integer", self.integer),
                ("enum", self.enumeration),
                ("log", self.logarithmic),
                ("latency", self.is_latency),
                ("optional", self.optional),
            )
            if on
        ]
        out = f"{fmt(self.minimum)} … {fmt(self.maximum)}, default {fmt(self.default)}"
        if self.unit:
            out += f" [{self.unit.rsplit('#', 1)[-1]}]"
        if flags:
            out += "  (" + ", ".join(flags) + ")"
        return out


class Plugin:
    """An installed LV2 plugin: its identity, ports and required features.

    Get one from :meth:`rt_host.lv2.World.plugin`; make a running copy with
    :meth:`instantiate`.
    """

    def __init__(self, world: World, c_plugin) -> None:
        self.world = world
        self._c = c_plugin
        self.uri: str = text(lib.lilv_node_as_uri(lib.lilv_plugin_get_uri(c_plugin)))
        self._name: str | None = None
        self._ports: tuple[Port, ...] | None = None

    # --- identity -----------------------------------------------------------
    @property
    def name(self) -> str:
        if self._name is None:
            self._name = owned_node_value(lib.lilv_plugin_get_name(self._c)) or self.uri
        return self._name

    @property
    def class_label(self) -> str:
        cls = lib.lilv_plugin_get_class(self._c)
        return text(lib.lilv_node_as_string(lib.lilv_plugin_class_get_label(cls))) or "Plugin"

    @property
    def author(self) -> str | None:
        return owned_node_value(lib.lilv_plugin_get_author_name(self._c))

    @property
    def bundle_uri(self) -> str:
        return text(lib.lilv_node_as_uri(lib.lilv_plugin_get_bundle_uri(self._c)))

    @property
    def required_features(self) -> list[str]:
        return owned_nodes_values(lib.lilv_plugin_get_required_features(self._c))

    @property
    def optional_features(self) -> list[str]:
        return owned_nodes_values(lib.lilv_plugin_get_optional_features(self._c))

    def __repr__(self) -> str:
        return f"<Plugin {self.name!r} {self.uri}>"

    # --- ports --------------------------------------------------------------
    @property
    def ports(self) -> tuple[Port, ...]:
        """All ports, in index order (read from lilv once, then cached)."""
        if self._ports is None:
            self._ports = tuple(self._read_ports())
        return self._ports

    def port(self, symbol: str) -> Port:
        """The port with this symbol; the error names close matches."""
        for p in self.ports:
            if p.symbol == symbol:
                return p
        close = difflib.get_close_matches(symbol, [p.symbol for p in self.ports], n=4)
        hint = f"; did you mean {', '.join(close)}?" if close else ""
        raise PortNotFound(f"plugin {self.name!r} has no port {symbol!r}{hint}")

    def ports_of(self, kind: str, direction: str) -> list[Port]:
        """Ports of one kind ("audio", "control", …) and direction, in order."""
        return [p for p in self.ports if p.kind == kind and p.direction == direction]

    @property
    def audio_inputs(self) -> list[Port]:
        return self.ports_of("audio", "input")

    @property
    def audio_outputs(self) -> list[Port]:
        return self.ports_of("audio", "output")

    @property
    def control_inputs(self) -> list[Port]:
        return self.ports_of("control", "input")

    @property
    def latency_port(self) -> Port | None:
        """The control output reporting latency, if the plugin has one."""
        for p in self.ports:
            if p.is_latency and p.kind == "control" and p.is_output:
                return p
        return None

    def _read_ports(self):
        n = lib.lilv_plugin_get_num_ports(self._c)
        mins = ffi.new("float[]", n)
        maxs = ffi.new("float[]", n)
        defs = ffi.new("float[]", n)
        lib.lilv_plugin_get_port_ranges_float(self._c, mins, maxs, defs)
        node = self.world.node

        def finite(v: float) -> float | None:
            return None if math.isnan(v) else float(v)

        for i in range(n):
            cp = lib.lilv_plugin_get_port_by_index(self._c, i)
            kind = next(
                (k for k, uri in _KINDS if lib.lilv_port_is_a(self._c, cp, node(uri))),
                "unknown",
            )
            direction = "input" if lib.lilv_port_is_a(self._c, cp, node(uris.INPUT_PORT)) else "output"

            def has(prop: str, _cp=cp) -> bool:
                return bool(lib.lilv_port_has_property(self._c, _cp, node(prop)))

            designations = owned_nodes_values(lib.lilv_port_get_value(self._c, cp, node(uris.DESIGNATION)))
            units = owned_nodes_values(lib.lilv_port_get_value(self._c, cp, node(uris.UNIT)))
            symbol = text(lib.lilv_node_as_string(lib.lilv_port_get_symbol(self._c, cp)))
            yield Port(
                index=i,
                symbol=symbol,
                name=owned_node_value(lib.lilv_port_get_name(self._c, cp)) or symbol,
                direction=direction,
                kind=kind,
                minimum=finite(mins[i]),
                maximum=finite(maxs[i]),
                default=finite(defs[i]),
                toggled=has(uris.TOGGLED),
                integer=has(uris.INTEGER),
                enumeration=has(uris.ENUMERATION),
                logarithmic=has(uris.LOGARITHMIC),
                optional=has(uris.CONNECTION_OPTIONAL),
                is_latency=uris.LATENCY in designations or has(uris.REPORTS_LATENCY),
                # LSP describes its units as blank nodes; only named units are kept.
                unit=next((u for u in units if isinstance(u, str) and "://" in u), None),
                scale_points=self._scale_points(cp),
            )

    def _scale_points(self, cp) -> tuple[tuple[float, str], ...]:
        points = lib.lilv_port_get_scale_points(self._c, cp)
        if points == ffi.NULL:
            return ()
        out = []
        try:
            it = lib.lilv_scale_points_begin(points)
            while not lib.lilv_scale_points_is_end(points, it):
                sp = lib.lilv_scale_points_get(points, it)
                value = node_value(lib.lilv_scale_point_get_value(sp))
                label = node_value(lib.lilv_scale_point_get_label(sp))
                out.append((float(value), str(label)))
                it = lib.lilv_scale_points_next(points, it)
        finally:
            lib.lilv_scale_points_free(points)
        return tuple(sorted(out))

    # --- running ------------------------------------------------------------
    def missing_features(self) -> list[str]:
        """Features the plugin requires that this host does not offer."""
        from rt_host.lv2.features import SUPPORTED_FEATURES

        return [f for f in self.required_features if f not in SUPPORTED_FEATURES]

    def instantiate(
        self,
        sample_rate: float,
        max_block_length: int = 4096,
        nominal_block_length: int | None = None,
        **buffers,
    ) -> Instance:
        """A new running instance at ``sample_rate``.

        Control inputs start at their defaults; see :class:`Instance` (and its
        ``controls``/``atom_out`` keywords for host-owned buffers).
        Raises :class:`InstantiationError` naming any feature the host lacks.
        """
        from rt_host.lv2.instance import Instance

        missing = self.missing_features()
        if missing:
            raise InstantiationError(
                f"plugin {self.name!r} needs host feature(s) this host lacks: " + ", ".join(missing)
            )
        if not (sample_rate > 0 and math.isfinite(sample_rate)):
            raise InstantiationError(f"invalid sample rate {sample_rate!r}")
        if max_block_length < 1:
            raise InstantiationError(f"invalid maximum block length {max_block_length}")
        return Instance(self, float(sample_rate), int(max_block_length), nominal_block_length, **buffers)

    def describe(self) -> str:
        """A readable multi-line description, like ``lv2info`` but shorter."""
        lines = [
            f"{self.name}",
            f"  URI:       {self.uri}",
            f"  class:     {self.class_label}",
        ]
        if self.author:
            lines.append(f"  author:    {self.author}")
        req = self.required_features
        lines.append(f"  requires:  {', '.join(req) if req else '(no features)'}")
        missing = self.missing_features()
        if missing:
            lines.append(f"  MISSING:   {', '.join(missing)} (this host cannot run it)")
        lat = self.latency_port
        lines.append(f"  latency:   {'port ' + repr(lat.symbol) if lat else 'none reported'}")
        for title, kind, direction in (
            ("audio in", "audio", "input"),
            ("audio out", "audio", "output"),
            ("control in", "control", "input"),
            ("control out", "control", "output"),
        ):
            group = self.ports_of(kind, direction)
            if not group:
                continue
            lines.append(f"  {title} ({len(group)}):")
            for p in group:
                row = f"    {p.index:3d} {p.symbol:<16} {p.name:<32}"
                if kind == "control":
                    row += " " + p.describe_range()
                lines.append(row.rstrip())
                if p.scale_points and len(p.scale_points) <= 16:
                    pts = ", ".join(f"{v:g}={label}" for v, label in p.scale_points)
                    lines.append(f"        {pts}")
        other = [p for p in self.ports if p.kind not in ("audio", "control")]
        if other:
            lines.append(f"  other ({len(other)}):")
            lines.extend(f"    {p.index:3d} {p.symbol:<16} {p.kind} {p.direction}" for p in other)
        return "\n".join(lines)
