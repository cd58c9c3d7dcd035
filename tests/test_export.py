"""Encoders and their ONNX bundles: the front end is a true log-mel, exports run in the host, parity holds.

Every exported model here has *non-trivial* weights: batch norm calibrated on
audio and a final layer re-drawn so the parameters spread over (0, 1). An
untrained MobileNetV2 outputs exactly 0.5 for any input, and parity on that
would prove nothing (``../shared/FACTS.md``).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import numpy as np
import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
keras = pytest.importorskip("keras")
onnx = pytest.importorskip("onnx")
pytest.importorskip("tf2onnx")
pytest.importorskip("onnxruntime")

from rt_host.bundle import load_bundle  # noqa: E402
from rt_host.lv2 import Chain, ChainSpec  # noqa: E402
from training import export  # noqa: E402
from training.models.encoders import (  # noqa: E402
    LogMelSpectrogram,
    build_encoder,
    calibrate_batch_norm,
    log_mel_reference,
    mel_filterbank,
)

# keras 3.15's model.save converts variables with np.array(copy=False) semantics numpy 2 deprecates
pytestmark = pytest.mark.filterwarnings("ignore:__array__ implementation doesn't accept:DeprecationWarning")

RATE = 22050
SHORT = 8192  # 29 frames: fast, and below MobileNetV2's 32-pixel minimum (padding is exercised)
ROOT = Path(__file__).resolve().parents[1]


def audio_batch(window: int, seed: int) -> np.ndarray:
    """Music-like windows that are *not* the exporter's own parity signals."""
    rng = np.random.default_rng(seed)
    probes = export.probe_signals(window, RATE, seed=seed)
    levels = 10 ** (rng.uniform(-30, 0, size=(len(probes), 1)) / 20)
    return (probes * levels).astype(np.float32)


def make_nontrivial(model: keras.Model, seed: int = 0) -> keras.Model:
    """Calibrate batch norm on music-like audio and draw the last layer's biases.

    Calibration alone makes the outputs depend on the input (an untrained
    MobileNetV2 gives exactly 0.5); the random biases move them away from 0.5.
    The kernel keeps its Glorot draw: rescaling it to force a wide spread would
    also amplify the float32 rounding noise of features that hardly move, and
    make a network far worse conditioned than a trained one.
    """
    window = int(model.input_shape[-1])
    audio = np.concatenate([audio_batch(window, seed + 10), audio_batch(window, seed + 11)])
    calibrate_batch_norm(model, audio)
    dense = model.get_layer("params")
    kernel, bias = dense.get_weights()
    bias = np.random.default_rng(seed).uniform(-1.5, 1.5, size=bias.shape).astype(np.float32)
    dense.set_weights([kernel, bias])
    return model


def predict_tf(model: keras.Model, audio: np.ndarray) -> np.ndarray:
    return np.asarray(model(audio, training=False), dtype=np.float64)


# --- the front end ---------------------------------------------------------------------------
def test_front_end_is_the_log_mel_of_a_plain_stft():
    layer = LogMelSpectrogram(RATE)
    rng = np.random.default_rng(3)
    t = np.arange(SHORT) / RATE
    audio = np.stack(
        [
            0.3 * rng.standard_normal(SHORT),
            0.5 * np.sin(2 * np.pi * 440.0 * t) + 0.01 * rng.standard_normal(SHORT),
            1e-3 * rng.standard_normal(SHORT),
        ]
    ).astype(np.float32)
    got = np.asarray(layer(audio))
    want = log_mel_reference(audio, layer)
    assert got.shape == (3, 29, 128)
    assert np.max(np.abs(got - want)) < 1e-3  # float32 vs float64 rfft, in log units
    # a sine of amplitude 0.5 puts ~0.25 (-6 dB of power) into the band around its frequency
    band = int(np.argmax(got[1].mean(axis=0)))
    centre_bin = int(np.argmax(layer.mel_matrix[:, band])) + layer.first_bin
    assert abs(centre_bin * RATE / layer.n_fft - 440.0) < 50.0
    assert np.exp(got[1, :, band].mean()) == pytest.approx(0.25, rel=0.35)


def test_front_end_uses_only_bins_the_mel_bank_needs():
    layer = LogMelSpectrogram(RATE)
    used = np.flatnonzero(mel_filterbank(RATE, 1024, 128).sum(axis=1))
    assert (layer.first_bin, layer.last_bin) == (used[0], used[-1])
    assert layer.dft_even.shape == (513, layer.n_bins) and layer.dft_odd.shape == (511, layer.n_bins)
    assert layer.n_bins < 513


def test_a_window_longer_than_whole_hops_drops_its_oldest_samples():
    layer = LogMelSpectrogram(RATE)
    audio = np.random.default_rng(4).standard_normal((1, SHORT + 100)).astype(np.float32)
    np.testing.assert_allclose(np.asarray(layer(audio)), np.asarray(layer(audio[:, 100:])), atol=1e-6)


