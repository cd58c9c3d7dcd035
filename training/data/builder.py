"""Local data sets for the DeepAFx tasks, built from Debian-packaged audio and cached outside git.

    python training/data.py mastering [--cache DIR] [--seed N] [--force] [--workers N]

Nothing is downloaded: the sources are files that ``./install.sh`` installs
with apt. A build is deterministic for a seed, takes minutes on two cores,
and a second run reuses the cache (and says so); ``--force`` rebuilds.

**mastering** — *targets* are professionally finished tracks: the Warzone 2100
soundtracks (``warzone2100-music``, Ogg/Opus at 48 kHz) and the Frets on Fire
songs (``fretsonfire-songs-muldjord`` / ``-sectoid``, ``song.ogg``, Ogg/Vorbis
at 44.1 kHz), resampled to 44.1 kHz stereo with soxr and trimmed of leading and
trailing digital silence. *Inputs* are the same audio "un-mastered" by a
seeded random process the mastering chain (multiband compressor → graphic EQ
→ limiter) can plausibly undo — see :class:`MasteringDegradation`:

1. EQ: a spectral tilt (± dB/octave about 1 kHz) and a few broad peaking moves;
2. dynamic expansion: a gain computer on a smoothed RMS envelope pushes every
   level away from a pivot near the track's loud passages by a ratio > 1 —
   quiet parts down (downward expansion), peaks up (upward expansion) — the
   inverse of what the chain's compressor does;
3. level: the result is set 6 … 20 dB *below the target's integrated loudness*
   (BS.1770), lower still within that range if needed to keep its peaks under
   −1 dBFS. No limiting and no clipping anywhere.

Splits are by track, never by window: every track (and every group of tracks
that share material, e.g. a soundtrack's "enhanced" remake of a piece) lands
in exactly one of train/val/test. Groups are assigned per collection (Warzone,
Frets on Fire) so each split holds both styles, aiming at 70/15/15 % of the
*minutes*.

**Cache** — ``$DEEPAFX_DATA/<task>`` or, by default,
``~/.cache/deepafx-rt/data/<task>``::

    manifest.json                 what was built: seed, recipe, splits, per-track parameters
    tracks/<id>.input.npy         float32 (channels, samples)
    tracks/<id>.target.npy        float32 (channels, samples)

Tracks are stored as uncompressed float32 ``.npy``: loading a window is a
memory-mapped slice (no decoding, and the page cache is shared by every
training worker process), the values are exactly what was computed, and
targets keep the decoded Opus overshoots above 0 dBFS that a 16/24-bit FLAC
would clip. The price is disk: 44.1 kHz stereo is ~21 MB per minute per array.
``manifest.json`` is written last, so a cache without it is an unfinished build.

**Reading** — :func:`load_tracks` gives memory-mapped :class:`Track`\\ s of one
split; :class:`WindowSampler` draws seeded random ``(input, target)`` windows
(with optional pre-roll context on the input); :func:`iter_windows` walks a
fixed grid (validation/test); :func:`encoder_view` is what the encoder sees of
a window (mono, 22,050 Hz, 40,960 samples).

**Other tasks** (issue 7) plug into the same machinery: a ``build_<task>``
function that lists its :class:`Source`\\ s and hands :func:`build_task` a
module-level ``make_pair(source, rate, channels, rng, options) -> (input,
target, meta)``; register it in :data:`BUILDERS`. Manifests, splits, caching,
progress, the loaders and the CLI then work unchanged.
"""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import importlib
import json
import logging
import math
import os
import re
import sys
import time
import zlib
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import asdict, dataclass, field
from multiprocessing import get_context
from pathlib import Path
from typing import Any

import numpy as np
import scipy.signal
import soundfile as sf

if __package__ in (None, ""):  # run as a script: make ``training`` and ``rt_host`` importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from rt_host.audio import map_channels, resample  # noqa: E402
from rt_host.errors import AudioFileError, DeepAFxError  # noqa: E402
from training.metrics import loudness  # noqa: E402

log = logging.getLogger("training.data")

FORMAT_VERSION = 1  # bump when the cache layout or a recipe's meaning changes: old caches rebuild
SPLITS = ("train", "val", "test")
SPLIT_FRACTIONS = {"train": 0.70, "val": 0.15, "test": 0.15}
SILENCE_DBFS = -60.0  # edges quieter than this (sample peak) are trimmed from every track
DEBIAN_SHARE = Path("/usr/share/games")

# encoder view (DeepAFx): the encoder sees mono audio at 22,050 Hz, 40,960 samples (1.86 s)
ENCODER_RATE = 22050
ENCODER_SAMPLES = 40960


class DataError(DeepAFxError):
    """A data set cannot be built or read; the message says what to do."""


# --- sources and splits ----------------------------------------------------------------
@dataclass(frozen=True)
class Source:
    """One source file of a data set.

    ``track_id`` names the track everywhere (file names, manifest, splits);
    tracks with the same ``group`` always land in the same split (use it for
    versions of one piece); splits are balanced within each ``collection``.
    """

    path: Path
    track_id: str
    group: str = ""
    collection: str = "default"
    package: str = ""

    def __post_init__(self) -> None:
        object.__setattr__(self, "path", Path(self.path))
        if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.-]*", self.track_id):
            raise DataError(f"track id {self.track_id!r} must be letters, digits, '.', '_' or '-'")
        if not self.group:
            object.__setattr__(self, "group", self.track_id)


def slug(text: str) -> str:
    """``text`` as a lower-case file-name-safe id (``"War of freedom"`` → ``"war-of-freedom"``)."""
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-") or "x"


def sources_from_files(paths: Sequence[str | Path], collection: str = "default") -> list[Source]:
    """One :class:`Source` per file, ids from the file names (for tests and custom data)."""
    out = [Source(Path(p), slug(Path(p).stem), collection=collection) for p in paths]
    ids = [s.track_id for s in out]
    if len(set(ids)) != len(ids):
        raise DataError("two source files map to the same track id; give them distinct names")
    return out


