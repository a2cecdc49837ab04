"""Tables and figures for the exploratory analysis (notebook 02).

Image sizes and colour modes come from the manifest that ingest wrote, so nothing here decodes an
image except the sample grid.
"""

from __future__ import annotations

from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns
from PIL import Image
from sklearn.metrics import accuracy_score, recall_score, roc_auc_score

from pneumonia import config

SPLIT_ORDER = ["train", "val", "test", "kaggle_val"]


def class_counts(splits: pd.DataFrame) -> pd.DataFrame:
    """Images per split (rows) and class (columns), with totals and the PNEUMONIA:NORMAL ratio."""
    table = pd.crosstab(splits["split"], splits["label"]).reindex(columns=list(config.CLASS_NAMES), fill_value=0)
    table = table.reindex([s for s in SPLIT_ORDER if s in table.index])
    table["total"] = table.sum(axis=1)
    table["pneumonia_share"] = (table["PNEUMONIA"] / table["total"]).round(3)
    table["imbalance_ratio"] = (table["PNEUMONIA"] / table["NORMAL"].replace(0, np.nan)).round(2)
    return table


def majority_baseline(splits: pd.DataFrame, split: str = "test") -> dict:
    """What answering PNEUMONIA for every image scores on ``split``: the floor any model must beat."""
    truth = (splits.loc[splits["split"] == split, "label"] == "PNEUMONIA").astype(int).to_numpy()
    always = np.ones_like(truth)
    return {
        "split": split,
        "accuracy": float(accuracy_score(truth, always)),
        "sensitivity": float(recall_score(truth, always, pos_label=1, zero_division=0)),
        "specificity": float(recall_score(truth, always, pos_label=0, zero_division=0)),
        "roc_auc": float(roc_auc_score(truth, np.full(len(truth), 0.5))) if len(set(truth)) > 1 else None,
    }


def image_properties(manifest: dict) -> pd.DataFrame:
    """One row per image: split, label, width, height, aspect ratio, colour mode, file size."""
    frame = pd.DataFrame(manifest["files"])[["path", "split", "label", "width", "height", "mode", "bytes"]]
    frame["aspect_ratio"] = (frame["width"] / frame["height"]).round(3)
    return frame


def images_per_patient(splits: pd.DataFrame) -> pd.DataFrame:
    """Images per patient, one row per (split, label, patient)."""
    return splits.groupby(["split", "label", "patient"]).size().rename("images").reset_index()


def plot_class_counts(splits: pd.DataFrame):
    figure, axis = plt.subplots(figsize=(7, 3.8))
    order = [s for s in SPLIT_ORDER if s in set(splits["split"])]
    sns.countplot(data=splits, x="split", hue="label", order=order, hue_order=list(config.CLASS_NAMES), ax=axis)
    for container in axis.containers:
        axis.bar_label(container, fontsize=8)
    axis.set(title="Images per split and class", xlabel="split", ylabel="images")
    return figure


def plot_image_properties(properties: pd.DataFrame):
    figure, axes = plt.subplots(1, 3, figsize=(13, 3.8))
    sns.scatterplot(data=properties, x="width", y="height", hue="label", s=8, alpha=0.5, ax=axes[0],
                    hue_order=list(config.CLASS_NAMES))
    axes[0].set_title("Image size (px)")
    sns.histplot(data=properties, x="aspect_ratio", hue="label", bins=40, element="step", ax=axes[1],
                 hue_order=list(config.CLASS_NAMES))
    axes[1].set_title("Aspect ratio (width / height)")
    modes = properties.groupby(["mode", "label"]).size().rename("images").reset_index()
    sns.barplot(data=modes, x="mode", y="images", hue="label", ax=axes[2], hue_order=list(config.CLASS_NAMES))
    axes[2].set_title("Colour mode")
    figure.tight_layout()
    return figure


