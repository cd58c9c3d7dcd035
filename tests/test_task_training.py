"""The other DeepAFx tasks through the same pipeline: tiny data → train → evaluate → export → host.

Each task builds a tiny data set from its real sources (a few short tracks),
trains with ``training/configs/<task>-tiny.toml`` through the real plugins
(one worker), evaluates on its test split and exports a bundle that the
host's loader accepts and that ``deepafx-rt render --bundle`` runs.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from training import evaluate as E
from training import train as T


def _tiny_nonspeech(cache: Path) -> Path:
    from training.data import nonspeech as N

    sources = N.nonspeech_sources(0, languages=("en",), minutes_per_language=0.25, track_seconds=(6.0, 10.0))
    return N.build_nonspeech(cache, 0, sources=sources, workers=1, progress=False)


def _tiny_distortion(cache: Path) -> Path:
    from training.data import distortion as DD

    corpus = DD.CorpusRecipe(songs=3, song_seconds=4.0, recorded=False)  # 3 songs × guitar + bass
    return DD.build_distortion(cache, 0, workers=1, progress=False, corpus=corpus)


TINY_DATA: dict[str, Callable[[Path], Path]] = {"nonspeech": _tiny_nonspeech, "distortion": _tiny_distortion}


@pytest.fixture(scope="module", params=sorted(TINY_DATA))
def task(request) -> str:
    return request.param


@pytest.fixture(scope="module")
def trained(task, tmp_path_factory) -> tuple[str, Path, Path]:
    """``(task, data cache, run folder)`` after a tiny run."""
    root = tmp_path_factory.mktemp(f"tiny-{task}")
    cache = TINY_DATA[task](root / "data")
    out = root / "run"
    config = T.CONFIG_DIR / f"{task}-tiny.toml"
    argv = ["--task", task, "--config", str(config), "--out", str(out), "--data", str(cache)]
    assert T.main([*argv, "--workers", "1", "--quiet"]) == 0
    return task, cache, out


def test_the_tiny_run_trains_in_graph_mode_with_finite_losses(trained):
    task, _, run = trained
    state = json.loads((run / "state.json").read_text())
    assert state["graph_mode"] is True and state["chain"] == task
    rows = T.read_history(run / "history.csv")
    assert all(math.isfinite(float(r["loss"])) for r in rows)
    assert all(math.isfinite(float(r["val_loss"])) for r in rows if r["phase"] != "pretrain")
    assert (run / "encoder.keras").stat().st_size > 1000


@pytest.fixture(scope="module")
def evaluation(trained) -> Path:
    """The run's own ``eval/`` (the default), which export then picks up."""
    task, cache, run = trained
    argv = ["--task", task, "--checkpoint", str(run / "encoder.keras"), "--data", str(cache)]
    assert E.main([*argv, "--seconds", "3"]) == 0
    return run / "eval"


def test_the_evaluation_scores_input_defaults_and_model_and_the_task_goals(trained, evaluation):
    task = trained[0]
    metrics = json.loads((evaluation / "metrics.json").read_text())
    assert set(metrics["mrstft"]) == {"input", "default_chain", "model"}  # no matchering here
    assert all(math.isfinite(v) for v in metrics["mrstft"].values())
    if task == "nonspeech":
        for key in ("speech_mrstft", "event_attenuation_db", "event_attenuation_ideal_db"):
            assert set(metrics[key]) == {"input", "default_chain", "model"}, key
        assert metrics["event_attenuation_db"]["input"] == pytest.approx(0.0, abs=1e-6)
    table = (evaluation / "metrics.md").read_text()
    assert f"Goals (issue {E.ISSUE[task]})" in table and "matchering" not in table


def test_the_export_is_a_bundle_the_host_renders_with(trained, evaluation, tmp_path, capsys):
    from rt_host.bundle import load_bundle
    from rt_host.cli import main as cli
    from training import export

    task, _, run = trained
    bundle_dir = tmp_path / "bundle"
    argv = ["--task", task, "--checkpoint", str(run / "encoder.keras"), "--out", str(bundle_dir)]
    assert export.main(argv) == 0
    bundle = load_bundle(bundle_dir)
    cfg = T.load_config(run / "config.toml")
    assert (bundle.sample_rate, bundle.hop) == (cfg["rates"]["encoder_rate"], cfg["rates"]["hop"])
    assert bundle.metrics["mrstft"]["model"] > 0  # the run's eval went into the manifest
    src, dst = tmp_path / "in.wav", tmp_path / "out.wav"
    rng = np.random.default_rng(0)
    sf.write(src, (0.1 * rng.standard_normal(22050 * 2)).astype(np.float32), 22050)
    assert cli(["render", str(src), str(dst), "--bundle", str(bundle_dir)]) == 0
    y, rate = sf.read(dst)
    assert rate == 22050 and y.shape == (44100,) and np.all(np.isfinite(y))
