"""Offline rendering of audio files through a chain (``deepafx-rt render``)."""

from __future__ import annotations

import csv
import json
import logging
import math
import time
import tomllib
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from rt_host import audio as audio_io
from rt_host.errors import ChainError, DeepAFxError
from rt_host.lv2.chain import Chain, clamped_to, finite_number

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
    dropped_predictions: int = 0  # with a model: predictions with NaN/Inf, ignored

    @property
    def realtime_factor(self) -> float:
        return self.seconds / self.elapsed_s if self.elapsed_s > 0 else float("inf")

    def to_dict(self) -> dict:
        return asdict(self) | {"realtime_factor": self.realtime_factor}


def parse_set(items: list[str]) -> list[tuple[str, float]]:
    """``["limiter.th=0.5", …]`` → ``[("limiter.th", 0.5), …]``; NaN/Inf are refused here, before any work."""
    out = []
    for item in items:
        name, sep, value = item.partition("=")
        try:
            if not sep:
                raise ValueError
            number = float(value)
        except ValueError:
            raise DeepAFxError(f"--set {item!r}: write STAGE.SYMBOL=VALUE, e.g. limiter.th=0.5") from None
        out.append((name.strip(), finite_number(number, f"--set {name.strip()}")))
    return out


def load_params(path: str | Path, chain: Chain) -> tuple[np.ndarray, np.ndarray] | None:
    """Apply a parameter file to ``chain``.

    * ``.toml`` / ``.json``: ``"stage.symbol" = value`` port values (predicted or
      not), and/or ``normalized = [...]`` with one entry per predicted parameter.
      Applied at once; returns None.
    * ``.csv``: automation; a ``time`` column in seconds plus predicted-parameter
      columns of port values. Returns ``(times, normalized (rows, n_params))``;
      parameters without a column keep their current value.

    Every value goes through the chain's one check (:meth:`Chain.checked`: a
    finite number, clamped to the port's range with a warning); anything else
    is a :class:`DeepAFxError` naming the file (and the line of a CSV).
    """
    path = Path(path)
    if not path.is_file():
        raise DeepAFxError(f"parameter file {path} does not exist")
    suffix = path.suffix.lower()
    if suffix not in (".toml", ".json", ".csv"):
        raise DeepAFxError(f"{path}: a parameter file is .toml, .json (port values) or .csv (automation)")
    try:
        if suffix == ".csv":
            return _load_csv(path, chain)
        text = path.read_text(encoding="utf-8")
        data = json.loads(text) if suffix == ".json" else tomllib.loads(text)
    except (ValueError, tomllib.TOMLDecodeError) as exc:  # UnicodeDecodeError is a ValueError
        raise DeepAFxError(f"{path}: cannot parse: {exc}") from None
    if not isinstance(data, dict):
        raise DeepAFxError(
            f'{path}: expected an object of "stage.symbol": value pairs (and/or "normalized": [...]), '
            f"not a {type(data).__name__}"
        )
    try:
        normalized = data.pop("normalized", None)
        if normalized is not None:
            for name, value in zip(chain.parameter_names, chain.denormalize(_normalized(normalized, chain))):
                chain.set(name, float(value))
        for name, value in _flatten(data).items():
            chain.set(name, value)
    except ChainError as exc:
        raise DeepAFxError(f"{path}: {exc}") from None
    return None


