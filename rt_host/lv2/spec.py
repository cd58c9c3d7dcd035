"""Chain descriptions: what a TOML chain file says, checked and round-trippable.

A chain file names its stages in order, how each stage takes the channels
before it, which control ports a model predicts (with optional new ranges) and
the fixed values of the rest::

    name = "mastering"
    channels = 2
    sample_rate = 44100          # optional: renders resample to it

    [[stage]]
    name = "limiter"
    plugin = "http://lsp-plug.in/plugins/lv2/limiter_stereo"
    adapt = "direct"             # direct | per_channel | duplicate | mix | first
    fixed = { lk = 5.0, ovs = 0 }
    max_writes_per_block = 4     # optional: ports of this stage a model may move per block
    [stage.predict]
    th = { min = 0.25, max = 1.0 }        # a new range inside the port's
    rt = {}                                # the port's own range
    knee = { scale = "linear" }           # override the port's log/linear curve

Ports neither predicted nor fixed keep the plugin's defaults.
``max_writes_per_block`` bounds what a moving model costs a stage whose
plugin recomputes on every change (LSP's graphic EQ: see
:mod:`rt_host.steer.kernel`).
"""

from __future__ import annotations

import math
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

import tomli_w

from rt_host.errors import ChainError

ADAPT_MODES = ("direct", "per_channel", "duplicate", "mix", "first")
SCALES = ("linear", "log")
CHAIN_DIRS_ENV = "DEEPAFX_CHAINS"


def builtin_chain_dir() -> Path:
    """The ``chains/`` folder shipped with the project."""
    return Path(__file__).resolve().parents[2] / "chains"


@dataclass
class PredictSpec:
    """A port the model predicts: its range override and curve (None = the port's)."""

    symbol: str
    minimum: float | None = None
    maximum: float | None = None
    scale: str | None = None
    default: float | None = None

    def to_toml(self) -> dict:
        out = {}
        for key, value in (
            ("min", self.minimum),
            ("max", self.maximum),
            ("scale", self.scale),
            ("default", self.default),
        ):
            if value is not None:
                out[key] = value
        return out


@dataclass
class StageSpec:
    name: str
    plugin: str
    adapt: str = "direct"
    fixed: dict[str, float] = field(default_factory=dict)
    predict: list[PredictSpec] = field(default_factory=list)
    max_writes_per_block: int | None = None

    def to_toml(self) -> dict:
        out: dict = {"name": self.name, "plugin": self.plugin, "adapt": self.adapt}
        if self.fixed:
            out["fixed"] = dict(self.fixed)
        if self.max_writes_per_block is not None:
            out["max_writes_per_block"] = self.max_writes_per_block
        if self.predict:
            out["predict"] = {p.symbol: p.to_toml() for p in self.predict}
        return out


