"""Offline rendering of audio files through a chain (``deepafx-rt render``)."""

from __future__ import annotations

import csv
import json
import logging
import time
import tomllib
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from rt_host import audio as audio_io
from rt_host.errors import DeepAFxError
from rt_host.lv2.chain import Chain

log = logging.getLogger("rt_host")


@dataclass
class RenderReport:
    input: str
    output: str
    chain: str
    file_rate: int
    chain_rate: int
    channels: int
    seconds: float
    latency_samples: int
    block_size: int
    elapsed_s: float
    predictions: int = 0  # with a model: how many windows it saw
    inference_ms_p50: float | None = None

    @property
    def realtime_factor(self) -> float:
        return self.seconds / self.elapsed_s if self.elapsed_s > 0 else float("inf")

    def to_dict(self) -> dict:
        return asdict(self) | {"realtime_factor": self.realtime_factor}


def parse_set(items: list[str]) -> list[tuple[str, float]]:
    """``["limiter.th=0.5", …]`` → ``[("limiter.th", 0.5), …]``."""
    out = []
    for item in items:
        name, sep, value = item.partition("=")
        try:
            if not sep:
                raise ValueError
            out.append((name.strip(), float(value)))
        except ValueError:
            raise DeepAFxError(f"--set {item!r}: write STAGE.SYMBOL=VALUE, e.g. limiter.th=0.5") from None
    return out


def load_params(path: str | Path, chain: Chain) -> tuple[np.ndarray, np.ndarray] | None:
    """Apply a parameter file to ``chain``.

    * ``.toml`` / ``.json``: ``"stage.symbol" = value`` port values (predicted or
      not), and/or ``normalized = [...]`` with one entry per predicted parameter.
      Applied at once; returns None.
    * ``.csv``: automation; a ``time`` column in seconds plus predicted-parameter
      columns of port values. Returns ``(times, normalized (rows, n_params))``;
      parameters without a column keep their current value.
    """
    path = Path(path)
    if not path.is_file():
        raise DeepAFxError(f"parameter file {path} does not exist")
    suffix = path.suffix.lower()
    try:
        if suffix == ".csv":
            return _load_csv(path, chain)
        text = path.read_text(encoding="utf-8")
        data = json.loads(text) if suffix == ".json" else tomllib.loads(text)
    except (ValueError, tomllib.TOMLDecodeError) as exc:
        raise DeepAFxError(f"{path}: cannot parse: {exc}") from None
    normalized = data.pop("normalized", None)
    if normalized is not None:
        u = np.asarray(normalized, dtype=np.float64)
        if u.shape != (chain.n_params,):
            raise DeepAFxError(
                f"{path}: 'normalized' has {u.size} values; chain {chain.name!r} predicts {chain.n_params}"
            )
        for name, value in zip(chain.parameter_names, chain.denormalize(u)):
            chain.set(name, float(value))
    for name, value in _flatten(data).items():
        chain.set(name, float(value))
    return None


def _flatten(data: dict, prefix: str = "") -> dict:
    out = {}
    for k, v in data.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict):
            out.update(_flatten(v, key + "."))
        else:
            out[key] = v
    return out


def _load_csv(path: Path, chain: Chain):
    with path.open(newline="", encoding="utf-8") as f:
        rows = list(csv.reader(f))
    if not rows or "time" not in rows[0]:
        raise DeepAFxError(f"{path}: the first row must name the columns, one of them 'time' (seconds)")
    header = rows[0]
    names = set(chain.parameter_names)
    cols = [h for h in header if h != "time"]
    unknown = [c for c in cols if c not in names]
    if unknown:
        raise DeepAFxError(f"{path}: unknown parameter column(s) {', '.join(unknown)}")
    base = np.array(list(chain.values.values()))
    times, table = [], []
    for line_no, row in enumerate(rows[1:], start=2):
        if not row:
            continue
        try:
            rec = dict(zip(header, (float(v) for v in row)))
        except ValueError:
            raise DeepAFxError(f"{path}, line {line_no}: every cell must be a number") from None
        values = base.copy()
        for c in cols:
            values[chain.parameter_names.index(c)] = rec[c]
        times.append(rec["time"])
        table.append(values)
    if not times:
        raise DeepAFxError(f"{path}: no automation rows")
    order = np.argsort(times, kind="stable")
    return np.asarray(times)[order], chain.normalize(np.asarray(table)[order])


