"""A tiny real training run through the real plugins, then evaluation and export of its encoder.

Six generated 2.5-second tracks (two collections, so every split gets two),
``training/configs/mastering-tiny.toml`` (8,192-sample windows at 44.1 kHz,
Inception encoder at 22,050 Hz, batch 2, 2 steps per epoch), one plugin worker.
The run is shared by the tests of this module (they read what it wrote) and
takes about a minute on two cores.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from training import data as D
from training import evaluate as E
from training import train as T
from training.data import mastering as M
from training.models import losses as L

TINY = T.CONFIG_DIR / "mastering-tiny.toml"
RATE = 44100


def music_like(seconds: float, seed: int) -> np.ndarray:
    """Pink-ish stereo noise with a slow level contour, ``(samples, 2)``."""
    rng = np.random.default_rng(seed)
    n = int(seconds * RATE)
    spec = np.fft.rfft(rng.standard_normal((2, n)), axis=1)
    k = np.arange(spec.shape[1], dtype=np.float64)
    k[0] = 1.0
    x = np.fft.irfft(spec / np.sqrt(k), n, axis=1)
    x /= np.abs(x).max()
    contour = 10 ** (-12 * (0.5 + 0.5 * np.sin(2 * np.pi * np.arange(n) / RATE / 1.3 + seed)) / 20)
    return (0.7 * x * contour).T.astype(np.float32)


@pytest.fixture(scope="module")
def tiny_data(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("tiny-mastering")
    sources = []
    for i in range(6):
        path = root / f"s{i}.wav"
        sf.write(path, music_like(2.5, seed=i), RATE)
        sources.append(D.Source(path, f"s{i}", collection="a" if i < 3 else "b"))
    cache = M.build_mastering(root / "data", 0, sources=sources, workers=1, progress=False)
    assert all(len(v) == 2 for v in D.load_manifest(cache)["splits"].values())
    return cache


@pytest.fixture(scope="module")
def run(tiny_data, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("run") / "mastering"
    argv = ["--task", "mastering", "--config", str(TINY), "--out", str(out), "--data", str(tiny_data)]
    assert T.main([*argv, "--workers", "1", "--quiet"]) == 0
    return out


def history(out: Path) -> list[dict]:
    return T.read_history(out / "history.csv")


# --- pure pieces ---------------------------------------------------------------------------------
def test_align_finds_a_known_delay_and_crops_to_real_samples():
    rng = np.random.default_rng(0)
    target = rng.standard_normal((2, 2000, 2)).astype(np.float32)
    delays = [37, -12]  # the output lags the target by 37 samples in example 0, leads by 12 in 1
    pred = np.stack([np.roll(target[b], d, axis=0) for b, d in enumerate(delays)])
    t, p = L.align(target, pred, max_lag=50)
    assert t.shape == p.shape == (2, 1900, 2)
    np.testing.assert_array_equal(np.asarray(p), np.asarray(t))


def test_the_plan_splits_steps_into_pretraining_and_progressive_stages():
    cfg = T.load_config(T.config_path("mastering-v1"))
    phases = T.plan(cfg, steps=1000)
    assert [p.name for p in phases] == ["pretrain", "mbc", "mbc+geq", "all"]
    assert phases[-1].stages == ("mbc", "geq", "limiter")
    spe = cfg["train"]["steps_per_epoch"]
    chain_epochs = sum(p.end - p.start for p in phases if p.kind == "chain")
    assert chain_epochs == math.ceil(1000 / spe)
    assert all(a.end == b.start for a, b in zip(phases, phases[1:]))  # contiguous, no gaps


def test_a_config_whose_encoder_hears_other_audio_than_the_chain_is_refused(tmp_path):
    text = TINY.read_text().replace("encoder_window = 4096", "encoder_window = 4000")
    (tmp_path / "bad.toml").write_text(text)
    with pytest.raises(T.TrainError, match="encoder_window"):
        T.load_config(tmp_path / "bad.toml")


def test_stages_not_yet_trained_are_held_at_their_defaults():
    names = ["mbc.ratio0", "geq.g_0", "limiter.th"]
    fixed = T.stage_fixed(names, np.array([0.1, 0.2, 0.3]), ["mbc"], {"limiter.th": 1.0})
    assert fixed == {"geq.g_0": pytest.approx(0.2), "limiter.th": 1.0}


def test_the_anchor_adds_the_held_ports_distance_from_their_defaults_to_the_loss():
    import keras

    anchor = T.AnchorToDefaults([0, 2], np.array([0.5, 0.0, 0.25], np.float32), weight=10.0)
    u = np.array([[0.7, 0.9, 0.25], [0.3, 0.1, 0.45]], np.float32)
    out = anchor(keras.ops.convert_to_tensor(u))
    np.testing.assert_array_equal(np.asarray(out), u)  # identity on the parameters
    expected = 10.0 * np.mean(np.square(u[:, [0, 2]] - [0.5, 0.25]))
    assert float(anchor.losses[0]) == pytest.approx(expected, rel=1e-5)


def test_the_event_term_scores_what_is_left_of_the_events_and_nothing_else():
    """Target: a floor; input: the floor plus a burst 20 dB above it in one stretch. The output that
    keeps the burst scores ≈ ln(100) on the burst's frames; the target itself and a gated output
    score 0 (the term only counts frames louder than the target, where the input had an event)."""
    rng = np.random.default_rng(0)
    n = 8192
    floor = 0.001 * rng.standard_normal((1, n, 1)).astype(np.float32)
    burst = np.zeros_like(floor)
    burst[:, 3000:5000] = 0.01 * rng.standard_normal((1, 2000, 1))
    x = floor + burst
    residual = x - floor
    left = float(L.event_excess(floor, x, residual, 512))
    assert left == pytest.approx(math.log(101.0), rel=0.2)
    assert float(L.event_excess(floor, floor, residual, 512)) == 0.0
    assert float(L.event_excess(floor, 0.05 * x, residual, 512)) == 0.0  # gated below the target
    quiet = float(L.event_excess(floor, floor + 0.1 * burst, residual, 512))
    assert 0 < quiet < left  # a burst 20 dB down leaves less

    loss = L.AlignedSpectralLoss(0, (256,), 0.0, 0.0, event_weight=1.0, event_frame=512)
    packed = np.concatenate([floor, residual], axis=-1)  # y_true: target channels, then the residual
    assert float(loss(packed, x)) > float(loss(packed, floor)) + 0.9 * left


# --- the real run ------------------------------------------------------------------------------
def test_the_tiny_run_trains_in_graph_mode_with_finite_losses_and_writes_its_files(run):
    state = json.loads((run / "state.json").read_text())
    assert state["graph_mode"] is True
    assert state["epochs_done"] == 3
    assert state["max_lag"] > state["chain_latency"] > 0  # the limiter's look-ahead is seen
    rows = history(run)
    assert [r["phase"] for r in rows] == ["pretrain", "mbc", "all"]
    assert [int(r["epoch"]) for r in rows] == [1, 2, 3]
    assert all(math.isfinite(float(r["loss"])) for r in rows)
    assert all(math.isfinite(float(r["val_loss"])) for r in rows[1:])
    for name in ("history.png", "encoder.keras", "checkpoints/last.keras", "checkpoints/optimizer.npz"):
        assert (run / name).stat().st_size > 1000, name
    # encoder.keras is the best validated encoder, and the last stage ran at its own learning rate
    best = min(float(r["val_loss"]) for r in rows[1:])
    assert state["best"]["val_loss"] == pytest.approx(best)
    assert (run / "encoder.keras").read_bytes() == (run / "checkpoints" / "best.keras").read_bytes()
    assert float(rows[-1]["learning_rate"]) == pytest.approx(5e-4)


def test_resume_continues_after_the_last_epoch(run, tiny_data):
    before = (run / "checkpoints" / "optimizer.npz").read_bytes()
    argv = ["--task", "mastering", "--config", str(TINY), "--out", str(run), "--data", str(tiny_data)]
    assert T.main([*argv, "--workers", "1", "--quiet", "--resume", "--steps", "6"]) == 0
    rows = history(run)
    assert [int(r["epoch"]) for r in rows] == [1, 2, 3, 4]  # appended, nothing redone
    assert rows[-1]["phase"] == "all"
    state = json.loads((run / "state.json").read_text())
    assert state["epochs_done"] == 4
    assert (run / "checkpoints" / "optimizer.npz").read_bytes() != before  # Adam went on training


def test_resume_without_a_checkpoint_says_so(tmp_path, tiny_data, capsys):
    argv = ["--task", "mastering", "--config", str(TINY), "--out", str(tmp_path), "--data", str(tiny_data)]
    assert T.main([*argv, "--resume"]) == 2
    assert "no checkpoint" in capsys.readouterr().err


@pytest.fixture(scope="module")
def evaluation(run, tiny_data, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("eval")
    argv = ["--task", "mastering", "--checkpoint", str(run / "encoder.keras"), "--data", str(tiny_data)]
    assert E.main([*argv, "--seconds", "2", "--out", str(out)]) == 0
    return out


def test_a_tiny_evaluation_scores_all_four_systems(evaluation):
    metrics = json.loads((evaluation / "metrics.json").read_text())
    for metric in ("mfcc_cosine", "mrstft", "lufs_error_abs_median"):
        assert set(metrics[metric]) == set(E.SYSTEMS), metric
        assert all(v is not None and math.isfinite(v) for v in metrics[metric].values())
    assert metrics["tracks"] == 2
    assert metrics["mrstft"]["input"] > 0  # the degraded input differs from its target
    table = (evaluation / "metrics.md").read_text()
    assert all(s in table for s in E.SYSTEMS)
    for png in ("automation.png", "spectra.png"):
        assert (evaluation / png).stat().st_size > 1000


def test_the_saved_encoder_exports_with_the_evaluation_to_a_bundle_the_host_accepts(
    run, evaluation, tmp_path
):
    import tomllib

    from rt_host.bundle import load_bundle
    from training import export

    cfg = T.load_config(TINY)
    encoder = export.load_checkpoint(run / "encoder.keras")
    assert encoder.input_shape == (None, cfg["rates"]["encoder_window"])
    out = tmp_path / "bundle"
    argv = ["--task", "mastering", "--checkpoint", str(run / "encoder.keras"), "--out", str(out)]
    argv += ["--metrics", str(evaluation / "metrics.json"), "--hop", str(cfg["rates"]["hop"])]
    assert export.main(argv) == 0
    bundle = load_bundle(out)
    assert bundle is not None
    manifest = tomllib.loads((out / "manifest.toml").read_text())
    assert set(manifest["metrics"]["mrstft"]) == set(E.SYSTEMS)  # evaluate.py's JSON went in as is
