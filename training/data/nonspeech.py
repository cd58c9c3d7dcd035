"""The data set of the ``nonspeech`` task: breaths and mouth noises to remove from read speech.

    python -m training.data nonspeech [--cache DIR] [--seed N] [--force]   # once in data.BUILDERS
    python -c 'from training.data.nonspeech import build_nonspeech; build_nonspeech()'

After DeepAFx (ICASSP 2021), where a multiband gate driven by a network
removes breaths and mouth noises from speech. *Targets* are read speech with
natural pauses; *inputs* are the same audio with non-speech events inserted in
the pauses. Mono, 22,050 Hz (``chains/nonspeech.toml``). Nothing is downloaded:
the speech is the spoken stamp descriptions of ``tuxpaint-stamps-default``.

**The speech.** ``/usr/share/tuxpaint/stamps/**`` holds, per stamp, a spoken
description ``<stamp>_desc.ogg`` (English: the package's ``.txt`` files give
the English text first, and no other language is unsuffixed) and its
translations ``<stamp>_desc_<lang>.ogg``; under ``symbols/`` letters and
numbers are also spoken as ``<name>_<lang>.ogg`` (``_en_GB``: British
English). They are one- or two-second phrases ("A wombat.") read mostly by
one volunteer per language (the package changelog names them; the Brazilian
Portuguese ones are school children). **English is
scarce**: 66 ``*_desc.ogg`` (52 s) plus 114 ``*_en_GB.ogg`` letters and numbers
(71 s) — two minutes. So by default every language is used (the task —
telling breaths and clicks from speech and gating them — does not depend on
the language; more readers is more variety), at most ``minutes_per_language``
of speech each so no reader dominates; ``nonspeech_sources(languages=("en",))``
gives the English-only set.

The recordings are amateur: the median ratio of speech to the clip's own
background noise is 15–36 dB depending on the reader (some have a silent left
channel, fifteen are 8 kHz). A clip is used only if, at 22,050 Hz after an
80 Hz high-pass, its speech is ≥ ``min_snr_db`` above its noise, it is at most
``max_clip_seconds`` long with no internal pause longer than ``max_gap_ms`` (a
longer read could hold a real breath, which would then be in the *target*),
and its source rate is ≥ 16 kHz. Duplicates are dropped — a description is
often reused by several stamps: of the 7,418 description files only 6,318
decode to distinct samples, and a few more are re-encodings of one recording
(same length, 50 ms levels within 3 dB; other clips of equal length differ by
more than 10 dB somewhere).

**A track** is a seeded group of clips of one language (a reading session;
languages with too little speech for a track are pooled into ``mixed-*``
tracks), 30–90 s long: clips trimmed to their speech (edges 40 dB below the
loudest 10 ms frame or 10 dB above the clip's noise, 30/80 ms margins, 10 ms
fades), each set to the track's speech level (± a small jitter), separated by
pauses of 0.3–1.5 s (also before the first and after the last clip). Under the
whole track runs a room-noise floor (pink-ish, seeded) whose level follows the
clips' own background noise (so pauses are neither digital silence nor
obviously cleaner than the speech) — the *same* floor in input and target. A
clip belongs to exactly one track and a track to one split, so no clip is in
two splits.

**Events** (input only), placed in the pauses, never closer than ``guard_ms``
to speech, never overlapping; levels are the event's RMS over its own extent
relative to the track's speech RMS (see :class:`NonspeechRanges`):

- *breath* (200–600 ms, −30…−15 dB): white noise shaped to an inhalation's
  spectrum — band-pass (a few hundred Hz to 2.5–7 kHz) with 1–3 broad
  vocal-tract resonances and a tilt — under an asymmetric rise/fall envelope
  with a slow flutter; placed to end 30–300 ms before the next phrase;
- *smack* (lip smack, 10–30 ms) and *click* (5–12 ms), both −30…−12 dB: two
  to four (smack) or one (click) sharp excitations of damped 1.5–8 kHz
  resonances, a smack with a decaying burst of high-passed noise; anywhere in
  the pause;
- *pop* (plosive pop, 20–60 ms, −24…−8 dB): a low-frequency air blast —
  low-passed noise and a 25–90 Hz damped swing with a fast attack — just before
  the next phrase (10–80 ms), where a "p" would hit the microphone.

**The record** of each track (in ``manifest.json``, and what the metrics of
:mod:`training.evaluation.nonspeech` read) holds ``rate``, ``speech_segments``
(``[[start, stop], …]`` samples, one per clip, in order), ``events``
(``[{"kind", "start", "stop", "level_db"}, …]``), ``speech_rms_dbfs`` (RMS of
the clean speech over the speech segments — the reference of the event
levels), ``floor_rms_dbfs``, the clips used and the event counts.

**Splits and sizes.** :func:`training.data.build_task` splits by track and
weighs each track by the duration of its :attr:`Source.path`; a track's
``path`` is therefore the clip whose duration is most nearly proportional to
the track's planned length (see :class:`NonspeechSource`). The splits are not
balanced by language (one collection): a language may be missing from val or
test. Seed 0: 45 tracks of 31–97 s, 44.9 minutes (train 31.1, val 6.2, test
7.5), 23 of them speech, 1,416 clips, 2,056 events (782 breaths, 535 smacks,
517 clicks, 222 pops); 0.48 GB. Built in ~45–55 s on two cores shared with a
training run; the first call also analyses ~4,700 clips (~80 s there, 40 s of
CPU), cached in ``clip_stats.json`` next to the data set (then ~1 s).
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import os
import re
from collections.abc import Callable, Collection, Sequence
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

import numpy as np
import scipy.fft
import scipy.signal
import soundfile as sf

from rt_host.audio import map_channels, resample
from rt_host.signals import track_rng
from training.data.builder import DataError, Source, build_task, resolve_cache_dir

log = logging.getLogger("training.data.nonspeech")

TASK = "nonspeech"
RATE = 22050  # chains/nonspeech.toml
STAMPS_ROOT = Path("/usr/share/tuxpaint/stamps")
PACKAGE = "tuxpaint-stamps-default"
BUILDER_VERSION = 2  # bump when a track's recipe changes meaning: old caches rebuild
ANALYSIS_VERSION = 2  # bump when load_clip changes: the clip statistics are recomputed

EVENT_KINDS = ("breath", "smack", "click", "pop")

# how a clip is cleaned and trimmed (load_clip)
HIGHPASS_HZ = 80.0
FRAME_SECONDS = 0.01
TRIM_BELOW_PEAK_DB = 40.0  # a frame is speech if within 40 dB of the loudest frame …
TRIM_ABOVE_NOISE_DB = 10.0  # … and 10 dB above the clip's noise (10th percentile frame)
ACTIVE_BELOW_PEAK_DB = 30.0  # the speech level is the power mean of frames within 30 dB of the loudest
MARGIN_BEFORE_SECONDS = 0.03
MARGIN_AFTER_SECONDS = 0.08
FADE_SECONDS = 0.01
ENVELOPE_SECONDS = 0.05  # the coarse level envelope that recognises re-encoded copies
SAME_RECORDING_DB = 3.0  # copies differ by < 1 dB per frame, other clips of equal length by > 10 dB


# --- the recipe ---------------------------------------------------------------------------
@dataclass(frozen=True)
class NonspeechRanges:
    """Ranges of every random draw of a track (uniform unless said); the ``options`` of :func:`make_pair`.

    Levels called "re speech" are dB relative to the track's speech RMS
    (``speech_rms_dbfs`` in the record); an event's level is its RMS over its
    own ``[start, stop)``. Probabilities and rates are per pause.
    """

    # the track
    pause_seconds: tuple[float, float] = (0.3, 1.5)  # before, between and after the clips
    speech_level_dbfs: tuple[float, float] = (-30.0, -20.0)  # each clip's active level (± jitter)
    clip_level_jitter_db: float = 2.0
    floor_below_clip_noise_db: tuple[float, float] = (0.0, 6.0)  # floor = clips' median noise − this …
    floor_re_speech_db: tuple[float, float] = (-60.0, -30.0)  # … clamped to this range (re speech)
    floor_slope_db_per_octave: tuple[float, float] = (-4.5, -1.5)  # pink is −3
    peak_ceiling_dbfs: float = -1.0  # the whole track (input and target alike) is turned down to stay below
    # placement
    guard_ms: float = 20.0  # no event closer than this to speech
    event_gap_ms: float = 10.0  # between two events
    # breaths
    breath_probability: float = 0.6
    breath_ms: tuple[float, float] = (200.0, 600.0)  # shortened to fit a pause, dropped below the minimum
    breath_level_db: tuple[float, float] = (-30.0, -15.0)
    breath_before_speech_ms: tuple[float, float] = (30.0, 300.0)  # from the breath's end to the next phrase
    breath_low_hz: tuple[float, float] = (200.0, 700.0)  # band edges (2nd-order slopes)
    breath_high_hz: tuple[float, float] = (2500.0, 7000.0)
    breath_resonances: tuple[int, int] = (1, 3)  # inclusive
    breath_resonance_hz: tuple[float, float] = (500.0, 4500.0)  # log-uniform
    breath_resonance_db: tuple[float, float] = (3.0, 12.0)
    breath_resonance_octaves: tuple[float, float] = (0.15, 0.5)  # Gaussian width in octaves
    breath_tilt_db_per_octave: tuple[float, float] = (-3.0, 1.0)
    # lip smacks and clicks
    smack_rate: float = 0.35  # Poisson mean
    smack_ms: tuple[float, float] = (10.0, 30.0)
    smack_level_db: tuple[float, float] = (-30.0, -12.0)
    click_rate: float = 0.35
    click_ms: tuple[float, float] = (5.0, 12.0)
    click_level_db: tuple[float, float] = (-30.0, -12.0)
    transient_hz: tuple[float, float] = (1500.0, 8000.0)  # resonances of smacks and clicks, log-uniform
    # plosive pops
    pop_probability: float = 0.15
    pop_ms: tuple[float, float] = (20.0, 60.0)
    pop_level_db: tuple[float, float] = (-24.0, -8.0)
    pop_before_speech_ms: tuple[float, float] = (10.0, 80.0)
    pop_hz: tuple[float, float] = (25.0, 90.0)  # the damped swing
    pop_lowpass_hz: tuple[float, float] = (80.0, 250.0)  # the noise part

    @classmethod
    def from_options(cls, options: dict[str, Any]) -> NonspeechRanges:
        """The ranges in a build's ``options`` (JSON lists back to tuples; other keys ignored)."""
        names = {f.name for f in fields(cls)}
        return cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in options.items() if k in names})

    def level_range(self, kind: str) -> tuple[float, float]:
        """The configured level range (dB re speech) of an event kind."""
        return getattr(self, f"{kind}_level_db")

    def length_ms_range(self, kind: str) -> tuple[float, float]:
        """The configured length range (ms) of an event kind."""
        return getattr(self, f"{kind}_ms")


