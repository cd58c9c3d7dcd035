"""The shared data-set machinery of every task: sources, splits, building, caching, reading.

Nothing is downloaded: the sources are files that ``./install.sh`` installs
with apt. A build is deterministic for a seed, takes minutes on two cores,
and a second run reuses the cache (and says so); ``--force`` rebuilds
(``python -m training.data TASK``).

Splits are by track, never by window: every track (and every group of tracks
that share material, e.g. a soundtrack's "enhanced" remake of a piece) lands
in exactly one of train/val/test. Groups are assigned per collection so each
split holds every style, aiming at 70/15/15 % of the *minutes*.

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
fixed grid (validation/test). What the encoder hears of a window is
:func:`rt_host.steer.encoder_view`, shared with the product.

**Tasks** plug in with a module of their own beside this one
(``mastering``, ``distortion``, ``nonspeech``): a ``build_<task>`` function
that lists its :class:`Source`\\ s and hands :func:`build_task` a
module-level ``make_pair(source, rate, channels, rng, options) -> (input,
target, meta)``, registered in :data:`BUILDERS`. Manifests, splits, caching,
progress, the loaders and the CLI then work unchanged.
"""

from __future__ import annotations

import contextlib
import fcntl
import importlib
import json
import logging
import os
import re
import time
import zlib
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass, field
from multiprocessing import get_context
from pathlib import Path
from typing import Any

import numpy as np
import soundfile as sf

from rt_host.audio import map_channels, resample, silence_bounds
from rt_host.errors import AudioFileError, DeepAFxError
from rt_host.signals import track_rng

log = logging.getLogger("training.data")

FORMAT_VERSION = 1  # bump when the cache layout or a recipe's meaning changes: old caches rebuild
SPLITS = ("train", "val", "test")
SPLIT_FRACTIONS = {"train": 0.70, "val": 0.15, "test": 0.15}


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
    try:
        start, stop = silence_bounds(audio)
    except ValueError as exc:
        raise DataError(f"{source.path} is {exc}") from None
    record = {
        "source_format": f"{info.format}/{info.subtype}",
        "source_rate": int(src_rate),
        "source_channels": int(info.channels),
        "source_seconds": round(info.frames / src_rate, 3),
        "trimmed_seconds": [round(start / rate, 3), round((audio.shape[1] - stop) / rate, 3)],
    }
    return np.ascontiguousarray(audio[:, start:stop]), record


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
def locked(cache: Path) -> Iterator[None]:
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
    with locked(cache):
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


def _lazy_builder(module: str, name: str) -> Callable[..., Path]:
    """A builder from a task module (which imports this one): imported when called, not at import time."""

    def build(*args: Any, **kwargs: Any) -> Path:
        return getattr(importlib.import_module(module), name)(*args, **kwargs)

    build.__name__ = build.__qualname__ = name
    return build


# Tasks `python -m training.data TASK` can build:
# build_<task>(cache_dir, seed, *, force, workers, progress) -> Path, each a thin wrapper of build_task.
BUILDERS: dict[str, Callable[..., Path]] = {
    "mastering": _lazy_builder("training.data.mastering", "build_mastering"),
    "nonspeech": _lazy_builder("training.data.nonspeech", "build_nonspeech"),
    "distortion": _lazy_builder("training.data.distortion", "build_distortion"),
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
            f"no built data set in {cache_dir} (no manifest.json); run: python -m training.data TASK"
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
    (:class:`training.spsa.renderer.RenderSettings`). Same seed, same tracks → same
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