def plot_images_per_patient(per_patient: pd.DataFrame):
    figure, axis = plt.subplots(figsize=(7, 3.8))
    data = per_patient[per_patient["split"].isin(["train", "val"])]
    sns.histplot(data=data, x="images", hue="label", discrete=True, multiple="dodge", shrink=0.8, ax=axis,
                 hue_order=list(config.CLASS_NAMES))
    axis.set(title="Images per patient (train + validation)", xlabel="images of one patient", ylabel="patients")
    return figure


def plot_sample_grid(splits: pd.DataFrame, per_class: int = 6, split: str = "train", seed: int = 0):
    """A row of random ``split`` images per class."""
    figure, axes = plt.subplots(len(config.CLASS_NAMES), per_class, figsize=(2.2 * per_class, 4.8))
    for row, label in enumerate(config.CLASS_NAMES):
        pool = splits[(splits["split"] == split) & (splits["label"] == label)]
        sample = pool.sample(n=min(per_class, len(pool)), random_state=seed)
        for column, axis in enumerate(axes[row]):
            axis.axis("off")
            if column < len(sample):
                item = sample.iloc[column]
                with Image.open(item["filepath"]) as image:
                    axis.imshow(image.convert("L"), cmap="gray")
                axis.set_title(f"{label}\n{item['patient']}", fontsize=8)
    figure.suptitle(f"Random {split} images per class")
    figure.tight_layout()
    return figure


