"""Acquisition cues: how much of an image's class its acquisition tells, with no look at the lungs.

Each image gets measures of how it was taken and stored, not of what it shows: the shape its resize
to a square left (``eda.step_anisotropy``), its fine detail (``eda.sharpness``), its uniform border
lines (``preprocess.uniform_border``) and the grey levels of its outer ring. A gradient-boosted
classifier on those measures alone gives each image a *cue score*: the probability of PNEUMONIA that
its acquisition suggests. On this training split the score separates the classes with ROC AUC 0.95
(the experiment log, "Acquisition cues"): the two classes' images were made differently enough for a
network to learn that instead of the lungs.

Two uses, both on the split carved from train (the test split is never read here):

- ``counter_cue_rows``: the validation images whose acquisition points to the other class (the NORMAL
  third with the highest scores, the PNEUMONIA third with the lowest). A network that leans on
  acquisition fails there first; ``experiment.score`` reports it and the sixth rule judges it.
- ``counter_cue_weights``: training weights that keep each class's total (the class weights) and move
  weight, within a class (or within NORMAL only), to the images whose acquisition looks like the other class.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

# The outer ring, as a share of each side, and the grey level at or below which a ring pixel counts as
# black (``preprocess.MASK_LEVEL``, the level masked equalisation leaves out).
RING = 0.08
DARK_LEVEL = 8
MEASURES = ("anisotropy", "sharpness", "border_top", "border_bottom", "border_left", "border_right",
            "ring_mean", "ring_std", "ring_dark")
# Counter-cue weights stop at this many times an image's class weight, whatever its cue score: where the
# classes' acquisitions hardly overlap, an uncapped inverse probability would let a few images decide.
WEIGHT_CAP = 5.0


def measures(images: np.ndarray) -> pd.DataFrame:
    """One row of ``MEASURES`` per uint8 image (grey, or RGB as its grey mean), as decoded: no intensity
    normalisation, so that exposure and frames count as the file carries them."""
    from pneumonia import eda, preprocess

    grey = images.mean(axis=-1, dtype=np.float32) if images.ndim == 4 else images.astype(np.float32)
    side = grey.shape[1]
    width = max(1, int(RING * side))
    ring = np.ones(grey.shape[1:], dtype=bool)
    ring[width:-width, width:-width] = False
    outer = grey[:, ring]
    borders = preprocess.uniform_border(images if images.ndim == 4 else images[..., None])
    return pd.DataFrame({
        "anisotropy": eda.step_anisotropy(images),
        "sharpness": eda.sharpness(images),
        **{f"border_{name}": borders[:, index] for index, name in enumerate(("top", "bottom", "left", "right"))},
        "ring_mean": outer.mean(axis=1),
        "ring_std": outer.std(axis=1),
        "ring_dark": (outer <= DARK_LEVEL).mean(axis=1),
    }, columns=list(MEASURES))


def cue_model(seed: int = 0):
    """The classifier of acquisition measures (unfitted); fixed settings, not tuned on anything."""
    from sklearn.ensemble import HistGradientBoostingClassifier

    return HistGradientBoostingClassifier(max_iter=200, learning_rate=0.05, random_state=seed)


def fit(images: np.ndarray, labels: np.ndarray, seed: int = 0):
    """The cue model fitted on ``images`` (training images, as decoded) and their labels."""
    return cue_model(seed).fit(measures(images), labels)


def scores(model, images: np.ndarray) -> np.ndarray:
    """Each image's cue score under a fitted ``model``: the probability of PNEUMONIA its acquisition suggests."""
    return model.predict_proba(measures(images))[:, 1]


def out_of_fold_scores(images: np.ndarray, labels: np.ndarray, folds: int = 5, seed: int = 0) -> np.ndarray:
    """Cue scores for the training images themselves, each from a model fitted on the other folds, so that no
    image's score has seen its own label. Folds are drawn per image: a patient's other images can sit in another
    fold, which matters little for nine measures of acquisition (grouped folds gave ROC AUC 0.955, these 0.954)."""
    from sklearn.model_selection import StratifiedKFold, cross_val_predict

    return cross_val_predict(cue_model(seed), measures(images), labels, method="predict_proba",
                             cv=StratifiedKFold(folds, shuffle=True, random_state=seed))[:, 1]


def counter_cue_rows(cue: np.ndarray, labels: np.ndarray, share: float = 1 / 3) -> np.ndarray:
    """Indices, in order, of the images whose acquisition points to the other class: the ``share`` of NORMAL
    images with the highest cue scores and the ``share`` of PNEUMONIA images with the lowest."""
    chosen = []
    for label, highest in ((0, True), (1, False)):
        rows = np.flatnonzero(labels == label)
        count = max(1, round(share * len(rows))) if len(rows) else 0
        ordered = rows[np.argsort(-cue[rows] if highest else cue[rows], kind="stable")]
        chosen.append(ordered[:count])
    return np.sort(np.concatenate(chosen))


def counter_cue_weights(cue: np.ndarray, labels: np.ndarray, class_weight: dict, cap: float = WEIGHT_CAP,
                        classes=(0, 1)) -> np.ndarray:
    """Per-image training weights: each image's class weight times the inverse of the probability its
    acquisition gives its own class, capped at ``cap``, rescaled within each class so that the class keeps
    the total its class weights give it. Weight moves, within a class, to the images that look like the
    other class's acquisitions; the balance between the classes does not move. Images of a class not in
    ``classes`` keep their plain class weight."""
    own = np.where(labels == 1, cue, 1.0 - cue)
    surprise = np.minimum(cap, 1.0 / np.maximum(own, 1.0 / cap))
    weights = np.empty(len(labels), dtype=np.float32)
    for label in np.unique(labels):
        rows = labels == label
        moved = surprise[rows] / surprise[rows].mean() if int(label) in classes else 1.0
        weights[rows] = class_weight[int(label)] * moved
    return weights
