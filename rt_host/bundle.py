"""Model bundles: the only contract between training and the host.

A bundle is a folder (``exported_models/<task>/``) holding::

    manifest.toml   # what the host needs to know, below
    encoder.onnx    # raw audio window in → normalized parameters out
    MODEL_CARD.md   # for people (optional here)

``manifest.toml``::

    format = 2
    task = "mastering"
    model = "encoder.onnx"
    sample_rate = 22050      # the rate the encoder hears
    window = 40960           # samples per prediction, at sample_rate
    hop = 11025              # samples between predictions, at sample_rate
    input_channels = 1       # the encoder hears the mean of the chain's channels
    parameters = [...]       # predicted parameter names, in output order
    [chain]                  # the whole chain file: stages, fixed values, ranges
    [held]                   # optional: parameter = value (port units) the model was trained
                             # with and is always played at, whatever the encoder says
                             # (format 1 bundles gave it normalized; still read)
    [metrics]                # optional: test metrics
    [versions]               # optional: library versions that made it

:func:`load_bundle` checks everything before a host starts (onnxruntime and
onnx only — never TensorFlow) and refuses a bad bundle with one clear reason.
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from rt_host.errors import ChainError, DeepAFxError
from rt_host.lv2.spec import ChainSpec
from rt_host.steer.geometry import Geometry
from rt_host.steer.held import HeldParameters

FORMAT = 2  # 2: [held] in port units (1: normalized)
READABLE_FORMATS = (1, 2)
REQUIRED = ("format", "task", "model", "sample_rate", "window", "hop", "parameters", "chain")


class BundleError(DeepAFxError):
    """A model bundle is missing, malformed or inconsistent with its chain."""


def project_root() -> Path:
    return Path(__file__).resolve().parents[1]


def bundle_dir(task: str) -> Path:
    return project_root() / "exported_models" / task


@dataclass
class Bundle:
    path: Path
    task: str
    model_path: Path
    sample_rate: int
    window: int
    hop: int
    input_channels: int
    parameters: list[str]
    chain_spec: ChainSpec
    input_name: str = ""
    output_name: str = ""
    metrics: dict = field(default_factory=dict)
    held: HeldParameters | None = None

    def session(self, threads: int = 1):
        """A new onnxruntime session for the encoder (CPU, ``threads`` intra-op threads)."""
        import onnxruntime as ort

        opts = ort.SessionOptions()
        opts.intra_op_num_threads = threads
        opts.inter_op_num_threads = 1
        opts.log_severity_level = 3
        return ort.InferenceSession(str(self.model_path), opts, providers=["CPUExecutionProvider"])

    def predictor(self, session=None):
        """A :data:`rt_host.steer.Predictor`: encoder views ``(batch, window)`` → raw outputs ``(batch, n)``.

        Raw: the ``[held]`` parameters are not yet at their values; the steering
        paths (:mod:`rt_host.steer`) put them there.
        """
        session = session or self.session()

        def predict(views: np.ndarray) -> np.ndarray:
            x = np.ascontiguousarray(views, dtype=np.float32)
            return np.asarray(session.run([self.output_name], {self.input_name: x})[0], dtype=np.float32)

        return predict

    def predict(self, session, window: np.ndarray) -> np.ndarray:
        """Normalized parameters for one mono window ``(window,)`` at the model rate, held values applied."""
        u = self.predictor(session)(window[np.newaxis, :])[0].astype(np.float64)
        return self.held.apply(u) if self.held else u

    def geometry(self, rate: int, delay_s: float | None = None) -> Geometry:
        """The bundle's window and hop at the chain's ``rate`` (:class:`rt_host.steer.Geometry`)."""
        return Geometry.at(rate, self.sample_rate, self.window, self.hop, delay_s)


def load_bundle(path_or_task: str | Path, world=None) -> Bundle:
    """Load and validate a bundle by folder or task name; raises :class:`BundleError`."""
    path = Path(path_or_task)
    if not path.is_dir():
        candidate = bundle_dir(str(path_or_task))
        if candidate.is_dir():
            path = candidate
        else:
            raise BundleError(
                f"no model bundle at {path} or {candidate}; train and export one "
                "(python training/export.py --task TASK) or pass --bundle DIR"
            )
    manifest_path = path / "manifest.toml"
    if not manifest_path.is_file():
        raise BundleError(f"bundle {path} has no manifest.toml")
    try:
        m = tomllib.loads(manifest_path.read_text(encoding="utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise BundleError(f"{manifest_path}: not valid TOML: {exc}") from None
    missing = [k for k in REQUIRED if k not in m]
    if missing:
        raise BundleError(f"{manifest_path}: missing key(s) {', '.join(missing)}")
    if m["format"] not in READABLE_FORMATS:
        raise BundleError(
            f"{manifest_path}: format {m['format']!r}; this host reads formats "
            f"{', '.join(map(str, READABLE_FORMATS))}"
        )
    for key in ("sample_rate", "window", "hop"):
        if not isinstance(m[key], int) or m[key] <= 0:
            raise BundleError(f"{manifest_path}: {key} must be a positive whole number")
    if m["hop"] > m["window"]:
        raise BundleError(f"{manifest_path}: hop ({m['hop']}) is longer than the window ({m['window']})")
    spec = ChainSpec.from_dict(m["chain"], where=f"{manifest_path} [chain]")
    from rt_host.lv2.chain import Chain

    chain = Chain(spec, world)  # plugins exist, ports and ranges are valid
    if list(m["parameters"]) != chain.parameter_names:
        raise BundleError(
            f"{manifest_path}: 'parameters' do not match the chain's predicted ports "
            f"({len(m['parameters'])} listed, {chain.n_params} in the chain)"
        )
    held_raw = m.get("held", {})
    if not isinstance(held_raw, dict):
        raise BundleError(f"{manifest_path}: [held] must be a table of predicted parameters")
    try:
        if m["format"] == 1:
            held = HeldParameters.from_normalized(chain.parameters, held_raw, f"{manifest_path} [held]")
        else:
            held = HeldParameters(chain.parameters, held_raw, f"{manifest_path} [held]")
    except ChainError as exc:
        raise BundleError(str(exc)) from None
    model_path = path / str(m["model"])
    bundle = Bundle(
        path=path,
        task=str(m["task"]),
        model_path=model_path,
        sample_rate=m["sample_rate"],
        window=m["window"],
        hop=m["hop"],
        input_channels=int(m.get("input_channels", 1)),
        parameters=list(m["parameters"]),
        chain_spec=spec,
        metrics=dict(m.get("metrics", {})),
        held=held,
    )
    _check_model(bundle, chain.n_params)
    return bundle


def _check_model(bundle: Bundle, n_params: int) -> None:
    import onnx

    path = bundle.model_path
    if not path.is_file():
        raise BundleError(f"bundle {bundle.path}: model file {path.name} is missing")
    try:
        onnx.checker.check_model(str(path))
    except Exception as exc:  # onnx raises several types for a broken file
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise BundleError(f"{path}: not a valid ONNX model ({first})") from None
    try:
        session = bundle.session()
    except Exception as exc:
        first = str(exc).strip().splitlines()[0]
        raise BundleError(f"{path}: onnxruntime cannot load it ({first})") from None
    inputs, outputs = session.get_inputs(), session.get_outputs()
    if len(inputs) != 1 or len(outputs) != 1:
        raise BundleError(
            f"{path}: the encoder must have one input and one output (has {len(inputs)} and {len(outputs)})"
        )
    in_shape, out_shape = inputs[0].shape, outputs[0].shape
    if len(in_shape) != 2 or in_shape[1] not in (bundle.window, None) and not isinstance(in_shape[1], str):
        raise BundleError(f"{path}: input shape {in_shape}; the manifest expects [batch, {bundle.window}]")
    if len(out_shape) != 2 or out_shape[1] != n_params:
        raise BundleError(f"{path}: output shape {out_shape}; the chain predicts [batch, {n_params}]")
    bundle.input_name, bundle.output_name = inputs[0].name, outputs[0].name
    probe = bundle.predict(session, np.zeros(bundle.window, dtype=np.float32))
    if probe.shape != (n_params,) or not np.all(np.isfinite(probe)):
        raise BundleError(f"{path}: the encoder gives non-finite or misshapen output on silence")


def write_level_follower_bundle(
    path: str | Path,
    chain_spec: ChainSpec,
    *,
    task: str = "probe",
    sample_rate: int = 22050,
    window: int = 8192,
    hop: int = 2048,
    seed: int = 0,
    front_end: bool = False,
) -> Path:
    """Write a tiny stand-in bundle whose encoder maps the window's level to parameters.

    Each parameter is ``sigmoid(a_j · log(mean square + 1e-6) + b_j)`` with seeded
    ``a_j, b_j``: parameters move when the input's level changes, so tests and
    benchmarks can run the whole live path without a trained model (or TensorFlow).
    ``front_end=True`` measures the level after a 1024 → 512 framed projection
    (~40 MFLOP for a 40,960-sample window), so inference costs about what a real
    encoder's spectral front end does (``window`` must be a multiple of 1024).
    """
    import onnx
    import tomli_w
    from onnx import TensorProto, helper

    from rt_host.lv2.chain import Chain

    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    names = Chain(chain_spec).parameter_names
    n = len(names)
    rng = np.random.default_rng(seed)
    a = rng.uniform(-0.4, 0.4, size=(1, n)).astype(np.float32)
    b = (rng.uniform(-1.0, 1.0, size=(1, n)) + 2.0 * a[0] * 3.0).astype(np.float32)
    initializers = []
    if front_end:
        if window % 1024:
            raise ValueError("front_end=True needs a window that is a multiple of 1024")
        proj = rng.standard_normal((1024, 512)).astype(np.float32) / 32.0
        initializers += [
            helper.make_tensor("frame_shape", TensorProto.INT64, [3], [0, window // 1024, 1024]),
            helper.make_tensor("proj", TensorProto.FLOAT, [1024, 512], proj.ravel().tolist()),
        ]
        nodes = [
            helper.make_node("Reshape", ["audio", "frame_shape"], ["frames"]),
            helper.make_node("MatMul", ["frames", "proj"], ["spec"]),
            helper.make_node("Mul", ["spec", "spec"], ["sq"]),
            helper.make_node("ReduceMean", ["sq"], ["ms"], axes=[1, 2], keepdims=0),
            helper.make_node("Unsqueeze", ["ms", "axis1"], ["ms2"]),
        ]
        initializers.append(helper.make_tensor("axis1", TensorProto.INT64, [1], [1]))
        level_in = "ms2"
    else:
        nodes = [
            helper.make_node("Mul", ["audio", "audio"], ["sq"]),
            helper.make_node("ReduceMean", ["sq"], ["ms"], axes=[1], keepdims=1),
        ]
        level_in = "ms"
    nodes += [
        helper.make_node("Add", [level_in, "eps"], ["ms_eps"]),
        helper.make_node("Log", ["ms_eps"], ["level"]),
        helper.make_node("Mul", ["level", "a"], ["scaled"]),
        helper.make_node("Add", ["scaled", "b"], ["logits"]),
        helper.make_node("Sigmoid", ["logits"], ["params"]),
    ]
    graph = helper.make_graph(
        nodes,
        "level_follower",
        [helper.make_tensor_value_info("audio", TensorProto.FLOAT, ["batch", window])],
        [helper.make_tensor_value_info("params", TensorProto.FLOAT, ["batch", n])],
        initializer=initializers
        + [
            helper.make_tensor("eps", TensorProto.FLOAT, [1], [1e-6]),
            helper.make_tensor("a", TensorProto.FLOAT, [1, n], a.ravel().tolist()),
            helper.make_tensor("b", TensorProto.FLOAT, [1, n], b.ravel().tolist()),
        ],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    onnx.save(model, str(path / "encoder.onnx"))
    manifest = {
        "format": FORMAT,
        "task": task,
        "model": "encoder.onnx",
        "sample_rate": sample_rate,
        "window": window,
        "hop": hop,
        "input_channels": 1,
        "parameters": names,
        "chain": chain_spec.to_dict(),
        "metrics": {"note": "level-follower stand-in, not a trained model"},
    }
    (path / "manifest.toml").write_text(tomli_w.dumps(manifest), encoding="utf-8")
    return path
