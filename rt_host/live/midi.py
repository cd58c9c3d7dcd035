"""MIDI control: a person takes any parameter from the model, and gives it back.

A receiver in its own process (python-rtmidi; ALSA where ``/dev/snd/seq``
exists, JACK MIDI otherwise) turns Control Change messages into events in the
shared ring (:mod:`.shared`); the audio callback applies them at the start of
the next block with the same smoothing as predictions. Keeping rtmidi's Python
callback out of the audio process keeps it from competing for the GIL with the
JACK callback (a flood of 10,000 CC/s is 10,000 Python calls a second).

A map file (TOML) says which controller moves which parameter::

    [release]            # hands every held parameter back to the model
    cc = 64              # … when this CC goes ≥ 64 (a button), and/or
    note = 60            # … on this note-on
    channel = 1

    [[cc]]
    channel = 1          # 1–16
    cc = 21
    param = "limiter.th" # a predicted parameter of the chain ("stage.symbol")
    min = 0.25           # optional: the knob's range in port values (default: the parameter's)
    max = 1.0
    curve = "log"        # optional: linear | log (default: the parameter's)
    mode = "replace"     # replace: the knob sets the value; offset: it adds to the model's
    offset_range = 0.25  # offset mode: ± this much of the normalized range
    release_cc = 22      # optional: this CC (≥ 64) hands just this parameter back

Soft take-over: a knob that sits far from the current value does nothing
until it passes through that value (within ``PICKUP_TOLERANCE``), so taking a
parameter over never jumps.
"""

from __future__ import annotations

import multiprocessing as mp
import os
import re
import sys
import time
import tomllib
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from rt_host.errors import ChainError, DeepAFxError
from rt_host.lifeline import become_child, stop_child
from rt_host.live import shared
from rt_host.lv2.parameters import to_normalized, to_port

PICKUP_TOLERANCE = 0.03  # normalized: how close a knob must come to take over
AMOUNT = "amount"  # a map's `param = "amount"`: the knob blends every model-set parameter (0 … 100 %)


class MidiError(DeepAFxError):
    """A MIDI port or map file problem."""


def midi_api() -> int:
    """ALSA where the sequencer exists, JACK MIDI otherwise."""
    import rtmidi

    if os.path.exists("/dev/snd/seq") and rtmidi.API_LINUX_ALSA in rtmidi.get_compiled_api():
        return rtmidi.API_LINUX_ALSA
    return rtmidi.API_UNIX_JACK


def api_name(api: int) -> str:
    import rtmidi

    return {rtmidi.API_LINUX_ALSA: "ALSA", rtmidi.API_UNIX_JACK: "JACK MIDI"}.get(api, str(api))


def list_ports(api: int | None = None) -> list[str]:
    """MIDI sources (outputs of other programs) we could listen to."""
    import rtmidi

    probe = rtmidi.MidiIn(rtapi=midi_api() if api is None else api, name="deepafx-rt-probe")
    try:
        return list(probe.get_ports())
    finally:
        probe.delete()


def resolve_port(query: str, api: int | None = None) -> str:
    """The one source whose name equals or contains ``query``; errors list what exists."""
    ports = list_ports(api)
    exact = [p for p in ports if p == query]
    hits = exact or [p for p in ports if query.lower() in p.lower()]
    if len(hits) == 1:
        return hits[0]
    available = ", ".join(ports) if ports else "none"
    what = "matches several" if hits else "matches no"
    raise MidiError(
        f"--midi-in {query!r} {what} MIDI port ({api_name(api or midi_api())}); available: {available}"
    )


# --- the map -------------------------------------------------------------------
@dataclass
class Mapping:
    channel: int
    cc: int
    param: str
    min: float | None = None
    max: float | None = None
    curve: str | None = None
    mode: str = "replace"
    offset_range: float = 0.25
    release_cc: int | None = None


