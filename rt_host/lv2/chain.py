"""A chain of LV2 plugins used as one effect: ``chain(audio, sample_rate)``.

Audio is numpy float32 shaped ``(channels, samples)``. A model drives the
chain through a vector of normalized parameters (see :mod:`parameters`); it may
change between blocks. Everything runs in the native loop of :mod:`engine`.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from rt_host.errors import ChainError, InstantiationError, PortNotFound
from rt_host.lv2 import engine
from rt_host.lv2.instance import ATOM_WORDS, Instance
from rt_host.lv2.parameters import HZ_LIMIT, LIMIT, Parameter, ParameterTable
from rt_host.lv2.plugin import Plugin
from rt_host.lv2.spec import ChainSpec, StageSpec
from rt_host.lv2.world import World

log = logging.getLogger("rt_host")

PREROLL_FRAMES = 1024  # silence run after every (re-)instantiation; see Program._preroll
PREROLL_BLOCK = 256
DEFAULT_MAX_BLOCK = 4096


@dataclass
class Stage:
    """One step of a chain: a plugin, how it takes the incoming channels, its ports."""

    spec: StageSpec
    plugin: Plugin
    channels_in: int
    instances: int  # more than one for adapt = "per_channel"

    @property
    def name(self) -> str:
        return self.spec.name

    @property
    def channels_out(self) -> int:
        return len(self.plugin.audio_outputs) * self.instances


class Chain:
    """An ordered list of LV2 plugins, run as one effect.

    >>> chain = Chain.load("mastering")
    >>> chain.parameter_names[:2]
    ['mbc.al_0', 'mbc.cr_0']
    >>> y = chain(x, 44100)                            # defaults + fixed values
    >>> y = chain(x, 44100, params=u)                  # u: (n_params,) in [0, 1]
    >>> y = chain(x, 44100, params=U, step_length=1024)  # U: (steps, n_params)

    The plugins are instantiated on first use at the rate asked for, and again
    if it changes. Each call starts from a fresh state (the plugins are
    instantiated anew: ~0.5 ms per Calf, ~6 ms per LSP plugin) unless
    ``reset=False``, which continues from where the last call stopped.
    """

    def __init__(self, spec: ChainSpec, world: World | None = None) -> None:
        self.spec = spec
        self.world = world or World.default()
        self.stages: list[Stage] = []
        self.parameters: list[Parameter] = []
        self._fixed: list[dict[str, float]] = []
        channels = spec.channels
        for stage_spec in spec.stages:
            plugin = self.world.plugin(stage_spec.plugin)
            missing = plugin.missing_features()
            if missing:  # fail when the chain is built, not after audio was read
                raise InstantiationError(
                    f"stage {stage_spec.name!r}: plugin {plugin.name!r} needs host feature(s) "
                    f"this host lacks: {', '.join(missing)}"
                )
            stage = self._stage(stage_spec, plugin, channels)
            self.stages.append(stage)
            fixed = {}
            for symbol, value in stage_spec.fixed.items():
                port = self._control_input(stage, symbol)
                fixed[symbol] = _clamped(port, value, f"{stage.name}.{symbol}")
            self._fixed.append(fixed)
            for p in stage_spec.predict:
                port = self._control_input(stage, p.symbol)
                self.parameters.append(Parameter.build(stage.name, port, p))
            channels = stage.channels_out
        self._check_output(channels)
        self.table = ParameterTable(self.parameters)  # nominal ranges; a prepared Program adds Hz limits
        self._values = np.array([p.default for p in self.parameters], dtype=np.float64)
        self._runtime: Program | None = None

    @classmethod
    def load(cls, name_or_path: str | Path, world: World | None = None) -> Chain:
        """A chain from a TOML file path or a name in ``chains/``."""
        return cls(ChainSpec.load(name_or_path), world)

    # --- structure ----------------------------------------------------------
    @property
    def name(self) -> str:
        return self.spec.name

    @property
    def channels(self) -> int:
        return self.spec.channels

    @property
    def sample_rate(self) -> int | None:
        """The rate the chain file asks for (None: any)."""
        return self.spec.sample_rate

    @property
    def parameter_names(self) -> list[str]:
        return [p.name for p in self.parameters]

    @property
    def n_params(self) -> int:
        return len(self.parameters)

    def stage(self, name: str) -> Stage:
        for s in self.stages:
            if s.name == name:
                return s
        raise ChainError(
            f"chain {self.name!r} has no stage {name!r}; stages: {', '.join(s.name for s in self.stages)}"
        )

    def _stage(self, spec: StageSpec, plugin: Plugin, channels: int) -> Stage:
        n_in, n_out = len(plugin.audio_inputs), len(plugin.audio_outputs)
        mode, instances = spec.adapt, 1
        where = f"chain {self.spec.name!r}, stage {spec.name!r} ({plugin.name}, {n_in} in / {n_out} out)"
        if n_in == 0 or n_out == 0:
            raise ChainError(f"{where}: an effect in a chain needs audio inputs and outputs")
        ok = {
            "direct": n_in == channels,
            "per_channel": n_in == 1 and n_out == 1,
            "duplicate": channels == 1,
            "mix": n_in == 1,
            "first": n_in <= channels,
        }[mode]
        if not ok:
            hints = {
                True: 'adapt = "per_channel" (one instance per channel) or "mix"',
                False: 'adapt = "duplicate"' if channels == 1 else 'adapt = "first"',
            }
            raise ChainError(
                f"{where}: gets {channels} channel(s) but adapt = {mode!r} does not fit; "
                f"try {hints[n_in == 1 and channels > 1]}"
            )
        if mode == "per_channel":
            instances = channels
        return Stage(spec, plugin, channels, instances)

    def _check_output(self, channels: int) -> None:
        mode, want = self.spec.output, self.spec.channels
        ok = {
            "direct": channels == want,
            "duplicate": channels == 1,
            "mix": want == 1,
            "first": channels >= want,
        }[mode]
        if not ok:
            raise ChainError(
                f"chain {self.spec.name!r}: the last stage gives {channels} channel(s) for a "
                f'{want}-channel chain; set output = "mix" or "first" (or "duplicate" from mono)'
            )

    def _control_input(self, stage: Stage, symbol: str):
        try:
            port = stage.plugin.port(symbol)
        except PortNotFound as exc:
            raise ChainError(f"chain {self.name!r}, stage {stage.name!r}: {exc}") from None
        if not port.is_control_input:
            raise ChainError(f"{stage.name}.{symbol} is not a control input")
        return port

    def fixed_values(self, stage: str) -> dict[str, float]:
        """The fixed control values of a stage (port units), as the chain file and :meth:`set` gave them."""
        return dict(self._fixed[self.stages.index(self.stage(stage))])

    # --- parameter values ---------------------------------------------------
    def parameter(self, name: str) -> Parameter:
        for p in self.parameters:
            if p.name == name:
                return p
        raise PortNotFound(f"chain {self.name!r} predicts no parameter {name!r}")

    def denormalize(self, u) -> np.ndarray:
        """Port values for normalized parameters ``(n_params,)`` or ``(steps, n_params)`` (nominal: a
        prepared chain also keeps frequencies below 0.45 × its rate when it plays them)."""
        return self.table.to_port(u)

    def normalize(self, values) -> np.ndarray:
        """Normalized parameters for port values (the inverse of :meth:`denormalize`)."""
        return self.table.to_normalized(values)

    def default_normalized(self) -> np.ndarray:
        """The normalized vector of every parameter's default."""
        return self.normalize([p.default for p in self.parameters]).astype(np.float32)

    @property
    def values(self) -> dict[str, float]:
        """Current port values of the predicted parameters (used when no ``params`` are given)."""
        return {p.name: float(v) for p, v in zip(self.parameters, self._values)}

    def set(self, name: str, value: float) -> float:
        """Set ``"stage.symbol"`` to a port value, clamped (with a warning) to its range.

        A predicted parameter changes its current value; any other control
        input becomes a fixed value. Returns the value set. NaN, ±Inf or
        anything but a number is a :class:`~rt_host.errors.ChainError`
        (:func:`finite_number`).
        """
        stage, symbol, j = self._port_of(name)
        value = self.checked(name, value)
        if j is not None:
            self._values[j] = value
            return value
        index = self.stages.index(stage)
        self._fixed[index][symbol] = value
        if self._runtime is not None:
            self._runtime.write_fixed(index, symbol, value)
        return value

    def checked(self, name: str, value, *, warn: bool = True) -> float:
        """The value :meth:`set` would give ``"stage.symbol"``, without setting it: clamped to the
        port's (or the predicted parameter's) range, a warning saying so unless ``warn=False``; a
        :class:`~rt_host.errors.ChainError` for anything but a finite number."""
        stage, symbol, j = self._port_of(name)
        if j is not None:
            p = self.parameters[j]
            return clamped_to(value, p.minimum, p.maximum, name, warn=warn)
        return _clamped(self._control_input(stage, symbol), value, name, warn=warn)

    def _port_of(self, name: str) -> tuple[Stage, str, int | None]:
        """``(stage, symbol, index among the predicted parameters or None)`` of a control input."""
        stage_name, _, symbol = name.partition(".")
        if not symbol:
            raise PortNotFound(f"{name!r}: name a port as stage.symbol, e.g. limiter.th")
        stage = self.stage(stage_name)
        self._control_input(stage, symbol)
        j = next((j for j, p in enumerate(self.parameters) if p.name == name), None)
        return stage, symbol, j

    # --- running ------------------------------------------------------------
    def prepare(self, sample_rate: float, max_block_length: int = DEFAULT_MAX_BLOCK) -> None:
        """Instantiate every plugin at ``sample_rate`` (done on first use if not called)."""
        rt = self._runtime
        if rt is not None and rt.sample_rate == sample_rate and rt.max_block >= max_block_length:
            return
        if rt is not None:
            rt.free()
        self._runtime = None
        self._runtime = Program(self, float(sample_rate), int(max_block_length))

    @property
    def prepared_rate(self) -> float | None:
        return None if self._runtime is None else self._runtime.sample_rate

    @property
    def program(self) -> Program:
        """The chain lowered for the native block loop at the prepared rate (:meth:`prepare` first)."""
        if self._runtime is None:
            raise ChainError("the chain is not prepared yet; call prepare(sample_rate, max_block)")
        return self._runtime

    @property
    def latency(self) -> int:
        """Total latency in samples, from the plugins' latency ports (needs :meth:`prepare`)."""
        if self._runtime is None:
            raise ChainError("latency is known once the chain is prepared at a sample rate")
        return self._runtime.latency()

    def stage_latencies(self) -> dict[str, int]:
        if self._runtime is None:
            raise ChainError("latency is known once the chain is prepared at a sample rate")
        return self._runtime.stage_latencies()

    def instances(self, stage: str) -> list[Instance]:
        """The running instances of a stage (prepare first)."""
        if self._runtime is None:
            raise ChainError("the chain is not prepared yet")
        return self._runtime.instances[self.stages.index(self.stage(stage))]

    def reset(self) -> None:
        """Give every plugin a fresh state (re-instantiated; see ``Program.reset``)."""
        if self._runtime is not None:
            self._runtime.reset()

    def __call__(
        self,
        audio: np.ndarray,
        sample_rate: float,
        params=None,
        *,
        step_length: int | None = None,
        block_size: int = 1024,
        reset: bool = True,
        compensate_latency: bool = False,
    ) -> np.ndarray:
        """Process ``audio`` ``(channels, samples)`` and return the output, same shape.

        ``params``: normalized parameters, ``(n_params,)`` for the whole signal or
        ``(steps, n_params)`` changing every ``step_length`` samples (default: every
        block). ``compensate_latency`` shifts the output back by the chain's
        latency (the tail is rendered from silence), so it lines up with the input.
        Non-finite input samples are replaced by 0 (a warning counts them); the
        output never holds NaN or Inf.
        """
        audio = np.asarray(audio)
        if audio.ndim == 1:
            audio = audio[np.newaxis, :]
        if audio.ndim != 2 or audio.shape[0] != self.channels:
            raise ChainError(
                f"chain {self.name!r} takes ({self.channels}, samples) audio; got shape {audio.shape}"
            )
        x = np.ascontiguousarray(audio, dtype=np.float32)
        if block_size < 1:
            raise ValueError("block_size must be ≥ 1")
        self.prepare(sample_rate, max(block_size, DEFAULT_MAX_BLOCK))
        rt = self._runtime
        if params is None:
            values = rt.limit_values(self._values)[np.newaxis, :]
        else:
            values = rt.table.to_port(params)
            if values.ndim == 1:
                values = values[np.newaxis, :]
        if step_length is None:
            step_length = block_size
        if reset:
            rt.write_values(values[0])  # the pre-roll after the reset settles at these values
            if not rt.settled_as_new():
                rt.reset()
        y = np.empty_like(x)
        bad = rt.run(x, y, values, step_length, block_size)
        if compensate_latency:
            lag = rt.latency()
            if lag > 0:
                tail_in = np.zeros((x.shape[0], lag), dtype=np.float32)
                tail = np.empty_like(tail_in)
                last = values[-1:]
                rt.run(tail_in, tail, last, 0, block_size)
                y = np.concatenate([y[:, lag:], tail], axis=1)
        if bad[0]:
            log.warning("replaced %d non-finite input sample(s) with 0", bad[0])
        if bad[1]:
            log.warning("a plugin produced %d non-finite sample(s); they were replaced with 0", bad[1])
        return y

    def close(self) -> None:
        """Free the plugin instances now."""
        if self._runtime is not None:
            self._runtime.free()
            self._runtime = None

    def __enter__(self) -> Chain:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __repr__(self) -> str:
        stages = " → ".join(f"{s.name}({s.plugin.name})" for s in self.stages)
        return f"<Chain {self.name!r}: {stages}; {self.n_params} parameters>"

    def describe(self) -> str:
        lines = [
            f"chain {self.name!r}: {self.channels} channel(s)"
            + (f", {self.sample_rate} Hz" if self.sample_rate else "")
        ]
        if self.spec.description:
            lines.append(f"  {self.spec.description}")
        for i, s in enumerate(self.stages):
            inst = f" ×{s.instances}" if s.instances > 1 else ""
            lines.append(f"  {i + 1}. {s.name}: {s.plugin.name}{inst} [{s.spec.adapt}] <{s.plugin.uri}>")
            for sym, v in self._fixed[i].items():
                lines.append(f"       fixed   {sym} = {v:g}")
        lines.append(f"  predicted parameters ({self.n_params}):")
        lines.extend(f"    {p.describe()}" for p in self.parameters)
        return "\n".join(lines)


