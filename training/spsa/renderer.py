"""Rendering one training window through a plugin chain, the same way every time.

SPSA compares three renders of one window — at the parameters, a little above
and a little below — so the three must start from identical plugin state, or
the state difference leaks into the gradient. How a window starts is the
:attr:`RenderSettings.window_start` policy:

``"fresh"`` (default)
    :class:`~rt_host.lv2.Chain`'s exact reset before every render: every plugin
    instantiated anew, then 1024 frames of silence at the window's parameters
    (Calf ramps its controls during its first runs; the silence settles them
    and leaves filters, envelopes and look-ahead buffers empty). The output
    then depends only on (audio, parameters): the same bits on any worker, in
    any order, equal to a render by a new ``Chain`` (``tests/test_spsa_*``
    check this on ``mastering``). Cost on this machine (2 vCPU, 22,050 Hz,
    ``mastering``, 40,960-sample windows): ``chain.reset()`` alone takes ~11 ms
    of CPU, almost all of it LSP's own instantiation (Calf-only chains: ~0.6
    ms); per render 72.7 ms against 67.3 ms without a reset, +8 % (``deepafx-rt
    bench spsa``, quiet machine; +16 % in busier runs).

``"continue"``
    No reset: each render continues from whatever this worker rendered last.
    Cheapest, but not reproducible, and the forward and ± renders of one
    example start from different states. For benchmarks and stateless chains.

Why not deactivate + activate, the LV2 way to reset: measured with the same
window rendered twice, it leaves state behind — Calf Multiband Compressor
differed by up to 0.09 in the first 0.1–0.25 s after a render at other
parameters, LSP Limiter in its first block, and LSP Graphic EQ for the whole
window (its low-frequency IIR sections turn any state difference into
round-off noise of 1e-4…1.6e-3 that never dies out; see :mod:`training.spsa.layer`
on what that does to small ε).

Why no synthetic audio pre-roll: silence is what the reset already renders,
and a mirrored copy of the window's start made the head of the window *less*
like a render with real preceding audio (RMS error over the first 0.25 s
+30–40 % on all three shipped chains). What helps is real audio: ``preroll``
= the number of leading samples of every input that are context — rendered at
the window's parameters, then cut from the output.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from rt_host.lv2 import Chain, ChainSpec
from rt_host.lv2.chain import DEFAULT_MAX_BLOCK

WINDOW_STARTS = ("fresh", "continue")


@dataclass(frozen=True)
class RenderSettings:
    """Everything a worker needs to render windows exactly like every other worker.

    The chain travels as TOML text so it can be rebuilt in another process or on
    another machine (which needs the same plugins installed).
    """

    chain_toml: str
    sample_rate: int
    block_size: int = 1024
    compensate_latency: bool = False
    window_start: str = "fresh"
    preroll: int = 0

    def __post_init__(self) -> None:
        if self.window_start not in WINDOW_STARTS:
            raise ValueError(
                f"window_start must be one of {', '.join(WINDOW_STARTS)}, not {self.window_start!r}"
            )
        if self.sample_rate <= 0:
            raise ValueError(f"sample_rate must be a positive number of Hz, not {self.sample_rate}")
        if not 1 <= self.block_size <= 16384:
            raise ValueError(f"block_size must be between 1 and 16384 frames, not {self.block_size}")
        if self.preroll < 0:
            raise ValueError(f"preroll must be ≥ 0 samples, not {self.preroll}")

    @classmethod
    def for_chain(
        cls, chain: str | Path | ChainSpec | Chain, sample_rate: int | None = None, **options
    ) -> RenderSettings:
        """Settings for a chain name, chain file, :class:`ChainSpec` or :class:`Chain`.

        ``sample_rate`` defaults to the rate the chain file asks for.
        """
        if isinstance(chain, Chain):
            spec = chain.spec
        elif isinstance(chain, ChainSpec):
            spec = chain
        else:
            spec = ChainSpec.load(chain)
        rate = sample_rate or spec.sample_rate
        if rate is None:
            raise ValueError(f"chain {spec.name!r} names no sample_rate; pass sample_rate=…")
        return cls(chain_toml=spec.dumps(), sample_rate=int(rate), **options)

    def spec(self) -> ChainSpec:
        return ChainSpec.loads(self.chain_toml)


class Renderer:
    """One process's chain, rendering windows under :class:`RenderSettings`.

    >>> r = Renderer(RenderSettings.for_chain("distortion"))
    >>> y = r.render(x, u)     # x: (channels, preroll + samples), u: (n_params,) in [0, 1]
    """

    def __init__(self, settings: RenderSettings) -> None:
        self.settings = settings
        self.chain = Chain(settings.spec())
        self.renders = 0

    @property
    def n_params(self) -> int:
        return self.chain.n_params

    @property
    def channels(self) -> int:
        return self.chain.channels

    def _prepare(self) -> None:
        self.chain.prepare(self.settings.sample_rate, max(self.settings.block_size, DEFAULT_MAX_BLOCK))

    def warm_up(self) -> None:
        """Instantiate the plugins and load the compiled block loop before the first real task."""
        self._prepare()
        silence = np.zeros((self.channels, self.settings.preroll + 256), dtype=np.float32)
        self.render(silence, self.chain.default_normalized())
        self.renders = 0

    @property
    def latency(self) -> int:
        """Samples by which an output sample lags the input sample it mostly depends on."""
        if self.settings.compensate_latency:
            return 0
        self._prepare()
        return self.chain.latency

    def render(self, x: np.ndarray, u: np.ndarray) -> np.ndarray:
        """Output for input ``x`` ``(channels, preroll + n)`` at normalized parameters ``u``.

        Returns float32 ``(channels, n)``: the pre-roll is rendered, then cut.
        """
        s = self.settings
        y = self.chain(
            x,
            s.sample_rate,
            params=u,
            block_size=s.block_size,
            reset=s.window_start == "fresh",
            compensate_latency=s.compensate_latency,
        )
        self.renders += 1
        return y[:, s.preroll :]

    def close(self) -> None:
        self.chain.close()