def mastering_sources(share: Path | None = None) -> list[Source]:
    """The Debian-packaged mastered music; :class:`DataError` if a package is missing.

    Warzone 2100 ships two pieces twice — ``menu.opus`` is a 3-minute excerpt
    of ``menu_enhanced.opus`` (normalised cross-correlation 0.93–0.99 at one
    constant offset, 500–3500 Hz) and ``track3_enhanced.opus`` a remaster of
    ``track3.opus`` (0.6–0.76 at zero offset) — so an ``*_enhanced`` file shares
    its original's group and split. (Every other pair of tracks stays below
    0.3, with no consistent offset.)

    Frets on Fire's ``song.ogg`` is the finished mix of each song's band
    *without* the lead guitar, which ships as a separate stem (``guitar.ogg``,
    uncorrelated with ``song.ogg``) that the game mixes in while you play; the
    stems are not used.
    """
    share = DEBIAN_SHARE if share is None else Path(share)
    wz = share / "warzone2100" / "music"
    fof = share / "fretsonfire" / "data" / "songs"
    found: list[Source] = []
    missing: list[str] = []
    wz_files = sorted(wz.glob("**/*.opus"))
    if not wz_files:
        missing.append("warzone2100-music")
    for p in wz_files:
        album = p.parent.name.removesuffix("_soundtrack") if p.parent != wz else ""
        track_id = "wz-" + (f"{slug(album)}-" if album else "") + slug(p.stem)
        group = "wz-" + slug(p.stem.removesuffix("_enhanced"))
        found.append(Source(p, track_id, group, "warzone2100", "warzone2100-music"))
    for pack in ("muldjord", "sectoid"):
        songs = sorted((fof / pack).glob("*/song.ogg"))
        if not songs:
            missing.append(f"fretsonfire-songs-{pack}")
        for p in songs:
            track_id = f"fof-{pack}-{slug(p.parent.name)}"
            found.append(Source(p, track_id, track_id, "fretsonfire", f"fretsonfire-songs-{pack}"))
    if missing:
        raise DataError(
            f"the Debian package(s) {', '.join(missing)} are missing (no music under {share}); "
            "./install.sh installs them"
        )
    return found


def assign_splits(
    groups: dict[str, tuple[str, float]], seed: int, fractions: dict[str, float] = SPLIT_FRACTIONS
) -> dict[str, str]:
    """``{group: split}`` for ``groups`` = ``{group: (collection, seconds)}``; deterministic for ``seed``.

    Within each collection the groups are shuffled; the first three go one each
    to train, test and val (so every split gets every style once a collection
    has three groups), the rest to whichever split is furthest below its share
    of that collection's minutes.
    """
    rng = np.random.default_rng(np.random.SeedSequence([seed, zlib.crc32(b"split")]))
    out: dict[str, str] = {}
    for coll in sorted({c for c, _ in groups.values()}):
        names = sorted(g for g, (c, _) in groups.items() if c == coll)
        total = sum(groups[g][1] for g in names)
        have = dict.fromkeys(SPLITS, 0.0)
        for i, k in enumerate(rng.permutation(len(names))):
            g = names[k]
            if i < len(SPLITS):
                split = ("train", "test", "val")[i]
            else:  # ties → the order of SPLITS
                split = max(SPLITS, key=lambda s: (fractions[s] * total - have[s], -SPLITS.index(s)))
            out[g] = split
            have[split] += groups[g][1]
    return out


def source_seconds(sources: Sequence[Source]) -> dict[str, float]:
    """``{track_id: seconds}`` from the files' headers (no decoding)."""
    seconds = {}
    for s in sources:
        try:
            i = sf.info(str(s.path))
        except (sf.LibsndfileError, RuntimeError) as exc:
            raise DataError(f"cannot read {s.path} as audio: {exc}") from None
        seconds[s.track_id] = i.frames / i.samplerate
    return seconds


def split_sources(
    sources: Sequence[Source], seed: int, seconds: dict[str, float] | None = None
) -> dict[str, str]:
    """``{track_id: split}``: the split every source lands in for ``seed`` (by group, per collection).

    ``seconds`` (:func:`source_seconds`) when the caller has it already; read from the files if not.
    """
    seconds = source_seconds(sources) if seconds is None else seconds
    group_info: dict[str, tuple[str, float]] = {}
    for s in sources:
        coll, sec = group_info.get(s.group, (s.collection, 0.0))
        if coll != s.collection:
            raise DataError(f"group {s.group} spans two collections ({coll}, {s.collection})")
        group_info[s.group] = (coll, sec + seconds[s.track_id])
    split_of_group = assign_splits(group_info, seed)
    empty = [sp for sp in SPLITS if sp not in split_of_group.values()]
    if empty:
        raise DataError(
            f"{len(group_info)} track group(s) cannot fill train, val and test "
            f"({', '.join(empty)} would be empty); give at least three tracks"
        )
    return {s.track_id: split_of_group[s.group] for s in sources}


def track_rng(seed: int, track_id: str) -> np.random.Generator:
    """The random generator of one track: depends only on the seed and the id, not on other tracks."""
    return np.random.default_rng(np.random.SeedSequence([seed, zlib.crc32(track_id.encode())]))