def test_too_many_mels_for_the_fft_is_refused():
    with pytest.raises(ValueError, match="catch no FFT bin"):
        mel_filterbank(RATE, 128, 128)


def test_unknown_backbone_is_refused():
    with pytest.raises(ValueError, match="mobilenetv2, inception"):
        build_encoder(4, window=SHORT, backbone="resnet")


# --- exported small encoders -----------------------------------------------------------------
CASES = {"mobilenetv2": "nonspeech-v1", "inception": "distortion-v1"}  # backbone → chain (23 / 28 params)


@pytest.fixture(scope="module", params=sorted(CASES))
def exported(request, tmp_path_factory):
    backbone = request.param
    spec = ChainSpec.load(CASES[backbone])
    n_params = Chain(spec).n_params
    model = make_nontrivial(build_encoder(n_params, window=SHORT, backbone=backbone), seed=1)
    out = tmp_path_factory.mktemp(backbone) / "bundle"
    metrics = {"mrstft": {"input": 1.5, "model": np.float32(0.9)}, "lufs_error_median": 0.4}
    path = export.export_bundle(
        model, spec, out, task=f"test-{backbone}", sample_rate=RATE, window=SHORT, hop=2048, metrics=metrics
    )
    return model, spec, path


def test_export_writes_the_four_files(exported):
    _, _, path = exported
    names = sorted(p.name for p in path.iterdir())
    assert names == ["MODEL_CARD.md", "encoder.onnx", "manifest.toml", "parity.npz"]
    assert not [p for p in path.parent.iterdir() if p.name.startswith(".")]  # no staging left behind


def test_onnx_graph_has_one_input_one_output_and_only_standard_ops(exported):
    _, _, path = exported
    model = onnx.load(str(path / "encoder.onnx"))
    graph = model.graph
    initializers = {t.name for t in graph.initializer}
    assert [i.name for i in graph.input if i.name not in initializers] == ["audio"]
    assert [i.name for i in graph.input] == ["audio"]  # no constant became an input
    assert [o.name for o in graph.output] == ["params"]
    ops = {node.op_type for node in graph.node}
    assert not ops & {"ComplexAbs", "DFT", "STFT", "RFFT", "PyFunc"}
    assert {node.domain for node in graph.node} <= {"", "ai.onnx"}
    dims = graph.input[0].type.tensor_type.shape.dim
    assert dims[0].dim_param == "batch" and dims[1].dim_value == SHORT
    assert {o.version for o in model.opset_import if o.domain in ("", "ai.onnx")} == {17}


def test_onnxruntime_matches_tensorflow_at_batch_1_and_3(exported):
    model, _, path = exported
    session = export.ort_session(path / "encoder.onnx")
    audio = audio_batch(SHORT, seed=99)[:3]
    want = predict_tf(model, audio)
    three = session.run(["params"], {"audio": audio})[0]
    ones = np.concatenate([session.run(["params"], {"audio": audio[i : i + 1]})[0] for i in range(3)])
    assert three.shape == ones.shape == want.shape
    assert np.max(np.abs(three - want)) <= 1e-4
    assert np.max(np.abs(ones - want)) <= 1e-4
    # the comparison means something: outputs move with the input and are not stuck at 0.5
    assert np.max(np.ptp(want, axis=0)) > 0.1
    assert np.mean(np.abs(want - 0.5)) > 0.05


def test_the_host_loads_the_bundle_and_predicts_what_tensorflow_does(exported):
    model, spec, path = exported
    bundle = load_bundle(path)
    assert (bundle.sample_rate, bundle.window, bundle.hop) == (RATE, SHORT, 2048)
    assert bundle.parameters == Chain(spec).parameter_names
    window = audio_batch(SHORT, seed=7)[3]
    got = bundle.predict(bundle.session(threads=1), window)
    assert got.shape == (len(bundle.parameters),)
    np.testing.assert_allclose(got, predict_tf(model, window[np.newaxis])[0], atol=1e-4)


def test_manifest_holds_the_chain_metrics_and_versions(exported):
    _, spec, path = exported
    m = tomllib.loads((path / "manifest.toml").read_text())
    assert m["format"] == 2 and m["model"] == "encoder.onnx" and m["input_channels"] == 1
    assert ChainSpec.from_dict(m["chain"]).to_dict() == spec.to_dict()
    assert m["metrics"]["mrstft"]["model"] == pytest.approx(0.9)
    for lib in ("tensorflow", "keras", "tf2onnx", "onnxruntime"):
        assert m["versions"][lib]
    card = (path / "MODEL_CARD.md").read_text()
    assert "## Export" in card and "Parity: max |TensorFlow − onnxruntime|" in card
    assert "| mrstft | 1.5 | 0.9 |" in card


# --- refusals ----------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def tiny_inception():
    return build_encoder(23, window=SHORT, backbone="inception")


