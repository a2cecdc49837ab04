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


def roc_and_pr(curves: dict[str, tuple]):
    """ROC and precision-recall curves; ``curves`` maps a name to (y_true, y_prob, threshold).
    The validation-chosen operating point is marked on each curve."""
    from sklearn.metrics import auc, average_precision_score, precision_recall_curve, roc_curve

    figure, (left, right) = plt.subplots(1, 2, figsize=(11, 4.4))
    for name, (truth, probability, threshold) in curves.items():
        fpr, tpr, _ = roc_curve(truth, probability)
        line, = left.plot(fpr, tpr, label=f"{name} (AUC {auc(fpr, tpr):.3f})")
        predicted = probability >= threshold
        sensitivity = predicted[truth == 1].mean()
        specificity = 1 - predicted[truth == 0].mean()
        left.plot(1 - specificity, sensitivity, "o", color=line.get_color())
        precision, recall, _ = precision_recall_curve(truth, probability)
        right.plot(recall, precision, color=line.get_color(),
                   label=f"{name} (AP {average_precision_score(truth, probability):.3f})")
        right.plot(sensitivity, truth[predicted].mean() if predicted.any() else 1.0, "o", color=line.get_color())
    left.plot([0, 1], [0, 1], ":", color="grey")
    left.set(title="ROC (dot: validation threshold)", xlabel="1 - specificity", ylabel="sensitivity")
    right.set(title="Precision-recall (dot: validation threshold)", xlabel="recall (sensitivity)", ylabel="precision")
    left.legend(fontsize=8, loc="lower right")
    right.legend(fontsize=8, loc="lower left")
    figure.tight_layout()
    return figure


def calibration(curves: dict[str, tuple], bins: int = 10):
    """Reliability diagram with the Brier score of each model; ``curves`` maps a name to (y_true, y_prob)."""
    from sklearn.calibration import calibration_curve
    from sklearn.metrics import brier_score_loss

    figure, axis = plt.subplots(figsize=(5.2, 4.6))
    for name, (truth, probability) in curves.items():
        observed, predicted = calibration_curve(truth, probability, n_bins=bins, strategy="uniform")
        axis.plot(predicted, observed, "o-", label=f"{name} (Brier {brier_score_loss(truth, probability):.3f})")
    axis.plot([0, 1], [0, 1], ":", color="grey", label="perfectly calibrated")
    axis.set(title="Calibration on the test split", xlabel="predicted probability of pneumonia",
             ylabel="observed share with pneumonia")
    axis.legend(fontsize=8)
    figure.tight_layout()
    return figure


def one_factor(table: pd.DataFrame, metrics=("specificity", "sensitivity", "roc_auc")):
    """Heatmaps of ``evaluate.one_factor_table``: each change (rows) against each model (columns), the
    mean over seeds, one panel per metric. Colours span 0-1 for rates and 0.9-1 for ROC AUC: these
    models' AUCs all lie above 0.93, and on a 0.5-1 scale a change that breaks the ranking looked green."""
    import seaborn as sns

    means = table.groupby(["shift", "model"], sort=False)[list(metrics)].mean()
    figure, axes = plt.subplots(1, len(metrics), figsize=(3.2 * len(metrics) + 2.6, 0.32 * means.index.levels[0].size + 1.6),
                                sharey=True)
    for axis, metric in zip(np.atleast_1d(axes), metrics):
        grid = means[metric].unstack("model").loc[table["shift"].unique()]
        low = 0.9 if metric == "roc_auc" else 0.0
        sns.heatmap(grid, ax=axis, annot=True, fmt=".2f" if metric != "roc_auc" else ".3f", cmap="RdYlGn", vmin=low,
                    vmax=1.0, cbar=False, annot_kws={"fontsize": 7})
        axis.set(title=metric.replace("roc_auc", "ROC AUC"), xlabel="", ylabel="")
    figure.suptitle("Validation under one change at a time (mean over seeds, each seed at its own threshold)")
    figure.tight_layout()
    return figure


def gradcam_gallery(rows: list[tuple[str, list]], columns: int = 4, size: float = 2.2):
    """One row per model: (title, [(overlay RGB uint8, caption), ...])."""
    figure, axes = plt.subplots(len(rows), columns, figsize=(size * columns, size * len(rows) + 0.4), squeeze=False)
    for row, (title, items) in enumerate(rows):
        for column in range(columns):
            axis = axes[row, column]
            axis.axis("off")
            if column < len(items):
                picture, caption = items[column]
                axis.imshow(picture)
                axis.set_title(f"{title}\n{caption}" if column == 0 else caption, fontsize=7)
    figure.suptitle("Grad-CAM: where each model looked (right and wrong cases)")
    figure.tight_layout()
    return figure