# --- mastering degradation -------------------------------------------------------------
@dataclass(frozen=True)
class MasteringDegradation:
    """Ranges of the random "un-mastering" of a track (each parameter drawn uniformly per track).

    The chain undoes it in its own order: the compressor with make-up gain
    undoes level and expansion, the graphic EQ (±12 dB per band) the EQ.
    """

    level_db: tuple[float, float] = (-20.0, -6.0)  # input loudness − target loudness (LU)
    peak_ceiling_dbfs: float = -1.0  # the level is drawn lower (within level_db) to keep peaks below
    tilt_db_per_octave: tuple[float, float] = (-1.0, 1.0)  # about tilt_pivot_hz; at most ±4.5 dB at 40 Hz
    tilt_pivot_hz: float = 1000.0
    eq_bands: tuple[int, int] = (2, 4)  # number of peaking moves (inclusive)
    eq_freq_hz: tuple[float, float] = (60.0, 12000.0)  # log-uniform
    eq_gain_db: tuple[float, float] = (-6.0, 6.0)
    eq_q: tuple[float, float] = (0.5, 1.2)  # broad: Q 0.5 ≈ 2.5 octaves, 1.2 ≈ 1.2 octaves
    expansion_ratio: tuple[float, float] = (1.2, 1.8)  # level changes are multiplied by this
    expansion_pivot_below_loud_db: tuple[float, float] = (0.0, 6.0)  # pivot under the envelope's P95
    expansion_time_ms: tuple[float, float] = (30.0, 120.0)  # RMS envelope time constant
    expansion_max_cut_db: float = 18.0
    expansion_max_boost_db: float = 6.0
    expansion_floor_below_pivot_db: float = 40.0  # quieter than this is treated as this (no fade to −∞)


def draw_mastering_params(rng: np.random.Generator, ranges: MasteringDegradation) -> dict[str, Any]:
    """One track's degradation parameters, drawn in a fixed order from ``rng`` (JSON-ready)."""
    r = ranges
    u_level = float(rng.uniform())  # mapped onto the allowed level range once the peaks are known
    tilt = float(rng.uniform(*r.tilt_db_per_octave))
    n_eq = int(rng.integers(r.eq_bands[0], r.eq_bands[1] + 1))
    eq = []
    for _ in range(n_eq):
        f = float(np.exp(rng.uniform(np.log(r.eq_freq_hz[0]), np.log(r.eq_freq_hz[1]))))
        eq.append(
            {"freq_hz": f, "gain_db": float(rng.uniform(*r.eq_gain_db)), "q": float(rng.uniform(*r.eq_q))}
        )
    return {
        "level_u": u_level,
        "tilt_db_per_octave": tilt,
        "eq": eq,
        "expansion_ratio": float(rng.uniform(*r.expansion_ratio)),
        "expansion_pivot_below_loud_db": float(rng.uniform(*r.expansion_pivot_below_loud_db)),
        "expansion_time_ms": float(rng.uniform(*r.expansion_time_ms)),
    }


def _first_order_shelf(f0: float, gain_db: float, rate: int) -> tuple[np.ndarray, np.ndarray, float]:
    """Zero, pole and gain of a first-order high shelf: 0 dB at DC, ``gain_db`` at Nyquist, centred on f0."""
    g = 10.0 ** (gain_db / 20.0)
    w0 = 2.0 * rate * np.tan(np.pi * f0 / rate)  # pre-warped: the transition lands on f0 after bilinear
    z, p, k = scipy.signal.bilinear_zpk([-w0 / np.sqrt(g)], [-w0 * np.sqrt(g)], g, rate)
    return z, p, k


def tilt_sos(db_per_octave: float, rate: int, pivot_hz: float = 1000.0) -> np.ndarray:
    """A spectral tilt of ``db_per_octave`` (0 dB at ``pivot_hz``) as second-order sections.

    A cascade of first-order high shelves one octave apart (31 Hz … 16 kHz),
    each adding ``db_per_octave``: their overlapping 6 dB/octave transitions
    add up to a straight line in dB over log-frequency, within 0.2 dB of it
    from 60 Hz to 10 kHz at ±1 dB/octave, levelling off towards the band
    edges (1 dB/octave: −4.5 dB at 40 Hz, +3.9 dB at 16 kHz).
    """
    centres = [pivot_hz * 2.0**k for k in range(-5, 5)]
    zeros, poles, gain = [], [], 1.0
    for f0 in centres:
        if f0 < 0.45 * rate:
            z, p, k = _first_order_shelf(f0, db_per_octave, rate)
            zeros.extend(z)
            poles.extend(p)
            gain *= k
    sos = scipy.signal.zpk2sos(np.array(zeros), np.array(poles), gain)
    _, h = scipy.signal.sosfreqz(sos, worN=[pivot_hz], fs=rate)
    sos[0, :3] /= abs(h[0])  # 0 dB at the pivot
    return sos


def peaking_sos(freq_hz: float, gain_db: float, q: float, rate: int) -> np.ndarray:
    """One peaking EQ band (RBJ Audio EQ Cookbook) as a ``(1, 6)`` section."""
    a = 10.0 ** (gain_db / 40.0)
    w = 2.0 * np.pi * freq_hz / rate
    alpha = np.sin(w) / (2.0 * q)
    b = [1 + alpha * a, -2 * np.cos(w), 1 - alpha * a]
    den = [1 + alpha / a, -2 * np.cos(w), 1 - alpha / a]
    return np.array([[*(np.array(b) / den[0]), 1.0, den[1] / den[0], den[2] / den[0]]])


def mastering_eq_sos(params: dict[str, Any], rate: int, pivot_hz: float = 1000.0) -> np.ndarray:
    """The whole EQ of a degradation (tilt, then peaking moves) as second-order sections."""
    parts = [tilt_sos(params["tilt_db_per_octave"], rate, pivot_hz)]
    parts += [
        peaking_sos(b["freq_hz"], b["gain_db"], b["q"], rate)
        for b in params["eq"]
        if b["freq_hz"] < 0.45 * rate
    ]
    return np.vstack(parts)


