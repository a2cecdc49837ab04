"""Scoring a model: metrics at a threshold, bootstrap confidence intervals, the threshold itself.

The threshold is always chosen on the validation split (``choose_threshold``); the official test
split is scored with it by ``evaluate_models``, which only notebook 06 calls.
"""

from __future__ import annotations

import contextlib
import json
from pathlib import Path

import numpy as np
from sklearn.metrics import (
    accuracy_score,
    average_precision_score,
    brier_score_loss,
    confusion_matrix,
    f1_score,
    precision_score,
    recall_score,
    roc_auc_score,
    roc_curve,
)
from tqdm import tqdm

from pneumonia import config

HEADLINE = ("accuracy", "roc_auc", "sensitivity", "specificity")


def choose_threshold(y_true: np.ndarray, y_prob: np.ndarray) -> float:
    """Youden's J (sensitivity + specificity - 1) maximised on validation.

    When a range of thresholds ties (common when validation AUC is near 1), take the middle of the
    range rather than its edge, so the threshold does not sit on a single validation image.
    """
    if len(np.unique(y_true)) < 2:
        raise ValueError("the validation split needs images of both classes to choose a threshold")
    false_positive_rate, true_positive_rate, thresholds = roc_curve(y_true, y_prob, drop_intermediate=False)
    youden = true_positive_rate - false_positive_rate
    best = np.flatnonzero(np.isclose(youden, youden.max()))
    # roc_curve's thresholds decrease; a J-optimal run [i, j] admits any threshold in (t[j+1], t[i]].
    first, last = best.min(), best.max()
    upper = min(thresholds[first], 1.0)
    lower = thresholds[last + 1] if last + 1 < len(thresholds) else 0.0
    return float((upper + lower) / 2)


def threshold_for_specificity(y_true: np.ndarray, y_prob: np.ndarray, specificity: float) -> float:
    """The lowest threshold at which at least ``specificity`` of the NORMAL images (label 0) score below it.

    A model read at the threshold that gives it another model's specificity is compared on its ranking
    alone: the experiment log's *fixed operating point*.
    """
    normal = np.sort(np.asarray(y_prob, dtype=float)[np.asarray(y_true) == 0])
    if not len(normal):
        raise ValueError("a specificity needs NORMAL images (label 0)")
    needed = int(np.ceil(specificity * len(normal) - 1e-9))
    return float(np.nextafter(normal[needed - 1], np.inf)) if needed else 0.0


def binary_metrics(y_true: np.ndarray, y_prob: np.ndarray, threshold: float = 0.5) -> dict:
    """Accuracy, ROC AUC, sensitivity (PNEUMONIA recall), specificity (NORMAL recall) and more."""
    y_true = np.asarray(y_true).astype(int)
    y_prob = np.asarray(y_prob, dtype=float)
    y_pred = (y_prob >= threshold).astype(int)
    tn, fp, fn, tp = confusion_matrix(y_true, y_pred, labels=[0, 1]).ravel()
    both = len(np.unique(y_true)) == 2
    return {
        "accuracy": float(accuracy_score(y_true, y_pred)),
        "roc_auc": float(roc_auc_score(y_true, y_prob)) if both else float("nan"),
        "sensitivity": float(recall_score(y_true, y_pred, pos_label=1, zero_division=0)),
        "specificity": float(recall_score(y_true, y_pred, pos_label=0, zero_division=0)),
        "precision": float(precision_score(y_true, y_pred, zero_division=0)),
        "f1": float(f1_score(y_true, y_pred, zero_division=0)),
        "pr_auc": float(average_precision_score(y_true, y_prob)) if both else float("nan"),
        "brier": float(brier_score_loss(y_true, y_prob)),
        "confusion": {"tn": int(tn), "fp": int(fp), "fn": int(fn), "tp": int(tp)},
        "n": int(len(y_true)),
    }


def balanced_accuracy(scored):
    """The mean of sensitivity and specificity, from ``binary_metrics``' dict or a frame of its columns."""
    return (scored["sensitivity"] + scored["specificity"]) / 2