# --- clips ----------------------------------------------------------------------------------
_DESC = re.compile(r"_desc(?:_([a-z]{2,3})(?:_[A-Za-z]{2})?)?\.ogg$")
_WORD = re.compile(r"_([a-z]{2,3})(?:_[A-Za-z]{2})?\.ogg$")


def clip_language(path: Path, root: Path = STAMPS_ROOT) -> str | None:
    """The language of a spoken stamp clip (``"en"``, ``"fr"``, …) or ``None`` if it is not speech.

    ``*_desc.ogg`` → English, ``*_desc_<lang>.ogg`` → ``<lang>``; under
    ``symbols/``, ``*_<lang>.ogg`` (spoken letters and numbers, ``en_GB`` →
    ``en``). Other ``.ogg`` files are sound effects.
    """
    m = _DESC.search(path.name)
    if m:
        return m.group(1) or "en"
    try:
        rel = path.relative_to(root)
    except ValueError:
        rel = path
    if rel.parts and rel.parts[0] == "symbols":
        m = _WORD.search(path.name)
        if m:
            return m.group(1)
    return None


def find_clips(root: Path = STAMPS_ROOT) -> list[tuple[Path, str]]:
    """Every spoken clip under ``root`` with its language, sorted by path; :class:`DataError` if none."""
    root = Path(root)
    found = []
    for p in sorted(root.glob("**/*.ogg")):
        lang = clip_language(p, root)
        if lang is not None:
            found.append((p, lang))
    if not found:
        raise DataError(
            f"no spoken stamp descriptions under {root}; install {PACKAGE}: "
            f"apt-get install {PACKAGE} (./install.sh does)"
        )
    return found