def sosfilt_chunked(sos: np.ndarray, x: np.ndarray, chunk: int = 1 << 20) -> np.ndarray:
    """``scipy.signal.sosfilt`` along the last axis in float64, in chunks; float32 out.

    Chunking (with the filter state carried over) keeps the float64 working
    copy small on 10-minute tracks; the result is identical to one call.
    """
    out = np.empty(x.shape, dtype=np.float32)
    zi = np.zeros((sos.shape[0], x.shape[0], 2))
    for i in range(0, x.shape[1], chunk):
        y, zi = scipy.signal.sosfilt(sos, x[:, i : i + chunk].astype(np.float64), axis=-1, zi=zi)
        out[:, i : i + chunk] = y
    return out


ENVELOPE_HOP = 32  # the envelope and gain are computed every 32 samples (0.7 ms) and interpolated


def rms_envelope_db(x: np.ndarray, rate: int, time_ms: float) -> np.ndarray:
    """Smoothed RMS level in dB of ``x`` (all channels linked), one value per :data:`ENVELOPE_HOP` samples.

    Mean square over channels and a 32-sample hop, then a one-pole smoother of
    time constant ``time_ms`` — an RMS detector like a compressor's.
    """
    n = x.shape[1] // ENVELOPE_HOP * ENVELOPE_HOP
    ms = np.mean(np.square(x[:, :n], dtype=np.float64).reshape(x.shape[0], -1, ENVELOPE_HOP), axis=(0, 2))
    if n < x.shape[1]:
        ms = np.append(ms, np.mean(np.square(x[:, n:], dtype=np.float64)))
    a = math.exp(-ENVELOPE_HOP / (time_ms * 1e-3 * rate))
    smooth, _ = scipy.signal.lfilter([1.0 - a], [1.0, -a], ms, zi=[a * ms[0]])
    return 10.0 * np.log10(np.maximum(smooth, 1e-12))


def expansion_gain_db(
    env_db: np.ndarray, ratio: float, pivot_db: float, floor_db: float, max_cut_db: float, max_boost_db: float
) -> np.ndarray:
    """Gain (dB) of an expander around ``pivot_db``: ``(ratio − 1)·(level − pivot)``, clamped.

    Below the pivot it is a downward expander, above it an upward one; a level
    below ``floor_db`` counts as ``floor_db`` (silence is not pushed to −∞).
    """
    g = (ratio - 1.0) * (np.maximum(env_db, floor_db) - pivot_db)
    return np.clip(g, -max_cut_db, max_boost_db)


def _peak_dbfs(x: np.ndarray) -> float:
    peak = float(np.max(np.abs(x)))
    return 20.0 * math.log10(peak) if peak > 0 else float("-inf")


def degrade_mastering(
    target: np.ndarray, rate: int, params: dict[str, Any], ranges: MasteringDegradation
) -> tuple[np.ndarray, dict[str, Any]]:
    """The "un-mastered" input for ``target`` (float32 ``(channels, samples)``) and what was done.

    EQ → expansion → level, as described in the module docstring. Returns the
    input and a JSON-ready record: the realised level (LU), gain, pivot,
    loudness and peaks of target and input.
    """
    r = ranges
    eq = sosfilt_chunked(mastering_eq_sos(params, rate, r.tilt_pivot_hz), target)
    env = rms_envelope_db(eq, rate, params["expansion_time_ms"])
    loud = float(np.percentile(env, 95))
    pivot = loud - params["expansion_pivot_below_loud_db"]
    g_db = expansion_gain_db(
        env,
        params["expansion_ratio"],
        pivot,
        pivot - r.expansion_floor_below_pivot_db,
        r.expansion_max_cut_db,
        r.expansion_max_boost_db,
    )
    # gain per sample: the block gains placed at block centres, linearly interpolated
    centres = np.arange(len(g_db)) * ENVELOPE_HOP + ENVELOPE_HOP / 2
    gain = np.interp(np.arange(eq.shape[1]), centres, 10.0 ** (g_db / 20.0)).astype(np.float32)
    expanded = eq * gain

    l_target = loudness(target, rate)
    l_expanded = loudness(expanded, rate)
    if not (math.isfinite(l_target) and math.isfinite(l_expanded)):
        raise DataError("the track is silent (its loudness is −inf); remove it from the sources")
    lo, hi = r.level_db
    # the loudest level (relative to the target) that keeps the input's peaks under the ceiling
    peak_limited = r.peak_ceiling_dbfs - _peak_dbfs(expanded) + l_expanded - l_target
    upper = min(hi, max(lo, peak_limited))
    level = lo + params["level_u"] * (upper - lo)
    gain_db = l_target + level - l_expanded
    x = (expanded * np.float32(10.0 ** (gain_db / 20.0))).astype(np.float32)
    return x, {
        "level_db": level,
        "level_upper_db": upper,
        "gain_db": gain_db,
        "expansion_pivot_dbfs": pivot,
        "expansion_gain_db_range": [float(g_db.min()), float(g_db.max())],
        "target_lufs": l_target,
        "input_lufs": l_target + level,
        "target_peak_dbfs": _peak_dbfs(target),
        "input_peak_dbfs": _peak_dbfs(x),
    }


