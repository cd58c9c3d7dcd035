"""The nonspeech data set (training/data/nonspeech.py) and its metrics (training/evaluation/nonspeech.py).

Real parts: the English clips of ``tuxpaint-stamps-default`` (a few tracks of
6–10 s, built in a temporary folder) and, once, the real Calf Multiband Gate
of ``chains/nonspeech.toml``.
"""

from __future__ import annotations

import functools
import json
from dataclasses import asdict
from pathlib import Path

import numpy as np
import pytest

from rt_host.signals import track_rng
from training import data as D
from training.data import nonspeech as N
from training.evaluation import nonspeech as M

RATE = N.RATE
RANGES = N.NonspeechRanges()

pytestmark = pytest.mark.skipif(
    not N.STAMPS_ROOT.is_dir(), reason="tuxpaint-stamps-default not installed (./install.sh)"
)


TINY = {"languages": ("en",), "minutes_per_language": 0.25, "track_seconds": (6.0, 10.0)}


@functools.cache
def tiny_sources(seed: int) -> tuple[N.NonspeechSource, ...]:
    """A few short English tracks: 15 s of speech cut into tracks of 6–10 s."""
    return tuple(N.nonspeech_sources(seed, **TINY))


def build(tmp: Path, seed: int) -> Path:
    return N.build_nonspeech(tmp, seed, sources=tiny_sources(seed), workers=1, progress=False)


def arrays(cache: Path) -> dict[str, np.ndarray]:
    return {f.name: np.load(f) for f in sorted((cache / "tracks").glob("*.npy"))}


@pytest.fixture(scope="module")
def built(tmp_path_factory) -> Path:
    return build(tmp_path_factory.mktemp("nonspeech"), 0)


@pytest.fixture(scope="module")
def tracks(built) -> list[D.Track]:
    return D.load_tracks(built, mmap=False)


def masks(track: D.Track) -> tuple[np.ndarray, np.ndarray]:
    """(speech, event) sample masks of a track."""
    n = track.target.shape[1]
    speech, event = np.zeros(n, bool), np.zeros(n, bool)
    for a, b in track.meta["speech_segments"]:
        speech[a:b] = True
    for e in track.meta["events"]:
        event[e["start"] : e["stop"]] = True
    return speech, event


# --- the clips ------------------------------------------------------------------------------
def test_languages_from_file_names():
    root = N.STAMPS_ROOT
    assert N.clip_language(root / "animals/marsupials/wombat_desc.ogg", root) == "en"
    assert N.clip_language(root / "animals/marsupials/wombat_desc_fr.ogg", root) == "fr"
    assert N.clip_language(root / "symbols/math/7_en_GB.ogg", root) == "en"
    assert N.clip_language(root / "symbols/math/7_zh_tw.ogg", root) == "zh"
    assert N.clip_language(root / "animals/marsupials/wombat.ogg", root) is None  # a sound effect
    assert N.clip_language(root / "symbols/math/7.ogg", root) is None
    assert N.clip_language(root / "town/monuments/inukshuk-photo_desc_da.ogg.ogg", root) is None


def test_tracks_group_distinct_clips():
    sources = tiny_sources(0)
    assert len(sources) >= 3
    clips = [p for s in sources for p in s.clips]
    assert len(set(clips)) == len(clips)  # a clip is in one track, so in one split
    assert all(s.path in s.clips and s.language == "en" for s in sources)
    assert tuple(N.nonspeech_sources(0, **TINY)) == sources  # seeded: the same grouping again …
    assert [s.clips for s in tiny_sources(1)] != [s.clips for s in sources]  # … another for another seed


def test_missing_package_says_what_to_install(tmp_path):
    with pytest.raises(D.DataError, match="apt-get install tuxpaint-stamps-default"):
        N.nonspeech_sources(root=tmp_path / "nowhere")
    with pytest.raises(D.DataError, match="apt-get install tuxpaint-stamps-default"):
        N.nonspeech_sources(root=tmp_path)  # a folder without spoken clips
    with pytest.raises(D.DataError, match="available: .*en"):
        N.nonspeech_sources(languages=("tlh",))


def test_make_pair_is_mono_only():
    src = tiny_sources(0)[0]
    with pytest.raises(D.DataError, match="mono"):
        N.make_pair(src, RATE, 2, track_rng(0, src.track_id), asdict(RANGES))