class Program:
    """The instantiated chain at one sample rate, lowered for :func:`engine.run_program`.

    Its arrays (audio ``pool``, ``ops``, ``controls``, the instances' ``run_fns``
    and ``handles``, the ``target_param``/``target_index`` of every predicted
    port, and ``table``, the parameters with this rate's frequency limits) are
    what the real-time block of the live host runs; see :mod:`engine`.
    """

    def __init__(self, chain: Chain, sample_rate: float, max_block: int) -> None:
        self.chain = chain
        self.sample_rate = sample_rate
        self.max_block = max_block
        stages = chain.stages
        all_plugins = [s.plugin for s in stages for _ in range(s.instances)]
        n_controls = sum(len(p.ports) for p in all_plugins)
        n_atoms = sum(max(Instance.atom_output_count(p), 1) for p in all_plugins)
        self.controls = np.zeros(n_controls, dtype=np.float32)
        self.atom_out = np.zeros((n_atoms, ATOM_WORDS), dtype=np.uint32)
        rows: list[int] = []
        n_rows = 0

        def new_rows(k: int) -> list[int]:
            nonlocal n_rows
            out = list(range(n_rows, n_rows + k))
            n_rows += k
            return out

        self.in_rows = new_rows(chain.channels)
        rows = self.in_rows
        ops: list[tuple[int, int, int, int]] = []
        mix_rows: list[int] = []
        wiring = []  # (instance, input rows, output rows)
        self._slots: list[_Slot] = []  # how to re-create each instance (see reset)
        self.instances: list[list[Instance]] = []
        self._control_offsets: list[list[int]] = []
        c_off = a_off = 0
        for si, stage in enumerate(stages):
            n_in = len(stage.plugin.audio_inputs)
            n_out = len(stage.plugin.audio_outputs)
            mode = stage.spec.adapt
            insts, offs = [], []
            out_rows_all = []
            for k in range(stage.instances):
                if mode == "per_channel":
                    ins = [rows[k]]
                elif mode == "duplicate":
                    ins = [rows[0]] * n_in
                elif mode == "mix":
                    (dst,) = new_rows(1)
                    ops.append((engine.OP_MIX, dst, len(mix_rows), len(rows)))
                    mix_rows.extend(rows)
                    ins = [dst]
                else:  # direct, first
                    ins = rows[:n_in]
                outs = new_rows(n_out)
                n_ports = len(stage.plugin.ports)
                n_atom = max(Instance.atom_output_count(stage.plugin), 1)
                buffers = {
                    "controls": self.controls[c_off : c_off + n_ports],
                    "atom_out": self.atom_out[a_off : a_off + n_atom],
                }
                inst = stage.plugin.instantiate(sample_rate, max_block, **buffers)
                insts.append(inst)
                offs.append(c_off)
                c_off += n_ports
                a_off += n_atom
                wiring.append((inst, ins, outs))
                self._slots.append(_Slot(si, k, buffers, ins, outs))
                ops.append((engine.OP_RUN, len(wiring) - 1, 0, 0))
                out_rows_all.extend(outs)
            self.instances.append(insts)
            self._control_offsets.append(offs)
            rows = out_rows_all
        mode, want = chain.spec.output, chain.channels
        if mode == "mix" and len(rows) > 1:
            (dst,) = new_rows(1)
            ops.append((engine.OP_MIX, dst, len(mix_rows), len(rows)))
            mix_rows.extend(rows)
            rows = [dst]
        elif mode == "duplicate":
            rows = rows * want
        elif mode == "first":
            rows = rows[:want]
        self.out_rows = np.array(rows, dtype=np.int64)
        self.in_rows = np.array(self.in_rows, dtype=np.int64)
        self.pool = np.zeros((n_rows, max_block), dtype=np.float32)
        for inst, ins, outs in wiring:
            self._connect_audio(inst, ins, outs)
        self.ops = np.array(ops, dtype=np.int64).reshape(-1, 4)
        self.mix_rows = np.array(mix_rows or [0], dtype=np.int64)
        flat = [w[0] for w in wiring]
        self.run_fns = np.array([i.run_address for i in flat], dtype=np.uintp)
        self.handles = np.array([i.handle_address for i in flat], dtype=np.uintp)
        self.atom_reset = flat[0]._atom_out_reset.copy()
        self.counters = np.zeros(2, dtype=np.int64)

        # predicted parameters → control indices; frequency controls stay below Nyquist (the table)
        tp, ti = [], []
        for j, p in enumerate(chain.parameters):
            si = chain.stages.index(chain.stage(p.stage))
            for off in self._control_offsets[si]:
                tp.append(j)
                ti.append(off + p.port.index)
        self.target_param = np.array(tp, dtype=np.int64)
        self.target_index = np.array(ti, dtype=np.int64)
        self.table = ParameterTable(chain.parameters, sample_rate)
        for si, stage in enumerate(stages):
            # frequencies left at a plugin's default may sit above Nyquist too
            # (Calf Tape Simulator's 12.5 kHz low-pass at 22.05 kHz outputs NaN)
            for port in stage.plugin.control_inputs:
                if port.is_hz and port.default is not None and port.symbol not in chain._fixed[si]:
                    self.write_fixed(si, port.symbol, port.default)
            for symbol, value in chain._fixed[si].items():
                self.write_fixed(si, symbol, value)
        self.write_values(chain._values)
        self._prime()

    def write_fixed(self, stage_index: int, symbol: str, value: float) -> None:
        port = self.chain.stages[stage_index].plugin.port(symbol)
        if port.is_hz:
            value = min(value, HZ_LIMIT * self.sample_rate)
        for off in self._control_offsets[stage_index]:
            self.controls[off + port.index] = value

    def control_index(self, stage_index: int, port_index: int, instance: int = 0) -> int:
        """Where port ``port_index`` of a stage's ``instance``-th plugin lives in :attr:`controls`."""
        return self._control_offsets[stage_index][instance] + port_index

    def limit_values(self, values: np.ndarray) -> np.ndarray:
        """Port values of the predicted parameters with this rate's frequency limits applied."""
        return np.minimum(np.asarray(values, dtype=np.float64), self.table.table[:, LIMIT])

    def _prime(self) -> None:
        for insts in self.instances:
            for inst in insts:
                inst.activate()
        self._preroll()

    def _preroll(self) -> None:
        """Run a little silence through fresh instances at the current control values.

        Calf plugins ramp towards their control values during their first run()
        calls, in steps that depend on the block size: without this, renders at
        64 and 1024 frames differ by up to +11 dB for ~1.2 s (measured). 256
        frames of silence settle it; after 1024 they are bit-identical at every
        block size, and a silent pre-roll leaves filters, envelopes and lookahead
        buffers as empty as new. It also makes plugins publish their latency.
        """
        silence = np.zeros((len(self.in_rows), PREROLL_FRAMES), dtype=np.float32)
        block = min(PREROLL_BLOCK, self.max_block)
        self.run(silence, np.empty_like(silence), np.zeros((0, self.chain.n_params)), 0, block)
        self._settled_controls = self.controls.copy()  # run() cleared the flag: the pre-roll sets it
        self._fresh = True

    def settled_as_new(self) -> bool:
        """Whether the instances are exactly as a reset would leave them: new, pre-rolled, and at the
        control values they hold now. Then a reset can be skipped (the first call after
        :meth:`Chain.prepare` would otherwise instantiate every plugin twice, ~11 ms)."""
        return self._fresh and np.array_equal(self.controls, self._settled_controls)

    def write_values(self, values: np.ndarray) -> None:
        """Write one row of predicted-parameter port values into the controls."""
        limited = self.limit_values(values).astype(np.float32)
        self.controls[self.target_index] = limited[self.target_param]

    def run(self, x, y, values, step_length, block) -> tuple[int, int]:
        """Render ``x`` into ``y``; ``values``: port values (already limited), one row per step."""
        if block > self.max_block:
            raise ValueError(f"block of {block} frames exceeds the prepared maximum {self.max_block}")
        self._fresh = False
        self.counters[:] = 0
        engine.run_program(
            x, y, self.in_rows, self.out_rows, self.pool, self.ops, self.mix_rows,
            self.run_fns, self.handles, self.atom_out, self.atom_reset, self.controls,
            np.asarray(values, dtype=np.float32) if len(values) else np.zeros((0, 0), np.float32),
            int(step_length), self.target_param, self.target_index, int(block), self.counters,
        )  # fmt: skip
        return int(self.counters[0]), int(self.counters[1])

    def stage_latencies(self) -> dict[str, int]:
        return {
            stage.name: max(inst.latency for inst in insts)
            for stage, insts in zip(self.chain.stages, self.instances)
        }

    def latency(self) -> int:
        return sum(self.stage_latencies().values())

    def _connect_audio(self, inst: Instance, ins: list[int], outs: list[int]) -> None:
        for port, row in zip(inst.plugin.audio_inputs, ins):
            inst.connect(port.index, self.pool[row])
        for port, row in zip(inst.plugin.audio_outputs, outs):
            inst.connect(port.index, self.pool[row])

    def reset(self) -> None:
        """Give every plugin a fresh state by instantiating it anew.

        ``deactivate()`` + ``activate()`` should reset a plugin, but Calf MBC, the
        LSP limiter and the LSP GEQ keep delay lines and envelopes through it
        (measured: a limiter replays the previous call's lookahead). Control values
        and buffers carry over; each new instance is made before the old one is
        freed so lilv keeps the plugin's library loaded (LSP leaks on reload).
        Then a short silent pre-roll (:meth:`_preroll`). Costs ~0.5 ms per Calf and
        ~6 ms per LSP instance, plus 1024 frames of silence.
        """
        for k, slot in enumerate(self._slots):
            old = self.instances[slot.stage][slot.index]
            saved = old.controls.copy()
            new = old.plugin.instantiate(self.sample_rate, self.max_block, **slot.buffers)
            new.controls[:] = saved
            self._connect_audio(new, slot.ins, slot.outs)
            new.activate()
            old.free()
            self.instances[slot.stage][slot.index] = new
            self.run_fns[k] = new.run_address
            self.handles[k] = new.handle_address
        self._preroll()

    def free(self) -> None:
        for insts in self.instances:
            for inst in insts:
                inst.free()
        self.instances = []