# --- reading sources ---------------------------------------------------------------------
def read_source(source: Source, rate: int, channels: int) -> tuple[np.ndarray, dict[str, Any]]:
    """A source file as float32 ``(channels, samples)`` at ``rate``, edges of silence trimmed.

    Mono becomes stereo by copying; more channels than wanted is an error.
    Returns the audio and a record of the file (format, rate, trimmed seconds).
    """
    try:
        info = sf.info(str(source.path))
        audio, src_rate = sf.read(str(source.path), dtype="float32", always_2d=True)
    except (sf.LibsndfileError, RuntimeError, OSError) as exc:
        raise DataError(f"cannot read {source.path} as audio: {exc}") from None
    audio = np.ascontiguousarray(audio.T)
    if audio.shape[1] == 0:
        raise DataError(f"{source.path} holds no samples")
    try:
        audio = map_channels(audio, channels, "duplicate" if audio.shape[0] == 1 else "auto")
    except AudioFileError:
        raise DataError(
            f"{source.path} has {audio.shape[0]} channels; this data set needs {channels}"
        ) from None
    audio = resample(audio, int(src_rate), rate)
    loud = np.flatnonzero(np.max(np.abs(audio), axis=0) > 10.0 ** (SILENCE_DBFS / 20.0))
    if loud.size == 0:
        raise DataError(f"{source.path} is silent (no sample above {SILENCE_DBFS:g} dBFS)")
    start, stop = int(loud[0]), int(loud[-1]) + 1
    record = {
        "source_format": f"{info.format}/{info.subtype}",
        "source_rate": int(src_rate),
        "source_channels": int(info.channels),
        "source_seconds": round(info.frames / src_rate, 3),
        "trimmed_seconds": [round(start / rate, 3), round((audio.shape[1] - stop) / rate, 3)],
    }
    return np.ascontiguousarray(audio[:, start:stop]), record


def mastering_pair(
    source: Source, rate: int, channels: int, rng: np.random.Generator, options: dict[str, Any]
) -> tuple[np.ndarray, np.ndarray, dict[str, Any]]:
    """``make_pair`` of the mastering task: (degraded input, finished target, per-track record)."""
    ranges = MasteringDegradation(**{k: tuple(v) if isinstance(v, list) else v for k, v in options.items()})
    target, record = read_source(source, rate, channels)
    if target.shape[1] < rate:
        raise DataError(f"{source.path} is shorter than 1 s after trimming silence")
    params = draw_mastering_params(rng, ranges)
    x, realised = degrade_mastering(target, rate, params, ranges)
    record.update(realised)
    record["degradation"] = params
    return x, target, record


def mastering_example(
    seconds: float = 15.0, seed: int = 0, rate: int = 44100
) -> tuple[np.ndarray, np.ndarray, Source]:
    """A short un-mastered excerpt made the way the data set is, from a *test-split* track.

    ``(input, target, source)``: the middle ``seconds`` of the first test track
    (by id) of the Debian-packaged music, degraded with that track's seeded
    parameters — material no model trained on this data set has heard. Used by
    ``deepafx-rt demo``; takes a second or two (one file decoded).
    """
    sources = mastering_sources()
    split = split_sources(sources, seed)
    source = min((s for s in sources if split[s.track_id] == "test"), key=lambda s: s.track_id)
    target, _ = read_source(source, rate, 2)
    n = min(target.shape[1], int(seconds * rate))
    start = (target.shape[1] - n) // 2
    target = np.ascontiguousarray(target[:, start : start + n])
    ranges = MasteringDegradation()
    params = draw_mastering_params(track_rng(seed, source.track_id), ranges)
    x, _ = degrade_mastering(target, rate, params, ranges)
    return x, target, source


# --- the generic builder ------------------------------------------------------------------
MakePair = Callable[
    [Source, int, int, np.random.Generator, dict[str, Any]], tuple[np.ndarray, np.ndarray, dict]
]


def default_cache_root() -> Path:
    """``$DEEPAFX_DATA`` if set, else ``~/.cache/deepafx-rt/data``; each task has a folder inside."""
    env = os.environ.get("DEEPAFX_DATA")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "deepafx-rt" / "data"


def resolve_cache_dir(task: str, cache_dir: str | Path | None = None) -> Path:
    """``cache_dir`` if given, else ``default_cache_root() / task``."""
    return Path(cache_dir).expanduser() if cache_dir is not None else default_cache_root() / task


@dataclass
class _Job:
    make_pair: MakePair
    source: Source
    seed: int
    rate: int
    channels: int
    options: dict[str, Any]
    tracks_dir: Path


def _save_npy(path: Path, array: np.ndarray) -> None:
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "wb") as f:
        np.save(f, np.ascontiguousarray(array, dtype=np.float32))
    os.replace(tmp, path)


def _run_job(job: _Job) -> dict[str, Any]:
    """Make, check and store one track; returns its manifest record (runs in a worker process)."""
    s = job.source
    x, y, record = job.make_pair(s, job.rate, job.channels, track_rng(job.seed, s.track_id), job.options)
    if x.shape != y.shape or x.ndim != 2 or x.shape[0] != job.channels:
        raise DataError(
            f"{s.track_id}: input {x.shape} and target {y.shape} must both be ({job.channels}, n)"
        )
    if not (np.all(np.isfinite(x)) and np.all(np.isfinite(y))):
        raise DataError(f"{s.track_id}: the builder produced NaN/Inf")
    names = {"input": f"{s.track_id}.input.npy", "target": f"{s.track_id}.target.npy"}
    _save_npy(job.tracks_dir / names["input"], x)
    _save_npy(job.tracks_dir / names["target"], y)
    return {
        "id": s.track_id,
        "group": s.group,
        "collection": s.collection,
        "package": s.package,
        "source": str(s.path),
        "frames": int(y.shape[1]),
        "seconds": round(y.shape[1] / job.rate, 3),
        "input": f"tracks/{names['input']}",
        "target": f"tracks/{names['target']}",
        **record,
    }


def _fingerprint(sources: Sequence[Source]) -> list[list[Any]]:
    out = []
    for s in sources:
        try:
            st = s.path.stat()
        except OSError:
            raise DataError(f"source file {s.path} does not exist") from None
        out.append([s.track_id, str(s.path), st.st_size, st.st_mtime_ns, s.group, s.collection])
    return out


def _jsonable(obj: Any) -> Any:
    return json.loads(json.dumps(obj))