# --- the built data set ---------------------------------------------------------------------
def test_build_is_deterministic_for_a_seed(built, tmp_path):
    again = build(tmp_path / "again", 0)
    a, b = arrays(built), arrays(again)
    assert a.keys() == b.keys() and len(a) >= 6
    assert all(np.array_equal(a[k], b[k]) for k in a)
    ma, mb = (json.loads((c / "manifest.json").read_text()) for c in (built, again))
    assert ma["tracks"] == mb["tracks"] and ma["splits"] == mb["splits"]
    assert all(len(v) >= 1 for v in ma["splits"].values())

    other = arrays(build(tmp_path / "other", 1))
    assert not (other.keys() == a.keys() and all(np.array_equal(a[k], other[k]) for k in a))


def test_events_lie_only_in_pauses(tracks):
    guard = int(RANGES.guard_ms * RATE / 1000)
    for t in tracks:
        assert t.rate == RATE and t.input.shape == t.target.shape and t.input.shape[0] == 1
        assert t.input.dtype == np.float32
        d = (t.input - t.target)[0]
        speech, event = masks(t)
        assert not np.any(speech & event)
        assert np.all(d[~event] == 0.0)  # bit-identical outside the events, speech included
        segs = t.meta["speech_segments"]
        for e in t.meta["events"]:
            assert np.any(d[e["start"] : e["stop"]] != 0.0)
            for a, b in segs:
                assert e["stop"] + guard <= a or e["start"] >= b + guard
        spans = sorted((e["start"], e["stop"]) for e in t.meta["events"])
        assert all(s1 <= s2 for (_, s1), (s2, _) in zip(spans, spans[1:]))  # no overlaps


def test_pauses_have_the_configured_lengths_and_a_floor(tracks):
    lo, hi = RANGES.pause_seconds
    for t in tracks:
        segs = t.meta["speech_segments"]
        gaps = (
            [segs[0][0]] + [b[0] - a[1] for a, b in zip(segs, segs[1:])] + [t.target.shape[1] - segs[-1][1]]
        )
        assert all(lo * RATE - 1 <= g <= hi * RATE + 1 for g in gaps)
        speech, event = masks(t)
        pause = t.target[0, ~speech & ~event].astype(np.float64)
        floor_db = 10 * np.log10(np.mean(pause**2))
        assert abs(floor_db - t.meta["floor_rms_dbfs"]) < 2.0  # room tone, not digital silence
        f_lo, f_hi = RANGES.floor_re_speech_db
        assert f_lo - 1e-6 <= t.meta["floor_re_speech_db"] <= f_hi + 1e-6
        speech_db = 10 * np.log10(np.mean(t.target[0, speech].astype(np.float64) ** 2))
        assert abs(speech_db - t.meta["speech_rms_dbfs"]) < 0.1  # the floor adds almost nothing
        assert np.max(np.abs(t.input)) <= 10 ** (RANGES.peak_ceiling_dbfs / 20) + 1e-6


def test_event_levels_and_lengths_are_in_range(tracks):
    kinds = set()
    for t in tracks:
        d = (t.input - t.target)[0].astype(np.float64)
        for e in t.meta["events"]:
            kinds.add(e["kind"])
            lo, hi = RANGES.level_range(e["kind"])
            level = (
                20 * np.log10(np.sqrt(np.mean(d[e["start"] : e["stop"]] ** 2))) - t.meta["speech_rms_dbfs"]
            )
            assert abs(level - e["level_db"]) < 0.01
            assert lo - 0.01 <= level <= hi + 0.01
            ms = (e["stop"] - e["start"]) * 1000 / RATE
            shortest, longest = RANGES.length_ms_range(e["kind"])
            assert shortest - 0.1 <= ms <= longest + 0.1
        counts = t.meta["event_counts"]
        assert sum(counts.values()) == len(t.meta["events"])
    assert kinds <= set(N.EVENT_KINDS) and "breath" in kinds