def bootstrap_ci(
    y_true: np.ndarray,
    probabilities,
    thresholds,
    resamples: int = 1000,
    seed: int = 0,
) -> dict[str, list[float]]:
    """Percentile 95% intervals of accuracy, ROC AUC, sensitivity and specificity.

    ``probabilities`` is one array or a list of arrays (one per seed, with its own threshold in
    ``thresholds``); each resample of the images scores every seed and averages them, so the
    interval is that of the mean over seeds that we report.
    """
    y_true = np.asarray(y_true).astype(int)
    if np.ndim(probabilities[0]) == 0:
        probabilities, thresholds = [probabilities], [thresholds]
    probabilities = [np.asarray(p, dtype=float) for p in probabilities]
    predictions = [(p >= t).astype(int) for p, t in zip(probabilities, np.atleast_1d(thresholds))]
    rng = np.random.default_rng(seed)
    values = {name: [] for name in HEADLINE}
    for _ in range(resamples):
        index = rng.integers(0, len(y_true), len(y_true))
        truth = y_true[index]
        positives, negatives = truth == 1, truth == 0
        if not positives.any() or not negatives.any():
            continue
        scores = {name: [] for name in HEADLINE}
        for probability, prediction in zip(probabilities, predictions):
            predicted = prediction[index]
            scores["accuracy"].append((predicted == truth).mean())
            scores["sensitivity"].append(predicted[positives].mean())
            scores["specificity"].append(1 - predicted[negatives].mean())
            scores["roc_auc"].append(roc_auc_score(truth, probability[index]))
        for name in HEADLINE:
            values[name].append(np.mean(scores[name]))
    return {f"{name}_ci95": [float(np.percentile(v, 2.5)), float(np.percentile(v, 97.5))] for name, v in values.items()}


def summarize_seeds(per_seed: list[dict], metrics: tuple[str, ...] = HEADLINE) -> dict:
    """Mean and standard deviation over seeds of each metric."""
    summary = {}
    for name in metrics:
        values = np.array([run[name] for run in per_seed], dtype=float)
        summary[name] = float(values.mean())
        summary[f"{name}_std"] = float(values.std(ddof=1)) if len(values) > 1 else 0.0
    return summary


def predict_probabilities(model, images: np.ndarray, sidecar: dict, batch_size: int = 64) -> np.ndarray:
    """Probability of PNEUMONIA for uint8 images, prepared the way the model was trained (its sidecar)."""
    return seed_probabilities([(model, sidecar)], images, batch_size)[0]


def seed_probabilities(members, images: np.ndarray, batch_size: int = 64,
                       test_time: dict | None = None) -> list[np.ndarray]:
    """PNEUMONIA probabilities of each ``(model, sidecar)`` pair, each input prepared as its sidecar says;
    with ``test_time`` (:func:`augmented_views`' settings), each the mean over those views of the images,
    and with its ``adapt`` set, each view scored with BatchNorm statistics of its own (:func:`adapted_batchnorm`).

    The seeds of one model share their preparation, and preparing (equalising) is per-image Python
    work, so each distinct preparation (and its views) runs once, not once per member.
    """
    from pneumonia import preprocess

    test_time, adapt, adapt_layers = _split_test_time(test_time)
    inputs, out = {}, []
    for model, sidecar in members:
        key = preprocess.preparation(sidecar)
        if key not in inputs:
            prepared = preprocess.model_inputs(images, sidecar)
            inputs[key] = augmented_views(prepared, batch_size=batch_size, **test_time) if test_time else [prepared]
        probabilities = []
        for view in inputs[key]:
            with adapted_batchnorm(model, view, batch_size, adapt_layers) if adapt else contextlib.nullcontext():
                probabilities.append(model.predict(view, batch_size=batch_size, verbose=0).ravel())
        out.append(np.mean(probabilities, axis=0))
    return out


def _split_test_time(test_time: dict | None) -> tuple[dict, bool, int]:
    """``test_time`` as :func:`augmented_views`' settings, whether to adapt BatchNorm, and to how many layers."""
    views = dict(test_time or {})
    return views, bool(views.pop("adapt", 0)), views.pop("adapt_layers", 0)


