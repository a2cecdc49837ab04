"""Figures shared by the notebooks: image grids and training curves."""

from __future__ import annotations

from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd


def image_grid(images, titles=None, columns: int = 6, title: str | None = None, size: float = 2.0):
    """Images (uint8 or float in [0, 1], one or three channels) in a grid."""
    images = list(images)
    rows = max(1, int(np.ceil(len(images) / columns)))
    figure, axes = plt.subplots(rows, columns, figsize=(size * columns, size * rows + (0.4 if title else 0)),
                                squeeze=False)
    for index, axis in enumerate(axes.ravel()):
        axis.axis("off")
        if index >= len(images):
            continue
        image = np.asarray(images[index])
        if image.dtype != np.uint8:
            image = np.clip(image, 0, 1)
        axis.imshow(image.squeeze(-1) if image.shape[-1] == 1 else image, cmap="gray", vmin=0,
                    vmax=255 if image.dtype == np.uint8 else 1)
        if titles is not None:
            axis.set_title(titles[index], fontsize=8)
    if title:
        figure.suptitle(title)
    figure.tight_layout()
    return figure


def training_curves(logs: dict[str, Path | str], metrics=("loss", "auc", "accuracy")):
    """Training and validation curves from Keras CSVLogger files, one line per run."""
    figure, axes = plt.subplots(1, len(metrics), figsize=(4.6 * len(metrics), 3.6))
    for label, path in logs.items():
        history = pd.read_csv(path)
        for axis, metric in zip(np.atleast_1d(axes), metrics):
            line, = axis.plot(history["epoch"] + 1, history[metric], alpha=0.5, linestyle="--")
            axis.plot(history["epoch"] + 1, history[f"val_{metric}"], color=line.get_color(), label=label)
    for axis, metric in zip(np.atleast_1d(axes), metrics):
        axis.set(title=f"{metric} (dashed: train, solid: validation)", xlabel="epoch")
    np.atleast_1d(axes)[0].legend(fontsize=8)
    figure.tight_layout()
    return figure
