"""Model bundles: a good one loads; every kind of bad one is refused with its reason."""

from __future__ import annotations

import shutil
import tomllib
from pathlib import Path

import numpy as np
import pytest
import tomli_w

from rt_host.bundle import BundleError, load_bundle, write_level_follower_bundle
from rt_host.lv2 import Chain, ChainSpec


@pytest.fixture(scope="module")
def good(tmp_path_factory) -> Path:
    return write_level_follower_bundle(tmp_path_factory.mktemp("good"), ChainSpec.load("mastering-v1"))


@pytest.fixture
def copy(good, tmp_path) -> Path:
    dst = tmp_path / "bundle"
    shutil.copytree(good, dst)
    return dst


def edit_manifest(path: Path, **changes) -> None:
    m = tomllib.loads((path / "manifest.toml").read_text())
    for key, value in changes.items():
        if value is None:
            m.pop(key)
        else:
            m[key] = value
    (path / "manifest.toml").write_text(tomli_w.dumps(m))


def test_a_good_bundle_loads_and_predicts_in_range(good):
    b = load_bundle(good)
    assert b.window == 8192 and len(b.parameters) == 53
    s = b.session()
    loud = b.predict(s, np.full(b.window, 0.3, np.float32))
    quiet = b.predict(s, np.full(b.window, 0.003, np.float32))
    assert loud.shape == (53,) and np.all((loud >= 0) & (loud <= 1))
    assert np.max(np.abs(loud - quiet)) > 0.05  # the stand-in follows the level


def test_held_parameters_are_played_at_their_values_whatever_the_encoder_says(copy):
    edit_manifest(copy, held={"limiter.th": 0.5, "mbc.freq0": 400.0})  # port units (format 2)
    b = load_bundle(copy)
    chain = Chain(b.chain_spec)
    s = b.session()
    for level in (0.3, 0.003):  # the stand-in's outputs follow the level; the held two do not
        u = b.predict(s, np.full(b.window, level, np.float32))
        values = chain.denormalize(u)
        assert values[b.parameters.index("limiter.th")] == pytest.approx(0.5)
        assert values[b.parameters.index("mbc.freq0")] == pytest.approx(400.0)
    raw = s.run([b.output_name], {b.input_name: np.full((1, b.window), level, np.float32)})[0][0]
    free = [i for i, n in enumerate(b.parameters) if n not in b.held]
    np.testing.assert_allclose(u[free], raw[free], rtol=1e-7)  # the rest is the encoder's


def test_format_1_bundles_held_normalized_values(copy):
    edit_manifest(copy, format=1, held={"mbc.freq0": 1.0})
    b = load_bundle(copy)
    assert b.held.port == {"mbc.freq0": pytest.approx(400.0)}
    assert b.held.normalized == {"mbc.freq0": pytest.approx(1.0)}


def test_front_end_stand_in_loads(tmp_path):
    p = write_level_follower_bundle(tmp_path, ChainSpec.load("nonspeech-v1"), window=4096, front_end=True)
    assert load_bundle(p).parameters[0] == "gate.range0"


@pytest.mark.parametrize(
    "breakage, message",
    [
        (lambda p: (p / "manifest.toml").unlink(), "has no manifest.toml"),
        (lambda p: (p / "manifest.toml").write_text("format = [1"), "not valid TOML"),
        (lambda p: edit_manifest(p, window=None), "missing key(s) window"),
        (lambda p: edit_manifest(p, format=9), "this host reads formats 1, 2"),
        (lambda p: edit_manifest(p, hop=100000), "is longer than the window"),
        (lambda p: edit_manifest(p, window=4096), "input shape"),
        (lambda p: edit_manifest(p, parameters=["a.b"]), "do not match the chain"),
        (lambda p: edit_manifest(p, held={"a.b": 0.5}), "'a.b' is not a predicted parameter"),
        (lambda p: edit_manifest(p, held={"limiter.th": 1.5}), "limiter.th = 1.5 is outside its range"),
        (lambda p: (p / "encoder.onnx").unlink(), "model file encoder.onnx is missing"),
        (lambda p: (p / "encoder.onnx").write_bytes(b"\x08\x01garbage"), "not a valid ONNX model"),
    ],
    ids=[
        "no-manifest",
        "bad-toml",
        "missing-key",
        "format",
        "hop",
        "window",
        "params",
        "held-name",
        "held-value",
        "no-model",
        "corrupt-model",
    ],  # fmt: skip
)
def test_bad_bundles_are_refused_with_a_reason(copy, breakage, message):
    breakage(copy)
    with pytest.raises(BundleError, match=None) as err:
        load_bundle(copy)
    assert message in str(err.value)


def test_chain_with_a_missing_plugin_is_refused(copy):
    m = tomllib.loads((copy / "manifest.toml").read_text())
    m["chain"]["stage"][0]["plugin"] = "http://example.org/no-such-plugin"
    (copy / "manifest.toml").write_text(tomli_w.dumps(m))
    with pytest.raises(Exception, match="no installed LV2 plugin matches"):
        load_bundle(copy)


def test_output_shape_must_match_the_chain(tmp_path):
    # a bundle made for the nonspeech chain (23 outputs) but claiming the mastering chain
    p = write_level_follower_bundle(tmp_path, ChainSpec.load("nonspeech-v1"))
    m = tomllib.loads((p / "manifest.toml").read_text())
    mastering = ChainSpec.load("mastering-v1")
    m["chain"] = mastering.to_dict()
    from rt_host.lv2 import Chain

    m["parameters"] = Chain(mastering).parameter_names
    (p / "manifest.toml").write_text(tomli_w.dumps(m))
    with pytest.raises(BundleError, match="output shape"):
        load_bundle(p)


def test_unknown_task_says_how_to_make_one():
    with pytest.raises(BundleError, match="training/export.py"):
        load_bundle("no-such-task")