@dataclass
class MidiMap:
    mappings: list[Mapping] = field(default_factory=list)
    release_cc: int | None = None
    release_note: int | None = None
    release_channel: int = 1
    path: Path | None = None

    # reading ---------------------------------------------------------------
    @classmethod
    def load(cls, path: str | Path, parameter_names: list[str]) -> MidiMap:
        """Read and check a map; every error names the file and line."""
        path = Path(path)
        try:
            text = path.read_text(encoding="utf-8")
        except OSError as exc:
            raise MidiError(f"cannot read MIDI map {path}: {exc.strerror}") from None
        try:
            data = tomllib.loads(text)
        except tomllib.TOMLDecodeError as exc:
            raise MidiError(f"{path}: {exc}") from None  # tomllib says "(at line N, column M)"
        rows = text.splitlines()
        lines = [i + 1 for i, line in enumerate(rows) if re.match(r"\s*\[\[\s*cc\s*\]\]", line)]
        release_line = next((i + 1 for i, line in enumerate(rows) if re.match(r"\s*\[\s*release", line)), 1)
        unknown = set(data) - {"cc", "release"}
        if unknown:
            raise MidiError(
                f"{path}: unknown table(s) {', '.join(sorted(unknown))}; expected [[cc]] and [release]"
            )
        m = cls(path=path)
        rel = data.get("release", {})
        where = f"{path}, line {release_line}"
        bad = set(rel) - {"cc", "note", "channel"}
        if bad:
            raise MidiError(f"{where}: unknown key(s) {', '.join(sorted(bad))} in [release]")
        m.release_cc = _int(rel.get("cc"), 0, 127, "cc", where)
        m.release_note = _int(rel.get("note"), 0, 127, "note", where)
        m.release_channel = _int(rel.get("channel", 1), 1, 16, "channel", where)
        names = set(parameter_names)
        seen = {}
        for k, entry in enumerate(data.get("cc", [])):
            where = f"{path}, line {lines[k] if k < len(lines) else '?'}"
            bad = set(entry) - set(Mapping.__dataclass_fields__)
            if bad:
                raise MidiError(f"{where}: unknown key(s) {', '.join(sorted(bad))}")
            for key in ("channel", "cc", "param"):
                if key not in entry:
                    raise MidiError(f"{where}: missing '{key}'")
            param = entry["param"]
            if param not in names and param != AMOUNT:
                import difflib

                close = difflib.get_close_matches(str(param), [*names, AMOUNT], n=3)
                hint = f"; did you mean {', '.join(close)}?" if close else ""
                raise MidiError(f"{where}: {param!r} is not a predicted parameter of the chain{hint}")
            mapping = Mapping(
                channel=_int(entry["channel"], 1, 16, "channel", where),
                cc=_int(entry["cc"], 0, 127, "cc", where),
                param=param,
                min=_float(entry.get("min"), "min", where),
                max=_float(entry.get("max"), "max", where),
                curve=entry.get("curve"),
                mode=entry.get("mode", "replace"),
                offset_range=_float(entry.get("offset_range", 0.25), "offset_range", where),
                release_cc=_int(entry.get("release_cc"), 0, 127, "release_cc", where),
            )
            if mapping.curve not in (None, "linear", "log"):
                raise MidiError(f"{where}: curve must be linear or log")
            if mapping.mode not in ("replace", "offset"):
                raise MidiError(f"{where}: mode must be replace or offset")
            if not 0.0 < mapping.offset_range <= 1.0:
                raise MidiError(
                    f"{where}: offset_range must be above 0 and at most 1, a fraction of the "
                    f"parameter's normalized range (got {mapping.offset_range:g})"
                )
            if mapping.min is not None and mapping.min == mapping.max:
                raise MidiError(f"{where}: min and max are both {mapping.min:g}; the knob would do nothing")
            key = (mapping.channel, mapping.cc)
            if key in seen:
                raise MidiError(f"{where}: channel {key[0]} CC {key[1]} is already mapped (line {seen[key]})")
            seen[key] = lines[k] if k < len(lines) else "?"
            m.mappings.append(mapping)
        return m

    # writing ---------------------------------------------------------------
    def to_dict(self) -> dict:
        out: dict = {}
        rel = {k: v for k, v in (("cc", self.release_cc), ("note", self.release_note)) if v is not None}
        if rel:
            out["release"] = rel | {"channel": self.release_channel}
        out["cc"] = [{k: v for k, v in asdict(m).items() if v is not None} for m in self.mappings]
        return out

    def save(self, path: str | Path) -> None:
        import tomli_w

        Path(path).write_text(tomli_w.dumps(self.to_dict()), encoding="utf-8")

    def bind(self, channel: int, cc: int, param: str) -> Mapping:
        """Map (channel, cc) to ``param``, replacing any mapping of either."""
        self.mappings = [m for m in self.mappings if (m.channel, m.cc) != (channel, cc) and m.param != param]
        mapping = Mapping(channel=channel, cc=cc, param=param)
        self.mappings.append(mapping)
        return mapping