@pytest.mark.parametrize(
    "chain, window, rate, message",
    [
        ("distortion-v1", SHORT, RATE, "predicts 23 values but the chain 'distortion-v1' has 28"),
        ("nonspeech-v1", 4096, RATE, r"the bundle needs \(batch, 4096\)"),
        ("nonspeech-v1", SHORT, 44100, "built for 22050 Hz, not the bundle's 44100 Hz"),
    ],
    ids=["params", "window", "rate"],
)
def test_export_refuses_a_model_that_does_not_fit(tiny_inception, tmp_path, chain, window, rate, message):
    out = tmp_path / "bundle"
    with pytest.raises(export.ExportError, match=message):
        export.export_bundle(
            tiny_inception, ChainSpec.load(chain), out, task="t", sample_rate=rate, window=window, hop=2048
        )
    assert not out.exists()


def test_parity_failure_is_a_clear_error(exported):
    model, _, path = exported
    other = keras.models.clone_model(model)
    other.set_weights(model.get_weights())
    dense = other.get_layer("params")
    kernel, bias = dense.get_weights()
    dense.set_weights([kernel, bias + 0.01])  # a tiny drift TF has and the ONNX file has not
    with pytest.raises(export.ExportError, match="TensorFlow and onnxruntime disagree"):
        export.check_parity(other, path / "encoder.onnx", audio_batch(SHORT, seed=5))


def test_a_failed_export_leaves_the_old_bundle_alone(exported, tmp_path, monkeypatch):
    model, spec, path = exported
    target = tmp_path / "bundle"
    shutil.copytree(path, target)
    before = (target / "encoder.onnx").read_bytes()

    def broken(*args, **kwargs):
        raise export.ExportError("TensorFlow and onnxruntime disagree (simulated)")

    monkeypatch.setattr(export, "check_parity", broken)
    with pytest.raises(export.ExportError, match="simulated"):
        export.export_bundle(model, spec, target, task="t", sample_rate=RATE, window=SHORT, hop=2048)
    assert (target / "encoder.onnx").read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["bundle"]
    load_bundle(target)


# --- the default model's size ------------------------------------------------------------------
def test_default_mastering_encoder_bundle_is_under_10_mb(tmp_path):
    spec = ChainSpec.load("mastering-v1")
    model = make_nontrivial(build_encoder(Chain(spec).n_params), seed=2)  # MobileNetV2 α 0.35, 40,960
    path = export.export_bundle(
        model, spec, tmp_path / "mastering", task="mastering", sample_rate=RATE, window=40960, hop=11025
    )
    size = export.bundle_size(path)
    assert size < 10e6, f"bundle is {size / 1e6:.2f} MB"
    bundle = load_bundle(path)
    window = audio_batch(40960, seed=8)[2]
    got = bundle.predict(bundle.session(), window)
    np.testing.assert_allclose(got, predict_tf(model, window[np.newaxis])[0], atol=1e-4)
    assert np.ptp(got) > 0.1


# --- the command line -----------------------------------------------------------------------
def test_cli_without_a_checkpoint_names_what_is_missing(tmp_path):
    missing = tmp_path / "runs" / "encoder.keras"
    script = str(ROOT / "training" / "export.py")
    run = subprocess.run(
        [sys.executable, script, "--task", "mastering", "--checkpoint", str(missing)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert run.returncode == 2
    lines = run.stderr.strip().splitlines()
    assert len(lines) == 1, run.stderr
    assert "no trained checkpoint" in lines[0] and str(missing) in lines[0]
    assert "training/train.py --task mastering" in lines[0]


def test_cli_default_checkpoint_is_under_runs(capsys):
    code = export.main(["--task", "no-such-task-xyz"])
    assert code == 2
    err = capsys.readouterr().err
    assert str(Path("runs") / "no-such-task-xyz" / "encoder.keras") in err


def test_cli_exports_a_saved_checkpoint(tmp_path):
    model = make_nontrivial(build_encoder(13, window=SHORT, backbone="inception"), seed=3)
    checkpoint = tmp_path / "encoder.keras"
    model.save(checkpoint)
    (tmp_path / "metrics.json").write_text(json.dumps({"mfcc_cosine": {"model": 0.1}}))
    (tmp_path / "card.md").write_text("# distortion test\n\nTrained for 0 minutes.\n")
    out = tmp_path / "bundle"
    code = export.main(
        ["--task", "distortion", "--checkpoint", str(checkpoint), "--out", str(out), "--hop", "4096",
         "--metrics", str(tmp_path / "metrics.json"), "--model-card", str(tmp_path / "card.md")]
    )  # fmt: skip
    assert code == 0
    bundle = load_bundle(out)
    assert bundle.hop == 4096 and bundle.metrics == {"mfcc_cosine": {"model": 0.1}}
    assert (out / "MODEL_CARD.md").read_text().startswith("# distortion test")
    window = audio_batch(SHORT, seed=12)[0]
    got = bundle.predict(bundle.session(), window)
    np.testing.assert_allclose(got, predict_tf(model, window[np.newaxis])[0], atol=1e-4)