@dataclass(frozen=True)
class Clip:
    """One clip ready to place in a track (:func:`load_clip`).

    ``audio`` is mono float64 at the track's rate, high-passed, trimmed to the
    speech and faded; the levels (dBFS, 10 ms frames of the whole high-passed
    clip) are ``speech_db`` (power mean of the frames within 30 dB of the
    loudest) and ``noise_db`` (the 10th-percentile frame: the background);
    ``rms_db`` is the RMS of the trimmed clip.
    """

    audio: np.ndarray
    speech_db: float
    noise_db: float
    rms_db: float  # RMS of ``audio`` (the trimmed clip): the reference of the floor, like the track's
    max_gap_ms: float  # the longest run of non-speech frames inside the kept part
    source_rate: int
    source_frames: int
    pcm_sha1: str  # of the decoded samples: finds copies that differ only in their tags
    envelope_db: np.ndarray  # 50 ms frame levels of the whole clip: finds re-encoded copies

    @property
    def snr_db(self) -> float:
        return self.speech_db - self.noise_db


def _frame_db(x: np.ndarray, frame: int) -> np.ndarray:
    n = len(x) // frame
    ms = np.mean(np.square(x[: n * frame]).reshape(n, frame), axis=1)
    return 10.0 * np.log10(ms + 1e-14)


def _longest_run(mask: np.ndarray) -> int:
    best = run = 0
    for v in mask:
        run = run + 1 if v else 0
        best = max(best, run)
    return best