def _int(v, lo: int, hi: int, key: str, where: str) -> int | None:
    if v is None:
        return None
    if not isinstance(v, int) or isinstance(v, bool) or not lo <= v <= hi:
        raise MidiError(f"{where}: {key} must be a whole number from {lo} to {hi} (got {v!r})")
    return v


def _float(v, key: str, where: str) -> float | None:
    """A finite number from the map (:func:`rt_host.lv2.chain.finite_number`, the host's one check)."""
    from rt_host.lv2.chain import finite_number

    if v is None:
        return None
    try:
        return finite_number(v, key)
    except ChainError as exc:
        raise MidiError(f"{where}: {exc}") from None


def default_map_path(chain_name: str, bundle_path: Path | None) -> Path | None:
    """The map that ships with a bundle, else with the chain (``chains/NAME.midi.toml``)."""
    from rt_host.lv2.spec import builtin_chain_dir

    for candidate in (
        bundle_path / "midi-map.toml" if bundle_path else None,
        builtin_chain_dir() / f"{chain_name}.midi.toml",
    ):
        if candidate is not None and candidate.is_file():
            return candidate
    return None


# --- the receiver ----------------------------------------------------------------
@dataclass
class CompiledMapping:
    """A mapping resolved against the chain: CC value → normalized parameter value.

    The knob turns over ``knob_row`` (port values ``min`` … ``max`` on its curve) and
    the value is normalized with the parameter's own row: the one mapping kernel
    (:mod:`rt_host.lv2.parameters`), not a copy of its arithmetic.
    """

    param_index: int
    knob_row: np.ndarray  # a ParameterTable row: the knob's ends in port values, its curve
    param_row: np.ndarray  # the parameter's row
    mode: str
    offset_range: float
    release_cc: int | None

    def normalized(self, value: int) -> float:
        t = value / 127.0
        if self.mode == "offset":
            return (2.0 * t - 1.0) * self.offset_range
        return float(to_normalized(to_port(t, self.knob_row), self.param_row))


def compile_map(midi_map: MidiMap, chain) -> dict[tuple[int, int], CompiledMapping]:
    out = {}
    for m in midi_map.mappings:
        if m.param == AMOUNT:  # 0 … 127 → 0 … 100 %, linear
            row = np.array([0.0, 1.0, 0.0, 0.0, np.inf])
            out[(m.channel, m.cc)] = CompiledMapping(-1, row, row, AMOUNT, 0.0, m.release_cc)
            continue
        j = chain.parameter_names.index(m.param)
        p = chain.parameters[j]
        lo_v = p.minimum if m.min is None else m.min
        hi_v = p.maximum if m.max is None else m.max
        log = (p.scale == "log") if m.curve is None else m.curve == "log"
        if log and (lo_v <= 0 or hi_v <= 0):
            raise MidiError(f"{midi_map.path}: {m.param}: a log curve needs a positive range")
        knob = np.array([lo_v, hi_v, float(log), 0.0, np.inf], dtype=np.float64)
        out[(m.channel, m.cc)] = CompiledMapping(
            param_index=j,
            knob_row=knob,
            param_row=p.row(),
            mode=m.mode,
            offset_range=m.offset_range,
            release_cc=m.release_cc,
        )
    return out