def _cache_problem(cache: Path, expected: dict[str, Any]) -> str | None:
    """Why the cache in ``cache`` cannot be reused (``None`` if it can)."""
    path = cache / "manifest.json"
    if not path.is_file():
        return "no finished build there"
    try:
        manifest = json.loads(path.read_text())
    except (OSError, ValueError):
        return "its manifest.json is unreadable"
    what = {
        "format_version": "an older cache format",
        "task": "another task",
        "seed": "another seed",
        "recipe": "another recipe",
        "sources": "other source files",
    }
    for key, text in what.items():
        if manifest.get(key) != expected[key]:
            return f"it was built with {text}"
    payload = 4 * expected["recipe"]["channels"]  # bytes per frame of float32
    for t in manifest.get("tracks", []):
        for kind in ("input", "target"):
            f = cache / t[kind]
            if not f.is_file() or f.stat().st_size < payload * t["frames"]:
                return f"{t[kind]} is missing or truncated"
    return None


@contextlib.contextmanager
def _locked(cache: Path) -> Iterator[None]:
    """Hold ``cache/.lock``, so two builds (a trainer and an evaluator starting together) never interleave."""
    with open(cache / ".lock", "w") as f:
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            log.info("waiting for another build of %s to finish …", cache)
            fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def _progress(total: int, desc: str, enabled: bool) -> Any:
    from tqdm import tqdm

    # counted in seconds of source audio: the bar's rate reads as "× real time"
    return tqdm(total=total, desc=desc, unit="s", disable=not enabled, dynamic_ncols=True)


def build_task(
    task: str,
    cache_dir: str | Path | None,
    seed: int,
    sources: Sequence[Source],
    make_pair: MakePair,
    *,
    rate: int,
    channels: int,
    options: dict[str, Any],
    force: bool = False,
    workers: int | None = None,
    progress: bool = True,
) -> Path:
    """Build (or reuse) the data set of ``task`` in its cache; returns the cache directory.

    ``make_pair(source, rate, channels, rng, options)`` must be a module-level
    function (it runs in worker processes) returning ``(input, target,
    record)``: two float32 ``(channels, n)`` arrays and a JSON-ready dict for
    the manifest. ``rng`` is the track's own generator (:func:`track_rng`).
    The cache is reused when its manifest matches the task, seed, recipe
    (``rate``, ``channels``, ``options``, split fractions) and the source files
    (paths, sizes, mtimes); ``force`` rebuilds regardless.

    With ``workers`` > 1 the tracks are made in spawned processes, which
    re-import the caller's main module: a script that builds must keep its
    work under ``if __name__ == "__main__":``, as every script should.
    """
    cache = resolve_cache_dir(task, cache_dir)
    if not sources:
        raise DataError(f"no source files for the {task} data set")
    ids = [s.track_id for s in sources]
    if len(set(ids)) != len(ids):
        raise DataError(f"duplicate track ids in the {task} sources")
    expected = _jsonable(
        {
            "format_version": FORMAT_VERSION,
            "task": task,
            "seed": seed,
            "recipe": {
                "rate": rate,
                "channels": channels,
                "options": options,
                "split_fractions": SPLIT_FRACTIONS,
            },
            "sources": _fingerprint(sources),
        }
    )
    try:
        (cache / "tracks").mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise DataError(f"cannot create the cache folder {cache}: {exc.strerror}") from None
    if not os.access(cache, os.W_OK):
        raise DataError(f"cannot write to the cache folder {cache}; pass --cache DIR or set DEEPAFX_DATA")
    with _locked(cache):
        problem = None if force else _cache_problem(cache, expected)
        if not force and problem is None:
            log.info("%s: reusing the cached data set in %s (--force rebuilds)", task, cache)
            return cache
        log.info("%s: building in %s (%s)", task, cache, "--force" if force else problem)
        (cache / "manifest.json").unlink(missing_ok=True)  # from here on the cache is unfinished
        for old in (cache / "tracks").glob("*.npy*"):
            old.unlink()

        seconds = source_seconds(sources)
        split_of_track = split_sources(sources, seed, seconds)

        t0 = time.monotonic()
        jobs = [_Job(make_pair, s, seed, rate, channels, options, cache / "tracks") for s in sources]
        jobs.sort(key=lambda j: -seconds[j.source.track_id])  # longest first: balances the workers
        n_workers = max(1, min(workers or os.cpu_count() or 1, len(jobs)))
        records: list[dict[str, Any]] = []
        with _progress(
            sum(round(v) for v in seconds.values()), f"{task}: {len(jobs)} tracks", progress
        ) as bar:
            if n_workers == 1:
                for job in jobs:
                    records.append(_run_job(job))
                    bar.update(round(seconds[job.source.track_id]))
            else:
                # spawn, not fork: the caller may hold TensorFlow or plugin state that must not be forked
                pool = ProcessPoolExecutor(n_workers, mp_context=get_context("spawn"))
                try:
                    futures = {pool.submit(_run_job, job): job for job in jobs}
                    for fut in as_completed(futures):
                        records.append(fut.result())
                        bar.update(round(seconds[futures[fut].source.track_id]))
                finally:  # on an error, do not wait for the queued tracks
                    pool.shutdown(wait=True, cancel_futures=True)
        build_seconds = time.monotonic() - t0

        records.sort(key=lambda r: r["id"])
        for r in records:
            r["split"] = split_of_track[r["id"]]
        manifest = {
            **expected,
            "layout": "tracks/<id>.{input,target}.npy: float32 (channels, samples) at recipe.rate",
            "splits": {sp: [r["id"] for r in records if r["split"] == sp] for sp in SPLITS},
            "tracks": records,
            "build": {
                "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
                "seconds": round(build_seconds, 1),
                "workers": n_workers,
            },
        }
        tmp = cache / "manifest.json.tmp"
        tmp.write_text(json.dumps(_jsonable(manifest), indent=1, ensure_ascii=False) + "\n")
        os.replace(tmp, cache / "manifest.json")
        log.info("%s: built %d tracks in %.0f s", task, len(records), build_seconds)
    return cache


