"""``deepafx-rt render --task/--bundle``: a model drives its chain over a file, as the live host would.

A stand-in bundle (its ONNX encoder maps the window's level to parameters,
:func:`rt_host.bundle.write_level_follower_bundle`) runs through a real
onnxruntime session and the real mastering chain.
"""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from rt_host.bundle import load_bundle, write_level_follower_bundle
from rt_host.lv2 import Chain, ChainSpec
from rt_host.steer import predict_automation
from tests.live_support import level_steps
from tests.test_cli import one_error_line, run_cli

RATE = 44100


@pytest.fixture(scope="module")
def bundle_dir(tmp_path_factory) -> Path:
    spec = ChainSpec.load("mastering-v1")
    return write_level_follower_bundle(tmp_path_factory.mktemp("bundle"), spec, window=4096, hop=1024)


@pytest.fixture
def steps_wav(tmp_path) -> Path:
    path = tmp_path / "steps.wav"
    sf.write(path, level_steps(RATE, 1.5, [-40.0, -10.0]).T, RATE, subtype="FLOAT")
    return path


def test_the_automation_starts_at_the_defaults_and_follows_the_level(bundle_dir):
    bundle = load_bundle(bundle_dir)
    chain = Chain(bundle.chain_spec)
    x = level_steps(RATE, 1.5, [-40.0, -10.0])
    geometry = bundle.geometry(RATE)
    auto = predict_automation(bundle.predictor(), x, RATE, geometry, chain, smoothing_s=0.05, block=512)
    assert auto.applied.shape == (int(np.ceil(x.shape[1] / 512)), chain.n_params)
    # causal: nothing steers before one hop of audio has been heard and the delay has passed
    before = auto.times < geometry.apply_frame(0) / RATE
    defaults = np.broadcast_to(chain.default_normalized(), auto.applied[before].shape)
    np.testing.assert_allclose(auto.applied[before], defaults, atol=1e-6)
    quiet = auto.applied[np.searchsorted(auto.times, 1.3)]
    loud = auto.applied[np.searchsorted(auto.times, 2.9)]
    assert np.max(np.abs(loud - quiet)) > 0.05  # the level step moved the parameters
    assert auto.n_predictions == len(auto.inference_ms) > 0


def test_render_with_a_bundle_writes_audio_automation_csv_and_plot(capsys, tmp_path, bundle_dir, steps_wav):
    out, log, png = tmp_path / "out.wav", tmp_path / "auto.csv", tmp_path / "auto.png"
    code, text, err = run_cli(capsys, "render", steps_wav, out, "--bundle", bundle_dir,
                              "--params-log", log, "--plot", png)  # fmt: skip
    assert code == 0, err
    assert "predicted" in text
    y, rate = sf.read(out, always_2d=True)
    assert rate == RATE and y.shape[1] == 2 and np.all(np.isfinite(y))
    assert png.stat().st_size > 5000
    with log.open() as f:
        rows = list(csv.reader(f))
    assert rows[0][0] == "time" and "limiter.th" in rows[0]


def test_the_logged_automation_replays_to_the_same_audio(capsys, tmp_path, bundle_dir, steps_wav):
    """The model's CSV fed back with ``--chain … --params`` renders the same output: the offline model
    path is exactly "predict an automation, then render it"."""
    a, b, log = tmp_path / "a.wav", tmp_path / "b.wav", tmp_path / "auto.csv"
    assert run_cli(capsys, "render", steps_wav, a, "--bundle", bundle_dir, "--params-log", log)[0] == 0
    assert run_cli(capsys, "render", steps_wav, b, "--chain", "mastering-v1", "--params", log)[0] == 0
    ya, yb = sf.read(a)[0], sf.read(b)[0]
    # Not bit-equal: the log keeps one row every 1024 frames (the model's automation moves every
    # 128), and its 9 digits move a port value by an ulp now and then, to which the Calf compressor
    # reacts. A wrong row or a lost column would be tens of per cent.
    assert np.sqrt(np.mean((ya - yb) ** 2) / np.mean(ya**2)) < 0.03


@pytest.mark.parametrize(
    "extra, message",
    [
        (["--bundle", "BUNDLE", "--chain", "mastering-v1"], "either a model"),
        (["--chain", "mastering-v1", "--params-log", "x.csv"], "add --task or --bundle"),
        (["--task", "no-such-task"], "no model bundle"),
        ([], "say what to render with"),
    ],
)
def test_render_model_options_fail_in_one_line(capsys, tmp_path, bundle_dir, steps_wav, extra, message):
    extra = [str(bundle_dir) if e == "BUNDLE" else e for e in extra]
    code, _, err = run_cli(capsys, "render", steps_wav, tmp_path / "o.wav", *extra)
    assert code != 0
    assert message in one_error_line(err)
    assert not (tmp_path / "o.wav").exists()