# what parse_midi finds in an event's bytes
CHANNEL = "channel"  # a complete channel message: (CHANNEL, status, data1, data2)
SYSEX = "sysex"  # a complete SysEx (F0 … F7): ignored
FRAGMENT = "sysex fragment"  # a SysEx cut short by a status byte or the end of the event: dropped
OTHER = "other"  # system common/real-time messages, stray data bytes, incomplete messages: ignored
_DATA_BYTES = {0x80: 2, 0x90: 2, 0xA0: 2, 0xB0: 2, 0xC0: 1, 0xD0: 1, 0xE0: 2}
_COMMON_DATA_BYTES = {0xF1: 1, 0xF2: 2, 0xF3: 1}  # F4, F5 (undefined), F6, F7: none


def parse_midi(data) -> list[tuple[str, int, int, int]]:
    """Split the bytes of one MIDI event into messages the way MIDI 1.0 reads a byte stream.

    ``[(kind, status, data1, data2), …]`` with ``kind`` one of :data:`CHANNEL`,
    :data:`SYSEX`, :data:`FRAGMENT`, :data:`OTHER`. A SysEx ends at ``F7`` *or at
    the next status byte* (real-time bytes F8–FF may sit inside it and end
    nothing): an unterminated ``F0 01 02`` is one fragment, and the messages
    after it are read, not swallowed. Running status (data bytes continuing the
    last channel message) is understood. Never raises: anything malformed is
    an :data:`OTHER` or :data:`FRAGMENT` entry to count.
    """
    out: list[tuple[str, int, int, int]] = []
    running = 0  # the status that bare data bytes continue
    i, n = 0, len(data)
    while i < n:
        b = int(data[i])
        if b >= 0xF8:  # real-time: one byte, anywhere
            out.append((OTHER, b, 0, 0))
            i += 1
        elif b == 0xF0:
            j = i + 1
            while j < n and (data[j] < 0x80 or data[j] >= 0xF8):
                j += 1
            if j < n and data[j] == 0xF7:
                out.append((SYSEX, b, 0, 0))
                i = j + 1
            else:
                out.append((FRAGMENT, b, 0, 0))
                i = j  # a status byte there starts the next message
            running = 0
        elif b >= 0xF0:  # system common: F1–F7 (a lone F7 too)
            need = _COMMON_DATA_BYTES.get(b, 0)
            out.append((OTHER, b, 0, 0))
            i += 1 + min(need, _data_run(data, i + 1, need))
            running = 0
        elif b >= 0x80 or running:
            status = b if b >= 0x80 else running
            start = i + 1 if b >= 0x80 else i
            need = _DATA_BYTES[status & 0xF0]
            got = _data_run(data, start, need)
            if got < need:
                out.append((OTHER, status, 0, 0))
                i = start + got
                running = 0
                continue
            d1 = int(data[start])
            d2 = int(data[start + 1]) if need == 2 else 0
            out.append((CHANNEL, status, d1, d2))
            i = start + need
            running = status
        else:  # a data byte with nothing to continue
            out.append((OTHER, b, 0, 0))
            i += 1
    return out


def _data_run(data, start: int, need: int) -> int:
    """How many of the ``need`` bytes from ``start`` are data bytes (< 0x80)."""
    k = 0
    while k < need and start + k < len(data) and data[start + k] < 0x80:
        k += 1
    return k


