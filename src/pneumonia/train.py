"""Training: compile, callbacks, fit, threshold on validation, save the model with its sidecar.

Everything here sees only the training and validation splits. Early stopping, the learning-rate
schedule and the decision threshold all follow validation; the official test split is never read.
"""

from __future__ import annotations

import json
import platform
import shutil
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from pneumonia import __version__, config, evaluate, preprocess


@dataclass
class TrainConfig:
    """What defines one training run (recorded in the model's sidecar)."""

    name: str = "cnn"
    image_size: int = 160
    channels: int = 1
    filters: tuple[int, ...] = (16, 32, 64, 128, 256)
    stem_stride: int = 2
    dropout: float = 0.3
    l2: float = 1e-4
    batch_size: int = 32
    epochs: int = 20
    learning_rate: float = 1e-3
    label_smoothing: float = 0.0
    intensity: str = "none"  # per-image normalisation before the model: "none" or "equalize"
    balance: str = "class_weight"  # "class_weight", "smote" or "none"
    augmentation: dict = field(default_factory=dict)
    patience: int = 5
    step_schedule: dict | None = None  # e.g. {"factor": 0.5, "every": 5}; None: ReduceLROnPlateau
    verbose: int = 2


def compile_model(model, learning_rate: float = 1e-3, label_smoothing: float = 0.0):
    import keras

    model.compile(
        optimizer=keras.optimizers.Adam(learning_rate),
        loss=keras.losses.BinaryCrossentropy(label_smoothing=label_smoothing),
        metrics=[
            keras.metrics.BinaryAccuracy(name="accuracy"),
            keras.metrics.AUC(name="auc"),
            keras.metrics.Recall(name="sensitivity"),
        ],
    )
    return model


def step_decay(initial_rate: float, factor: float = 0.5, every: int = 5):
    """A step schedule: multiply the learning rate by ``factor`` every ``every`` epochs."""
    import keras

    return keras.callbacks.LearningRateScheduler(lambda epoch: initial_rate * factor ** (epoch // every))


def make_callbacks(run: TrainConfig, checkpoint: Path, log: Path) -> list:
    import keras

    checkpoint.parent.mkdir(parents=True, exist_ok=True)
    log.parent.mkdir(parents=True, exist_ok=True)
    callbacks = [
        keras.callbacks.EarlyStopping(monitor="val_loss", patience=run.patience, restore_best_weights=True, verbose=1),
        keras.callbacks.ModelCheckpoint(checkpoint, monitor="val_loss", save_best_only=True),
        keras.callbacks.CSVLogger(log),
    ]
    if run.step_schedule:
        callbacks.append(step_decay(run.learning_rate, **run.step_schedule))
    else:
        callbacks.append(
            keras.callbacks.ReduceLROnPlateau(monitor="val_loss", factor=0.5, patience=2, min_lr=1e-6, verbose=1)
        )
    return callbacks


def library_versions() -> dict:
    import keras
    import sklearn
    import tensorflow as tf

    return {
        "python": platform.python_version(),
        "tensorflow": tf.__version__,
        "keras": keras.__version__,
        "numpy": np.__version__,
        "scikit-learn": sklearn.__version__,
        "pneumonia": __version__,
    }


def train_one(
    run: TrainConfig,
    seed: int,
    train_images: np.ndarray,
    train_labels: np.ndarray,
    val_images: np.ndarray,
    val_labels: np.ndarray,
    dataset_sha256: str,
    models_dir: Path | str | None = None,
    logs_dir: Path | str | None = None,
) -> dict:
    """Train one seed; save ``models/<name>-seed<seed>.keras`` and its ``.json`` sidecar; return the sidecar."""
    import keras

    from pneumonia.models import make_cnn

    keras.utils.set_random_seed(seed)
    models_dir = Path(models_dir or config.MODELS_DIR)
    logs_dir = Path(logs_dir or config.REPORTS_DIR / "training")
    stem = f"{run.name}-seed{seed}"

    train_images = preprocess.normalize_intensity(train_images, run.intensity)
    val_images = preprocess.normalize_intensity(val_images, run.intensity)
    class_weight = None
    synthetic = 0
    if run.balance == "smote":
        train_images, train_labels, is_synthetic = preprocess.smote_oversample(train_images, train_labels, seed=seed)
        synthetic = int(is_synthetic.sum())
    elif run.balance == "class_weight":
        class_weight = preprocess.class_weights(train_labels)
    elif run.balance != "none":
        raise ValueError(f"balance must be class_weight, smote or none, not {run.balance!r}")

    augmentation = preprocess.make_augmentation(**run.augmentation, seed=seed)
    train_data = preprocess.make_dataset(
        train_images, train_labels, run.batch_size, shuffle=True, augmentation=augmentation, seed=seed
    )
    val_data = preprocess.make_dataset(val_images, val_labels, run.batch_size)

    model = make_cnn(
        (run.image_size, run.image_size, run.channels),
        filters=tuple(run.filters),
        stem_stride=run.stem_stride,
        dropout=run.dropout,
        l2=run.l2,
        name=run.name,
    )
    compile_model(model, run.learning_rate, run.label_smoothing)
    started = time.perf_counter()
    history = model.fit(
        train_data,
        validation_data=val_data,
        epochs=run.epochs,
        class_weight=class_weight,
        shuffle=False,  # the tf.data pipeline shuffles
        callbacks=make_callbacks(run, models_dir / "checkpoints" / f"{stem}.keras", logs_dir / f"{stem}.csv"),
        verbose=run.verbose,
    )
    seconds = time.perf_counter() - started

    val_prob = model.predict(val_data, verbose=0).ravel()
    threshold = evaluate.choose_threshold(val_labels, val_prob)
    losses = history.history["val_loss"]
    sidecar = {
        "name": run.name,
        "model_file": f"{stem}.keras",
        "image_size": run.image_size,
        "channels": run.channels,
        "class_names": list(config.CLASS_NAMES),
        "positive_class": config.CLASS_NAMES[1],
        "intensity": run.intensity,
        "input_scaling": "pixel / 255",
        "threshold": threshold,
        "threshold_source": "validation",
        "threshold_method": "youden_j_midpoint",
        "validation": evaluate.binary_metrics(val_labels, val_prob, threshold),
        "weights": "none (trained from scratch)",
        "seed": seed,
        "epochs_run": len(losses),
        "best_epoch": int(np.argmin(losses)) + 1,
        "train_seconds": round(seconds, 1),
        "train_images": int(len(train_labels)),
        "smote_synthetic_images": synthetic,
        "class_weight": class_weight,
        "data_manifest_sha256": dataset_sha256,
        "config": asdict(run),
        "versions": library_versions(),
    }
    models_dir.mkdir(parents=True, exist_ok=True)
    model.save(models_dir / f"{stem}.keras")
    (models_dir / f"{stem}.json").write_text(json.dumps(sidecar, indent=2) + "\n")
    return sidecar


def publish(sidecars: list[dict], models_dir: Path | str | None = None) -> Path:
    """Copy the first seed's model to ``models/<name>.keras`` (what predict and the app load by default),
    with a sidecar listing every seed's model."""
    models_dir = Path(models_dir or config.MODELS_DIR)
    first = sidecars[0]
    target = models_dir / f"{first['name']}.keras"
    shutil.copyfile(models_dir / first["model_file"], target)
    sidecar = {**first, "model_file": target.name, "seeds": [s["seed"] for s in sidecars],
               "seed_models": [s["model_file"] for s in sidecars]}
    target.with_suffix(".json").write_text(json.dumps(sidecar, indent=2) + "\n")
    return target
