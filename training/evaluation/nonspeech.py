"""Metrics of the ``nonspeech`` task on the segments a track's record names — numpy only.

The data set (:mod:`training.data.nonspeech`) knows where the speech is and
where it inserted each breath, lip smack, click and plosive pop. Its per-track
record (``Track.meta`` of :func:`training.data.load_tracks`, or the record
:func:`training.data.nonspeech.make_pair` returns) holds ``rate``,
``speech_segments`` ``[[start, stop], …]`` and ``events``
``[{"kind", "start", "stop", "level_db"}, …]`` in samples of the track. Two
numbers say what a breath remover did, besides the overall metrics of
:mod:`training.evaluation.metrics`:

**Speech preservation** — :func:`speech_preservation`: the multi-resolution
STFT distance (:func:`training.evaluation.metrics.mrstft`: spectral convergence +
log-magnitude L1 at three resolutions; 0 = identical, lower is better) between
the output and the target *on the speech segments only*: the segments of each
are cut out and joined end to end (the same joins in both, so they cancel),
and the distance is taken on the joined signals. It is large when the chain
gates, dulls or chops the speech; the pauses do not count. NaN when the speech
in the excerpt is shorter than 1,025 samples (the largest FFT needs more).

Its log-magnitude term weighs every time-frequency bin alike, however quiet:
gating the background noise inside and around a phrase, or the weak top band
of a vowel, by 30 dB costs as much as damaging loud speech. On the test split
of seed 0 (8 tracks, 7.5 min; means per track) the Calf gate fully open
scores 0.27 (its crossovers are not transparent: spectral convergence 0.19,
and they delay by ~7 samples); every band gated below −40 dBFS by 30 dB keeps
the speech level (−0.1 dB) yet scores 2.3 — almost all of it the log term,
the spectral convergence staying 0.20. :func:`nonspeech_scores`
therefore also reports the spectral-convergence term alone (``speech_sc``),
which reads the loud speech.

**Event attenuation** — :func:`event_attenuation_db`: how much quieter the
output is than the input on the event segments, pooled over events:
``10·log10(Σ input² / Σ output²)``, both sums over the union of the event
segments (of the chosen ``kinds``). 0 dB when the output is the input;
positive when the chain attenuates; capped at ``max_db`` (a silent output).
Pooling weighs each event by its energy (loud pops count more than faint
clicks) and is robust to the phase changes a multiband crossover makes.

*Relative to the target*: the target still holds the room-noise floor under
each event, so removing an event exactly scores
``event_attenuation_db(target, input, record, rate)`` — the *ideal*, the
events' level above the floor (a few dB for faint breaths on a noisy
recording, 20–40 dB for loud pops). An output below the ideal leaves part of
the events; above it, it also gates the floor (which the overall metrics and
``floor_level_db`` of :func:`nonspeech_scores` see). Report both.

*For scale* (the same test split, means per track): the input itself scores
0 dB against an ideal of 16.2 dB, and 0.21 in the overall MR-STFT distance to
the target — less than the fully open gate (0.42): in the overall metric the
events weigh little next to the chain's own colouring and to gating the floor
(the fixed gate above: 3.8 dB of event attenuation, 4.1 on breaths, 2.0 on
pops, the floor 25 dB down, overall MR-STFT 2.8). These figures are for the
gate's LR8 crossovers (``mode = 1``); the chain now uses LR4 (``mode = 0``),
which colours less: fully open at Calf's crossovers 0.33 overall (LR8: 0.42),
and the open gate run on the *target* scores 0.13 at 60 Hz / 1 kHz / 9 kHz
against the target (0.21 in LR8): the floor of any setting of this chain, even one that
removed every event exactly and left the room noise alone, next to the input's 0.20.

**Alignment**: every function compares samples at the same index, so the
caller aligns first — the output must be time-aligned with the input and
target (compensate the chain's latency and any resampling or block delay in
the caller's path) and have the same length. Calf's Multiband Gate reports no
latency; its crossovers delay the signal by ~7 samples at 22,050 Hz (group
delay, peak of the cross-correlation), which these metrics do not notice.
Arrays are mono ``(n,)`` or ``(1, n)``, float.

**Excerpts**: :func:`crop_record` cuts a record to ``[start, stop)`` of its
track (segments clipped and shifted), so the same functions score a window::

    track = load_tracks(cache, "test")[0]
    rec = crop_record(track.meta, start, start + n)
    x, y = track.input[:, start:start + n], track.target[:, start:start + n]
    out = chain(x, 22050, params=u)
    scores = nonspeech_scores(out, x, y, rec, 22050)
"""