def load_clip(path: Path, rate: int = RATE) -> Clip:
    """Read a clip, mix it to mono, resample to ``rate``, high-pass at 80 Hz, trim it to its speech.

    Trim: 10 ms frames louder than both (loudest − 40 dB) and (noise + 10 dB)
    are speech; the kept part runs from 30 ms before the first to 80 ms after
    the last, with 10 ms raised-cosine fades. :class:`DataError` if the file
    cannot be read or is shorter than five frames.
    """
    try:
        audio, src_rate = sf.read(str(path), dtype="float32", always_2d=True)
    except (sf.LibsndfileError, RuntimeError, OSError) as exc:
        raise DataError(f"cannot read {path} as audio: {exc}") from None
    pcm_sha1 = hashlib.sha1(audio.tobytes() + str(src_rate).encode()).hexdigest()
    mono = map_channels(np.ascontiguousarray(audio.T), 1, "mix")
    x = resample(mono, int(src_rate), rate)[0].astype(np.float64)
    frame = int(round(FRAME_SECONDS * rate))
    if len(x) < 5 * frame:
        raise DataError(f"{path} is too short ({len(x) / rate * 1e3:.0f} ms)")
    sos = scipy.signal.butter(2, HIGHPASS_HZ, "highpass", fs=rate, output="sos")
    x = scipy.signal.sosfiltfilt(sos, x)
    db = _frame_db(x, frame)
    loudest, noise = float(db.max()), float(np.percentile(db, 10))
    speech_db = float(10.0 * np.log10(np.mean(10.0 ** (db[db > loudest - ACTIVE_BELOW_PEAK_DB] / 10.0))))
    threshold = max(loudest - TRIM_BELOW_PEAK_DB, noise + TRIM_ABOVE_NOISE_DB)
    active = np.flatnonzero(db > threshold)
    if active.size == 0:  # no dynamics at all (noise + 10 dB above the loudest frame)
        active = np.flatnonzero(db > loudest - TRIM_BELOW_PEAK_DB)
    first, last = int(active[0]), int(active[-1])
    max_gap_ms = _longest_run(db[first : last + 1] <= threshold) * FRAME_SECONDS * 1e3
    start = max(0, first * frame - int(MARGIN_BEFORE_SECONDS * rate))
    stop = min(len(x), (last + 1) * frame + int(MARGIN_AFTER_SECONDS * rate))
    y = x[start:stop].copy()
    fade = min(int(FADE_SECONDS * rate), len(y) // 2)
    ramp = 0.5 - 0.5 * np.cos(np.pi * (np.arange(fade) + 0.5) / fade)
    y[:fade] *= ramp
    y[len(y) - fade :] *= ramp[::-1]
    envelope = _frame_db(x, int(round(ENVELOPE_SECONDS * rate)))
    rms_db = float(10.0 * np.log10(np.mean(np.square(y)) + 1e-14))
    return Clip(
        y, speech_db, noise, rms_db, max_gap_ms, int(src_rate), int(audio.shape[0]), pcm_sha1, envelope
    )


@dataclass(frozen=True)
class ClipInfo:
    """What the selection knows of a clip: its :func:`load_clip` statistics, cached."""

    path: Path
    language: str
    source_rate: int
    source_frames: int
    speech_seconds: float  # after trimming
    snr_db: float
    noise_re_speech_db: float
    max_gap_ms: float
    pcm_sha1: str
    envelope_db: tuple[float, ...]

    @property
    def source_seconds(self) -> float:
        """What :func:`training.data.build_task` measures (``sf.info``: frames / rate)."""
        return self.source_frames / self.source_rate


class _StatsCache:
    """Per-clip analysis results keyed by path, size and mtime, kept in a JSON file (or in memory only)."""

    def __init__(self, path: Path | None) -> None:
        self.path = path
        self.entries: dict[str, dict[str, Any]] = {}
        self.dirty = False
        if path is not None and path.is_file():
            try:
                data = json.loads(path.read_text())
                if data.get("version") == ANALYSIS_VERSION and data.get("rate") == RATE:
                    self.entries = data["clips"]
            except (OSError, ValueError, KeyError):
                log.info("ignoring the unreadable clip statistics in %s", path)

    def info(self, path: Path, language: str) -> ClipInfo | None:
        """The clip's statistics (computed on a miss); ``None`` if it cannot be read."""
        st = path.stat()
        key = str(path)
        e = self.entries.get(key)
        if e is None or e["size"] != st.st_size or e["mtime_ns"] != st.st_mtime_ns:
            try:
                c = load_clip(path, RATE)
            except DataError as exc:
                log.warning("skipping %s: %s", path, exc)
                e = {"size": st.st_size, "mtime_ns": st.st_mtime_ns, "bad": True}
            else:
                e = {
                    "size": st.st_size,
                    "mtime_ns": st.st_mtime_ns,
                    "source_rate": c.source_rate,
                    "source_frames": c.source_frames,
                    "speech_seconds": round(len(c.audio) / RATE, 4),
                    "snr_db": round(c.snr_db, 3),
                    "noise_re_speech_db": round(c.noise_db - c.speech_db, 3),
                    "max_gap_ms": round(c.max_gap_ms, 1),
                    "pcm_sha1": c.pcm_sha1,
                    "envelope_db": [round(float(v), 1) for v in c.envelope_db],
                }
            self.entries[key] = e
            self.dirty = True
        if e.get("bad"):
            return None
        return ClipInfo(
            path,
            language,
            e["source_rate"],
            e["source_frames"],
            e["speech_seconds"],
            e["snr_db"],
            e["noise_re_speech_db"],
            e["max_gap_ms"],
            e["pcm_sha1"],
            tuple(e["envelope_db"]),
        )

    def save(self) -> None:
        if self.path is None or not self.dirty:
            return
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            tmp = self.path.with_name(f"{self.path.name}.{os.getpid()}.tmp")
            tmp.write_text(json.dumps({"version": ANALYSIS_VERSION, "rate": RATE, "clips": self.entries}))
            os.replace(tmp, self.path)
        except OSError as exc:  # only a cache: the next call recomputes
            log.warning("cannot save the clip statistics to %s: %s", self.path, exc.strerror)


def same_recording(a: ClipInfo, b: ClipInfo) -> bool:
    """Whether two clips are one recording (a re-encoded copy): same length, 50 ms levels within 3 dB.

    Only the frames within 50 dB of the louder clip's loudest count (the
    noise floor of a lossy re-encoding wanders more).
    """
    if (a.source_frames, a.source_rate) != (b.source_frames, b.source_rate):
        return False
    ea, eb = np.asarray(a.envelope_db), np.asarray(b.envelope_db)
    if ea.shape != eb.shape or ea.size == 0:
        return False
    loud = np.maximum(ea, eb) > max(ea.max(), eb.max()) - 50.0
    return bool(np.max(np.abs(ea - eb)[loud]) < SAME_RECORDING_DB)


# --- sources: clips grouped into tracks -------------------------------------------------------
@dataclass(frozen=True)
class NonspeechSource(Source):
    """A track of the nonspeech data set: ``clips`` read in this order, with pauses between them.

    ``path`` is one of the clips — the one :func:`training.data.build_task`
    measures (``sf.info``) to balance the splits by minutes and to count
    progress. It is chosen so its duration is as nearly proportional to the
    track's ``planned_seconds`` as the track's clips allow, which makes that
    balance by minutes come out right. A plain :class:`Source` also works as a
    one-clip track.
    """

    clips: tuple[Path, ...] = ()
    language: str = ""
    planned_seconds: float = 0.0

    def __post_init__(self) -> None:
        super().__post_init__()
        object.__setattr__(self, "clips", tuple(Path(p) for p in self.clips) or (self.path,))


def _clips_of(source: Source) -> tuple[Path, ...]:
    return source.clips if isinstance(source, NonspeechSource) else (source.path,)


def nonspeech_sources(
    seed: int = 0,
    *,
    root: str | Path = STAMPS_ROOT,
    languages: Collection[str] | None = None,
    minutes_per_language: float = 2.5,
    track_seconds: tuple[float, float] = (30.0, 90.0),
    min_snr_db: float = 25.0,
    max_clip_seconds: float = 6.0,
    max_gap_ms: float = 250.0,
    min_source_rate: int = 16000,
    ranges: NonspeechRanges = NonspeechRanges(),
    stats_file: str | Path | None = None,
) -> list[NonspeechSource]:
    """The tracks of the data set: clips of ``tuxpaint-stamps-default`` grouped by language; seeded.

    For each language (all by default), its clips in a seeded order are
    analysed (:func:`load_clip`) and taken while they pass the quality checks
    (see the module docstring) and are not duplicates, until
    ``minutes_per_language`` of trimmed speech. Each language's clips are cut
    into tracks of ``track_seconds`` (planned with the mean pause of
    ``ranges``); languages too small for one track share ``mixed-*`` tracks.
    ``stats_file`` caches the clip analysis (~5 ms a clip) between calls.
    """
    root = Path(root)
    if not root.is_dir():
        raise DataError(
            f"{root} does not exist; install {PACKAGE}: apt-get install {PACKAGE} (./install.sh does)"
        )
    clips = find_clips(root)
    wanted = None if languages is None else set(languages)
    by_lang: dict[str, list[Path]] = {}
    for p, lang in clips:
        if wanted is None or lang in wanted:
            by_lang.setdefault(lang, []).append(p)
    if not by_lang:
        have = sorted({lang for _, lang in clips})
        raise DataError(f"no clips in the language(s) {sorted(wanted or [])}; available: {', '.join(have)}")

    cache = _StatsCache(Path(stats_file) if stats_file is not None else None)
    quota = minutes_per_language * 60.0
    seen_pcm: set[str] = set()
    by_length: dict[tuple[int, int], list[ClipInfo]] = {}
    selected: dict[str, list[ClipInfo]] = {}
    try:
        for lang in sorted(by_lang):
            paths = by_lang[lang]
            rng = track_rng(seed, f"nonspeech-clips-{lang}")
            taken: list[ClipInfo] = []
            total = 0.0
            for k in rng.permutation(len(paths)):
                if total >= quota:
                    break
                info = cache.info(paths[k], lang)
                if (
                    info is None
                    or info.source_rate < min_source_rate
                    or info.source_seconds > max_clip_seconds
                    or info.snr_db < min_snr_db
                    or info.max_gap_ms > max_gap_ms
                    or info.pcm_sha1 in seen_pcm
                ):
                    continue
                key = (info.source_frames, info.source_rate)
                if any(same_recording(info, other) for other in by_length.get(key, [])):
                    continue
                seen_pcm.add(info.pcm_sha1)
                by_length.setdefault(key, []).append(info)
                taken.append(info)
                total += info.speech_seconds
            if taken:
                selected[lang] = taken
    finally:
        cache.save()
    if not selected:
        raise DataError(f"no clip under {root} passes the quality checks (min_snr_db={min_snr_db:g})")

    mean_pause = float(np.mean(ranges.pause_seconds))

    def planned(infos: Sequence[ClipInfo]) -> float:
        return sum(i.speech_seconds + mean_pause for i in infos) + mean_pause

    pools: dict[str, list[ClipInfo]] = {}
    for lang, infos in selected.items():
        if planned(infos) >= track_seconds[0]:
            pools[lang] = infos
        else:
            pools.setdefault("mixed", []).extend(infos)

    groups: list[tuple[str, list[ClipInfo], float]] = []  # (pool, clips, planned seconds)
    for pool in sorted(pools):
        infos = pools[pool]
        total = planned(infos)
        rng = track_rng(seed, f"nonspeech-tracks-{pool}")
        n_tracks = max(1, round(total / float(np.mean(track_seconds))))
        lengths = rng.uniform(*track_seconds, size=n_tracks)
        ends = np.cumsum(lengths * (total / lengths.sum()))  # each track's end on the pool's time line
        tracks: list[list[ClipInfo]] = [[] for _ in range(n_tracks)]
        t = mean_pause
        for info in infos:  # a clip goes to the track its middle falls in
            tracks[min(int(np.searchsorted(ends, t + info.speech_seconds / 2)), n_tracks - 1)].append(info)
            t += info.speech_seconds + mean_pause
        groups += [(pool, c, planned(c)) for c in tracks if c]

    # the clip build_task measures: duration ∝ planned track length
    median_clip = float(np.median([i.source_seconds for _, infos, _ in groups for i in infos]))
    k = median_clip / float(np.mean([g[2] for g in groups]))
    sources = []
    counters: dict[str, int] = {}
    for pool, infos, plan in groups:
        rep = min(infos, key=lambda i, want=plan * k: abs(math.log(i.source_seconds / want)))
        n = counters.get(pool, 0)
        counters[pool] = n + 1
        sources.append(
            NonspeechSource(
                rep.path,
                f"{pool}-{n:02d}",
                collection="tuxpaint",
                package=PACKAGE,
                clips=tuple(i.path for i in infos),
                language=pool,
                planned_seconds=round(plan, 2),
            )
        )
    return sources


# --- event synthesis ----------------------------------------------------------------------------
def _log_uniform(rng: np.random.Generator, lo_hi: tuple[float, float]) -> float:
    return float(np.exp(rng.uniform(np.log(lo_hi[0]), np.log(lo_hi[1]))))


def _shaped_noise(
    rng: np.random.Generator, n: int, rate: int, magnitude: Callable[[np.ndarray], np.ndarray]
) -> np.ndarray:
    """White noise of ``n`` samples whose spectrum is multiplied by ``magnitude(freqs_hz)``.

    Made at a fast FFT length ≥ ``n`` and cut (a track's length can have a
    large prime factor: seconds instead of milliseconds).
    """
    m = scipy.fft.next_fast_len(max(n, 2), real=True)
    spec = np.fft.rfft(rng.standard_normal(m))
    f = np.fft.rfftfreq(m, 1.0 / rate)
    f[0] = f[1]
    return np.fft.irfft(spec * magnitude(f), m)[:n]


def _damped_sine(n: int, rate: int, at: int, freq: float, tau_s: float, phase: float = 0.0) -> np.ndarray:
    t = (np.arange(n) - at) / rate
    out = np.exp(-np.maximum(t, 0.0) / tau_s) * np.sin(2 * np.pi * freq * t + phase)
    out[: max(at, 0)] = 0.0
    return out


def _fade(x: np.ndarray, rate: int, fade_in_s: float, fade_out_s: float) -> np.ndarray:
    """Raised-cosine fades, so an event starts and ends at zero (no step against the floor)."""
    for seconds, end in ((fade_in_s, False), (fade_out_s, True)):
        k = min(len(x) // 2, max(1, int(seconds * rate)))
        ramp = 0.5 - 0.5 * np.cos(np.pi * (np.arange(k) + 0.5) / k)
        if end:
            x[len(x) - k :] *= ramp[::-1]
        else:
            x[:k] *= ramp
    return x


def synth_breath(rng: np.random.Generator, n: int, rate: int, r: NonspeechRanges) -> np.ndarray:
    """An inhalation: band-limited noise with broad resonances and a tilt, under a rise/fall envelope."""
    lo, hi = rng.uniform(*r.breath_low_hz), rng.uniform(*r.breath_high_hz)
    tilt = rng.uniform(*r.breath_tilt_db_per_octave)
    peaks = [
        (
            _log_uniform(rng, r.breath_resonance_hz),
            rng.uniform(*r.breath_resonance_db),
            rng.uniform(*r.breath_resonance_octaves),
        )
        for _ in range(int(rng.integers(r.breath_resonances[0], r.breath_resonances[1] + 1)))
    ]

    def magnitude(f: np.ndarray) -> np.ndarray:
        m = 1.0 / np.sqrt(1.0 + (lo / f) ** 4) / np.sqrt(1.0 + (f / hi) ** 4)  # 2nd-order band edges
        m = m * 10.0 ** (tilt * np.log2(f / 1000.0) / 20.0)
        for fc, gain_db, width in peaks:
            m = m * 10.0 ** (gain_db / 20.0 * np.exp(-0.5 * (np.log2(f / fc) / width) ** 2))
        return m

    noise = _shaped_noise(rng, n, rate, magnitude)
    t = (np.arange(n) + 0.5) / n
    rise, fall = rng.uniform(0.5, 2.0), rng.uniform(0.3, 1.2)
    env = t**rise * (1.0 - t) ** fall
    flutter_hz, depth, phase = rng.uniform(2.0, 7.0), rng.uniform(0.0, 0.3), rng.uniform(0, 2 * np.pi)
    env = env * (1.0 + depth * np.sin(2 * np.pi * flutter_hz * t * n / rate + phase))
    return _fade(noise * env, rate, 0.005, 0.005)


def synth_transient(
    rng: np.random.Generator, n: int, rate: int, r: NonspeechRanges, smack: bool
) -> np.ndarray:
    """A lip smack (2–4 excitations and a noise burst) or a click (one excitation) of damped resonances."""
    out = np.zeros(n)
    hits = int(rng.integers(2, 5)) if smack else 1
    for _ in range(hits):
        at = int(rng.uniform(0.0, 0.7 if smack else 0.2) * n)
        freq = min(_log_uniform(rng, r.transient_hz), 0.45 * rate)
        tau = rng.uniform(0.3e-3, 2.0e-3) if smack else rng.uniform(0.2e-3, 1.0e-3)
        amp = rng.uniform(0.3, 1.0) * rng.choice([-1.0, 1.0])
        out += amp * _damped_sine(n, rate, at, freq, tau, rng.uniform(0, 2 * np.pi))
    if smack:  # the wet part: high-passed noise decaying from the first excitation
        burst = np.diff(rng.standard_normal(n + 1))
        tau = rng.uniform(2e-3, 6e-3)
        out += rng.uniform(0.1, 0.4) * burst * np.exp(-np.arange(n) / (tau * rate))
    return _fade(out, rate, 0.0005, 0.001)


def synth_pop(rng: np.random.Generator, n: int, rate: int, r: NonspeechRanges) -> np.ndarray:
    """A plosive pop: a low-frequency swing plus low-passed noise, fast attack, exponential decay."""
    fc = rng.uniform(*r.pop_lowpass_hz)
    noise = _shaped_noise(rng, n, rate, lambda f: 1.0 / (1.0 + (f / fc) ** 2))
    noise /= max(float(np.sqrt(np.mean(noise**2))), 1e-12)
    swing = _damped_sine(n, rate, 0, rng.uniform(*r.pop_hz), rng.uniform(0.25, 0.5) * n / rate)
    swing /= max(float(np.sqrt(np.mean(swing**2))), 1e-12)
    t = np.arange(n) / rate
    attack = rng.uniform(1e-3, 3e-3)
    env = np.minimum(t / attack, 1.0) * np.exp(-t / (rng.uniform(0.2, 0.4) * n / rate))
    x = (swing + rng.uniform(0.3, 1.0) * noise) * env
    return _fade(x, rate, 0.0, 0.003)


def synth_event(kind: str, rng: np.random.Generator, n: int, rate: int, r: NonspeechRanges) -> np.ndarray:
    """One event of ``kind`` (:data:`EVENT_KINDS`), ``n`` samples, scaled to RMS 1."""
    if kind == "breath":
        x = synth_breath(rng, n, rate, r)
    elif kind in ("smack", "click"):
        x = synth_transient(rng, n, rate, r, smack=kind == "smack")
    elif kind == "pop":
        x = synth_pop(rng, n, rate, r)
    else:
        raise ValueError(f"unknown event kind {kind!r}; one of {', '.join(EVENT_KINDS)}")
    return x / max(float(np.sqrt(np.mean(x**2))), 1e-12)


def floor_noise(rng: np.random.Generator, n: int, rate: int, slope_db_per_octave: float) -> np.ndarray:
    """Room tone: noise sloping ``slope_db_per_octave`` (re 1 kHz), high-passed (2nd order, 50 Hz); RMS 1."""

    def magnitude(f: np.ndarray) -> np.ndarray:
        return 10.0 ** (slope_db_per_octave * np.log2(f / 1000.0) / 20.0) / np.sqrt(1.0 + (50.0 / f) ** 4)

    x = _shaped_noise(rng, n, rate, magnitude)
    return x / max(float(np.sqrt(np.mean(x**2))), 1e-12)


# --- placing events in pauses -----------------------------------------------------------------------
def _fit_anchored(lo: int, stop: int, want: int, shortest: int) -> tuple[int, int] | None:
    """``[start, stop)`` ending at ``stop``: ``want`` samples or what fits after ``lo``, ≥ ``shortest``."""
    length = min(want, stop - lo)
    return (stop - length, stop) if length >= shortest else None


def _fit_free(
    rng: np.random.Generator, lo: int, hi: int, taken: list[tuple[int, int]], length: int, gap: int
) -> tuple[int, int] | None:
    """A random free place for ``length`` samples in ``[lo, hi)``, ``gap`` away from ``taken`` ones."""
    edges = [lo]
    for a, b in sorted(taken):
        edges += [a - gap, b + gap]
    edges.append(hi)
    slack = [(s, e - s - length) for s, e in zip(edges[::2], edges[1::2]) if e - s >= length]
    if not slack:
        return None
    weights = np.array([w + 1.0 for _, w in slack])
    s, w = slack[int(rng.choice(len(slack), p=weights / weights.sum()))]
    start = s + int(rng.integers(0, w + 1))
    return start, start + length


def place_events(
    rng: np.random.Generator, pause: tuple[int, int], next_speech: bool, rate: int, r: NonspeechRanges
) -> list[tuple[str, int, int]]:
    """Events ``(kind, start, stop)`` for one pause ``[start, stop)`` of the track; seeded by ``rng``.

    A pop (probability ``pop_probability``) ends 10–80 ms before the next
    phrase, a breath (``breath_probability``) ends 30–300 ms before it (or
    before the pop) — breathing in before speaking; then a Poisson number of
    smacks and clicks at random free places. Nothing comes within
    ``guard_ms`` of speech (``next_speech``: the pause ends at a phrase, not at
    the end of the track) or within ``event_gap_ms`` of another event. An
    event that does not fit is shortened (down to its minimum length) or left out.
    """
    ms = rate / 1000.0
    guard, gap = int(round(r.guard_ms * ms)), int(round(r.event_gap_ms * ms))
    lo, hi = pause[0] + guard, pause[1] - (guard if next_speech else 0)
    events: list[tuple[str, int, int]] = []
    anchor = hi
    # the draws happen whether or not the event fits: the sequence of draws is fixed
    if rng.uniform() < r.pop_probability:
        want = int(round(rng.uniform(*r.pop_ms) * ms))
        stop = anchor - int(round(rng.uniform(*r.pop_before_speech_ms) * ms))
        span = _fit_anchored(lo, stop, want, int(math.ceil(r.pop_ms[0] * ms)))
        if span:
            events.append(("pop", *span))
            anchor = span[0] - gap
    if rng.uniform() < r.breath_probability:
        want = int(round(rng.uniform(*r.breath_ms) * ms))
        stop = anchor - int(round(rng.uniform(*r.breath_before_speech_ms) * ms))
        span = _fit_anchored(lo, stop, want, int(math.ceil(r.breath_ms[0] * ms)))
        if span:
            events.append(("breath", *span))
    for kind, rate_per_pause, (shortest, longest) in (
        ("smack", r.smack_rate, r.smack_ms),
        ("click", r.click_rate, r.click_ms),
    ):
        for _ in range(int(rng.poisson(rate_per_pause))):
            length = int(round(rng.uniform(shortest, longest) * ms))
            span = _fit_free(rng, lo, hi, [(a, b) for _, a, b in events], max(length, 1), gap)
            if span:
                events.append((kind, *span))
    return sorted(events, key=lambda e: e[1])


# --- one track ------------------------------------------------------------------------------------
def _db(x: float) -> float:
    return 20.0 * math.log10(x) if x > 0 else float("-inf")


def make_pair(
    source: Source, rate: int, channels: int, rng: np.random.Generator, options: dict[str, Any]
) -> tuple[np.ndarray, np.ndarray, dict[str, Any]]:
    """``make_pair`` of the nonspeech task: (speech with events, the same speech without, record).

    Both arrays are float32 ``(1, n)``; they are bit-identical outside the
    event segments. The record is described in the module docstring.
    """
    if channels != 1:
        raise DataError(f"the nonspeech data set is mono (channels=1), not {channels} channels")
    r = NonspeechRanges.from_options(options)
    paths = _clips_of(source)
    clips = [load_clip(p, rate) for p in paths]

    # the track-level draws, in a fixed order
    level_dbfs = rng.uniform(*r.speech_level_dbfs)
    jitter = rng.uniform(-r.clip_level_jitter_db, r.clip_level_jitter_db, size=len(clips))
    pauses = np.round(rng.uniform(*r.pause_seconds, size=len(clips) + 1) * rate).astype(np.int64)
    floor_below = rng.uniform(*r.floor_below_clip_noise_db)
    slope = rng.uniform(*r.floor_slope_db_per_octave)

    # speech: the clips at the track's level, pauses between
    n = int(sum(len(c.audio) for c in clips) + pauses.sum())
    speech = np.zeros(n)
    segments: list[tuple[int, int]] = []
    gains = []
    pos = int(pauses[0])
    for c, j, pause in zip(clips, jitter, pauses[1:]):
        gain_db = level_dbfs + j - c.speech_db
        speech[pos : pos + len(c.audio)] = c.audio * 10.0 ** (gain_db / 20.0)
        segments.append((pos, pos + len(c.audio)))
        gains.append(gain_db)
        pos += len(c.audio) + int(pause)
    in_speech = np.zeros(n, dtype=bool)
    for a, b in segments:
        in_speech[a:b] = True
    speech_rms = float(np.sqrt(np.mean(speech[in_speech] ** 2)))

    # the room-noise floor, following the clips' own background noise
    clip_noise_re_speech = float(np.median([c.noise_db - c.rms_db for c in clips]))
    floor_re_speech = float(np.clip(clip_noise_re_speech - floor_below, *r.floor_re_speech_db))
    floor = floor_noise(rng, n, rate, slope) * speech_rms * 10.0 ** (floor_re_speech / 20.0)

    # the events, pause by pause
    extra = np.zeros(n)
    events: list[dict[str, Any]] = []
    bounds = [0] + [e for s in segments for e in s] + [n]
    for i in range(len(segments) + 1):
        pause = (bounds[2 * i], bounds[2 * i + 1])
        for kind, a, b in place_events(rng, pause, i < len(segments), rate, r):
            level_db = float(rng.uniform(*r.level_range(kind)))
            extra[a:b] = synth_event(kind, rng, b - a, rate, r) * speech_rms * 10.0 ** (level_db / 20.0)
            events.append({"kind": kind, "start": a, "stop": b, "level_db": round(level_db, 3)})

    # one gain for both, to keep the input's peaks below the ceiling
    y = speech + floor
    x = y + extra
    peak = float(np.max(np.abs(x)))
    ceiling = 10.0 ** (r.peak_ceiling_dbfs / 20.0)
    gain = min(1.0, ceiling / peak) if peak > 0 else 1.0
    x32 = (x * gain).astype(np.float32)[np.newaxis]
    y32 = (y * gain).astype(np.float32)[np.newaxis]

    counts = {k: sum(1 for e in events if e["kind"] == k) for k in EVENT_KINDS}
    record = {
        "rate": rate,
        "language": getattr(source, "language", ""),
        "speech_rms_dbfs": round(_db(speech_rms * gain), 3),
        "floor_rms_dbfs": round(_db(speech_rms * gain) + floor_re_speech, 3),
        "floor_re_speech_db": round(floor_re_speech, 3),
        "clip_noise_re_speech_db": round(clip_noise_re_speech, 3),
        "gain_db": round(_db(gain), 3),
        "speech_seconds": round(int(in_speech.sum()) / rate, 3),
        "event_counts": counts,
        "clips": [
            {"path": _relative(p), "gain_db": round(g, 2), "snr_db": round(c.snr_db, 1)}
            for p, g, c in zip(paths, gains, clips)
        ],
        "speech_segments": [[a, b] for a, b in segments],
        "events": events,
    }
    return x32, y32, record


def _relative(path: Path) -> str:
    try:
        return str(path.relative_to(STAMPS_ROOT))
    except ValueError:
        return str(path)


# --- the builder -----------------------------------------------------------------------------------
def _sources_digest(sources: Sequence[Source]) -> str:
    """A digest of every clip of every track (build_task fingerprints only ``Source.path``)."""
    h = hashlib.sha1()
    for s in sources:
        for p in _clips_of(s):
            try:
                st = p.stat()
            except OSError:
                raise DataError(f"source file {p} does not exist") from None
            h.update(f"{s.track_id}\0{p}\0{st.st_size}\0{st.st_mtime_ns}\n".encode())
    return h.hexdigest()


def build_nonspeech(
    cache_dir: str | Path | None = None,
    seed: int = 0,
    *,
    sources: Sequence[Source] | None = None,
    ranges: NonspeechRanges = NonspeechRanges(),
    force: bool = False,
    workers: int | None = None,
    progress: bool = True,
) -> Path:
    """Build (or reuse) the nonspeech data set; returns its cache directory.

    ``sources`` defaults to :func:`nonspeech_sources` for ``seed`` (all
    languages; its clip analysis cached in ``<cache>/clip_stats.json``);
    tests pass a few tracks of real clips.
    """
    if sources is None:
        stats = resolve_cache_dir(TASK, cache_dir) / "clip_stats.json"
        sources = nonspeech_sources(seed, ranges=ranges, stats_file=stats)
    sources = list(sources)
    options = {**asdict(ranges), "builder_version": BUILDER_VERSION, "clips_sha1": _sources_digest(sources)}
    return build_task(
        TASK,
        cache_dir,
        seed,
        sources,
        make_pair,
        rate=RATE,
        channels=1,
        options=options,
        force=force,
        workers=workers,
        progress=progress,
    )
