"""The data set of the ``distortion`` task: clean guitar and bass in, a tube preamp's output as target.

    python -m training.data distortion [--cache DIR] [--seed N] [--force] [--workers N]

After DeepAFx (ICASSP 2021), where a multiband compressor learns to imitate a
tube amplifier. Nothing is downloaded; every source is a Debian package that
``./install.sh`` installs.

**Inputs** — clean, un-effected guitar and bass ("DI" signals), in two collections:

* ``midi``: songs composed here by a seeded generator (:func:`compose_song`:
  key, tempo, a four-chord progression, a guitar part — strummed barre chords,
  arpeggios, palm-muted power chords or a pentatonic lead — and a bass part —
  eighth-note roots, octaves, a riff or a walking line — with phrase-level
  dynamics and small timing jitter), written as standard MIDI files by a tiny
  writer (:func:`midi_bytes`) and rendered by the ``fluidsynth`` CLI through
  FluidR3 GM (``fluid-soundfont-gm``): the guitar part with GM program 27
  "Electric Guitar (clean)", the bass part with 33 "Electric Bass (finger)" or
  34 "(pick)" (0-based), reverb and chorus off, at 44.1 kHz in float, then
  resampled to 22,050 Hz with soxr (rendering at 22,050 Hz directly would alias
  the sound font's 44.1 kHz samples). A song's guitar and bass tracks share a
  *group*, so they always land in the same split.
* ``recorded``: real recordings — the guitar strums of
  ``hydrogen-drumkits-effects`` (``belofilms_GuitarStrums``: 25 chords, 8–12
  strums of 2 s each; a chord becomes one track of its strums in a fixed shuffled
  order, each cut after 1–2 s with a 15 ms fade, like re-strumming), the
  ``guit_*`` samples of ``sonic-pi-samples`` (one track) and ``lmms-common``'s
  clean steel and latin guitars (one track; its ``*_distorted`` variants are
  left out). One group per chord and per package track.

The material is fixed: it is composed and assembled with its own seed
(:attr:`CorpusRecipe.seed`), independent of the build's seed, and cached once
in ``<cache>/corpus/`` as 24-bit FLAC (each file peak-normalised to −1 dBFS,
with a ``.json`` sidecar saying what it is). The build's seed draws the splits
and each track's input level.

**Level** — each input track is set to a loudness (BS.1770) drawn uniformly
from :attr:`DistortionLevels.loudness_lufs` (−27 … −19 LUFS by default: a
typical DI level, and a moderate range — the preamp's saturation grows with the
level, so the range is what the model must follow), with the top of the range
lowered to the loudest level that keeps the track's peaks under −1 dBFS
(recorded strums have crest factors that cap them near −22 … −28 LUFS); a
track that would clip even at the bottom gets that loudest level. The record
keeps the draw, the realised loudness, the gain and the peaks.

**Target** — the input rendered through the reference chain
``chains/distortion-reference.toml`` (guitarix's Studio Preamp, a tube preamp
model, at fixed settings driven into saturation — a different plugin family from
the Calf plugins the task's chain trains), so anyone can regenerate a target::

    deepafx-rt render input.wav target.wav --chain distortion-reference

The preamp reports no latency and has none (its impulse response starts on the
impulse's sample); the render still compensates the chain's reported latency,
so a future reference with a look-ahead stays aligned.

The tracks are stored by :func:`training.data.build_task` like every task's:
``<cache>/tracks/<id>.{input,target}.npy``, float32 ``(1, samples)`` at 22,050 Hz,
and ``manifest.json`` (splits, per-track records: instrument, program, origin,
package, source files, levels).
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import os
import shutil
import struct
import subprocess
import tempfile
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field, replace
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import soundfile as sf

from rt_host.audio import resample
from rt_host.errors import DeepAFxError
from rt_host.loudness import loudness
from training.data.builder import DataError, Source, build_task, locked, read_source, resolve_cache_dir, slug

log = logging.getLogger("training.data.distortion")

TASK = "distortion"
RATE = 22050  # the task's rate (chains/distortion.toml and chains/distortion-reference.toml)
REFERENCE_CHAIN = "distortion-reference"
SOUNDFONT = Path("/usr/share/sounds/sf2/FluidR3_GM.sf2")
GUITAR_PROGRAM = 27  # GM "Electric Guitar (clean)", 0-based
BASS_PROGRAMS = (33, 34)  # GM "Electric Bass (finger)", "Electric Bass (pick)"
STRUMS_DIR = Path("/usr/share/hydrogen/data/drumkits/belofilms_GuitarStrums")
SONIC_PI_DIR = Path("/usr/share/sonic-pi/samples")
LMMS_DIR = Path("/usr/share/lmms/samples")
LMMS_GUITARS = (
    "instruments/steel_guitar01.ogg",
    "latin/latin_guitar01.ogg",
    "latin/latin_guitar02.ogg",
    "latin/latin_guitar03.ogg",
)
CORPUS_VERSION = 1  # bump when the composer or the assembly changes: cached corpora rebuild
CORPUS_PEAK_DBFS = -1.0
RECIPE_VERSION = 1  # bump when make_pair's meaning changes (levels, target): cached tracks rebuild


# --- recipes ---------------------------------------------------------------------------
@dataclass(frozen=True)
class CorpusRecipe:
    """What the fixed input material is made of (part of the cache key).

    ``songs`` MIDI songs of about ``song_seconds`` each (a guitar and a bass
    track per song), plus the recorded guitars when ``recorded`` is true.
    """

    songs: int = 16
    song_seconds: float = 40.0
    recorded: bool = True
    seed: int = 20210607  # the material's own seed (not the build's): every build seed sees the same songs
    render_rate: int = 44100  # fluidsynth renders here, soxr resamples to RATE
    strum_seconds: tuple[float, float] = (1.0, 2.0)  # how long each strum rings before the next


@dataclass(frozen=True)
class DistortionLevels:
    """How loud each input track is set (drawn per track from the build's seed)."""

    loudness_lufs: tuple[float, float] = (-27.0, -19.0)
    peak_ceiling_dbfs: float = -1.0


# --- a tiny standard MIDI file writer -----------------------------------------------------
@dataclass(frozen=True)
class Note:
    """One note: start and length in beats (quarter notes), MIDI pitch, velocity 1–127."""

    start: float
    length: float
    pitch: int
    velocity: int


def _vlq(n: int) -> bytes:
    """A MIDI variable-length quantity: 7 bits per byte, high bit set on all but the last."""
    out = [n & 0x7F]
    n >>= 7
    while n:
        out.append(0x80 | (n & 0x7F))
        n >>= 7
    return bytes(reversed(out))


def midi_bytes(
    notes: Sequence[Note], program: int, bpm: float, *, tail_beats: float = 4.0, ppq: int = 480
) -> bytes:
    """A format-0 standard MIDI file: tempo, one program change, ``notes`` on channel 1.

    At equal times note-offs come before note-ons (a repeated pitch re-attacks),
    and the end-of-track event sits ``tail_beats`` after the last note-off, so a
    renderer that stops at the end of the track keeps the release tail.
    """
    if not 0 <= program <= 127:
        raise ValueError(f"program must be 0 … 127, got {program}")
    events: list[tuple[int, int, bytes]] = []  # (tick, order, bytes)
    for n in notes:
        on = max(0, round(n.start * ppq))
        off = max(on + 1, round((n.start + n.length) * ppq))
        pitch, vel = int(np.clip(n.pitch, 0, 127)), int(np.clip(n.velocity, 1, 127))
        events.append((on, 1, bytes([0x90, pitch, vel])))
        events.append((off, 0, bytes([0x80, pitch, 0])))
    events.sort(key=lambda e: (e[0], e[1]))
    end = (events[-1][0] if events else 0) + round(tail_beats * ppq)
    tempo = round(60_000_000 / bpm)  # microseconds per quarter note
    body = b"\x00\xff\x51\x03" + tempo.to_bytes(3, "big") + b"\x00" + bytes([0xC0, program])
    now = 0
    for tick, _, data in events:
        body += _vlq(tick - now) + data
        now = tick
    body += _vlq(end - now) + b"\xff\x2f\x00"
    header = b"MThd" + struct.pack(">IHHH", 6, 0, 1, ppq)
    return header + b"MTrk" + struct.pack(">I", len(body)) + body


# --- a seeded composer ----------------------------------------------------------------------
MAJOR = (0, 2, 4, 5, 7, 9, 11)
MINOR = (0, 2, 3, 5, 7, 8, 10)
TRIADS = {"maj": (0, 4, 7), "min": (0, 3, 7), "dim": (0, 3, 6)}
# diatonic progressions as scale degrees (0-based), no diminished chords
PROGRESSIONS = {
    False: ((0, 4, 5, 3), (0, 3, 4, 3), (0, 5, 3, 4), (1, 4, 0, 5), (0, 3, 0, 4), (5, 3, 0, 4)),
    True: ((0, 5, 2, 6), (0, 3, 4, 0), (0, 6, 5, 6), (0, 3, 6, 2), (0, 5, 3, 6)),
}
GUITAR_STYLES = ("strum", "arpeggio", "power", "lead")
BASS_STYLES = ("roots", "octaves", "riff", "walking")
STRUM_PATTERNS = (  # eighth-note slots of a bar: "D" down, "U" up, "." rest
    "D.D.D.D.",
    "D.DUD.DU",
    "D..U.UDU",
    "D.DU.UDU",
    "DUDUDUDU",
    "D...D.DU",
)


@dataclass
class Song:
    """A composed song: its musical choices and its two parts (notes in beats)."""

    index: int
    key: int  # pitch class of the tonic, 0 = C
    minor: bool
    bpm: float
    bars: int
    progression: tuple[int, ...]
    guitar_style: str
    bass_style: str
    bass_program: int
    guitar: list[Note] = field(repr=False)
    bass: list[Note] = field(repr=False)

    @property
    def name(self) -> str:
        return f"song{self.index:02d}"

    def describe(self) -> dict[str, Any]:
        """The song's choices, JSON-ready (no notes)."""
        names = ("C", "C#", "D", "Eb", "E", "F", "F#", "G", "Ab", "A", "Bb", "B")
        return {
            "key": names[self.key] + (" minor" if self.minor else " major"),
            "bpm": round(self.bpm, 1),
            "bars": self.bars,
            "progression": list(self.progression),
            "guitar_style": self.guitar_style,
            "bass_style": self.bass_style,
        }


def _chord(key: int, minor: bool, degree: int) -> tuple[int, str]:
    """Root pitch class and quality of the diatonic triad on ``degree``."""
    scale = MINOR if minor else MAJOR
    root = scale[degree % 7]
    third = (scale[(degree + 2) % 7] - root) % 12
    fifth = (scale[(degree + 4) % 7] - root) % 12
    quality = "dim" if fifth == 6 else ("min" if third == 3 else "maj")
    return (key + root) % 12, quality


def _in_range(pc: int, low: int) -> int:
    """The lowest pitch ≥ ``low`` with pitch class ``pc``."""
    return low + (pc - low) % 12


def guitar_voicing(root_pc: int, quality: str) -> list[int]:
    """A barre-chord voicing, low to high: the E shape (6 strings) or the A shape (5), root E2 … D#3."""
    third, fifth = TRIADS[quality][1], TRIADS[quality][2]
    root = _in_range(root_pc, 40)  # E2 … D#3
    if root <= 46:  # E shape: R 5 R 3 5 R
        return [root, root + fifth, root + 12, root + 12 + third, root + 12 + fifth, root + 24]
    return [root, root + fifth, root + 12, root + 12 + third, root + 12 + fifth][
        :5
    ]  # A shape from the 5th string


def _guitar_part(song: Song, rng: np.random.Generator, dyn: np.ndarray) -> list[Note]:
    notes: list[Note] = []
    beat_s = 60.0 / song.bpm
    jitter = 0.012 / beat_s  # ±12 ms of human timing, in beats
    pattern = STRUM_PATTERNS[int(rng.integers(len(STRUM_PATTERNS)))]
    scale = [(song.key + d) % 12 for d in ((0, 3, 5, 7, 10) if song.minor else (0, 2, 4, 7, 9))]
    lead_pitches = [p for p in range(52, 86) if p % 12 in scale]
    pos = int(rng.integers(len(lead_pitches) // 3, 2 * len(lead_pitches) // 3))
    for bar in range(song.bars):
        root_pc, quality = _chord(song.key, song.minor, song.progression[bar % len(song.progression)])
        voicing = guitar_voicing(root_pc, quality)
        t0 = 4.0 * bar
        base = dyn[bar]
        if song.guitar_style == "strum":
            slots = [i for i, c in enumerate(pattern) if c != "."]
            for k, i in enumerate(slots):
                down = pattern[i] == "D"
                strings = voicing if down else voicing[-4:][::-1]
                end = t0 + (slots[k + 1] if k + 1 < len(slots) else 8) * 0.5
                spread = float(rng.uniform(0.006, 0.02)) / beat_s
                vel = base + (10 if i == 0 else 0) - (12 if not down else 0)
                start = t0 + 0.5 * i + float(rng.uniform(-jitter, jitter))
                for j, p in enumerate(strings):
                    v = int(vel + rng.normal(0, 5))
                    notes.append(Note(start + j * spread, max(0.1, end - start - 0.05), p, v))
        elif song.guitar_style == "arpeggio":
            order = [0, 2, 3, 4, 5, 4, 3, 2] if len(voicing) == 6 else [0, 1, 2, 3, 4, 3, 2, 1]
            for i, s in enumerate(order):
                start = t0 + 0.5 * i + float(rng.uniform(-jitter, jitter))
                v = int(base + (8 if i % 4 == 0 else 0) + rng.normal(0, 6))
                notes.append(Note(start, float(rng.uniform(1.0, 2.0)), voicing[s], v))
        elif song.guitar_style == "power":
            power = voicing[:3]  # root, fifth, octave
            for i in range(8):
                if rng.uniform() < 0.15 and i % 4:
                    continue  # a rest
                muted = rng.uniform() < 0.7
                start = t0 + 0.5 * i + float(rng.uniform(-jitter, jitter))
                v = int(base + (12 if i % 4 == 0 else 0) + rng.normal(0, 6))
                for j, p in enumerate(power):
                    notes.append(Note(start + j * 0.004 / beat_s, 0.2 if muted else 0.45, p, v))
        else:  # lead: a random walk on the pentatonic scale, chord roots on some downbeats
            t = t0
            while t < t0 + 4.0 - 1e-9:
                length = float(rng.choice([0.5, 0.5, 0.5, 1.0, 1.0, 1.5, 2.0]))
                length = min(length, t0 + 4.0 - t)
                if rng.uniform() < 0.12:
                    t += length  # a rest
                    continue
                chord_pcs = {(root_pc + i) % 12 for i in TRIADS[quality]}
                target = [i for i, p in enumerate(lead_pitches) if p % 12 in chord_pcs]
                if abs(t - t0) < 1e-9 and target and rng.uniform() < 0.5:  # a chord tone on the downbeat
                    pos = min(target, key=lambda i: abs(i - pos))
                else:
                    pos = int(
                        np.clip(pos + rng.choice([-3, -2, -1, -1, 1, 1, 2, 3]), 0, len(lead_pitches) - 1)
                    )
                v = int(base + 6 + rng.normal(0, 7))
                notes.append(
                    Note(t + float(rng.uniform(-jitter, jitter)), length * 0.95, lead_pitches[pos], v)
                )
                t += length
    return notes


def _bass_part(song: Song, rng: np.random.Generator, dyn: np.ndarray) -> list[Note]:
    notes: list[Note] = []
    beat_s = 60.0 / song.bpm
    jitter = 0.008 / beat_s
    riff = [(0, 0), (1, 0), (2, 7), (3, 12), (4, 0), (5, 0), (6, 7), (7, 10)]
    n_bars = song.bars
    for bar in range(n_bars):
        degree = song.progression[bar % len(song.progression)]
        root_pc, quality = _chord(song.key, song.minor, degree)
        root = _in_range(root_pc, 28)  # E1 … D#2
        base = dyn[bar] - 4
        t0 = 4.0 * bar

        def add(
            slot: float, pitch: int, length: float, accent: int = 0, t0: float = t0, base: float = base
        ) -> None:
            """A note ``slot`` beats into the bar, timing and velocity humanised."""
            start = max(0.0, t0 + slot + float(rng.uniform(-jitter, jitter)))
            notes.append(Note(start, length, pitch, int(base + accent + rng.normal(0, 5))))

        if song.bass_style == "roots":
            for i in range(8):
                add(0.5 * i, root, 0.45, 10 if i % 4 == 0 else 0)
        elif song.bass_style == "octaves":
            for i in range(8):
                add(0.5 * i, root + (12 if i % 2 else 0), 0.4, 10 if i % 4 == 0 else 0)
        elif song.bass_style == "riff":
            for slot, interval in riff:
                if slot and rng.uniform() < 0.1:
                    continue
                add(0.5 * slot, root + interval, 0.42, 10 if slot == 0 else 0)
        else:  # walking: root, chord tones, a chromatic approach to the next bar's root
            nxt_pc, _ = _chord(song.key, song.minor, song.progression[(bar + 1) % len(song.progression)])
            nxt = _in_range(nxt_pc, 28)
            third, fifth = TRIADS[quality][1], TRIADS[quality][2]
            mid = [root + third, root + fifth] if rng.uniform() < 0.5 else [root + fifth, root + 12]
            approach = nxt - 1 if rng.uniform() < 0.5 else nxt + 1
            for i, p in enumerate([root, *mid, approach]):
                add(float(i), p, 0.9, 8 if i == 0 else 0)
    return notes


def compose_song(index: int, seconds: float, rng: np.random.Generator) -> Song:
    """A song of about ``seconds`` (whole bars of 4/4), its choices drawn from ``rng`` in a fixed order."""
    key = int(rng.integers(12))
    minor = bool(rng.uniform() < 0.5)
    bpm = float(rng.uniform(80.0, 150.0))
    progression = PROGRESSIONS[minor][int(rng.integers(len(PROGRESSIONS[minor])))]
    bars = max(4, round(seconds / (4 * 60.0 / bpm)))
    guitar_style = GUITAR_STYLES[index % len(GUITAR_STYLES)]  # every style equally often
    bass_style = BASS_STYLES[int(rng.integers(len(BASS_STYLES)))]
    bass_program = BASS_PROGRAMS[int(rng.integers(len(BASS_PROGRAMS)))]
    # dynamics: a base velocity per song, an offset per 4-bar phrase, a little per bar
    base = float(rng.uniform(75.0, 100.0))
    phrases = rng.uniform(-22.0, 12.0, size=(bars + 3) // 4)
    dyn = np.clip(base + np.repeat(phrases, 4)[:bars] + rng.normal(0, 3, size=bars), 30, 118)
    song = Song(index, key, minor, bpm, bars, progression, guitar_style, bass_style, bass_program, [], [])
    song.guitar = _guitar_part(song, rng, dyn)
    song.bass = _bass_part(song, rng, dyn)
    return song


# --- rendering and assembling the corpus -------------------------------------------------------
def _need(path: Path, package: str, what: str) -> None:
    if not path.exists():
        raise DataError(f"{what} ({path}) is missing; install {package}: apt-get install {package}")


def _fluidsynth() -> str:
    exe = shutil.which("fluidsynth")
    if exe is None:
        raise DataError("the fluidsynth command is missing; install fluidsynth: apt-get install fluidsynth")
    return exe


def fluidsynth_version() -> str:
    """``fluidsynth --version``'s first line; :class:`DataError` if fluidsynth is not installed."""
    out = subprocess.run([_fluidsynth(), "--version"], capture_output=True, text=True, check=False)
    return (out.stdout.strip().splitlines() or ["fluidsynth (unknown version)"])[0]


def render_midi(
    midi: Path, out_rate: int, render_rate: int = 44100, soundfont: Path = SOUNDFONT
) -> np.ndarray:
    """``midi`` rendered by the fluidsynth CLI (reverb and chorus off, float), mono float32 at ``out_rate``.

    fluidsynth's file renderer has no randomness here (float output: no
    dither), so the result is the same on every run.
    """
    _need(soundfont, "fluid-soundfont-gm", "the FluidR3 GM sound font")
    with tempfile.TemporaryDirectory(prefix="deepafx-fluid-") as tmp:
        wav = Path(tmp) / "out.wav"
        flags = "-n -i -q -R 0 -C 0 -g 0.5 -O float -T wav".split()
        cmd = [_fluidsynth(), *flags, "-r", str(render_rate), "-F", str(wav), str(soundfont), str(midi)]
        proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
        if proc.returncode != 0 or not wav.is_file():
            err = proc.stderr.strip()[:300]
            raise DataError(f"fluidsynth failed on {midi} (exit {proc.returncode}): {err}")
        audio, rate = sf.read(str(wav), dtype="float32", always_2d=True)
    mono = np.ascontiguousarray(audio.mean(axis=1)[np.newaxis, :])
    return resample(mono, int(rate), out_rate)


def _read_mono(path: Path, rate: int) -> np.ndarray:
    """A file as mono float32 ``(1, n)`` at ``rate`` (channels averaged)."""
    try:
        audio, src_rate = sf.read(str(path), dtype="float32", always_2d=True)
    except (sf.LibsndfileError, RuntimeError, OSError) as exc:
        raise DataError(f"cannot read {path} as audio: {exc}") from None
    return resample(np.ascontiguousarray(audio.mean(axis=1)[np.newaxis, :]), int(src_rate), rate)


def _trim(x: np.ndarray, floor_dbfs: float = -50.0) -> np.ndarray:
    loud = np.flatnonzero(np.abs(x[0]) > 10.0 ** (floor_dbfs / 20.0))
    return x[:, loud[0] : loud[-1] + 1] if loud.size else x[:, :0]


def _fade(x: np.ndarray, n: int) -> np.ndarray:
    """``x`` with a raised-cosine fade of ``n`` samples at its end (in place; returns ``x``)."""
    n = min(n, x.shape[1])
    if n:
        x[:, -n:] *= (0.5 + 0.5 * np.cos(np.linspace(0.0, np.pi, n))).astype(np.float32)
    return x


def assemble(
    files: Sequence[Path],
    rate: int,
    rng: np.random.Generator | None,
    ring: tuple[float, float],
    gap_s: float = 0.25,
) -> np.ndarray:
    """The recordings in ``files`` (leading/trailing silence trimmed) one after another, mono at ``rate``.

    With ``rng``, each is cut after ``ring`` seconds drawn uniformly (a 15 ms
    fade), and the next starts right there, like a guitarist re-strumming;
    without it, each plays out and ``gap_s`` of silence follows.
    """
    parts = []
    for f in files:
        x = _trim(_read_mono(f, rate))
        if rng is not None:
            x = _fade(x[:, : int(rng.uniform(*ring) * rate)].copy(), int(0.015 * rate))
            parts.append(x)
        else:
            parts += [_fade(x.copy(), int(0.01 * rate)), np.zeros((1, int(gap_s * rate)), np.float32)]
    return np.concatenate(parts, axis=1) if parts else np.zeros((1, 0), np.float32)


@dataclass(frozen=True)
class CorpusItem:
    """One file of the corpus: its track id, group and collection, and what it is (its sidecar)."""

    track_id: str
    group: str
    collection: str
    package: str
    meta: dict[str, Any]


def _recorded_items(rng: np.random.Generator) -> list[tuple[CorpusItem, list[Path]]]:
    """The recorded guitars and their files: one item per strummed chord, one for sonic-pi, one for lmms.

    The strums of a chord come in an order drawn from ``rng``.
    """
    _need(STRUMS_DIR, "hydrogen-drumkits-effects", "hydrogen's guitar strums kit")
    _need(SONIC_PI_DIR / "guit_em9.flac", "sonic-pi-samples", "sonic-pi's guitar samples")
    _need(LMMS_DIR / LMMS_GUITARS[0], "lmms-common", "lmms's steel guitar sample")

    def item(track_id: str, package: str, kind: str) -> CorpusItem:
        meta = {"instrument": "guitar", "origin": "recorded", "kind": kind}
        return CorpusItem(track_id, track_id, "recorded", package, meta)

    chords: dict[str, list[Path]] = {}
    for p in sorted(STRUMS_DIR.glob("*.flac")):
        # "Amajor_DOWN_02.flac", "Dsharp minor7b5_DOWN_02wav.flac" → chord "amajor", "dsharp-minor7b5"
        chords.setdefault(slug(p.stem.split("_")[0]), []).append(p)
    out = [
        (item(f"rec-strums-{chord}", "hydrogen-drumkits-effects", f"strums of {chord}"),
         [files[i] for i in rng.permutation(len(files))])
        for chord, files in sorted(chords.items())
    ]  # fmt: skip
    out.append(
        (
            item("rec-sonic-pi-guitar", "sonic-pi-samples", "guitar phrases"),
            sorted(SONIC_PI_DIR.glob("guit_*.flac")),
        )
    )
    out.append(
        (
            item("rec-lmms-guitar", "lmms-common", "steel and latin guitar"),
            [LMMS_DIR / f for f in LMMS_GUITARS],
        )
    )
    return out


def _corpus_key(recipe: CorpusRecipe) -> dict[str, Any]:
    """Everything the corpus depends on (JSON-ready); a cached corpus is reused only when this matches."""
    deps: list[list[Any]] = []
    if recipe.songs:
        size = SOUNDFONT.stat().st_size if SOUNDFONT.exists() else None
        deps.append([str(SOUNDFONT), size, fluidsynth_version()])
    if recipe.recorded:
        files = sorted(STRUMS_DIR.glob("*.flac")) + sorted(SONIC_PI_DIR.glob("guit_*.flac"))
        files += [LMMS_DIR / f for f in LMMS_GUITARS]
        deps += [[str(f), f.stat().st_size] for f in files if f.exists()]
    key = {"version": CORPUS_VERSION, "rate": RATE, "recipe": asdict(recipe), "dependencies": deps}
    return json.loads(json.dumps(key))


def _write_item(audio_dir: Path, item: CorpusItem, audio: np.ndarray) -> dict[str, Any]:
    """Store one corpus file (24-bit FLAC at −1 dBFS peak) and its sidecar; its ``corpus.json`` entry."""
    peak = float(np.max(np.abs(audio))) if audio.size else 0.0
    if peak <= 0.0:
        raise DataError(f"{item.track_id}: the rendered or assembled audio is silent")
    audio = audio * np.float32(10.0 ** (CORPUS_PEAK_DBFS / 20.0) / peak)
    path = audio_dir / f"{item.track_id}.flac"
    tmp = path.with_name(path.stem + ".tmp.flac")
    sf.write(str(tmp), audio[0], RATE, subtype="PCM_24")
    os.replace(tmp, path)
    meta = {**item.meta, "seconds": round(audio.shape[1] / RATE, 3), "package": item.package}
    path.with_suffix(".json").write_text(json.dumps(meta, indent=1) + "\n")
    return {"id": item.track_id, "group": item.group, "collection": item.collection,
            "package": item.package, "path": f"audio/{path.name}"}  # fmt: skip


PROGRAM_NAMES = {27: "Electric Guitar (clean)", 33: "Electric Bass (finger)", 34: "Electric Bass (pick)"}


def _corpus_jobs(recipe: CorpusRecipe, midi_dir: Path) -> list[tuple[CorpusItem, Callable[[], np.ndarray]]]:
    """Every corpus file as (item, a function making its audio); the MIDI files are written here.

    The random draws happen here, in a fixed order (songs, then the strum
    orders, then each strummed chord's own generator), so running the jobs in
    any order or thread gives the same files.
    """
    if recipe.songs:
        _need(SOUNDFONT, "fluid-soundfont-gm", "the FluidR3 GM sound font")
    rng = np.random.default_rng(recipe.seed)
    jobs: list[tuple[CorpusItem, Callable[[], np.ndarray]]] = []
    for i in range(recipe.songs):
        song = compose_song(i, recipe.song_seconds, rng)
        for part, program, notes in (
            ("guitar", GUITAR_PROGRAM, song.guitar),
            ("bass", song.bass_program, song.bass),
        ):
            midi = midi_dir / f"midi-{song.name}-{part}.mid"
            midi.write_bytes(midi_bytes(notes, program, song.bpm))
            meta = {"instrument": part, "origin": "midi", "program": program,
                    "program_name": PROGRAM_NAMES.get(program, ""), "soundfont": str(SOUNDFONT),
                    "midi": midi.name, "notes": len(notes), **song.describe()}  # fmt: skip
            item = CorpusItem(
                f"midi-{song.name}-{part}", f"midi-{song.name}", "midi", "fluid-soundfont-gm", meta
            )
            jobs.append((item, partial(render_midi, midi, RATE, recipe.render_rate)))
    if recipe.recorded:
        for item, files in _recorded_items(rng):
            strums = item.track_id.startswith("rec-strums-")
            sub = np.random.default_rng([recipe.seed, len(jobs)]) if strums else None
            item = replace(item, meta={**item.meta, "files": [str(f) for f in files]})
            jobs.append((item, partial(assemble, files, RATE, sub, recipe.strum_seconds)))
    return jobs


def prepare_corpus(
    corpus_dir: str | Path,
    recipe: CorpusRecipe = CorpusRecipe(),
    *,
    workers: int | None = None,
    force: bool = False,
) -> list[Source]:
    """Compose, render and assemble the input material into ``corpus_dir`` (or reuse it); its sources.

    Reused when ``corpus.json`` matches the recipe, the corpus version, the
    sound font and fluidsynth version and the recorded files' sizes — then
    nothing is rewritten (the data set's cache key includes the files' mtimes).
    Files are made ``workers`` at a time in threads (default: all cores):
    fluidsynth runs as a subprocess, soxr and libsndfile release the GIL.
    """
    corpus = Path(corpus_dir)
    for sub in ("audio", "midi"):
        (corpus / sub).mkdir(parents=True, exist_ok=True)
    key = _corpus_key(recipe)
    index_path = corpus / "corpus.json"
    with locked(corpus):
        index = None
        if index_path.is_file() and not force:
            with contextlib.suppress(OSError, ValueError):
                index = json.loads(index_path.read_text())
        fresh = (
            index is not None
            and index.get("key") == key
            and all((corpus / t["path"]).is_file() for t in index["tracks"])
        )
        if not fresh:
            t0 = time.monotonic()
            index_path.unlink(missing_ok=True)  # from here on the corpus is unfinished
            for old in (corpus / "audio").glob("*"):
                old.unlink()
            jobs = _corpus_jobs(recipe, corpus / "midi")
            n = max(1, min(workers or os.cpu_count() or 1, len(jobs)))
            with ThreadPoolExecutor(n) as pool:
                tracks = list(pool.map(lambda job: _write_item(corpus / "audio", job[0], job[1]()), jobs))
            index = {"key": key, "tracks": tracks, "seconds_to_build": round(time.monotonic() - t0, 1)}
            tmp = corpus / "corpus.json.tmp"
            tmp.write_text(json.dumps(index, indent=1) + "\n")
            os.replace(tmp, index_path)
            log.info("%s: prepared %d corpus files in %.0f s", TASK, len(tracks), time.monotonic() - t0)
    return [
        Source(corpus / t["path"], t["id"], t["group"], t["collection"], t["package"])
        for t in index["tracks"]
    ]


def distortion_sources(
    cache_dir: str | Path | None = None,
    recipe: CorpusRecipe = CorpusRecipe(),
    *,
    workers: int | None = None,
) -> list[Source]:
    """The task's sources: the corpus in ``<cache>/corpus`` (prepared on first use, then reused).

    :class:`DataError` with the ``apt-get install`` line when a package is missing.
    """
    return prepare_corpus(resolve_cache_dir(TASK, cache_dir) / "corpus", recipe, workers=workers)


# --- the pair: level, then the reference chain ------------------------------------------------
_CHAIN_CACHE: dict[str, Any] = {}


def reference_chain_spec(name: str = REFERENCE_CHAIN) -> dict[str, Any]:
    """The reference chain file as a dict (it goes into the recipe: editing the file rebuilds the data)."""
    from rt_host.lv2.spec import ChainSpec

    return ChainSpec.load(name).to_dict()


def _reference_chain(spec: dict[str, Any]) -> Any:
    """The reference chain built from ``spec``, once per process."""
    from rt_host.lv2.chain import Chain
    from rt_host.lv2.spec import ChainSpec

    key = json.dumps(spec, sort_keys=True)
    chain = _CHAIN_CACHE.get(key)
    if chain is None:
        try:
            chain = Chain(ChainSpec.from_dict(spec, where=f"chain {spec.get('name')!r}"))
        except DeepAFxError as exc:
            hint = (
                " (install guitarix-lv2: apt-get install guitarix-lv2)"
                if "guitarix" in json.dumps(spec)
                else ""
            )
            raise DataError(f"cannot load the reference chain: {exc}{hint}") from None
        _CHAIN_CACHE[key] = chain
    return chain


def render_target(x: np.ndarray, rate: int, spec: dict[str, Any]) -> tuple[np.ndarray, int]:
    """``x`` through the reference chain, latency-compensated; the target and the latency compensated."""
    chain = _reference_chain(spec)
    y = chain(x, rate, compensate_latency=True)
    return y.astype(np.float32), chain.latency


def _dbfs(v: float) -> float:
    return 20.0 * math.log10(v) if v > 0 else float("-inf")


def make_pair(
    source: Source, rate: int, channels: int, rng: np.random.Generator, options: dict[str, Any]
) -> tuple[np.ndarray, np.ndarray, dict[str, Any]]:
    """``make_pair`` of the distortion task: (input at its drawn level, reference-chain target, record).

    The record holds the sidecar's description (instrument, origin, program,
    song or files), the drawn and realised loudness, the gain, the peaks and the
    loudness of the target.
    """
    x, record = read_source(source, rate, channels)
    sidecar = source.path.with_suffix(".json")
    meta = json.loads(sidecar.read_text()) if sidecar.is_file() else {"instrument": source.collection}
    meta.pop("seconds", None)
    l_src = loudness(x, rate)
    if not math.isfinite(l_src):
        raise DataError(f"{source.path} is too short or too quiet to measure its loudness")
    lo, hi = options["loudness_lufs"]
    u = float(rng.uniform())
    # the loudest level that keeps the peaks under the ceiling; the draw stays within [lo, that]
    peak_db = _dbfs(float(np.max(np.abs(x))))
    ceiling = options["peak_ceiling_dbfs"] - peak_db + l_src
    upper = min(hi, max(lo, ceiling))
    level = min(lo + u * (upper - lo), ceiling)  # below lo only when even lo would clip
    gain_db = level - l_src
    x = (x * np.float32(10.0 ** (gain_db / 20.0))).astype(np.float32)
    y, latency = render_target(x, rate, options["reference_chain"])
    record.update(meta)
    record.update(
        {
            "level_u": round(u, 6),
            "loudness_upper_lufs": round(upper, 3),
            "input_lufs": round(level, 3),
            "gain_db": round(gain_db, 3),
            "input_peak_dbfs": round(_dbfs(float(np.max(np.abs(x)))), 3),
            "target_lufs": round(loudness(y, rate), 3),
            "target_peak_dbfs": round(_dbfs(float(np.max(np.abs(y)))), 3),
            "reference_latency": latency,
        }
    )
    return x, y, record


def build_distortion(
    cache_dir: str | Path | None = None,
    seed: int = 0,
    *,
    sources: Sequence[Source] | None = None,
    force: bool = False,
    workers: int | None = None,
    progress: bool = True,
    corpus: CorpusRecipe = CorpusRecipe(),
    levels: DistortionLevels = DistortionLevels(),
) -> Path:
    """Build (or reuse) the distortion data set; returns its cache directory.

    ``sources`` defaults to :func:`distortion_sources` (the corpus made from the
    Debian packages, recipe ``corpus``); tests pass a small corpus or files of
    their own (a ``.json`` sidecar beside a file describes it; without one the
    instrument is the source's collection).
    """
    if sources is None:
        sources = distortion_sources(cache_dir, corpus, workers=workers)
    options = {"version": RECIPE_VERSION, **asdict(levels), "reference_chain": reference_chain_spec()}
    return build_task(
        TASK,
        cache_dir,
        seed,
        list(sources),
        make_pair,
        rate=RATE,
        channels=1,
        options=options,
        force=force,
        workers=workers,
        progress=progress,
    )