from __future__ import annotations

import math
from collections.abc import Collection
from typing import Any

import numpy as np

from training.evaluation.metrics import MRSTFT_FFT_SIZES, mrstft_terms

MAX_ATTENUATION_DB = 120.0
_WHOLE_TRACK_KEYS = ("clips", "event_counts", "speech_seconds", "speech_segments", "events")
_MIN_SPEECH_SAMPLES = max(MRSTFT_FFT_SIZES) // 2 + 1  # the STFT's reflect padding needs more than n_fft/2


def _mono(x: np.ndarray, name: str) -> np.ndarray:
    """``x`` as float64 ``(n,)``; mono ``(n,)`` or ``(1, n)`` only."""
    a = np.asarray(x)
    if a.ndim == 2 and a.shape[0] == 1:
        a = a[0]
    if a.ndim != 1:
        raise ValueError(f"{name} must be mono, shaped (n,) or (1, n); got an array of shape {np.shape(x)}")
    if not np.issubdtype(a.dtype, np.floating):
        raise ValueError(f"{name} must hold floating-point samples, got {a.dtype}")
    return a.astype(np.float64, copy=False)


def _check(arrays: dict[str, np.ndarray], record: dict[str, Any], rate: int) -> dict[str, np.ndarray]:
    out = {name: _mono(a, name) for name, a in arrays.items()}
    lengths = {name: len(a) for name, a in out.items()}
    if len(set(lengths.values())) != 1:
        raise ValueError(f"the signals differ in length ({lengths}); align and trim them first")
    if "rate" in record and int(record["rate"]) != int(rate):
        raise ValueError(f"the record is of a {record['rate']} Hz track, the audio is {rate} Hz")
    n = next(iter(lengths.values()))
    for key in ("speech_segments", "events"):
        for seg in record.get(key, []):
            start, stop = (seg["start"], seg["stop"]) if isinstance(seg, dict) else seg
            if not 0 <= start <= stop <= n:
                raise ValueError(
                    f"a segment [{start}, {stop}) of the record lies outside the {n} samples given; "
                    "crop the record to the excerpt with crop_record"
                )
    return out


def _union(n: int, segments: list[tuple[int, int]]) -> np.ndarray:
    mask = np.zeros(n, dtype=bool)
    for a, b in segments:
        mask[a:b] = True
    return mask


def event_segments(record: dict[str, Any], kinds: Collection[str] | None = None) -> list[tuple[int, int]]:
    """``[(start, stop), …]`` of the record's events (of ``kinds``, all when ``None``)."""
    return [
        (int(e["start"]), int(e["stop"]))
        for e in record.get("events", [])
        if kinds is None or e["kind"] in kinds
    ]


def speech_segments(record: dict[str, Any]) -> list[tuple[int, int]]:
    """``[(start, stop), …]`` of the record's speech."""
    return [(int(a), int(b)) for a, b in record.get("speech_segments", [])]


def speech_preservation(output: np.ndarray, target: np.ndarray, record: dict[str, Any], rate: int) -> float:
    """MR-STFT distance of ``output`` to ``target`` on the speech segments (0 = identical, lower is better).

    See the module docstring; NaN when the excerpt holds fewer than 1,025
    samples of speech. ``rate`` is checked against the record's.
    """
    sig = _check({"output": output, "target": target}, record, rate)
    return _speech_terms(sig["output"], sig["target"], record)["total"]


def _speech_terms(output: np.ndarray, target: np.ndarray, record: dict[str, Any]) -> dict[str, float]:
    segs = speech_segments(record)
    if sum(b - a for a, b in segs) < _MIN_SPEECH_SAMPLES:
        return dict.fromkeys(("spectral_convergence", "log_magnitude", "total"), float("nan"))
    out = np.concatenate([output[a:b] for a, b in segs])
    ref = np.concatenate([target[a:b] for a, b in segs])
    return mrstft_terms(out, ref)


def _energy_ratio_db(num: float, den: float, max_db: float) -> float:
    if num <= 0.0:
        return float("nan")
    if den <= num * 10.0 ** (-max_db / 10.0):
        return max_db
    return 10.0 * math.log10(num / den)


