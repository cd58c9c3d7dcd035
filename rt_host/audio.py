"""Audio files and signals: read, check, resample, map channels, write safely.

Everything is numpy float32 shaped ``(channels, samples)``.
"""

from __future__ import annotations

import errno
import logging
import os
import re
import secrets
import stat
from pathlib import Path

import numpy as np
import soundfile as sf
import soxr

from rt_host.errors import AudioFileError

log = logging.getLogger("rt_host")

CHANNEL_MAPS = ("auto", "duplicate", "mix", "first")
SILENCE_DBFS = -60.0  # edges quieter than this (sample peak) count as digital silence


def read_audio(path: str | Path) -> tuple[np.ndarray, int]:
    """``(audio (channels, samples) float32, sample_rate)`` from any file soundfile reads."""
    path = Path(path)
    if not path.is_file():
        raise AudioFileError(f"input file {path} does not exist")
    try:
        with sf.SoundFile(str(path)) as f:
            data = f.read(dtype="float32", always_2d=True)
            rate, log_text = f.samplerate, f.extra_info
    except (sf.LibsndfileError, RuntimeError, TypeError) as exc:
        raise AudioFileError(f"cannot read {path} as audio: {exc}") from None
    if data.shape[0] == 0:
        raise AudioFileError(f"{path} holds no samples")
    _warn_if_truncated(path, log_text, data.shape[0], rate)
    return np.ascontiguousarray(data.T), int(rate)


# libsndfile's parser log (sf_command SFC_GET_LOG_INFO) when a container (WAV, W64, RF64: "RIFF",
# "riff", "Riff size"; AIFF: "SSND") or its "data" chunk claims more bytes than the file holds, e.g.
# "RIFF : 529236 (should be 176406)". libsndfile then quietly shortens the stream to what is there, so
# the frame count alone cannot tell a cut-off file from a short one.
_SHORT_CHUNK = re.compile(
    r"^\s*(?:RIFF|riff|Riff size|data|SSND)\s*:\s*(\d+)\s*\(should be (\d+)\)", re.MULTILINE
)
_STREAMED_SIZES = (0xFFFFFFFF, 0x7FFFFFFF)  # "unknown length" of a header written to a pipe


def _warn_if_truncated(path: Path, log_text: str, frames: int, rate: int) -> None:
    """Warn when the header promised more audio than the file holds (a cut-off copy or download)."""
    m = _SHORT_CHUNK.search(log_text or "")
    if m is None:
        return
    declared, present = int(m.group(1)), int(m.group(2))
    if declared in _STREAMED_SIZES or present >= declared:
        return
    log.warning(
        "%s is truncated: its header promises %d bytes, the file holds %d (%.0f %%); "
        "using the %.2f s that are there", path.name, declared, present, 100.0 * present / declared,
        frames / rate,
    )  # fmt: skip


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


def silence_bounds(audio: np.ndarray) -> tuple[int, int]:
    """``[start, stop)`` of ``audio`` without its leading and trailing digital silence."""
    loud = np.flatnonzero(np.max(np.abs(audio), axis=0) > 10.0 ** (SILENCE_DBFS / 20.0))
    if loud.size == 0:
        raise ValueError(f"silent (no sample above {SILENCE_DBFS:g} dBFS)")
    return int(loud[0]), int(loud[-1]) + 1


def trim_silence(audio: np.ndarray) -> np.ndarray:
    """``audio`` without its leading and trailing digital silence."""
    start, stop = silence_bounds(audio)
    return np.ascontiguousarray(audio[:, start:stop])


def check_writable(path: str | Path, inputs: tuple[Path, ...] = (), others: tuple[Path, ...] = ()) -> None:
    """Fail now (before any work) if ``path`` cannot be written as audio (see :func:`check_output_path`)."""
    path = Path(path)
    if path.suffix.lower().lstrip(".") not in {f.lower() for f in sf.available_formats()}:
        raise AudioFileError(
            f"cannot tell the format of {path} from its extension; use .wav, .flac, .ogg, .aiff …"
        )
    check_output_path(path, inputs, others)


def check_output_path(path: str | Path, inputs: tuple[Path, ...] = (), others: tuple[Path, ...] = ()) -> None:
    """Fail now (before any work) if a file cannot be written at ``path``.

    Refused: one of ``inputs`` (it would be overwritten), one of ``others`` (the
    other outputs of the same run), a folder, and any place where a file cannot
    really be created: the check creates and removes a temporary file beside
    ``path``, exactly as :func:`write_audio` will, because ``os.access`` says yes
    to root everywhere — also in ``/proc`` or on a read-only mount.
    """
    path = Path(path)
    if any(path.resolve() == Path(i).resolve() for i in inputs):
        raise AudioFileError(f"refusing to overwrite the input file {path}; pick another output")
    if any(path.resolve() == Path(o).resolve() for o in others if o):
        raise AudioFileError(f"{path} is already another output of this run; give each output its own file")
    parent = path.parent if str(path.parent) else Path(".")
    if not parent.is_dir():
        raise AudioFileError(f"cannot write {path}: folder {parent} does not exist")
    if path.is_dir():
        raise AudioFileError(f"cannot write {path}: it is a folder")
    if path.exists() and not path.is_file():
        raise AudioFileError(f"cannot write {path}: it exists and is not a regular file")
    try:
        tmp = _new_file_beside(path)
    except OSError as exc:
        raise AudioFileError(
            f"cannot write {path}: cannot create a file in {parent} ({exc.strerror or exc})"
        ) from None
    tmp.unlink(missing_ok=True)
    if path.exists() and not os.access(path, os.W_OK):
        raise AudioFileError(f"cannot write {path}: permission denied")


def _new_file_beside(path: Path) -> Path:
    """Create an empty, new, hidden file next to ``path`` and return its name.

    Opened with mode 0o666 so the kernel applies the umask, like any file the
    user creates (``tempfile.mkstemp`` uses 0o600 whatever the umask).
    """
    parent = path.parent if str(path.parent) else Path(".")
    for _ in range(100):
        tmp = parent / f".{path.name}.{secrets.token_hex(4)}.tmp"
        try:
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
        except FileExistsError:
            continue
        os.close(fd)
        return tmp
    raise FileExistsError(errno.EEXIST, f"no free temporary name in {parent}")


def write_audio(path: str | Path, audio: np.ndarray, sample_rate: int, subtype: str | None = None) -> None:
    """Write atomically (a temporary file renamed into place); integer formats are clipped.

    A new file gets the mode the umask gives (0644 under the usual 022); a file
    that is replaced keeps its mode, as if it had been overwritten in place.
    Every failure is an :class:`AudioFileError` (one line), never a traceback.
    """
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
    tmp = None
    try:
        if path.is_dir():
            raise IsADirectoryError(errno.EISDIR, "it is a folder")
        tmp = _new_file_beside(path)
        if path.is_file():
            os.chmod(tmp, stat.S_IMODE(path.stat().st_mode))
        sf.write(tmp, data, int(sample_rate), subtype=subtype, format=fmt.upper())
        os.replace(tmp, path)
    except Exception as exc:
        if tmp is not None:
            tmp.unlink(missing_ok=True)
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc).strip()
        reason = reason.splitlines()[0] if reason else type(exc).__name__
        raise AudioFileError(f"cannot write {path}: {reason}") from None
