"""Accuracy-vs-FLOPs plots (PNG)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only; no display needed
import matplotlib.pyplot as plt  # noqa: E402


def accuracy_vs_flops(path: str | Path, exit_flops: Sequence[float],
                      exit_accuracy: Sequence[float], curves: dict[str, list[dict]],
                      title: str) -> None:
    """Each exit on all samples (points) and policy sweeps (lines of {mean_flops, accuracy})."""
    fig, ax = plt.subplots(figsize=(6, 4.2))
    ax.plot([f / 1e6 for f in exit_flops], exit_accuracy, "ko--", label="exit k on all samples")
    for name, points in curves.items():
        points = sorted(points, key=lambda p: p["mean_flops"])
        ax.plot([p["mean_flops"] / 1e6 for p in points], [p["accuracy"] for p in points],
                ".-", label=name)
    ax.set_xlabel("mean MFLOPs per sample")
    ax.set_ylabel("accuracy")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