@contextlib.contextmanager
def adapted_batchnorm(model, inputs: np.ndarray, batch_size: int = 64, first: int = 0):
    """Within the block, ``model``'s BatchNorm statistics are those of the prepared ``inputs`` scored
    together, not of the training images (AdaBN: Li et al. 2016; Schneider et al. 2020); they are put
    back after it. ``first`` > 0 adapts only the first that many BatchNorm layers from the input, the
    rest keeping the training images' statistics.

    Each layer's mean and variance are pooled exactly over the batches of ``inputs``, in one pass in which
    each batch is normalised by its own statistics, as in training (SWA's ``bn_update``). Transductive:
    every answer depends on the other images of the set, and on their mix of classes (notebook 04,
    variants (w) and (w′): on a half-NORMAL set, specificity moved by up to 0.08).
    """
    import tensorflow as tf

    from pneumonia.train import batchnorm_layers

    every = batchnorm_layers(model)
    saved = [(layer.moving_mean.numpy(), layer.moving_variance.numpy(), layer.momentum) for layer in every]
    layers = every[:first] if first > 0 else every
    try:
        if len(inputs) and layers:
            sums = [[np.zeros_like(mean), np.zeros_like(mean)] for mean, _, _ in saved[:len(layers)]]
            for layer in layers:
                layer.momentum = 0.0  # a training-mode pass then leaves exactly its batch's statistics
            forward = tf.function(lambda batch: model(batch, training=True), reduce_retracing=True)
            for start in range(0, len(inputs), batch_size):
                batch = inputs[start:start + batch_size]
                forward(tf.constant(batch))
                for (mean_sum, square_sum), layer in zip(sums, layers):
                    mean = layer.moving_mean.numpy()
                    mean_sum += len(batch) * mean
                    square_sum += len(batch) * (layer.moving_variance.numpy() + mean ** 2)
            for (mean_sum, square_sum), layer in zip(sums, layers):
                mean = mean_sum / len(inputs)
                layer.moving_mean.assign(mean)
                layer.moving_variance.assign(np.maximum(square_sum / len(inputs) - mean ** 2, 0.0))
            for layer, (mean, variance, momentum) in zip(every, saved):
                layer.momentum = momentum
                if layer not in layers:  # the training pass moved these a little too
                    layer.moving_mean.assign(mean)
                    layer.moving_variance.assign(variance)
        yield model
    finally:
        for layer, (mean, variance, momentum) in zip(every, saved):
            layer.moving_mean.assign(mean)
            layer.moving_variance.assign(variance)
            layer.momentum = momentum


def augmented_views(inputs: np.ndarray, views: int = 1, rotation: float = 0.0, shift: float = 0.0,
                    zoom: float = 0.0, smooth: int = 0, batch_size: int = 64) -> list[np.ndarray]:
    """Test-time augmentation's views of prepared ``inputs``: the inputs themselves and ``views - 1``
    resampled copies, copy k drawn by a ``RandomAffine`` (``rotation`` turns, ``shift`` and ``zoom``
    fractions, as in training) seeded with k, so that every model and every call sees the same views.
    ``smooth`` > 1 first replaces each pixel by the mean of a ``smooth`` x ``smooth`` window
    (``preprocess.box_smooth``)."""
    from pneumonia import preprocess

    if smooth > 1:
        inputs = preprocess.box_smooth(inputs, smooth, batch_size)
    copies = [inputs]
    for view in range(1, views):
        layer = preprocess.RandomAffine(rotation=rotation, shift=shift, zoom=zoom, seed=view)
        copies.append(np.concatenate([np.asarray(layer(inputs[start:start + batch_size], training=True))
                                      for start in range(0, len(inputs), batch_size)]) if len(inputs) else inputs)
    return copies


def one_image_seconds(model, inputs: np.ndarray, test_time: dict | None = None, repeats: int = 20) -> float:
    """Median seconds to answer for one prepared image, its views (if any) made and scored in one batch."""
    import time

    test_time = _split_test_time(test_time)[0]
    image = inputs[:1]
    model(np.concatenate(augmented_views(image, **test_time)), training=False)  # warm-up, not timed
    seconds = []
    for _ in range(repeats):
        start = time.perf_counter()
        np.asarray(model(np.concatenate(augmented_views(image, **test_time)), training=False))
        seconds.append(time.perf_counter() - start)
    return float(np.median(seconds))


def ensemble_probabilities(members, images: np.ndarray) -> np.ndarray:
    """Mean PNEUMONIA probability of ``(model, sidecar)`` pairs, each input prepared as its sidecar says."""
    return np.mean(seed_probabilities(members, images), axis=0)


