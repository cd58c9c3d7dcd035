"""Audio files and signals: read, check, resample, map channels, write safely.

Everything is numpy float32 shaped ``(channels, samples)``.
"""

from __future__ import annotations

import logging
import os
import tempfile
from pathlib import Path

import numpy as np
import soundfile as sf
import soxr

from rt_host.errors import AudioFileError

log = logging.getLogger("rt_host")

CHANNEL_MAPS = ("auto", "duplicate", "mix", "first")


def read_audio(path: str | Path) -> tuple[np.ndarray, int]:
    """``(audio (channels, samples) float32, sample_rate)`` from any file soundfile reads."""
    path = Path(path)
    if not path.is_file():
        raise AudioFileError(f"input file {path} does not exist")
    try:
        data, rate = sf.read(str(path), dtype="float32", always_2d=True)
    except (sf.LibsndfileError, RuntimeError, TypeError) as exc:
        raise AudioFileError(f"cannot read {path} as audio: {exc}") from None
    if data.shape[0] == 0:
        raise AudioFileError(f"{path} holds no samples")
    return np.ascontiguousarray(data.T), int(rate)


def sanitize(audio: np.ndarray, what: str = "input") -> np.ndarray:
    """``audio`` with NaN/Inf replaced by 0; warns with the count."""
    bad = ~np.isfinite(audio)
    n = int(bad.sum())
    if n:
        log.warning("%s: replaced %d non-finite sample(s) (NaN/Inf) with 0", what, n)
        audio = np.where(bad, np.float32(0.0), audio).astype(np.float32)
    return audio


def resample(audio: np.ndarray, from_rate: int, to_rate: int) -> np.ndarray:
    """``audio`` at ``to_rate`` (soxr, very high quality)."""
    if from_rate == to_rate:
        return audio
    out = soxr.resample(audio.T, from_rate, to_rate, quality="VHQ")
    return np.ascontiguousarray(np.asarray(out, dtype=np.float32).T)


def map_channels(audio: np.ndarray, channels: int, how: str = "auto") -> np.ndarray:
    """``audio`` with ``channels`` channels.

    ``auto`` only does what loses nothing (the same count, or mono copied to
    every channel) and asks for a choice otherwise; ``duplicate`` copies mono
    to every channel; ``mix`` averages to mono; ``first`` keeps the first ones.
    """
    have = audio.shape[0]
    if have == channels:
        return audio
    if how in ("auto", "duplicate") and have == 1:
        if how == "auto":
            log.info("mono input copied to %d channels", channels)
        return np.repeat(audio, channels, axis=0)
    if how == "mix" and channels == 1:
        return audio.mean(axis=0, keepdims=True, dtype=np.float32)
    if how == "first" and have >= channels:
        return np.ascontiguousarray(audio[:channels])
    raise AudioFileError(
        f"the audio has {have} channel(s) and the chain takes {channels}: choose a mapping "
        "with --map-channels mix (average to mono) or first (keep the first channels)"
    )


def check_writable(path: str | Path, inputs: tuple[Path, ...] = ()) -> None:
    """Fail now (before any work) if ``path`` cannot be written as audio."""
    path = Path(path)
    if path.suffix.lower().lstrip(".") not in {f.lower() for f in sf.available_formats()}:
        raise AudioFileError(
            f"cannot tell the format of {path} from its extension; use .wav, .flac, .ogg, .aiff …"
        )
    check_output_path(path, inputs)


def check_output_path(path: str | Path, inputs: tuple[Path, ...] = ()) -> None:
    """Fail now (before any work) if a file cannot be written at ``path`` or would overwrite an input."""
    path = Path(path)
    if any(path.resolve() == Path(i).resolve() for i in inputs):
        raise AudioFileError(f"refusing to overwrite the input file {path}; pick another output")
    parent = path.parent if str(path.parent) else Path(".")
    if not parent.is_dir():
        raise AudioFileError(f"cannot write {path}: folder {parent} does not exist")
    if not os.access(parent, os.W_OK) or (path.exists() and not os.access(path, os.W_OK)):
        raise AudioFileError(f"cannot write {path}: permission denied")


def write_audio(path: str | Path, audio: np.ndarray, sample_rate: int, subtype: str | None = None) -> None:
    """Write atomically (a temporary file renamed into place); integer formats are clipped."""
    path = Path(path)
    fmt = path.suffix.lower().lstrip(".")
    if subtype is None and fmt in ("wav", "flac", "aiff", "aif"):
        subtype = "PCM_24"
    data = audio.T
    if subtype and subtype.startswith("PCM"):
        over = int(np.count_nonzero(np.abs(data) > 1.0))
        if over:
            log.warning("%s: %d sample(s) above 0 dBFS were clipped", path.name, over)
        data = np.clip(data, -1.0, 1.0)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.stem}.", suffix=path.suffix, dir=path.parent or ".")
    os.close(fd)
    try:
        sf.write(tmp, data, int(sample_rate), subtype=subtype, format=fmt.upper())
        os.replace(tmp, path)
    except Exception as exc:
        Path(tmp).unlink(missing_ok=True)
        raise AudioFileError(f"cannot write {path}: {exc}") from None
