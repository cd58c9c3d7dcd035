"""The ``mastering`` data set: finished music as targets, the same music un-mastered as inputs.

*Targets* are professionally finished tracks: the Warzone 2100 soundtracks
(``warzone2100-music``, Ogg/Opus at 48 kHz) and the Frets on Fire songs
(``fretsonfire-songs-muldjord`` / ``-sectoid``, ``song.ogg``, Ogg/Vorbis at
44.1 kHz), resampled to 44.1 kHz stereo with soxr and trimmed of leading and
trailing digital silence. *Inputs* are the same audio "un-mastered" by the
seeded process of :mod:`rt_host.unmaster` (EQ, expansion, −6 … −20 LU), which
the demo also uses for its example.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np

from rt_host.unmaster import MasteringDegradation, degrade_mastering, draw_mastering_params
from training.data.builder import DataError, Source, build_task, read_source, slug

DEBIAN_SHARE = Path("/usr/share/games")


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


def mastering_pair(
    source: Source, rate: int, channels: int, rng: np.random.Generator, options: dict[str, Any]
) -> tuple[np.ndarray, np.ndarray, dict[str, Any]]:
    """``make_pair`` of the mastering task: (degraded input, finished target, per-track record)."""
    ranges = MasteringDegradation(**{k: tuple(v) if isinstance(v, list) else v for k, v in options.items()})
    target, record = read_source(source, rate, channels)
    if target.shape[1] < rate:
        raise DataError(f"{source.path} is shorter than 1 s after trimming silence")
    params = draw_mastering_params(rng, ranges)
    try:
        x, realised = degrade_mastering(target, rate, params, ranges)
    except ValueError as exc:
        raise DataError(f"{source.path}: {exc}; remove it from the sources") from None
    record.update(realised)
    record["degradation"] = params
    return x, target, record


def build_mastering(
    cache_dir: str | Path | None = None,
    seed: int = 0,
    *,
    sources: Sequence[Source] | None = None,
    ranges: MasteringDegradation | None = None,
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
        options=asdict(ranges or MasteringDegradation()),
        force=force,
        workers=workers,
        progress=progress,
    )
