"""The data set builder (training/data/) on small generated source trees.

Every build here runs on a few seconds of generated audio in a temporary
folder; only ``test_slow_real_debian_music_subset`` reads the packaged music.
"""

from __future__ import annotations

import json
import logging
import os
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import scipy.signal
import soundfile as sf

from rt_host import unmaster as U
from rt_host.loudness import loudness
from rt_host.steer.view import encoder_view
from training.data import builder as D
from training.data import mastering as M
from training.data.__main__ import main as data_main

RATE = 44100


# --- generated sources ------------------------------------------------------------------
def music_like(seconds: float, rate: int, channels: int, seed: int) -> np.ndarray:
    """Pink-ish noise with a slow level contour (loud and quiet passages), ``(samples, channels)``."""
    rng = np.random.default_rng(seed)
    n = int(seconds * rate)
    spec = np.fft.rfft(rng.standard_normal((channels, n)), axis=1)
    k = np.arange(spec.shape[1], dtype=np.float64)
    k[0] = 1.0
    x = np.fft.irfft(spec / np.sqrt(k), n, axis=1)
    x /= np.abs(x).max()
    contour = 10 ** ((-12 * (0.5 + 0.5 * np.sin(2 * np.pi * np.arange(n) / rate / 1.3 + seed))) / 20)
    return (0.7 * x * contour).T.astype(np.float32)


@pytest.fixture(scope="module")
def source_tree(tmp_path_factory) -> list[D.Source]:
    """Seven short tracks: WAV and FLAC, 44.1 and 48 kHz, one mono; two of them share a group."""
    root = tmp_path_factory.mktemp("sources")
    sources = []
    for i in range(7):
        rate = 48000 if i % 2 else RATE
        channels = 1 if i == 3 else 2
        path = root / (f"t{i}.flac" if i % 3 else f"t{i}.wav")
        sf.write(path, music_like(2.0 + 0.25 * i, rate, channels, seed=i), rate)
        group = "pair" if i in (1, 2) else ""
        sources.append(D.Source(path, f"t{i}", group, collection="a" if i < 4 else "b"))
    return sources


def build(tmp: Path, sources, seed: int = 0, **kw) -> Path:
    return M.build_mastering(tmp, seed, sources=sources, workers=kw.pop("workers", 1), progress=False, **kw)


def arrays(cache: Path) -> dict[str, np.ndarray]:
    return {f.name: np.load(f) for f in sorted((cache / "tracks").glob("*.npy"))}


def manifest(cache: Path) -> dict:
    m = json.loads((cache / "manifest.json").read_text())
    m.pop("build")
    return m


@pytest.fixture(scope="module")
def built(tmp_path_factory, source_tree) -> Path:
    return build(tmp_path_factory.mktemp("cache"), source_tree)


# --- determinism, splits, cache ------------------------------------------------------------
def test_build_is_deterministic_for_a_seed_and_any_worker_count(tmp_path, built, source_tree):
    again = build(tmp_path / "again", source_tree, workers=2)
    assert manifest(again) == manifest(built)
    a, b = arrays(built), arrays(again)
    assert a.keys() == b.keys() and len(a) == 2 * len(source_tree)
    assert all(np.array_equal(a[k], b[k]) for k in a)

    other = build(tmp_path / "other", source_tree, seed=1)
    params = {t["id"]: t["degradation"] for t in manifest(built)["tracks"]}
    params_other = {t["id"]: t["degradation"] for t in manifest(other)["tracks"]}
    assert all(params[k] != params_other[k] for k in params)
    # targets do not depend on the seed; inputs do
    assert np.array_equal(arrays(other)["t0.target.npy"], a["t0.target.npy"])
    assert not np.array_equal(arrays(other)["t0.input.npy"], a["t0.input.npy"])


def test_the_manifest_records_split_and_degradation_of_every_track(built, source_tree):
    m = manifest(built)
    assert m["seed"] == 0 and m["recipe"]["rate"] == RATE and m["recipe"]["channels"] == 2
    assert {t["id"] for t in m["tracks"]} == {s.track_id for s in source_tree}
    for t in m["tracks"]:
        assert t["split"] in D.SPLITS and t["id"] in m["splits"][t["split"]]
        assert {"level_u", "tilt_db_per_octave", "eq", "expansion_ratio", "expansion_time_ms"} <= set(
            t["degradation"]
        )
        x = np.load(built / t["input"], mmap_mode="r")
        assert x.dtype == np.float32 and x.shape == (2, t["frames"])
    rates = {t["id"]: t["source_rate"] for t in m["tracks"]}
    assert rates["t1"] == 48000 and rates["t0"] == RATE
    assert next(t for t in m["tracks"] if t["id"] == "t3")["source_channels"] == 1