# --- the metrics ----------------------------------------------------------------------------
def test_metrics_of_identity_and_of_a_perfect_gate(tracks):
    t = tracks[0]
    x, y, rec = t.input, t.target, t.meta
    assert M.speech_preservation(y, y, rec, RATE) == 0.0
    assert M.speech_preservation(x, y, rec, RATE) == 0.0  # the input's speech is untouched
    assert M.event_attenuation_db(x, x, rec, RATE) == 0.0
    ideal = M.event_attenuation_db(y, x, rec, RATE)
    assert 0.0 < ideal < M.MAX_ATTENUATION_DB
    _, event = masks(t)
    gated = np.where(event, 0.0, x).astype(np.float32)  # a gate that silences the events exactly
    assert M.event_attenuation_db(gated, x, rec, RATE) == M.MAX_ATTENUATION_DB
    assert M.speech_preservation(gated, y, rec, RATE) == 0.0
    half = (x * np.float32(10 ** (-6 / 20))).astype(np.float32)  # everything 6 dB down
    assert M.event_attenuation_db(half, x, rec, RATE) == pytest.approx(6.0, abs=1e-3)
    assert M.speech_preservation(half, y, rec, RATE) > 0.1
    s = M.nonspeech_scores(gated, x, y, rec, RATE)
    assert s["speech_level_db"] == 0.0 and s["floor_level_db"] == 0.0
    assert s["event_attenuation_ideal_db"] == ideal
    for kind in N.EVENT_KINDS:
        assert np.isnan(s[f"{kind}_attenuation_db"]) == (rec["event_counts"][kind] == 0)


def test_crop_record_scores_an_excerpt(tracks):
    t = max(tracks, key=lambda t: len(t.meta["events"]))
    x, y, rec = t.input[0], t.target[0], t.meta
    e = rec["events"][len(rec["events"]) // 2]
    start, stop = (e["start"] + e["stop"]) // 2, min(len(y), e["stop"] + 2 * RATE)  # cuts the event in half
    sub = M.crop_record(rec, start, stop)
    assert sub["excerpt"] == [start, stop] and "clips" not in sub
    assert sub["events"][0] == {**e, "start": 0, "stop": e["stop"] - start}
    assert all(0 <= a < b <= stop - start for a, b in sub["speech_segments"])
    gated = x.copy()
    gated[start : e["stop"]] = 0.0
    full = M.event_attenuation_db(gated, x, rec, RATE)
    part = M.event_attenuation_db(gated[start:stop], x[start:stop], sub, RATE)
    assert part > full  # the silenced half dominates the excerpt
    with pytest.raises(ValueError, match="crop_record"):
        M.event_attenuation_db(x[start:stop], x[start:stop], rec, RATE)


def test_metrics_refuse_what_they_cannot_compare(tracks):
    t = tracks[0]
    x, y, rec = t.input, t.target, t.meta
    with pytest.raises(ValueError, match="22050 Hz track"):
        M.speech_preservation(y, y, rec, 44100)
    with pytest.raises(ValueError, match="differ in length"):
        M.event_attenuation_db(x[:, 1:], x, rec, RATE)
    with pytest.raises(ValueError, match="mono"):
        M.speech_preservation(np.vstack([y, y]), np.vstack([y, y]), rec, RATE)


def test_the_real_gate_removes_events_and_keeps_speech(tracks):
    """The Calf Multiband Gate, set by hand below the speech: events drop, speech stays (every tiny track)."""
    from rt_host.lv2 import Chain

    chain = Chain.load("nonspeech-v1")
    names = chain.parameter_names

    def gate(x: np.ndarray, threshold_db: float, range_db: float) -> np.ndarray:
        v = dict(chain.values)
        for b in range(4):
            v[f"gate.threshold{b}"] = 10 ** (threshold_db / 20)
            v[f"gate.range{b}"] = 10 ** (range_db / 20)
            v[f"gate.ratio{b}"], v[f"gate.knee{b}"], v[f"gate.release{b}"] = 20.0, 1.0, 50.0
        return chain(x, RATE, params=chain.normalize([v[n] for n in names]))

    shut, open_ = [], []
    for t in tracks:
        x, y, rec = t.input, t.target, t.meta
        shut.append(M.nonspeech_scores(gate(x, rec["speech_rms_dbfs"] - 10, -40), x, y, rec, RATE))
        open_.append(M.nonspeech_scores(gate(x, -60, 0), x, y, rec, RATE))
    for s in open_:  # range 0 dB: nothing gated
        assert abs(s["event_attenuation_db"]) < 0.5 and abs(s["speech_level_db"]) < 0.5
        assert abs(s["floor_level_db"]) < 2.0  # the crossovers smear the events' edges into the pauses
    for s in shut:  # loud pops open the gate for a while: some tracks keep more than others
        assert s["event_attenuation_db"] > 3.0 and s["speech_level_db"] > -1.5
    assert np.mean([s["event_attenuation_db"] for s in shut]) > 6.0
    assert np.mean([s["floor_level_db"] for s in shut]) < -10.0
    assert np.mean([s["speech_mrstft"] for s in shut]) > np.mean([s["speech_mrstft"] for s in open_])