def one_factor_table(members, images: np.ndarray, labels: np.ndarray, shifts=None, seed: int = 0,
                     progress: bool = True, test_time: dict | None = None):
    """Each ``(model, sidecar)`` pair scored at its own threshold on ``images`` as they are and under each
    of ``preprocess.ONE_FACTOR_SHIFTS`` (or the names in ``shifts``): one row per change and member."""
    import pandas as pd

    from pneumonia import preprocess

    rows = []
    names = ["none", *(shifts or preprocess.ONE_FACTOR_SHIFTS)]
    for name in tqdm(names, desc="one-factor shifts", unit="shift", disable=not progress):
        changed = images if name == "none" else preprocess.one_factor_shift(images, name, seed=seed)
        for (_, sidecar), probability in zip(members, seed_probabilities(members, changed, test_time=test_time)):
            scored = binary_metrics(labels, probability, sidecar["threshold"])
            rows.append({"shift": name, "model": sidecar["name"], "seed": sidecar["seed"],
                         **{metric: scored[metric] for metric in HEADLINE}})
    return pd.DataFrame(rows)


def load_sidecar(model_path: Path | str) -> dict:
    return json.loads(Path(model_path).with_suffix(".json").read_text())


def update_metrics_file(name: str, entry: dict, path: Path | str | None = None) -> Path:
    """Set ``entry`` under ``name`` in ``reports/metrics.json``, keeping the other models' entries."""
    from pneumonia.reporting import write_json

    path = Path(path or config.REPORTS_DIR / "metrics.json")
    current = json.loads(path.read_text()) if path.exists() else {}
    current[name] = entry
    return write_json(path, dict(sorted(current.items())))


def score_models(
    name: str,
    splits,
    split: str = "test",
    models_dir: Path | str | None = None,
    resamples: int = 1000,
    progress: bool = True,
) -> tuple[dict, "pd.DataFrame"]:
    """Score every seed of a published model on ``split`` at each seed's validation threshold.

    Returns the ``reports/metrics.json`` entry (mean and spread over seeds, bootstrap 95% CIs,
    thresholds, seeds, weights, data hash) and a table of per-image probabilities for the figures.
    """
    import pandas as pd

    from pneumonia import preprocess
    from pneumonia.models import load_model

    models_dir = Path(models_dir or config.MODELS_DIR)
    published = load_sidecar(models_dir / f"{name}.keras")
    images, labels, rows = preprocess.load_split(
        splits, split, published["image_size"], published["channels"], progress=progress
    )
    per_seed, thresholds = [], []
    predictions = rows[["path", "label", "patient"]].copy()
    members = [(load_model(models_dir / f), load_sidecar(models_dir / f))
               for f in published.get("seed_models", [published["model_file"]])]
    probabilities = seed_probabilities(members, images)
    for (_, sidecar), probability in zip(members, probabilities):
        thresholds.append(sidecar["threshold"])
        predictions[f"probability_seed{sidecar['seed']}"] = probability
        per_seed.append({"seed": sidecar["seed"], "threshold": sidecar["threshold"],
                         **binary_metrics(labels, probability, sidecar["threshold"])})
    entry = {
        split: {**summarize_seeds(per_seed, HEADLINE + ("precision", "f1", "pr_auc", "brier")),
                **bootstrap_ci(labels, probabilities, thresholds, resamples)},
        "threshold": published["threshold"],
        "thresholds": thresholds,
        "threshold_source": published["threshold_source"],
        "threshold_method": published.get("threshold_method", "youden_j_midpoint"),
        "threshold_shift": published.get("config", {}).get("threshold_shift", 0.0),
        "seeds": [run["seed"] for run in per_seed],
        "per_seed": per_seed,
        "weights": published["weights"],
        "image_size": published["image_size"],
        "channels": published["channels"],
        "data_manifest_sha256": published["data_manifest_sha256"],
    }
    if "ensemble" in published:
        # The members' probabilities are the ones above: the ensemble costs no further prediction.
        ensemble = published["ensemble"]
        probability = np.mean(probabilities, axis=0)
        entry["ensemble"] = {
            split: {**binary_metrics(labels, probability, ensemble["threshold"]),
                    **bootstrap_ci(labels, [probability], [ensemble["threshold"]], resamples)},
            **{k: ensemble[k] for k in ("seeds", "combination", "threshold", "threshold_source", "threshold_method")},
            "threshold_shift": entry["threshold_shift"],
        }
    return entry, predictions