class Receiver:
    """Turns MIDI messages into shared-ring events (runs in the MIDI process).

    Each event's bytes go through :func:`parse_midi`, so an event holding a
    SysEx fragment followed by Control Changes still applies the CCs. Counted
    in the shared header: every message (``MIDI_RECEIVED``), SysEx fragments
    dropped (``MIDI_SYSEX_DROPPED``), everything else not applied
    (``MIDI_IGNORED``, ``MIDI_PICKUP_WAIT``).

    rtmidi's JACK input never hands over the CCs that follow an unterminated
    SysEx: from ``F0`` on it glues every event to the SysEx until one ends in
    ``F7`` (``jackProcessIn`` in RtMidi 5.0, ``continueSysex``), then drops the
    lot as SysEx. Only an input that passes each JACK MIDI event on as it came
    (JACK-Client's MIDI ports) lets this parser save them.
    """

    def __init__(self, state: shared.SharedState, compiled, midi_map: MidiMap, learn: str | None,
                 chain=None) -> None:  # fmt: skip
        self.state = state
        self.compiled = compiled
        self.release_by_cc = {}
        for (ch, _cc), cm in compiled.items():
            if cm.release_cc is not None:
                self.release_by_cc[(ch, cm.release_cc)] = cm.param_index
        self.map = midi_map
        self.learn = learn  # a parameter name: bind it to the first CC that moves
        self.chain = chain
        self.picked_up: set[int] = set()

    def warm_up(self) -> None:
        """Run every mapping once (numba loads its compiled kernel on first use: ~0.3 s)."""
        for cm in self.compiled.values():
            cm.normalized(64)

    def __call__(self, event, _data=None, *, arrived_ns: int | None = None) -> None:
        message, _delta = event
        now = time.monotonic_ns() if arrived_ns is None else arrived_ns
        h = self.state.header
        for kind, status, d1, d2 in parse_midi(message):
            h[shared.MIDI_RECEIVED] += 1
            if kind == CHANNEL:
                self._channel_message(status, d1, d2, now)
            elif kind == FRAGMENT:
                h[shared.MIDI_SYSEX_DROPPED] += 1
            else:
                h[shared.MIDI_IGNORED] += 1

    def _channel_message(self, status: int, d1: int, d2: int, now: int) -> None:
        h = self.state.header
        kind, channel = status & 0xF0, (status & 0x0F) + 1
        m = self.map
        if (
            kind == 0x90
            and d2 > 0
            and m.release_note is not None
            and (channel, d1) == (m.release_channel, m.release_note)
        ):
            self._release_all(now)
            return
        if kind != 0xB0:
            h[shared.MIDI_IGNORED] += 1
            return
        if self.learn is not None and h[shared.MIDI_LEARNED] == 0:
            self.map.bind(channel, d1, self.learn)
            self.compiled = compile_map(self.map, self.chain)
            h[shared.MIDI_LEARNED] = (channel << 8 | d1) + 1  # the host saves the map
            self.learn = None
            return
        if m.release_cc is not None and (channel, d1) == (m.release_channel, m.release_cc):
            if d2 >= 64:
                self._release_all(now)
            return
        if (channel, d1) in self.release_by_cc:
            if d2 >= 64:
                j = self.release_by_cc[(channel, d1)]
                self.picked_up.discard(j)
                self.state.push_midi(j, shared.RELEASE, 0.0, now)
            return
        cm = self.compiled.get((channel, d1))
        if cm is None:
            h[shared.MIDI_IGNORED] += 1
            return
        j = cm.param_index
        u = cm.normalized(d2)
        if cm.mode == AMOUNT:
            self.state.push_midi(-1, shared.AMOUNT, u, now)
            return
        if cm.mode == "offset":
            self.state.push_midi(j, shared.OFFSET, u, now)
            return
        if j not in self.picked_up:
            # soft take-over: wait until the knob reaches the value being played
            current = float(self.state.applied[j])
            if abs(u - current) > PICKUP_TOLERANCE and self.state.held[j] != 1:
                h[shared.MIDI_PICKUP_WAIT] += 1
                return
            self.picked_up.add(j)
        self.state.push_midi(j, shared.SET, u, now)

    def _release_all(self, now: int) -> None:
        self.picked_up.clear()
        self.state.push_midi(-1, shared.RELEASE_ALL, 0.0, now)