def build_mastering(
    cache_dir: str | Path | None = None,
    seed: int = 0,
    *,
    sources: Sequence[Source] | None = None,
    ranges: MasteringDegradation = MasteringDegradation(),
    force: bool = False,
    workers: int | None = None,
    progress: bool = True,
) -> Path:
    """Build (or reuse) the mastering data set; returns its cache directory.

    ``sources`` defaults to :func:`mastering_sources` (the Debian packages);
    tests pass a few generated files instead.
    """
    return build_task(
        "mastering",
        cache_dir,
        seed,
        mastering_sources() if sources is None else list(sources),
        mastering_pair,
        rate=44100,
        channels=2,
        options=asdict(ranges),
        force=force,
        workers=workers,
        progress=progress,
    )


def _lazy_builder(module: str, name: str) -> Callable[..., Path]:
    """A builder from a module that imports this one: imported when called, not at import time."""

    def build(*args: Any, **kwargs: Any) -> Path:
        return getattr(importlib.import_module(module), name)(*args, **kwargs)

    build.__name__ = build.__qualname__ = name
    return build


# Tasks `python training/data.py TASK` can build:
# build_<task>(cache_dir, seed, *, force, workers, progress) -> Path, each a thin wrapper of build_task.
BUILDERS: dict[str, Callable[..., Path]] = {
    "mastering": build_mastering,
    "nonspeech": _lazy_builder("training.nonspeech_data", "build_nonspeech"),
    "distortion": _lazy_builder("training.distortion_data", "build_distortion"),
}


# --- reading a built data set -----------------------------------------------------------
@dataclass
class Track:
    """One track of a built data set; ``input``/``target`` are read-only memory maps (channels, samples)."""

    track_id: str
    split: str
    rate: int
    input: np.ndarray
    target: np.ndarray
    meta: dict[str, Any] = field(repr=False)

    @property
    def seconds(self) -> float:
        return self.target.shape[1] / self.rate


def load_manifest(cache_dir: str | Path) -> dict[str, Any]:
    """The manifest of a finished build in ``cache_dir``; :class:`DataError` if there is none."""
    path = Path(cache_dir) / "manifest.json"
    if not path.is_file():
        raise DataError(
            f"no built data set in {cache_dir} (no manifest.json); run: python training/data.py TASK"
        )
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise DataError(f"{path} is unreadable ({exc}); rebuild with --force") from None


def load_tracks(cache_dir: str | Path, split: str | None = None, mmap: bool = True) -> list[Track]:
    """The tracks of ``split`` (all when ``None``) in manifest order, memory-mapped unless ``mmap=False``."""
    if split is not None and split not in SPLITS:
        raise DataError(f"split must be one of {', '.join(SPLITS)}, not {split!r}")
    cache = Path(cache_dir)
    manifest = load_manifest(cache)
    rate = int(manifest["recipe"]["rate"])
    out = []
    for t in manifest["tracks"]:
        if split is not None and t["split"] != split:
            continue
        try:
            x = np.load(cache / t["input"], mmap_mode="r" if mmap else None)
            y = np.load(cache / t["target"], mmap_mode="r" if mmap else None)
        except (OSError, ValueError) as exc:
            raise DataError(
                f"cannot load track {t['id']} from {cache}: {exc}; rebuild with --force"
            ) from None
        out.append(Track(t["id"], t["split"], rate, x, y, t))
    return out


class WindowSampler:
    """Seeded random ``(input, target)`` windows from a list of tracks.

    Each call draws a track with probability proportional to how many windows
    it holds (every second of audio is equally likely), then a start; windows
    whose *target* RMS is below ``min_rms_dbfs`` (silent passages) are redrawn.
    The input carries ``preroll`` extra samples of real audio *before* the
    window — context for a plugin chain to settle on, cut from its output
    (:class:`training.renderer.RenderSettings`). Same seed, same tracks → same
    windows, in the same order.

    >>> s = WindowSampler(load_tracks(cache, "train"), window=81920, preroll=4096, seed=0)
    >>> x, y = s.sample()        # (2, 4096 + 81920), (2, 81920) float32
    >>> xb, yb = s.batch(8)      # (8, 2, 86016), (8, 2, 81920)
    """

    def __init__(
        self,
        tracks: Sequence[Track],
        window: int,
        preroll: int = 0,
        seed: int = 0,
        min_rms_dbfs: float = -50.0,
    ) -> None:
        if window <= 0 or preroll < 0:
            raise ValueError(f"window must be > 0 and preroll ≥ 0 samples (got {window}, {preroll})")
        self.tracks = [t for t in tracks if t.target.shape[1] >= preroll + window]
        if not self.tracks:
            raise DataError(f"no track is long enough for windows of {preroll} + {window} samples")
        self.window, self.preroll, self.seed = window, preroll, seed
        self.min_ms = 10.0 ** (min_rms_dbfs / 10.0)
        counts = np.array([t.target.shape[1] - preroll - window + 1 for t in self.tracks], dtype=np.float64)
        self._p = counts / counts.sum()
        self.reset()

    def reset(self) -> None:
        """Start the sequence of windows again from the beginning."""
        self._rng = np.random.default_rng(self.seed)

    def sample(self) -> tuple[np.ndarray, np.ndarray]:
        """One pair: input ``(C, preroll + window)``, target ``(C, window)``, float32 copies."""
        for _ in range(100):
            t = self.tracks[int(self._rng.choice(len(self.tracks), p=self._p))]
            start = int(self._rng.integers(self.preroll, t.target.shape[1] - self.window + 1))
            y = np.array(t.target[:, start : start + self.window], dtype=np.float32)
            if float(np.mean(np.square(y, dtype=np.float64))) >= self.min_ms:
                x = np.array(t.input[:, start - self.preroll : start + self.window], dtype=np.float32)
                return x, y
        raise DataError("100 windows in a row were silent; lower min_rms_dbfs or check the data")

    def batch(self, size: int) -> tuple[np.ndarray, np.ndarray]:
        """``size`` pairs stacked: ``(B, C, preroll + window)`` and ``(B, C, window)``."""
        pairs = [self.sample() for _ in range(size)]
        return np.stack([p[0] for p in pairs]), np.stack([p[1] for p in pairs])

    def __iter__(self) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        while True:
            yield self.sample()