def event_attenuation_db(
    output: np.ndarray,
    input: np.ndarray,
    record: dict[str, Any],
    rate: int,
    *,
    kinds: Collection[str] | None = None,
    max_db: float = MAX_ATTENUATION_DB,
) -> float:
    """``10·log10(Σ input² / Σ output²)`` over the event segments (of ``kinds``), in dB, at most ``max_db``.

    0 for ``output = input``; the ideal (events removed, floor kept) is
    ``event_attenuation_db(target, input, record, rate)``. NaN when the
    excerpt has no such event. See the module docstring.
    """
    sig = _check({"output": output, "input": input}, record, rate)
    segs = event_segments(record, kinds)
    if not segs:
        return float("nan")
    mask = _union(len(sig["input"]), segs)
    e_in = float(np.sum(np.square(sig["input"][mask])))
    e_out = float(np.sum(np.square(sig["output"][mask])))
    return _energy_ratio_db(e_in, e_out, max_db)


def nonspeech_scores(
    output: np.ndarray,
    input: np.ndarray,
    target: np.ndarray,
    record: dict[str, Any],
    rate: int,
    kinds: Collection[str] = ("breath", "smack", "click", "pop"),
) -> dict[str, float]:
    """Everything at once, for an evaluation table (NaN where an excerpt has nothing to score).

    - ``speech_mrstft`` — :func:`speech_preservation` (lower is better);
    - ``speech_sc`` — its spectral-convergence term alone: energy-weighted,
      it reads the loud speech (see the module docstring);
    - ``speech_level_db`` — ``10·log10(Σ output² / Σ target²)`` on the speech
      segments: negative when the chain eats speech;
    - ``event_attenuation_db`` — :func:`event_attenuation_db`, all events;
    - ``event_attenuation_ideal_db`` — the same for ``output = target``;
    - ``<kind>_attenuation_db`` — per event kind;
    - ``floor_level_db`` — ``10·log10(Σ output² / Σ target²)`` on the pauses
      outside the events (the room tone): strongly negative when the chain
      gates the floor too.
    """
    sig = _check({"output": output, "input": input, "target": target}, record, rate)
    out, x, y = sig["output"], sig["input"], sig["target"]
    n = len(y)
    speech = _union(n, speech_segments(record))
    floor = ~speech & ~_union(n, event_segments(record))

    def level_db(mask: np.ndarray) -> float:
        e_ref = float(np.sum(np.square(y[mask])))
        return -_energy_ratio_db(e_ref, float(np.sum(np.square(out[mask]))), MAX_ATTENUATION_DB)

    terms = _speech_terms(out, y, record)
    scores = {
        "speech_mrstft": terms["total"],
        "speech_sc": terms["spectral_convergence"],
        "speech_level_db": level_db(speech),
        "event_attenuation_db": event_attenuation_db(out, x, record, rate),
        "event_attenuation_ideal_db": event_attenuation_db(y, x, record, rate),
    }
    for kind in kinds:
        scores[f"{kind}_attenuation_db"] = event_attenuation_db(out, x, record, rate, kinds=(kind,))
    scores["floor_level_db"] = level_db(floor)
    return scores


def crop_record(record: dict[str, Any], start: int, stop: int) -> dict[str, Any]:
    """The record of the excerpt ``[start, stop)`` of a track: segments clipped to it, shifted by ``-start``.

    Speech segments and events that overlap the excerpt are kept, cut at its
    edges (an event half inside counts with its inside half); the rest are
    dropped. What describes the whole track only (the clips, index-aligned
    with its speech segments; the event counts; the seconds of speech) is
    dropped too; ``excerpt`` records ``[start, stop]`` in the track. Other
    keys are copied.
    """
    if not 0 <= start < stop:
        raise ValueError(f"the excerpt [{start}, {stop}) is empty, reversed or before the track")
    out = {k: v for k, v in record.items() if k not in _WHOLE_TRACK_KEYS}
    out["speech_segments"] = [
        [max(a, start) - start, min(b, stop) - start]
        for a, b in speech_segments(record)
        if a < stop and b > start
    ]
    out["events"] = [
        {**e, "start": max(int(e["start"]), start) - start, "stop": min(int(e["stop"]), stop) - start}
        for e in record.get("events", [])
        if int(e["start"]) < stop and int(e["stop"]) > start
    ]
    out["excerpt"] = [start, stop]
    return out
