"""The distortion data set (training/data/distortion.py) and its reference chain, with the real parts.

The reference tube preamp (guitarix) runs for real; the builder tests render a
tiny corpus — three short songs, guitar and bass, through fluidsynth and the
FluidR3 GM sound font — into temporary folders. The full corpus (recorded
guitars included) is only listed, not built.
"""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from rt_host.lv2 import Chain
from training.data import DataError, load_tracks
from training.data import distortion as DD

RATE = DD.RATE
TINY = DD.CorpusRecipe(songs=3, song_seconds=4.0, recorded=False)


def harmonics_db(y: np.ndarray, f0: float, rate: int = RATE) -> float:
    """Power of harmonics 2 … Nyquist relative to the fundamental (THD, dB) over the second half of ``y``."""
    seg = y[len(y) // 2 :].astype(np.float64)
    spec = np.abs(np.fft.rfft(seg * np.blackman(len(seg)))) ** 2
    per_bin = rate / len(seg)

    def power(f: float) -> float:
        k = int(round(f / per_bin))
        return float(spec[max(k - 4, 0) : k + 5].sum())

    harmonics = sum(power(h * f0) for h in range(2, int(rate / 2 / f0)))
    return 10.0 * np.log10(harmonics / power(f0))


def sine(amp: float, f0: float = 220.0, seconds: float = 1.0) -> np.ndarray:
    t = np.arange(int(seconds * RATE)) / RATE
    return (amp * np.sin(2 * np.pi * f0 * t)).astype(np.float32)[np.newaxis, :]


# --- the reference chain --------------------------------------------------------------------
@pytest.fixture(scope="module")
def reference() -> Chain:
    return Chain.load(DD.REFERENCE_CHAIN)


def test_reference_chain_saturates_a_di_level_sine_and_leaves_a_quiet_one_nearly_clean(reference):
    assert reference.n_params == 0 and reference.sample_rate == RATE
    quiet = reference(sine(0.003), RATE)[0]  # −50 dBFS peak
    di = reference(sine(0.1), RATE)[0]  # −20 dBFS peak: a clean guitar's DI level
    for y in (quiet, di):
        assert np.all(np.isfinite(y)) and np.sqrt(np.mean(y**2)) > 1e-4
    thd_quiet, thd_di = harmonics_db(quiet, 220.0), harmonics_db(di, 220.0)
    assert thd_di > -22.0, f"THD {thd_di:.1f} dB: the preamp should saturate audibly"
    assert thd_di - thd_quiet > 20.0, (thd_quiet, thd_di)
    assert harmonics_db(sine(0.1)[0], 220.0) < -90.0  # the measurement itself adds nothing


def test_reference_chain_has_no_latency_and_no_dc(reference):
    click = np.zeros((1, RATE), np.float32)
    click[0, 1000] = 0.01
    y = reference(click, RATE)[0]
    reference.prepare(RATE)
    assert reference.latency == 0
    assert np.flatnonzero(np.abs(y) > 1e-6)[0] == 1000  # the response starts on the click's sample
    g = reference(sine(0.3, seconds=2.0), RATE)[0][RATE:]
    assert abs(float(g.mean())) < 0.01 * float(np.sqrt(np.mean(g**2)))  # the 20 Hz high-pass removes DC


# --- composing and writing MIDI --------------------------------------------------------------
def test_midi_writer_makes_a_valid_format0_file():
    data = DD.midi_bytes([DD.Note(0.0, 1.0, 40, 100), DD.Note(0.5, 0.5, 52, 90)], 27, 120.0)
    assert data[:4] == b"MThd" and data[8:10] == b"\x00\x00" and data[14:18] == b"MTrk"
    assert int.from_bytes(data[18:22], "big") == len(data) - 22
    assert b"\xc0\x1b" in data and data.endswith(b"\xff\x2f\x00")  # program 27, end of track
    assert (
        DD._vlq(0) == b"\x00" and DD._vlq(0x80) == b"\x81\x00" and DD._vlq(0x0FFFFFFF) == b"\xff\xff\xff\x7f"
    )


def test_songs_are_deterministic_and_in_the_instruments_ranges():
    a = [DD.compose_song(i, 20.0, np.random.default_rng(5)) for i in range(4)]
    b = [DD.compose_song(i, 20.0, np.random.default_rng(5)) for i in range(4)]
    assert [s.guitar for s in a] == [s.guitar for s in b] and [s.bass for s in a] == [s.bass for s in b]
    assert {s.guitar_style for s in a} == set(DD.GUITAR_STYLES)
    for s in a:
        assert 40 <= min(n.pitch for n in s.guitar) and max(n.pitch for n in s.guitar) <= 88
        assert 28 <= min(n.pitch for n in s.bass) and max(n.pitch for n in s.bass) <= 55


def test_the_recorded_guitars_are_listed_from_the_debian_packages():
    items = DD._recorded_items(np.random.default_rng(0))
    assert len(items) == 27  # 25 strummed chords, sonic-pi, lmms
    for item, files in items:
        assert files and all(f.is_file() for f in files)
        assert item.meta["instrument"] == "guitar" and item.collection == "recorded"
    assert not any("distorted" in str(f) for _, files in items for f in files)


def test_missing_packages_say_what_to_install(monkeypatch):
    monkeypatch.setattr(DD, "STRUMS_DIR", Path("/nonexistent/strums"))
    with pytest.raises(DataError, match="apt-get install hydrogen-drumkits-effects"):
        DD._recorded_items(np.random.default_rng(0))
    monkeypatch.setattr(DD.shutil, "which", lambda name: None)
    with pytest.raises(DataError, match="apt-get install fluidsynth"):
        DD.fluidsynth_version()


# --- building ---------------------------------------------------------------------------------
def build(cache: Path, seed: int = 0, sources=None) -> Path:
    return DD.build_distortion(cache, seed, sources=sources, workers=1, progress=False, corpus=TINY)


def arrays(cache: Path) -> dict[str, np.ndarray]:
    return {f.name: np.load(f) for f in sorted((cache / "tracks").glob("*.npy"))}


def records(cache: Path) -> list[dict]:
    """The manifest's track records without the fields that name the cache folder."""
    m = json.loads((cache / "manifest.json").read_text())
    return [{k: v for k, v in t.items() if k != "source"} for t in m["tracks"]]


@pytest.fixture(scope="module")
def builds(tmp_path_factory) -> dict[str, Path]:
    """The tiny corpus prepared once; the data set built from it twice with seed 0, once with seed 1."""
    a = build(tmp_path_factory.mktemp("a"))
    sources = DD.prepare_corpus(a / "corpus", TINY)  # reused, not rebuilt
    b = build(tmp_path_factory.mktemp("b"), sources=sources)
    c = build(tmp_path_factory.mktemp("c"), seed=1, sources=sources)
    return {"a": a, "b": b, "c": c}


def test_fluidsynth_renders_are_deterministic(tmp_path):
    song = DD.compose_song(0, 4.0, np.random.default_rng(0))
    midi = tmp_path / "bass.mid"
    midi.write_bytes(DD.midi_bytes(song.bass, song.bass_program, song.bpm))
    one, two = DD.render_midi(midi, RATE), DD.render_midi(midi, RATE)
    assert one.shape[0] == 1 and one.shape[1] > 4 * RATE and np.sqrt(np.mean(one**2)) > 1e-3
    assert np.array_equal(one, two)


def test_build_is_deterministic_for_a_seed(builds):
    a, b = arrays(builds["a"]), arrays(builds["b"])
    assert a.keys() == b.keys() and len(a) == 2 * 2 * TINY.songs
    assert all(np.array_equal(a[k], b[k]) for k in a)
    assert records(builds["a"]) == records(builds["b"])


def test_another_seed_draws_other_levels_from_the_same_material(builds):
    a, c = arrays(builds["a"]), arrays(builds["c"])
    assert a.keys() == c.keys()
    assert not any(np.array_equal(a[k], c[k]) for k in a if k.endswith(".input.npy"))
    for ra, rc in zip(records(builds["a"]), records(builds["c"])):  # same material, other level
        assert ra["frames"] == rc["frames"] and ra["input_lufs"] != rc["input_lufs"]


def test_splits_keep_a_songs_guitar_and_bass_together(builds):
    tracks = records(builds["a"])
    split_of_group: dict[str, set[str]] = {}
    for t in tracks:
        split_of_group.setdefault(t["group"], set()).add(t["split"])
    assert all(len(s) == 1 for s in split_of_group.values())
    assert len(split_of_group) == TINY.songs
    for split in ("train", "val", "test"):  # three songs: one each, with both instruments
        assert {t["instrument"] for t in tracks if t["split"] == split} == {"guitar", "bass"}


def test_levels_targets_and_records(builds):
    lo, hi = DD.DistortionLevels().loudness_lufs
    ceiling = DD.DistortionLevels().peak_ceiling_dbfs
    reference = Chain.load(DD.REFERENCE_CHAIN)
    for t in load_tracks(builds["a"]):
        m = t.meta
        assert m["instrument"] in ("guitar", "bass") and m["origin"] == "midi"
        programs = (DD.GUITAR_PROGRAM,) if m["instrument"] == "guitar" else DD.BASS_PROGRAMS
        assert m["program"] in programs
        assert m["input_peak_dbfs"] <= ceiling + 1e-3
        assert lo - 1e-3 <= m["input_lufs"] <= hi + 1e-3 or m["input_peak_dbfs"] > ceiling - 1e-3
        assert t.input.dtype == np.float32 and t.input.shape == t.target.shape == (1, t.input.shape[1])
        # anyone can regenerate the target: it is the reference chain's render of the input
        assert np.array_equal(reference(np.array(t.input), RATE), t.target)


def test_a_second_build_reuses_the_corpus_and_the_tracks(builds, caplog):
    before = {f.name: f.stat().st_mtime_ns for f in (builds["a"] / "corpus" / "audio").iterdir()}
    caplog.set_level("INFO", logger="training.data")
    build(builds["a"])
    assert "reusing the cached data set" in caplog.text
    assert {f.name: f.stat().st_mtime_ns for f in (builds["a"] / "corpus" / "audio").iterdir()} == before
    assert replace(TINY, songs=2) != TINY  # a different recipe is a different corpus key
    assert DD._corpus_key(replace(TINY, songs=2)) != DD._corpus_key(TINY)


# --- the chain study's premise -------------------------------------------------------------------
def test_calf_saturator_is_broken_at_22050_hz_and_the_study_candidates_render():
    """Why training/studies/distortion_chain.py tries a Tape Simulator instead of the Calf Saturator."""
    from rt_host.lv2 import ChainSpec
    from training.studies.distortion_chain import candidates

    saturator = ChainSpec.loads(
        'name = "s"\nchannels = 1\noutput = "mix"\n[[stage]]\nname = "sat"\n'
        'plugin = "http://calf.sourceforge.net/plugins/Saturator"\nadapt = "duplicate"\n'
    )
    x = sine(0.1, seconds=0.5)
    assert not np.any(Chain(saturator)(x, RATE))  # NaN, replaced by zeros: silence
    assert np.sqrt(np.mean(Chain(saturator)(x, 44100) ** 2)) > 0.01  # fine at 44.1 kHz
    for name, spec in candidates().items():
        chain = Chain(spec)
        y = chain(x, RATE, params=chain.default_normalized())
        assert np.sqrt(np.mean(y**2)) > 0.01, name