def _receiver_main(shm_name, layout, map_dict, map_path, param_state, port, client_name, learn, api):
    become_child()  # a killed host must not leave this process (and its JACK MIDI port) behind
    import rtmidi

    from rt_host.lv2 import Chain, ChainSpec

    state = shared.SharedState.attach(shm_name, layout)
    midi_in = jack_in = None
    try:
        chain = Chain(ChainSpec.from_dict(param_state))
        midi_map = MidiMap(**{k: v for k, v in map_dict.items() if k != "mappings"})
        midi_map.mappings = [Mapping(**m) for m in map_dict["mappings"]]
        midi_map.path = map_path
        receiver = Receiver(state, compile_map(midi_map, chain), midi_map, learn, chain)
        receiver.warm_up()  # compile/load the mapping kernel now, not on the first knob move
        if api == rtmidi.API_UNIX_JACK:
            # our own native JACK input (rt_host.live.jack_midi): rtmidi's runs Python in the JACK thread
            from rt_host.live.jack_midi import JackMidiIn

            jack_in = JackMidiIn(client_name)
            jack_in.activate()
            if port is not None:
                jack_in.connect(port)
        else:
            midi_in = rtmidi.MidiIn(rtapi=api, name=client_name)
            midi_in.ignore_types(sysex=False, timing=True, active_sense=True)  # parse_midi reads SysEx
            if port is None:
                midi_in.open_virtual_port("midi_in")
            else:
                midi_in.open_port(midi_in.get_ports().index(port))
            midi_in.set_callback(receiver)  # ALSA calls it from rtmidi's own (not real-time) thread
        state.header[shared.MIDI_READY] = 1
        while state.header[shared.STOP] == 0:
            if jack_in is None:
                time.sleep(0.02)
                continue
            for data, arrived_ns in jack_in.read():
                receiver((data, 0.0), arrived_ns=arrived_ns)
            state.header[shared.MIDI_DROPPED_EVENTS] = jack_in.dropped
            time.sleep(0.001)
    except Exception as exc:
        print(f"deepafx-rt: error: MIDI receiver stopped: {exc}", file=sys.stderr)
        state.header[shared.MIDI_READY] = -1
    finally:
        if midi_in is not None:
            midi_in.close_port()
            midi_in.delete()
        if jack_in is not None:
            jack_in.close()
        state.close()


class MidiInput:
    """The MIDI receiver process, started and stopped by the live host."""

    def __init__(self, state, chain, midi_map: MidiMap, port: str | None, client_name: str,
                 learn: str | None = None) -> None:  # fmt: skip
        self.state, self.chain, self.map, self.port = state, chain, midi_map, port
        self.client_name, self.learn = client_name, learn
        self.api = midi_api()
        compile_map(midi_map, chain)  # errors here, before anything starts
        self._proc: mp.Process | None = None

    def start(self, timeout: float = 10.0) -> None:
        ctx = mp.get_context("spawn")
        map_dict = {
            "mappings": [asdict(m) for m in self.map.mappings],
            "release_cc": self.map.release_cc,
            "release_note": self.map.release_note,
            "release_channel": self.map.release_channel,
        }
        self.state.header[shared.MIDI_READY] = 0
        self._proc = ctx.Process(
            target=_receiver_main,
            args=(self.state.shm_name, self.state.layout, map_dict, self.map.path,
                  self.chain.spec.to_dict(), self.port, self.client_name, self.learn, self.api),
            name="deepafx-midi", daemon=True,
        )  # fmt: skip
        self._proc.start()
        deadline = time.monotonic() + timeout
        while self.state.header[shared.MIDI_READY] == 0 and time.monotonic() < deadline:
            if not self._proc.is_alive():
                break
            time.sleep(0.02)
        if self.state.header[shared.MIDI_READY] != 1:
            self.stop()
            raise MidiError("the MIDI receiver did not start (see the message above)")

    @property
    def alive(self) -> bool:
        return self._proc is not None and self._proc.is_alive()

    def learned(self) -> tuple[int, int] | None:
        v = int(self.state.header[shared.MIDI_LEARNED])
        return None if v == 0 else ((v - 1) >> 8, (v - 1) & 0xFF)

    def stop(self) -> None:
        if self._proc is not None:
            self.state.header[shared.STOP] = 1
            stop_child(self._proc)
        self._proc = None

    def counts(self) -> dict:
        h = self.state.header
        return {
            "received": int(h[shared.MIDI_RECEIVED]),
            "applied": int(h[shared.EVENTS_APPLIED + shared.MIDI]),
            "dropped": int(h[shared.EVENTS_DROPPED + shared.MIDI]),
            "ignored": int(h[shared.MIDI_IGNORED]),
            "pickup_waits": int(h[shared.MIDI_PICKUP_WAIT]),
            "sysex_fragments_dropped": int(h[shared.MIDI_SYSEX_DROPPED]),
            "events_lost_in_input": int(h[shared.MIDI_DROPPED_EVENTS]),
        }


def held_names(chain, held: np.ndarray) -> list[str]:
    return [p.name for p, h in zip(chain.parameters, held) if h]