def _normalized(values, chain: Chain) -> np.ndarray:
    """``normalized = [...]``: a finite number in [0, 1] (clamped, with a warning) per predicted parameter."""
    if not isinstance(values, list) or len(values) != chain.n_params:
        got = f"{len(values)} values" if isinstance(values, list) else f"{values!r}"
        raise ChainError(
            f"'normalized' must be a list of {chain.n_params} numbers in [0, 1], one per predicted "
            f"parameter of chain {chain.name!r} (got {got})"
        )
    return np.array([
        clamped_to(v, 0.0, 1.0, f"normalized[{i}] ({name})")
        for i, (v, name) in enumerate(zip(values, chain.parameter_names))
    ])  # fmt: skip


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
    header = [h.strip() for h in rows[0]]
    names = set(chain.parameter_names)
    cols = [h for h in header if h != "time"]
    unknown = [c for c in cols if c not in names]
    if unknown:
        raise DeepAFxError(f"{path}: unknown parameter column(s) {', '.join(unknown)}")
    base = np.array(list(chain.values.values()))
    index = [chain.parameter_names.index(c) if c != "time" else -1 for c in header]
    ranges = [(chain.parameters[j].minimum, chain.parameters[j].maximum) if j >= 0 else None for j in index]
    clamped = dict.fromkeys(cols, 0)
    times, table = [], []
    for line_no, row in enumerate(rows[1:], start=2):
        if not row or not any(cell.strip() for cell in row):
            continue
        where = f"{path}, line {line_no}"
        if len(row) != len(header):
            raise DeepAFxError(f"{where}: {len(row)} cell(s); the header names {len(header)} columns")
        values = base.copy()
        for h, j, bounds, cell in zip(header, index, ranges, row):
            try:
                number = float(cell)
                if h == "time":
                    t = finite_number(number, "time")
                else:  # the check Chain.set makes, without a warning per cell
                    values[j] = clamped_to(number, *bounds, h, warn=False)
                    clamped[h] += values[j] != number
            except ValueError:
                raise DeepAFxError(f"{where}: {h} = {cell.strip()!r} is not a number") from None
            except ChainError as exc:
                raise DeepAFxError(f"{where}: {exc}") from None
        times.append(t)
        table.append(values)
    if not times:
        raise DeepAFxError(f"{path}: no automation rows")
    for c, n in clamped.items():
        if n:
            p = chain.parameter(c)
            log.warning("%s: %d value(s) of %s outside %g … %g clamped", path, n, c, p.minimum, p.maximum)
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
    delay_s: float | None = None,
    params_log: str | Path | None = None,
    plot: str | Path | None = None,
    progress: bool = False,
) -> RenderReport:
    """Render one file through ``chain``; checks the output path before any work.

    With ``bundle`` (:class:`rt_host.bundle.Bundle`) its model drives the chain
    the way the live host does (:func:`rt_host.steer.render_steered`), one
    parameter row per ``block_size`` frames; ``params_log`` (CSV, readable by
    ``--params``) and ``plot`` (PNG) record that automation.
    """
    input_path, output_path = Path(input_path), Path(output_path)
    if bundle is not None and params_file:
        raise DeepAFxError("give either a model (--task/--bundle) or --params, not both")
    audio_io.check_writable(output_path, inputs=(input_path,))
    for flag, seconds in (("--smoothing", smoothing_s), ("--delay", delay_s)):
        if seconds is not None and not (math.isfinite(seconds) and seconds >= 0):
            raise DeepAFxError(f"{flag} must be a finite number of seconds ≥ 0, not {seconds:g}")
    if params_log and plot and Path(params_log).resolve() == Path(plot).resolve():
        raise DeepAFxError(f"--params-log and --plot both name {plot}; give each its own file")
    for extra in (params_log, plot):
        if extra:
            audio_io.check_output_path(Path(extra), inputs=(input_path,), others=(output_path,))
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
        from rt_host.steer import render_steered

        try:
            geometry = bundle.geometry(int(rate), delay_s)
        except ValueError as exc:  # the delay does not fit this model's hop
            raise DeepAFxError(f"--delay {delay_s}: {exc}; give a shorter --delay") from None
        y, predicted = render_steered(
            chain, x, int(rate), bundle.predictor(bundle.session(threads=1)),
            geometry, held=bundle.held, smoothing_s=smoothing_s, block=block_size,
            compensate_latency=compensate_latency, progress=progress,
        )  # fmt: skip
        _warn_about_predictions(predicted, bundle, x.shape[1])
    else:
        y = chain(x, rate, params, block_size=block_size, compensate_latency=compensate_latency)
    elapsed = time.perf_counter() - start
    if rate != file_rate:
        y = audio_io.resample(y, rate, file_rate)
    audio_io.write_audio(output_path, y, file_rate, subtype)
    p50 = None
    if predicted is not None:
        p50 = float(np.median(predicted.inference_ms)) if predicted.n_predictions else None
        from rt_host.plots import plot_automation, write_automation_csv

        times, rows = predicted.log()
        if params_log:
            write_automation_csv(chain, times, rows, Path(params_log))
        if plot:
            plot_automation(chain, times, rows, Path(plot))
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
        predictions=predicted.n_predictions if predicted is not None else 0,
        inference_ms_p50=p50,
        dropped_predictions=predicted.dropped if predicted is not None else 0,
    )


def _warn_about_predictions(automation, bundle, frames: int) -> None:
    """Say when the model could not steer: the file is shorter than one hop, or predictions were dropped."""
    if automation.n_predictions == 0:
        log.warning(
            "the file (%.2f s) is shorter than one hop of the model (%.2f s): it never ran; "
            "the chain played its default parameters",
            frames / automation.rate,
            bundle.hop / bundle.sample_rate,
        )
    if automation.dropped:
        log.warning(
            "the model predicted NaN/Inf %d of %d time(s); those predictions were dropped and the "
            "parameters held", automation.dropped, automation.n_predictions,
        )  # fmt: skip
