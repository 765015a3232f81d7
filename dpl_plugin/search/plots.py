"""Heatmaps of how ``softmax(alpha)`` evolved: one panel per layer, candidates x epochs."""

from __future__ import annotations

import math
import os
from typing import Dict

from ..runtime.atomic import atomic_write
from .history import AlphaHistory


def plot_history(history: AlphaHistory, directory: str, prefix: str = "alpha_") -> Dict[str, str]:
    """Write ``{prefix}{table}.png`` per table (text, vision or coupled); return the paths."""
    import matplotlib

    matplotlib.use("Agg")  # files only: no display needed
    import matplotlib.pyplot as plt
    import numpy as np

    paths = {}
    for key, epochs in history.tables.items():
        probs = np.asarray(epochs)  # (E, L, K)
        n_epochs, n_layers, n_cand = probs.shape
        cols = min(4, n_layers)
        rows = math.ceil(n_layers / cols)
        fig, axes = plt.subplots(rows, cols, figsize=(3.2 * cols + 1.2, 2.3 * rows + 0.8), squeeze=False,
                                 sharex=True, sharey=True, layout="constrained")
        vmax = float(probs.max())  # the data's range: with |C| candidates most values are near 1/|C|
        image = None
        for layer in range(rows * cols):
            ax = axes[layer // cols][layer % cols]
            if layer >= n_layers:
                ax.axis("off")
                continue
            image = ax.imshow(probs[:, layer, :].T, aspect="auto", origin="lower", vmin=0, vmax=vmax,
                              cmap="viridis", extent=(0.5, n_epochs + 0.5, -0.5, n_cand - 0.5),
                              interpolation="nearest")
            chosen = history.candidates[int(probs[-1, layer].argmax())]
            ax.set_title(f"layer {layer}: {chosen} tokens", fontsize=9)
            ax.set_yticks(range(n_cand), [str(c) for c in history.candidates], fontsize=7)
            if layer % cols == 0:
                ax.set_ylabel("length", fontsize=8)
            if layer // cols == rows - 1:
                ax.set_xlabel("epoch", fontsize=8)
        fig.suptitle(f"DPL search: softmax(alpha), {key} branch" + (" (text + vision)" if key == "coupled" else ""))
        fig.colorbar(image, ax=axes, shrink=0.8, label="probability")
        path = os.path.join(directory, f"{prefix}{key}.png")
        with atomic_write(path, "wb") as f:
            fig.savefig(f, format="png", dpi=110)
        plt.close(fig)
        paths[key] = path
    return paths