def test_splits_are_by_track_and_keep_groups_together(built):
    m = manifest(built)
    seen = [i for sp in D.SPLITS for i in m["splits"][sp]]
    assert sorted(seen) == sorted(t["id"] for t in m["tracks"])  # each track in exactly one split
    assert all(m["splits"][sp] for sp in D.SPLITS)
    split = {t["id"]: t["split"] for t in m["tracks"]}
    assert split["t1"] == split["t2"]  # same group
    # a sampler over one split only ever sees that split's audio
    val = D.load_tracks(built, "val")
    assert {t.track_id for t in val} == set(m["splits"]["val"])
    assert all(t.split == "val" for t in val)


def test_assign_splits_balances_minutes_per_collection_and_is_seeded():
    rng = np.random.default_rng(5)
    groups = {f"g{i}": ("big" if i < 40 else "small", float(rng.uniform(60, 600))) for i in range(48)}
    a = D.assign_splits(groups, seed=3)
    assert a == D.assign_splits(groups, seed=3) and a != D.assign_splits(groups, seed=4)
    for coll in ("big", "small"):
        names = [g for g, (c, _) in groups.items() if c == coll]
        total = sum(groups[g][1] for g in names)
        for sp, frac in D.SPLIT_FRACTIONS.items():
            share = sum(groups[g][1] for g in names if a[g] == sp) / total
            assert share > 0  # every split gets every collection
            if coll == "big":
                assert abs(share - frac) < 0.06


def test_a_second_run_reuses_the_cache_and_force_rebuilds(tmp_path, source_tree, caplog):
    cache = build(tmp_path / "c", source_tree[:4])
    stamp = {f: f.stat().st_mtime_ns for f in (cache / "tracks").glob("*.npy")}
    with caplog.at_level(logging.INFO, logger="training.data"):
        t0 = time.monotonic()
        assert build(tmp_path / "c", source_tree[:4]) == cache
        assert time.monotonic() - t0 < 1.0
    assert "reusing the cached data set" in caplog.text
    assert {f: f.stat().st_mtime_ns for f in stamp} == stamp

    caplog.clear()
    with caplog.at_level(logging.INFO, logger="training.data"):
        build(tmp_path / "c", source_tree[:4], force=True)
    assert "building" in caplog.text and "--force" in caplog.text
    assert any(f.stat().st_mtime_ns != m for f, m in stamp.items())


def test_the_cache_rebuilds_when_seed_sources_or_files_change(tmp_path, source_tree, caplog):
    cache = build(tmp_path / "c", source_tree[:4])
    for change, why in [
        (lambda: build(tmp_path / "c", source_tree[:4], seed=7), "another seed"),
        (lambda: build(tmp_path / "c", source_tree[:5], seed=7), "other source files"),
        (
            lambda: build(
                tmp_path / "c",
                source_tree[:5],
                seed=7,
                ranges=replace(U.MasteringDegradation(), eq_q=(1.0, 2.0)),
            ),
            "another recipe",
        ),
    ]:
        caplog.clear()
        with caplog.at_level(logging.INFO, logger="training.data"):
            change()
        assert why in caplog.text
    victim = next((cache / "tracks").glob("*.target.npy"))
    with open(victim, "r+b") as f:
        f.truncate(200)
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="training.data"):
        build(
            tmp_path / "c", source_tree[:5], seed=7, ranges=replace(U.MasteringDegradation(), eq_q=(1.0, 2.0))
        )
    assert "truncated" in caplog.text


# --- the degradation ----------------------------------------------------------------------
def test_inputs_are_6_to_20_dB_quieter_and_peak_below_the_ceiling(built):
    r = U.MasteringDegradation()
    for t in D.load_tracks(built):
        x, y = np.asarray(t.input), np.asarray(t.target)
        level = loudness(x, RATE) - loudness(y, RATE)
        assert r.level_db[0] - 1e-6 <= level <= r.level_db[1] + 1e-6
        assert level == pytest.approx(t.meta["level_db"], abs=0.01)
        peak = 20 * np.log10(np.abs(x).max())
        if t.meta["level_upper_db"] > r.level_db[0]:  # the ceiling could be honoured within the range
            assert peak <= r.peak_ceiling_dbfs + 1e-3
        p = t.meta["degradation"]
        assert r.tilt_db_per_octave[0] <= p["tilt_db_per_octave"] <= r.tilt_db_per_octave[1]
        assert r.eq_bands[0] <= len(p["eq"]) <= r.eq_bands[1]
        assert all(r.eq_gain_db[0] <= b["gain_db"] <= r.eq_gain_db[1] for b in p["eq"])
        assert r.expansion_ratio[0] <= p["expansion_ratio"] <= r.expansion_ratio[1]