@dataclass(frozen=True)
class Window:
    """A window at a fixed place: ``input`` ``(C, preroll + n)``, ``target`` ``(C, n)``."""

    track_id: str
    start: int  # first target sample in the track
    input: np.ndarray
    target: np.ndarray


def iter_windows(
    tracks: Sequence[Track], window: int, hop: int | None = None, preroll: int = 0
) -> Iterator[Window]:
    """Every window on a fixed grid (starts ``preroll``, ``preroll + hop``, …) of every track, in order.

    Deterministic, for validation losses and evaluation; ``hop`` defaults to
    ``window`` (no overlap). Windows that would run past a track's end are skipped.
    """
    hop = hop or window
    for t in tracks:
        for start in range(preroll, t.target.shape[1] - window + 1, hop):
            yield Window(
                t.track_id,
                start,
                np.array(t.input[:, start - preroll : start + window], dtype=np.float32),
                np.array(t.target[:, start : start + window], dtype=np.float32),
            )


def encoder_view(
    x: np.ndarray,
    rate: int = 44100,
    out_rate: int = ENCODER_RATE,
    length: int = ENCODER_SAMPLES,
    anchor: str = "center",
) -> np.ndarray:
    """What the encoder sees of audio ``x``: mono, resampled to ``out_rate``, exactly ``length`` samples.

    ``x`` is ``(C, n)`` → ``(length,)`` or a batch ``(B, C, n)`` → ``(B, length)``,
    float32. Channels are averaged, soxr resamples (high quality), then the
    result is cut to ``length`` (or zero-padded) keeping its ``"center"``, its
    ``"start"`` or its ``"end"`` (the most recent audio, as a live controller
    sees it). 81,920 samples at 44.1 kHz become exactly 40,960 at 22,050 Hz.
    """
    import soxr

    a = np.asarray(x, dtype=np.float32)
    single = a.ndim == 2
    if single:
        a = a[np.newaxis]
    if a.ndim != 3:
        raise ValueError(f"x must be (channels, samples) or (batch, channels, samples), got shape {a.shape}")
    if anchor not in ("center", "start", "end"):
        raise ValueError(f"anchor must be center, start or end, not {anchor!r}")
    mono = a.mean(axis=1)  # (B, n)
    if out_rate != rate:
        resampled = soxr.resample(np.ascontiguousarray(mono.T), rate, out_rate, quality="HQ")
        mono = np.asarray(resampled, dtype=np.float32).T
    n = mono.shape[1]
    if n >= length:
        s = {"start": 0, "end": n - length, "center": (n - length) // 2}[anchor]
        out = mono[:, s : s + length]
    else:
        left = {"start": 0, "end": length - n, "center": (length - n) // 2}[anchor]
        out = np.pad(mono, ((0, 0), (left, length - n - left)))
    out = np.ascontiguousarray(out, dtype=np.float32)
    return out[0] if single else out


# --- command line ---------------------------------------------------------------------------
def _dir_size(path: Path) -> int:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file())


def summary(cache_dir: str | Path) -> str:
    """A few lines about a built data set: tracks and minutes per split, cache size, build time."""
    cache = Path(cache_dir)
    m = load_manifest(cache)
    lines = [f"{m['task']} data set in {cache} (seed {m['seed']}, built in {m['build']['seconds']:.0f} s)"]
    for sp in SPLITS:
        tr = [t for t in m["tracks"] if t["split"] == sp]
        minutes = sum(t["seconds"] for t in tr) / 60
        lines.append(f"  {sp:5s}  {len(tr):3d} tracks  {minutes:6.1f} min")
    total = sum(t["seconds"] for t in m["tracks"]) / 60
    lines.append(
        f"  total  {len(m['tracks']):3d} tracks  {total:6.1f} min, {_dir_size(cache) / 1e9:.2f} GB on disk"
    )
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    """``python training/data.py TASK [--cache DIR] [--seed N] [--force] [--workers N]``."""
    parser = argparse.ArgumentParser(
        prog="data.py",
        description="Build a task's data set from Debian-packaged audio into a cache outside git "
        "(reused on the next run).",
    )
    parser.add_argument("task", choices=sorted(BUILDERS), help="which data set")
    parser.add_argument(
        "--cache",
        metavar="DIR",
        help="cache folder (default: $DEEPAFX_DATA/TASK or ~/.cache/deepafx-rt/data/TASK)",
    )
    parser.add_argument(
        "--seed", type=int, default=0, help="seed of the split and the degradations (default 0)"
    )
    parser.add_argument("--force", action="store_true", help="rebuild even if a matching cache exists")
    parser.add_argument("--workers", type=int, default=None, help="worker processes (default: all cores)")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    if args.workers is not None and args.workers < 1:
        parser.error("--workers must be ≥ 1")
    try:
        cache = BUILDERS[args.task](
            args.cache, args.seed, force=args.force, workers=args.workers, progress=not args.quiet
        )
        print(summary(cache))
    except DeepAFxError as exc:
        print(f"data.py: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(
            "data.py: interrupted; the cache is left unfinished and will rebuild next time", file=sys.stderr
        )
        return 130
    return 0


if __name__ == "__main__":
    # run the importable module's main, so worker processes unpickle training.data.*, not __main__.*
    from training.data import main as _main

    sys.exit(_main())
