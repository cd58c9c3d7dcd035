"""Logging the gradient estimates a layer hands back, step by step (off by default).

SPSA trades renders for noise; when training stalls, the first question is
whether the estimates carry signal. :class:`GradientLog` appends one CSV row
per backward pass — the step, the norm of the batch-mean estimate, the mean
norm of single examples' estimates (their ratio shows how much averaging over
the batch cancels noise), and the batch-mean estimate of every parameter — and
redraws a PNG of the same every ``plot_every`` steps and when closed::

    step,mean_norm,example_norm,mbc.threshold0,...
"""

from __future__ import annotations

import csv
import threading
import weakref
from pathlib import Path

import numpy as np


class GradientLog:
    """Per-step gradient estimates to ``path`` (CSV) and ``path`` with ``.png``.

    >>> log = GradientLog("grads.csv", ["comp.level_in"])
    >>> log.record(g)        # g: (batch, params), one estimate per example
    >>> log.close()          # writes grads.png
    """

    def __init__(self, path: str | Path, parameter_names: list[str], plot_every: int = 50) -> None:
        self.path = Path(path)
        if self.path.suffix.lower() != ".csv":
            self.path = self.path.with_suffix(".csv")
        self.png_path = self.path.with_suffix(".png")
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.names = list(parameter_names)
        self.plot_every = max(1, int(plot_every))
        self.steps = 0
        self._rows: list[np.ndarray] = []
        self._lock = threading.Lock()
        with self.path.open("w", newline="") as f:
            csv.writer(f).writerow(["step", "mean_norm", "example_norm", *self.names])
        self._finalizer = weakref.finalize(self, GradientLog._plot, self.png_path, self.names, self._rows)

    def record(self, g: np.ndarray) -> None:
        """Add one step: ``g`` is ``(batch, params)``, one estimate per example."""
        g = np.asarray(g, dtype=np.float64)
        mean = g.mean(axis=0)
        row = np.concatenate([[np.linalg.norm(mean), np.linalg.norm(g, axis=1).mean()], mean])
        with self._lock:
            step = self.steps
            self.steps += 1
            self._rows.append(row)
            with self.path.open("a", newline="") as f:
                csv.writer(f).writerow([step, *(f"{v:.6g}" for v in row)])
            if self.steps % self.plot_every == 0:
                self._plot(self.png_path, self.names, self._rows)

    @staticmethod
    def _plot(png_path: Path, names: list[str], rows: list[np.ndarray]) -> None:
        if not rows:
            return
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        data = np.array(rows)
        steps = np.arange(len(data))
        fig, (top, bottom) = plt.subplots(2, 1, figsize=(9, 7), sharex=True)
        top.semilogy(steps, np.maximum(data[:, 0], 1e-30), label="batch-mean estimate")
        top.semilogy(steps, np.maximum(data[:, 1], 1e-30), label="single examples (mean)", alpha=0.7)
        top.set_ylabel("gradient norm")
        top.legend()
        top.grid(True, which="both", alpha=0.3)
        per_param = data[:, 2:]
        if len(names) <= 12:
            for j, name in enumerate(names):
                bottom.plot(steps, per_param[:, j], label=name, lw=1)
            bottom.legend(fontsize=7, ncol=2)
            bottom.set_ylabel("batch-mean estimate")
        else:  # too many lines to read: one row per parameter
            lim = np.percentile(np.abs(per_param), 99) or 1.0
            im = bottom.imshow(
                per_param.T, aspect="auto", cmap="coolwarm", vmin=-lim, vmax=lim, interpolation="nearest"
            )
            bottom.set_ylabel("parameter")
            fig.colorbar(im, ax=bottom, label="batch-mean estimate")
        bottom.set_xlabel("step")
        fig.suptitle(f"gradient estimates, {len(data)} steps")
        fig.tight_layout()
        fig.savefig(png_path, dpi=100)
        plt.close(fig)

    def close(self) -> None:
        """Write the final PNG."""
        with self._lock:
            self._finalizer()
