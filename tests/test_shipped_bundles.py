"""The bundles shipped in ``exported_models/``: they load, match TensorFlow, fit, and drive their chain.

Each bundle carries TensorFlow's outputs on the exporter's probe signals
(``parity.npz``), so the ONNX file that ships is checked against the model it
came from with onnxruntime alone — the way the host runs it, batch and one
window at a time.
"""

from __future__ import annotations

import tomllib
from pathlib import Path

import numpy as np
import pytest

from rt_host.bundle import load_bundle
from rt_host.lv2 import Chain
from rt_host.signals import pink_noise
from rt_host.steer import render_steered
from training.export import PARITY_TOLERANCE, bundle_size, probe_signals

ROOT = Path(__file__).resolve().parents[1]
SHIPPED = sorted(p.parent.name for p in (ROOT / "exported_models").glob("*/manifest.toml"))
MAX_BYTES = 10_000_000


def test_the_mastering_model_is_shipped():
    assert "mastering" in SHIPPED


@pytest.mark.parametrize("task", SHIPPED)
def test_the_bundle_loads_and_is_small(task):
    bundle = load_bundle(ROOT / "exported_models" / task)
    assert bundle.task == task
    assert bundle_size(bundle.path) < MAX_BYTES
    assert (bundle.path / "MODEL_CARD.md").stat().st_size > 500


@pytest.mark.parametrize("task", SHIPPED)
def test_onnxruntime_matches_tensorflow_on_the_probe_signals(task):
    bundle = load_bundle(ROOT / "exported_models" / task)
    manifest = tomllib.loads((bundle.path / "manifest.toml").read_text())
    saved = np.load(bundle.path / manifest["parity"]["file"])
    signals = probe_signals(bundle.window, bundle.sample_rate, int(saved["seed"]))
    session = bundle.session()
    batch = session.run([bundle.output_name], {bundle.input_name: signals})[0]
    assert np.max(np.abs(batch - saved["tensorflow"])) <= PARITY_TOLERANCE
    # what the host plays: the same, with the [held] parameters at their values on both sides
    single = np.stack([bundle.predict(session, s) for s in signals])
    expected = saved["tensorflow"].astype(np.float64)
    if bundle.held:
        bundle.held.apply(expected)
    assert np.max(np.abs(single - expected)) <= PARITY_TOLERANCE


@pytest.mark.parametrize("task", SHIPPED)
def test_the_model_drives_its_chain_on_generated_signals(task):
    """A smoke test of the whole offline path: quiet and loud noise give finite audio and different
    automation (a model that ignores its input would give the same)."""
    bundle = load_bundle(ROOT / "exported_models" / task)
    chain = Chain(bundle.chain_spec)
    rate = int(chain.sample_rate or 44100)
    finals = []
    for level in (-40.0, -10.0):
        x = pink_noise(3.0, rate, level, channels=chain.channels, seed=1)
        y, auto = render_steered(chain, x, rate, bundle.predictor(), bundle.geometry(rate), held=bundle.held)
        assert np.all((auto.applied >= 0) & (auto.applied <= 1))
        assert y.shape == x.shape and np.all(np.isfinite(y)) and np.max(np.abs(y)) > 0
        finals.append(auto.applied[-1])
    assert np.max(np.abs(finals[0] - finals[1])) > 1e-3
