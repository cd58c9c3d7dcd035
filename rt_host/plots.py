"""PNG figures shared by the live host and the offline renderer (matplotlib, no display needed)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from rt_host.lv2.chain import Chain


def plot_automation(chain: Chain, times: np.ndarray, norm: np.ndarray, path: Path) -> None:
    """One panel per stage: its predicted parameters (normalized) over time."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    stages = [s.name for s in chain.stages if any(p.stage == s.name for p in chain.parameters)]
    fig, axes = plt.subplots(len(stages), 1, figsize=(10, 2.6 * len(stages)), sharex=True, squeeze=False)
    for ax, stage in zip(axes[:, 0], stages):
        cols = [j for j, p in enumerate(chain.parameters) if p.stage == stage]
        for j in cols:
            # rows are the moments ports were written: a value holds until the next row
            ax.step(times, norm[:, j], where="post", lw=1, label=chain.parameters[j].symbol)
        ax.set(ylabel=f"{stage}\n(normalized)", ylim=(-0.02, 1.02))
        ax.grid(alpha=0.3)
        if len(cols) <= 12:
            ax.legend(fontsize=7, ncol=6, loc="upper right")
    axes[-1, 0].set_xlabel("time (s)")
    fig.suptitle(f"{chain.name}: parameter automation")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def write_automation_csv(chain: Chain, times: np.ndarray, norm: np.ndarray, path: Path) -> None:
    """``time`` in seconds plus one column per predicted port in its own units — the format
    ``deepafx-rt render --params FILE.csv`` reads back."""
    values = chain.denormalize(norm)
    header = "time," + ",".join(chain.parameter_names)
    np.savetxt(path, np.column_stack([times, values]), delimiter=",", header=header, comments="", fmt="%.9g")