@dataclass
class _Slot:
    stage: int
    index: int
    buffers: dict
    ins: list[int]
    outs: list[int]


def finite_number(value, name: str) -> float:
    """``value`` as a float; a :class:`~rt_host.errors.ChainError` naming ``name`` if it is not a
    finite number (NaN, ±Inf, a string, a list …).

    The one check for every number a person hands the host for a port or a control (``--set``,
    parameter files, MIDI maps; :meth:`Chain.set` via :func:`clamped_to`). NaN must stop here:
    it compares false with both bounds, so a clamp lets it through to the plugin, and the LSP
    limiter spins forever on a NaN threshold.
    """
    if not isinstance(value, int | float | np.integer | np.floating):
        raise ChainError(f"{name} = {value!r}: expected a number")
    value = float(value)
    if not math.isfinite(value):
        raise ChainError(f"{name} = {value}: expected a finite number")
    return value


def _clamped(port, value: float, name: str, *, warn: bool = True) -> float:
    return clamped_to(value, port.minimum, port.maximum, name, warn=warn)


def clamped_to(value: float, lo: float | None, hi: float | None, name: str, *, warn: bool = True) -> float:
    """``value`` (a finite number: :func:`finite_number`) clamped to ``lo … hi``, with a warning."""
    value = finite_number(value, name)
    clamped = value
    if lo is not None and clamped < lo:
        clamped = lo
    if hi is not None and clamped > hi:
        clamped = hi
    if clamped != value and warn:
        log.warning("%s = %g is outside %g … %g; clamped to %g", name, value, lo, hi, clamped)
    return clamped