def automation_trajectory(times, normalized, n_samples: int, rate: float, step: int) -> np.ndarray:
    """Per-step rows (every ``step`` samples) holding the last automation row at or before it."""
    # half a sample of slack: times written with few digits (a CSV's 1.23457) still land on their block
    starts = (np.arange(0, max(n_samples, 1), step) + 0.5) / rate
    idx = np.clip(np.searchsorted(times, starts, side="right") - 1, 0, len(times) - 1)
    return normalized[idx]


def render_file(
    input_path: str | Path,
    output_path: str | Path,
    chain: Chain,
    *,
    sets: list[tuple[str, float]] = (),
    params_file: str | Path | None = None,
    block_size: int = 1024,
    map_channels: str = "auto",
    subtype: str | None = None,
    compensate_latency: bool = True,
    bundle=None,
    smoothing_s: float = 0.1,
    params_log: str | Path | None = None,
    plot: str | Path | None = None,
) -> RenderReport:
    """Render one file through ``chain``; checks the output path before any work.

    With ``bundle`` (:class:`rt_host.bundle.Bundle`) its model drives the chain
    the way the live host does (:mod:`rt_host.offline`), one parameter row per
    ``block_size`` frames; ``params_log`` (CSV, readable by ``--params``) and
    ``plot`` (PNG) record that automation.
    """
    input_path, output_path = Path(input_path), Path(output_path)
    if bundle is not None and params_file:
        raise DeepAFxError("give either a model (--task/--bundle) or --params, not both")
    audio_io.check_writable(output_path, inputs=(input_path,))
    for extra in (params_log, plot):
        if extra:
            audio_io.check_output_path(Path(extra), inputs=(input_path, output_path))
    for name, value in sets:
        chain.set(name, value)
    automation = load_params(params_file, chain) if params_file else None
    x, file_rate = audio_io.read_audio(input_path)
    x = audio_io.sanitize(x, input_path.name)
    x = audio_io.map_channels(x, chain.channels, map_channels)
    rate = chain.sample_rate or file_rate
    if rate != file_rate:
        log.info("resampling %s from %d Hz to the chain's %d Hz", input_path.name, file_rate, rate)
        x = audio_io.resample(x, file_rate, rate)
    params = None
    if automation is not None:
        params = automation_trajectory(*automation, x.shape[1], rate, block_size)
    start = time.perf_counter()
    predicted = None
    if bundle is not None:
        from rt_host.offline import predict_automation

        predicted = predict_automation(bundle, chain, x, int(rate), step=block_size, smoothing_s=smoothing_s)
        params = predicted.normalized
    y = chain(x, rate, params, block_size=block_size, compensate_latency=compensate_latency)
    elapsed = time.perf_counter() - start
    if rate != file_rate:
        y = audio_io.resample(y, rate, file_rate)
    audio_io.write_audio(output_path, y, file_rate, subtype)
    p50 = None
    if predicted is not None:
        p50 = float(np.median(predicted.inference_ms)) if predicted.predictions else None
        from rt_host.plots import plot_automation, write_automation_csv

        if params_log:
            write_automation_csv(chain, predicted.times, predicted.normalized, Path(params_log))
        if plot:
            plot_automation(chain, predicted.times, predicted.normalized, Path(plot))
    return RenderReport(
        input=str(input_path),
        output=str(output_path),
        chain=chain.name,
        file_rate=file_rate,
        chain_rate=int(rate),
        channels=chain.channels,
        seconds=x.shape[1] / rate,
        latency_samples=chain.latency,
        block_size=block_size,
        elapsed_s=elapsed,
        predictions=predicted.predictions if predicted is not None else 0,
        inference_ms_p50=p50,
    )