@dataclass
class ChainSpec:
    """A whole chain file; :meth:`load` and :meth:`dumps` round-trip."""

    name: str
    stages: list[StageSpec]
    channels: int = 2
    sample_rate: int | None = None
    output: str = "direct"  # how the last stage's channels become ``channels``
    description: str = ""
    source: Path | None = None

    # --- reading ------------------------------------------------------------
    @classmethod
    def load(cls, name_or_path: str | Path) -> ChainSpec:
        """A chain by file path, or by name from ``$DEEPAFX_CHAINS`` and ``chains/``."""
        path = resolve_chain(name_or_path)
        try:
            data = tomllib.loads(path.read_text(encoding="utf-8"))
        except tomllib.TOMLDecodeError as exc:
            raise ChainError(f"{path}: not valid TOML: {exc}") from None
        except OSError as exc:
            raise ChainError(f"cannot read chain file {path}: {exc.strerror}") from None
        spec = cls.from_dict(data, where=str(path))
        spec.source = path
        return spec

    @classmethod
    def loads(cls, text: str) -> ChainSpec:
        try:
            return cls.from_dict(tomllib.loads(text), where="<string>")
        except tomllib.TOMLDecodeError as exc:
            raise ChainError(f"chain is not valid TOML: {exc}") from None

    @classmethod
    def from_dict(cls, data: dict, where: str = "<chain>") -> ChainSpec:
        def fail(msg: str) -> ChainError:
            return ChainError(f"{where}: {msg}")

        known = {"name", "channels", "sample_rate", "output", "description", "stage"}
        unknown = set(data) - known
        if unknown:
            raise fail(f"unknown key(s) {', '.join(sorted(unknown))}; expected {sorted(known)}")
        stages_raw = data.get("stage")
        if not isinstance(stages_raw, list) or not stages_raw:
            raise fail("needs at least one [[stage]] table")
        stages = []
        for i, raw in enumerate(stages_raw):
            stage_where = f"stage {i + 1}"
            extra = set(raw) - {"name", "plugin", "adapt", "fixed", "predict", "max_writes_per_block"}
            if extra:
                raise fail(f"{stage_where}: unknown key(s) {', '.join(sorted(extra))}")
            if "plugin" not in raw:
                raise fail(f"{stage_where}: missing 'plugin' (a URI or plugin name)")
            name = str(raw.get("name", f"stage{i + 1}"))
            adapt = raw.get("adapt", "direct")
            if adapt not in ADAPT_MODES:
                raise fail(f"stage {name!r}: adapt must be one of {', '.join(ADAPT_MODES)}")
            fixed = raw.get("fixed", {})
            if not isinstance(fixed, dict) or not all(_is_number(v) for v in fixed.values()):
                raise fail(f"stage {name!r}: 'fixed' must map port symbols to finite numbers")
            cap = raw.get("max_writes_per_block")
            if cap is not None and (isinstance(cap, bool) or not isinstance(cap, int) or cap < 1):
                raise fail(f"stage {name!r}: max_writes_per_block must be a whole number ≥ 1")
            predict = []
            for symbol, opts in raw.get("predict", {}).items():
                if not isinstance(opts, dict):
                    raise fail(f"stage {name!r}: predict.{symbol} must be a table, e.g. {{}}")
                bad = set(opts) - {"min", "max", "scale", "default"}
                if bad:
                    raise fail(f"stage {name!r}: predict.{symbol}: unknown key(s) {sorted(bad)}")
                scale = opts.get("scale")
                if scale is not None and scale not in SCALES:
                    raise fail(f"stage {name!r}: predict.{symbol}: scale must be linear or log")
                if symbol in fixed:
                    raise fail(f"stage {name!r}: port {symbol!r} is both fixed and predicted")
                predict.append(
                    PredictSpec(
                        symbol,
                        _num(opts.get("min")),
                        _num(opts.get("max")),
                        scale,
                        _num(opts.get("default")),
                    )
                )
            stages.append(
                StageSpec(
                    name=name,
                    plugin=str(raw["plugin"]),
                    adapt=adapt,
                    fixed={k: float(v) for k, v in fixed.items()},
                    predict=predict,
                    max_writes_per_block=cap,
                )
            )
        names = [s.name for s in stages]
        dupes = {n for n in names if names.count(n) > 1}
        if dupes:
            raise fail(f"stage names must be unique; repeated: {', '.join(sorted(dupes))}")
        channels = data.get("channels", 2)
        if not isinstance(channels, int) or channels < 1:
            raise fail("channels must be a positive whole number")
        rate = data.get("sample_rate")
        if rate is not None and (not isinstance(rate, int) or rate <= 0):
            raise fail("sample_rate must be a positive whole number of Hz")
        output = data.get("output", "direct")
        if output not in ("direct", "duplicate", "mix", "first"):
            raise fail("output must be one of direct, duplicate, mix, first")
        return cls(
            name=str(data.get("name", Path(where).stem)),
            stages=stages,
            channels=channels,
            sample_rate=rate,
            output=output,
            description=str(data.get("description", "")),
        )

    # --- writing ------------------------------------------------------------
    def to_dict(self) -> dict:
        out: dict = {"name": self.name}
        if self.description:
            out["description"] = self.description
        out["channels"] = self.channels
        if self.sample_rate is not None:
            out["sample_rate"] = self.sample_rate
        if self.output != "direct":
            out["output"] = self.output
        out["stage"] = [s.to_toml() for s in self.stages]
        return out

    def dumps(self) -> str:
        return tomli_w.dumps(self.to_dict())

    def save(self, path: str | Path) -> None:
        Path(path).write_text(self.dumps(), encoding="utf-8")


def _is_number(v) -> bool:
    return isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v)


def _num(v) -> float | None:
    if v is None:
        return None
    if not _is_number(v):
        raise ChainError(f"expected a finite number, got {v!r}")
    return float(v)


def chain_dirs() -> list[Path]:
    import os

    extra = [Path(p) for p in os.environ.get(CHAIN_DIRS_ENV, "").split(os.pathsep) if p]
    return [*extra, builtin_chain_dir()]


def available_chains() -> list[str]:
    names = set()
    for d in chain_dirs():
        if d.is_dir():
            # NAME.midi.toml files beside the chains are MIDI maps, not chains
            names.update(p.stem for p in d.glob("*.toml") if not p.name.endswith(".midi.toml"))
    return sorted(names)


def resolve_chain(name_or_path: str | Path) -> Path:
    """The file for a chain name (``mastering``) or path (``my/chain.toml``)."""
    p = Path(name_or_path)
    if p.suffix == ".toml" or p.parent != Path("."):
        if not p.is_file():
            raise ChainError(f"chain file {p} does not exist")
        return p
    for d in chain_dirs():
        candidate = d / f"{p.name}.toml"
        if candidate.is_file():
            return candidate
    raise ChainError(
        f"no chain named {str(name_or_path)!r}; available: {', '.join(available_chains())} "
        "(or give a path to a .toml file)"
    )