def welch_db(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    f, p = scipy.signal.welch(x.mean(axis=0), RATE, nperseg=8192)
    return f, 10 * np.log10(p)


def test_the_degradation_eq_is_the_designed_filter_and_changes_the_spectrum():
    y = music_like(8.0, RATE, 2, seed=11).T.copy()
    y *= 0.3 / np.abs(y).max()
    flat = U.MasteringDegradation(expansion_ratio=(1.0, 1.0))  # no expansion: the spectrum ratio is the EQ
    params = U.draw_mastering_params(np.random.default_rng(2), flat)
    params["tilt_db_per_octave"] = 0.8
    x, rec = U.degrade_mastering(y, RATE, params, flat)
    f, px = welch_db(x)
    _, py = welch_db(y)
    _, h = scipy.signal.sosfreqz(U.mastering_eq_sos(params, RATE), worN=f, fs=RATE)
    design = 20 * np.log10(np.abs(h)) + rec["gain_db"]
    band = (f > 80) & (f < 12000)
    assert np.max(np.abs((px - py)[band] - design[band])) < 0.6
    shape = design[band] - np.mean(design[band])
    assert (
        np.ptp(shape) > 3.0
    )  # the spectrum really changed: tilt 0.8 dB/octave alone is ~7 dB over this band


def test_tilt_is_a_straight_line_in_db_per_octave():
    for slope in (-1.0, 0.5, 1.0):
        f = 1000.0 * 2.0 ** np.arange(-4, 4)  # 62.5 Hz … 8 kHz
        _, h = scipy.signal.sosfreqz(U.tilt_sos(slope, RATE), worN=f, fs=RATE)
        db = 20 * np.log10(np.abs(h))
        assert db[4] == pytest.approx(0.0, abs=1e-9)  # 0 dB at the 1 kHz pivot
        assert np.allclose(np.diff(db), slope, atol=0.15)


def test_expansion_widens_the_level_differences_by_its_ratio():
    seg = 2 * RATE  # 2 s passages: the RMS detector (τ ≤ 120 ms) settles well inside each
    rng = np.random.default_rng(3)
    # passages 10 dB apart: the expander's gain stays inside its −18/+6 dB clamps for any drawn ratio
    levels = np.repeat([0.1, 0.1 * 10**0.5] * 6, seg)
    y = (rng.standard_normal((2, levels.size)) * levels).astype(np.float32)
    no_eq = U.MasteringDegradation(tilt_db_per_octave=(0.0, 0.0), eq_bands=(0, 0))
    params = U.draw_mastering_params(np.random.default_rng(4), no_eq)
    x, _ = U.degrade_mastering(y, RATE, params, no_eq)

    def passage_db(a: np.ndarray, k: int) -> float:  # RMS of the middle of passage k (envelope settled)
        mid = a[:, k * seg + seg // 4 : (k + 1) * seg - seg // 4]
        return 10 * np.log10(np.mean(mid.astype(np.float64) ** 2))

    spread_y = np.mean([passage_db(y, k + 1) - passage_db(y, k) for k in range(2, 12, 2)])
    spread_x = np.mean([passage_db(x, k + 1) - passage_db(x, k) for k in range(2, 12, 2)])
    assert spread_y == pytest.approx(10.0, abs=0.3)
    assert spread_x / spread_y == pytest.approx(params["expansion_ratio"], rel=0.05)
    assert spread_x > spread_y + 1.5


# --- reading: windows and the encoder view ------------------------------------------------
def fake_track(n: int, split: str = "train", silent_head: int = 0) -> D.Track:
    y = np.random.default_rng(n).standard_normal((2, n)).astype(np.float32) * 0.1
    y[:, :silent_head] = 0.0
    return D.Track(f"fake{n}", split, RATE, (0.5 * y).astype(np.float32), y, {})


def test_the_sampler_gives_aligned_seeded_windows_with_preroll():
    tracks = [fake_track(50_000), fake_track(80_000)]
    s = D.WindowSampler(tracks, window=4096, preroll=512, seed=9)
    xb, yb = s.batch(6)
    assert xb.shape == (6, 2, 512 + 4096) and yb.shape == (6, 2, 4096)
    assert xb.dtype == np.float32 and yb.dtype == np.float32
    assert np.allclose(xb[:, :, 512:], 0.5 * yb)  # the input's last `window` samples match the target
    s.reset()
    assert np.array_equal(s.batch(6)[1], yb)
    assert np.array_equal(D.WindowSampler(tracks, 4096, 512, seed=9).batch(6)[1], yb)
    assert not np.array_equal(D.WindowSampler(tracks, 4096, 512, seed=10).batch(6)[1], yb)


def test_the_sampler_skips_silent_windows_and_short_tracks():
    tracks = [fake_track(40_000, silent_head=30_000), fake_track(1000)]
    s = D.WindowSampler(tracks, window=2048, seed=0)
    assert [t.track_id for t in s.tracks] == ["fake40000"]
    for _ in range(50):
        _, y = s.sample()
        assert np.sqrt(np.mean(y.astype(np.float64) ** 2)) > 10 ** (-50 / 20)
    with pytest.raises(D.DataError, match="long enough"):
        D.WindowSampler(tracks, window=50_000)


def test_iter_windows_walks_a_fixed_grid():
    t = fake_track(10_000)
    wins = list(D.iter_windows([t], window=3000, hop=2000, preroll=1000))
    assert [w.start for w in wins] == [1000, 3000, 5000, 7000]
    assert all(w.input.shape == (2, 4000) and w.target.shape == (2, 3000) for w in wins)
    assert np.array_equal(wins[1].target, t.target[:, 3000:6000])


def test_the_encoder_view_is_mono_at_the_model_rate_newest_samples_last():
    n = 81920
    tone = np.sin(2 * np.pi * 1000 * np.arange(n) / RATE).astype(np.float32)
    x = np.stack([tone, tone])
    v = encoder_view(x, RATE, 22050, 40960)
    assert v.shape == (40960,) and v.dtype == np.float32
    spectrum = np.abs(np.fft.rfft(v * np.hanning(v.size)))
    assert np.fft.rfftfreq(v.size, 1 / 22050)[spectrum.argmax()] == pytest.approx(1000, abs=2)
    batch = encoder_view(np.stack([x, -x, 0 * x]), RATE, 22050, 40960)
    assert batch.shape == (3, 40960)
    assert np.allclose(batch[0], v, atol=1e-6) and np.allclose(batch[1], -v, atol=1e-6)
    short = encoder_view(x[:, :44100], RATE, 22050, 40960)  # 22,050 samples, zero-padded in front
    assert short.shape == (40960,) and np.all(short[:1000] == 0) and np.any(short[-1000:] != 0)


# --- errors ---------------------------------------------------------------------------------
def test_missing_debian_packages_say_install_sh(tmp_path, monkeypatch, capsys):
    with pytest.raises(D.DataError, match=r"warzone2100-music.*\./install\.sh"):
        M.mastering_sources(tmp_path)
    monkeypatch.setattr(M, "DEBIAN_SHARE", tmp_path)
    assert data_main(["mastering", "--cache", str(tmp_path / "c"), "--quiet"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("training.data: error:") and "./install.sh" in err[0]


def test_an_unreadable_source_is_one_clear_error(tmp_path, source_tree):
    bad = tmp_path / "broken.flac"
    bad.write_bytes(b"not audio at all" * 100)
    with pytest.raises(D.DataError, match="cannot read .*broken.flac as audio"):
        build(tmp_path / "c", [*source_tree[:3], D.Source(bad, "broken")])


def test_loading_an_unbuilt_cache_says_how_to_build(tmp_path):
    with pytest.raises(D.DataError, match="python -m training.data"):
        D.load_tracks(tmp_path)


# --- the real packaged music (slow: ~15–30 s) ------------------------------------------------
FOF = Path("/usr/share/games/fretsonfire/data/songs")


@pytest.mark.skipif(not FOF.is_dir(), reason="fretsonfire-songs-* not installed (./install.sh)")
def test_slow_real_debian_music_subset(tmp_path):
    """Three Frets on Fire songs through the real pipeline: Vorbis in, 44.1 kHz stereo pairs out."""
    songs = [s for s in M.mastering_sources() if s.collection == "fretsonfire"]
    songs = sorted(songs, key=lambda s: os.path.getsize(s.path))[:3]
    cache = build(tmp_path, songs, workers=2)
    m = manifest(cache)
    assert sorted(len(v) for v in m["splits"].values()) == [1, 1, 1]
    for t in D.load_tracks(cache):
        assert t.rate == RATE and t.target.shape[0] == 2 and t.seconds > 60
        assert t.meta["source_format"] == "OGG/VORBIS"
        assert -20.0 <= loudness(np.asarray(t.input), RATE) - t.meta["target_lufs"] <= -6.0


def test_too_few_tracks_to_split_is_refused(tmp_path, source_tree):
    with pytest.raises(D.DataError, match="at least three tracks"):
        build(tmp_path, source_tree[:2])