def grey_steps(images: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Each image's mean absolute difference, in grey levels, between horizontally neighbouring pixels
    (``across``) and between vertically neighbouring ones (``down``); RGB images as their grey mean."""
    across, down = np.empty(len(images), np.float32), np.empty(len(images), np.float32)
    for start in range(0, len(images), 256):  # in chunks: float copies of a whole split would take gigabytes
        pixels = images[start:start + 256].astype(np.float32)
        if pixels.ndim == 4:
            pixels = pixels.mean(-1)
        across[start:start + 256] = np.abs(np.diff(pixels, axis=2)).mean((1, 2))
        down[start:start + 256] = np.abs(np.diff(pixels, axis=1)).mean((1, 2))
    return across, down


def sharpness(images: np.ndarray) -> np.ndarray:
    """How much fine detail each image has: the mean of its two ``grey_steps`` (a grain, an edge
    enhancement or a crisper resize raises it; a blur lowers it)."""
    across, down = grey_steps(images)
    return (across + down) / 2


def step_anisotropy(images: np.ndarray) -> np.ndarray:
    """The log ratio of each image's horizontal to vertical ``grey_steps`` (0 for a flat image).

    Squeezing an image horizontally, or stretching it vertically, raises it: resizing a wide
    original to a square is one such squeeze. Grain, frames and blur move it too, so it is a mark
    of shape among others, not a measure of the original's aspect ratio.
    """
    across, down = grey_steps(images)
    return np.log((across + 1e-3) / (down + 1e-3))


MEASURES = {"sharpness": sharpness, "anisotropy": step_anisotropy}


def sharpness_table(splits: pd.DataFrame, split: str = "train", image_size: int = 160, limit: int | None = None,
                    progress: bool = True) -> pd.DataFrame:
    """One row per ``split`` image, grey at the models' ``image_size``: label, patient, its file-name numbering
    (``person`` for PNEUMONIA, ``IM`` or ``NORMAL2-IM`` for NORMAL) and each of ``MEASURES`` (its sharpness
    and its step anisotropy), as decoded and after the masked histogram equalisation the models see
    (notebook 03)."""
    from pneumonia import preprocess

    images, _, rows = preprocess.load_split(splits, split, image_size, 1, limit=limit, progress=progress)
    frame = rows[["path", "label", "patient"]].copy()
    names = frame["path"].map(lambda path: Path(path).name)
    frame["numbering"] = np.select([names.str.startswith("NORMAL2-"), frame["label"] == config.CLASS_NAMES[0]],
                                   ["NORMAL2-IM", "IM"], "person")
    equalised = preprocess.normalize_intensity(images, "equalize_masked")
    for name, measure in MEASURES.items():
        frame[name] = measure(images)
        frame[f"{name}_equalised"] = measure(equalised)
    return frame


def separability(frame: pd.DataFrame, column: str, higher: bool = False) -> float:
    """ROC AUC of ``column`` alone for PNEUMONIA, lower values meaning PNEUMONIA (``higher``: higher
    values do); 0.5: no information."""
    values = frame[column] if higher else -frame[column]
    return float(roc_auc_score(frame["label"] == config.CLASS_NAMES[1], values))


NUMBERINGS = {"IM": "NORMAL, IM-…", "NORMAL2-IM": "NORMAL, NORMAL2-IM-…", "person": "PNEUMONIA, person…"}
# Which way each measure points to PNEUMONIA (``separability``'s ``higher``), and its axis label.
MEASURE_AXES = {
    "sharpness": (False, "mean |difference| between neighbouring pixels (grey levels)"),
    "anisotropy": (True, "log(horizontal / vertical mean |difference| between neighbouring pixels)"),
}


def plot_measure(frame: pd.DataFrame, measure: str = "sharpness"):
    """Histograms of one of ``MEASURES`` per file-name numbering, as decoded and as the models see it."""
    higher, xlabel = MEASURE_AXES[measure]
    figure, axes = plt.subplots(1, 2, figsize=(12, 3.8))
    named = frame.assign(images=frame["numbering"].map(NUMBERINGS))
    for axis, column, title in ((axes[0], measure, "as decoded"),
                                (axes[1], f"{measure}_equalised", "after masked equalisation (model input)")):
        sns.histplot(data=named, x=column, hue="images", hue_order=list(NUMBERINGS.values()), bins=50,
                     element="step", stat="density", common_norm=False, ax=axis)
        axis.set(title=f"{measure.capitalize()} {title}: AUC alone {separability(frame, column, higher):.2f}",
                 xlabel=xlabel)
    figure.tight_layout()
    return figure


def anisotropy_under_changes(images: np.ndarray, changes=None) -> pd.Series:
    """How far each named change of notebook 04's map (``preprocess.ONE_FACTOR_SHIFTS``) moves the mean
    ``step_anisotropy`` of uint8 ``images`` (equalised, as the models see them), sorted."""
    from pneumonia import preprocess

    base = step_anisotropy(images).mean()
    changes = changes or list(preprocess.ONE_FACTOR_SHIFTS)
    moved = {name: float(step_anisotropy(preprocess.one_factor_shift(images, name)).mean() - base) for name in changes}
    return pd.Series(moved, name="anisotropy change").sort_values(ascending=False)


def sharpness_summary(frame: pd.DataFrame) -> dict:
    """Per numbering, the images and each measure (mean, sd), as decoded and equalised; how well
    each measure alone separates the classes; and how well sharpness tells the two NORMAL numberings
    apart."""
    normal, pneumonia = config.CLASS_NAMES
    columns = [f"{name}{suffix}" for name in MEASURES for suffix in ("", "_equalised")]
    by_numbering = {}
    for numbering, group in frame.groupby("numbering"):
        by_numbering[numbering] = {"images": int(len(group)),
                                   **{f"{column}_{statistic}": round(float(getattr(group[column], statistic)()), 3)
                                      for column in columns for statistic in ("mean", "std")}}
    normals = frame[frame["label"] == normal]
    numberings = normals.assign(label=normals["numbering"].map({"IM": normal, "NORMAL2-IM": pneumonia}))
    both = numberings["label"].nunique() == 2
    return {
        "images": int(len(frame)),
        "by_numbering": by_numbering,
        "roc_auc_alone": round(separability(frame, "sharpness"), 4),
        "roc_auc_alone_equalised": round(separability(frame, "sharpness_equalised"), 4),
        "anisotropy_roc_auc_alone": round(separability(frame, "anisotropy", higher=True), 4),
        "anisotropy_roc_auc_alone_equalised": round(separability(frame, "anisotropy_equalised", higher=True), 4),
        "normal_numberings_roc_auc": round(separability(numberings, "sharpness"), 4) if both else None,
    }
