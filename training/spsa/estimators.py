"""Gradient estimates for a black-box effect ``y = f(x, u)``, from renders alone.

A loss ``L`` downstream hands back ``dy = ∂L/∂y``; the layer owes ``∂L/∂u`` (and
optionally ``∂L/∂x``). Linearizing ``L`` around ``y``, the change of the loss
between two renders is ``⟨dy, y₊ − y₋⟩`` — one number per pair of renders.

**SPSA** (simultaneous perturbation; Spall 1992, as in DeepAFx): draw
``Δ ∈ {−1, +1}ᴾ``, render at ``u₊ = clip(u + εΔ)`` and ``u₋ = clip(u − εΔ)``, and
estimate every coordinate from that one number::

    ĝⱼ = ⟨dy, y₊ − y₋⟩ / (u₊ⱼ − u₋ⱼ)

Without clipping the denominator is ``2εΔⱼ``. Clipping to [0, 1] shortens the
step near a bound, but symmetrically in ``Δⱼ`` (``u₊ⱼ − u₋ⱼ = Δⱼ·mⱼ`` with
``mⱼ ≥ ε``), so dividing by the step actually taken keeps the estimate unbiased
to first order. Two renders per estimate whatever ``P``; the price is variance:
the mean of ``K`` estimates has cosine ≈ 1/√(1 + (P−1)/K) with the true gradient.
Coordinates with ``Δⱼ = 0`` (fixed parameters) get exactly 0.

**Central finite differences**: one parameter at a time, ``2P`` renders, no
sampling noise — the reference for checks and the choice for small ``P``.

**Input signal**, as DeepAFx: perturb every input sample by ``±ε`` (Rademacher),
render twice at ``u``, and read the local gain per sample::

    ĝₓ[n] = dy[n + s] · (y₊ − y₋)[n + s] / (2εΔ[n])

``s`` is the chain's latency minus the pre-roll, so a look-ahead limiter's delay
does not zero the estimate. This is the diagonal of the Jacobian (plus zero-mean
noise from the other taps): right for gains, compressors, limiters and
saturation; filters' spreading in time (EQ) is ignored, and so is crosstalk
between channels.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

Render = Callable[[np.ndarray, np.ndarray], np.ndarray]  # (x, u) → y


def perturb(u: np.ndarray, delta: np.ndarray, epsilon: float) -> tuple[np.ndarray, np.ndarray]:
    """``clip(u ± εΔ, 0, 1)`` in float64."""
    u = np.asarray(u, dtype=np.float64)
    step = epsilon * np.asarray(delta, dtype=np.float64)
    return np.clip(u + step, 0.0, 1.0), np.clip(u - step, 0.0, 1.0)


def loss_change(dy: np.ndarray, y_plus: np.ndarray, y_minus: np.ndarray) -> float:
    """``⟨dy, y₊ − y₋⟩`` in float64: the linearized loss change between two renders."""
    diff = y_plus.astype(np.float64) - y_minus.astype(np.float64)
    return float(np.dot(dy.astype(np.float64).ravel(), diff.ravel()))


def spsa_gradient(
    render: Render, x: np.ndarray, u: np.ndarray, dy: np.ndarray, delta: np.ndarray, epsilon: float
) -> np.ndarray:
    """One two-sided SPSA estimate of ``∂L/∂u`` (float64, 0 where ``delta`` is 0)."""
    u_plus, u_minus = perturb(u, delta, epsilon)
    change = loss_change(dy, render(x, u_plus), render(x, u_minus))
    step = u_plus - u_minus
    g = np.zeros(step.shape, dtype=np.float64)
    moved = step != 0
    g[moved] = change / step[moved]
    return g


def fd_gradient(
    render: Render, x: np.ndarray, u: np.ndarray, dy: np.ndarray, epsilon: float, j: int
) -> float:
    """The central finite difference of ``L`` along parameter ``j``."""
    unit = np.zeros(np.shape(u), dtype=np.float64)
    unit[j] = 1.0
    u_plus, u_minus = perturb(u, unit, epsilon)
    return loss_change(dy, render(x, u_plus), render(x, u_minus)) / (u_plus[j] - u_minus[j])


def input_gradient(
    render: Render,
    x: np.ndarray,
    u: np.ndarray,
    dy: np.ndarray,
    epsilon: float,
    seed: int,
    shift: int = 0,
) -> np.ndarray:
    """One diagonal SPSA estimate of ``∂L/∂x`` (float32, the shape of ``x``).

    ``shift``: output sample ``m`` mostly depends on input sample ``m − shift``
    (the chain's latency minus the pre-roll); input samples with no output
    inside the window get 0.
    """
    rng = np.random.default_rng(seed)
    signs = (rng.integers(0, 2, size=x.shape, dtype=np.int8) * 2 - 1).astype(np.float32)
    y_plus = render(x + np.float32(epsilon) * signs, u)
    y_minus = render(x - np.float32(epsilon) * signs, u)
    local = dy.astype(np.float64) * (y_plus.astype(np.float64) - y_minus.astype(np.float64))
    n_in, n_out = x.shape[-1], local.shape[-1]
    gx = np.zeros(x.shape, dtype=np.float64)
    # input n ↔ output m = n + shift, where both exist
    lo, hi = max(0, -shift), min(n_in, n_out - shift)
    if hi > lo:
        gx[:, lo:hi] = local[:, lo + shift : hi + shift] / (2.0 * epsilon * signs[:, lo:hi])
    return gx.astype(np.float32)


def expected_spsa_cosine(n_params: int, draws: int) -> float:
    """Cosine between the mean of ``draws`` SPSA estimates and the gradient, for a linear
    effect and Rademacher Δ (the noise energy is ``(P − 1)/K`` times the gradient's)."""
    return 1.0 / float(np.sqrt(1.0 + (n_params - 1) / draws))
