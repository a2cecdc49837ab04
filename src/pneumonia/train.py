"""Training: compile, callbacks, fit, threshold on validation, save the model with its sidecar.

Everything here sees only the training and validation splits. Early stopping, the learning-rate
schedule and the decision threshold all follow validation; the official test split is never read.
"""

from __future__ import annotations

import functools
import hashlib
import json
import math
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
    batchnorm_momentum: float = 0.99
    antialias: bool = False  # blur before every downsampling (models.make_cnn)
    instance_norm_blocks: int = 0  # the first n blocks normalise half their channels per image (models.make_cnn)
    group_norm_blocks: int = 0  # the first n blocks normalise per image, in groups, instead of BatchNorm (models.make_cnn)
    group_norm_groups: int = 4
    global_pooling: str = "average"  # or "max" (models.make_cnn)
    mixstyle_blocks: int = 0  # the first n blocks' outputs mix per-image feature statistics in training (models.MixStyle)
    statistics_noise_blocks: int = 0  # the first n blocks' outputs get noisy feature statistics in training (models.FeatureStatisticsNoise)
    vertical_stretch: dict | None = None  # class -> (low, high): training images stretched vertically (preprocess.stretch_vertically)
    batch_size: int = 32
    epochs: int = 20
    learning_rate: float = 1e-3
    label_smoothing: float = 0.0
    ema_momentum: float | None = None  # e.g. 0.99: validate, keep and publish a moving average of the weights
    bn_refresh_batches: int = 0  # > 0: before each validation, BatchNorm statistics recomputed for the averaged weights
    intensity: str = "none"  # per-image normalisation before the model: one of preprocess.INTENSITY_METHODS
    balance: str = "class_weight"  # one of BALANCE_METHODS
    augmentation: dict = field(default_factory=dict)
    consistency: dict | None = None  # {"weight": w, "augmentation": {...}}: a second view must agree (consistency_model)
    patience: int = 5
    step_schedule: dict | None = None  # e.g. {"factor": 0.5, "every": 5}; None: ReduceLROnPlateau
    cosine_decay: bool = False  # the learning rate falls along a cosine to 0 over the epochs (no ReduceLROnPlateau)
    threshold_shift: float = 0.0  # > 0: choose the threshold on validation plus a simulated-shift copy of it
    verbose: int = 2


BALANCE_METHODS = ("class_weight", "smote", "oversample", "none", "counter_cue", "counter_cue_normal")
# Which classes' weights ``acquisition.counter_cue_weights`` moves toward their counter-cue images, per balance method.
COUNTER_CUE_CLASSES = {"counter_cue": (0, 1), "counter_cue_normal": (0,)}

# Notebook 04 checks robustness on the shifted copy with seed 1; the copy that chooses the threshold
# must not be the one that checks it.
THRESHOLD_SHIFT_SEED = 2


def seed_everything(seed: int) -> None:
    """Python, NumPy and TensorFlow seeds, and deterministic TensorFlow ops: the same seed gives the
    same model (measured: no slowdown of this CNN's epochs on the 2-core CPU)."""
    import keras
    import tensorflow as tf

    keras.utils.set_random_seed(seed)
    tf.config.experimental.enable_op_determinism()


def compile_model(model, learning_rate=1e-3, label_smoothing: float = 0.0, ema_momentum: float | None = None):
    """Adam (``learning_rate``: a number or a schedule) and binary cross-entropy; with ``ema_momentum``,
    Adam also keeps an exponential moving average of the weights (``make_callbacks`` then validates and
    keeps the average)."""
    import keras

    model.compile(
        optimizer=keras.optimizers.Adam(learning_rate, use_ema=ema_momentum is not None,
                                        ema_momentum=0.99 if ema_momentum is None else ema_momentum),
        loss=keras.losses.BinaryCrossentropy(label_smoothing=label_smoothing),
        metrics=[
            keras.metrics.BinaryAccuracy(name="accuracy"),
            keras.metrics.AUC(name="auc"),
            keras.metrics.Recall(name="sensitivity"),
        ],
    )
    return model


def learning_rate(run: TrainConfig, steps_per_epoch: int):
    """What Adam is given: ``run.learning_rate``, or with ``run.cosine_decay`` a schedule that lowers it
    step by step along a cosine to 0 at the end of ``run.epochs`` (Loshchilov & Hutter 2017)."""
    if not run.cosine_decay:
        return run.learning_rate
    if run.step_schedule:
        raise ValueError("choose one of cosine_decay and step_schedule")
    import keras

    return keras.optimizers.schedules.CosineDecay(run.learning_rate, decay_steps=run.epochs * steps_per_epoch)


def step_decay(initial_rate: float, factor: float = 0.5, every: int = 5):
    """A step schedule: multiply the learning rate by ``factor`` every ``every`` epochs."""
    import keras

    return keras.callbacks.LearningRateScheduler(lambda epoch: initial_rate * factor ** (epoch // every))


def make_callbacks(run: TrainConfig, checkpoint: Path, log: Path, refresh_batches=None) -> list:
    """Early stopping, checkpoint, log and learning-rate callbacks; the weight average's first.

    ``refresh_batches``: training batches (unaugmented, scaled as for ``fit``; the training model
    augments them) for ``run.bn_refresh_batches``.
    """
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
    elif not run.cosine_decay:  # a schedule owns the rate; ReduceLROnPlateau cannot change it
        callbacks.append(
            keras.callbacks.ReduceLROnPlateau(monitor="val_loss", factor=0.5, patience=2, min_lr=1e-6, verbose=1)
        )
    # First, so that validation, early stopping (and the weights it restores) and the checkpoint
    # all see the averaged weights rather than the last step's.
    return weight_average_callbacks(run, refresh_batches) + callbacks


def weight_average_callbacks(run: TrainConfig, refresh_batches=None) -> list:
    """With ``run.ema_momentum``: the callback that puts the averaged weights in place at each epoch's end,
    and with ``run.bn_refresh_batches`` the one that recomputes BatchNorm's statistics for them."""
    import keras

    if run.ema_momentum is None:
        if run.bn_refresh_batches:
            raise ValueError("bn_refresh_batches needs ema_momentum: it refreshes the averaged weights' statistics")
        return []
    callbacks = [keras.callbacks.SwapEMAWeights(swap_on_epoch=True)]
    if run.bn_refresh_batches:
        if refresh_batches is None:
            raise ValueError("bn_refresh_batches needs training batches to recompute the statistics on")
        callbacks.append(BatchNormRefresh(refresh_batches, run.bn_refresh_batches))
    return callbacks


def batchnorm_refresh_data(run: TrainConfig, images: np.ndarray, labels: np.ndarray, seed: int):
    """Training batches of their own (seed + 1) for ``BatchNormRefresh``; None when ``run`` refreshes nothing."""
    if not run.bn_refresh_batches:
        return None
    return training_batches(images, labels, images_per_step(run), seed + 1, vertical_stretch=run.vertical_stretch)[0]


def batchnorm_layers(model) -> list:
    import keras

    return [layer for layer in model._flatten_layers(include_self=False, recursive=True)
            if isinstance(layer, keras.layers.BatchNormalization)]


@functools.cache
def _batchnorm_refresh_class():
    """``BatchNormRefresh``, defined on first use so that importing this module does not import Keras."""
    import keras

    class BatchNormRefresh(keras.callbacks.Callback):
        """BatchNorm statistics that belong to the averaged weights (SWA's ``bn_update``, Izmailov et al. 2018).

        Adam's weight average covers the trainable weights only: the moving statistics that validate it
        were collected for the raw weights of the last steps. Placed after ``SwapEMAWeights``, this
        callback recomputes them before each validation, with the averaged weights in place, as the
        plain mean over ``steps`` augmented training batches, so that validation, early stopping and
        the checkpoint see a consistent network. The raw statistics return for the next epoch's
        training, and the random generators (augmentation, dropout) are put back where they were, so
        the refresh draws nothing from training's random stream.
        """

        def __init__(self, batches, steps: int):
            super().__init__()
            self.batches = iter(batches)
            self.steps = int(steps)
            self._raw_statistics = None
            self._forward = None

        def on_test_begin(self, logs=None):
            import tensorflow as tf

            layers = batchnorm_layers(self.model)
            statistics = [(layer.moving_mean, layer.moving_variance) for layer in layers]
            refreshed = {id(variable) for pair in statistics for variable in pair}
            others = [v for v in self.model.non_trainable_variables if id(v) not in refreshed]
            other_values = [v.numpy() for v in others]
            self._raw_statistics = [(mean.numpy(), variance.numpy()) for mean, variance in statistics]
            momenta = [layer.momentum for layer in layers]
            totals = [(np.zeros_like(mean), np.zeros_like(variance)) for mean, variance in self._raw_statistics]
            try:
                for layer in layers:
                    layer.momentum = 0.0  # each pass leaves exactly its batch's statistics, which are summed here
                if self._forward is None:  # compiled: eager passes cost a third of an epoch on the 2-core CPU
                    self._forward = tf.function(lambda images: self.model(images, training=True),
                                                reduce_retracing=True)
                for _ in range(self.steps):
                    self._forward(next(self.batches)[0])
                    for (mean_total, variance_total), (mean, variance) in zip(totals, statistics):
                        mean_total += mean.numpy()
                        variance_total += variance.numpy()
                for (mean, variance), (mean_total, variance_total) in zip(statistics, totals):
                    mean.assign(mean_total / self.steps)
                    variance.assign(variance_total / self.steps)
            finally:
                for layer, momentum in zip(layers, momenta):
                    layer.momentum = momentum
                for variable, value in zip(others, other_values):
                    variable.assign(value)

        def on_epoch_begin(self, epoch, logs=None):
            if self._raw_statistics is not None:
                for layer, (mean, variance) in zip(batchnorm_layers(self.model), self._raw_statistics):
                    layer.moving_mean.assign(mean)
                    layer.moving_variance.assign(variance)
                self._raw_statistics = None

    return BatchNormRefresh


def BatchNormRefresh(batches, steps: int):  # noqa: N802 (a class, built lazily)
    return _batchnorm_refresh_class()(batches, steps)


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


VECTOR_EXTENSIONS = ("avx2", "fma", "avx512f", "avx512_vnni", "avx512_bf16", "amx_bf16", "neon", "asimd", "sve")


def machine() -> dict:
    """The CPU that timed a run: training and prediction times differ several-fold between CPUs of the
    same core count (AVX-512 against AVX2 only: ~3x for this CNN), so every recorded time carries this."""
    import os

    info = {"processor": platform.machine(), "cpu_model": platform.processor() or platform.machine(),
            "cpus": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()}
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.exists():
        fields = dict(line.split(":", 1) for line in cpuinfo.read_text().splitlines() if ":" in line)
        fields = {key.strip(): value.strip() for key, value in fields.items()}
        info["cpu_model"] = fields.get("model name", info["cpu_model"])
        flags = set((fields.get("flags") or fields.get("Features") or "").split())
        info["vector_extensions"] = [name for name in VECTOR_EXTENSIONS if name in flags]
    return info


def training_model(model, augmentation):
    """``model`` behind the ``augmentation`` layers, for ``fit``; ``model`` itself stays the published network.

    The layers run as the first operations of each training step and pass images through unchanged
    at validation and inference. On a 2-core CPU the model's step already keeps both cores busy, so
    augmenting inside the tf.data pipeline instead (in parallel, in other threads) only competed with
    it: 8-18% longer epochs against none here (``make bench``, ``tfdata_augmentation_epoch_s``).
    """
    import keras

    if augmentation is None:
        return model
    inputs = keras.Input(model.input_shape[1:], name="images")
    return keras.Model(inputs, model(augmentation(inputs)), name=f"{model.name}_augmented")


def jensen_shannon(first, second, epsilon: float = 1e-7):
    """Jensen-Shannon divergence (nats) between Bernoulli distributions with probabilities ``first`` and ``second``."""
    from keras import ops

    first = ops.clip(first, epsilon, 1 - epsilon)
    second = ops.clip(second, epsilon, 1 - epsilon)
    middle = (first + second) / 2

    def divergence(probability):  # Kullback-Leibler from ``middle``
        return (probability * ops.log(probability / middle)
                + (1 - probability) * ops.log((1 - probability) / (1 - middle)))

    return (divergence(first) + divergence(second)) / 2


@functools.cache
def _consistency_layer_classes():
    import keras
    from keras import ops

    @keras.saving.register_keras_serializable("pneumonia")
    class PairViews(keras.layers.Layer):
        """Two views of one batch stacked into one batch when training, so that BatchNorm sees both
        together; otherwise the first view alone (the augmentation left the images as they are)."""

        def call(self, views, training=False):
            return ops.concatenate(views, axis=0) if training else views[0]

        def compute_output_shape(self, input_shapes):
            return input_shapes[0]

    @keras.saving.register_keras_serializable("pneumonia")
    class ConsistencyLoss(keras.layers.Layer):
        """When training, splits ``PairViews``' probabilities back into the two views, adds ``weight`` times
        their mean Jensen-Shannon divergence to the loss and passes on the first view's; otherwise passes
        the probabilities on."""

        def __init__(self, weight=12.0, **kwargs):
            super().__init__(**kwargs)
            self.weight = float(weight)

        def call(self, probabilities, training=False):
            if not training:
                return probabilities
            first, second = ops.split(probabilities, 2, axis=0)
            self.add_loss(self.weight * ops.mean(jensen_shannon(first, second)))
            return first

        def compute_output_shape(self, input_shape):
            return input_shape

        def get_config(self):
            return {**super().get_config(), "weight": self.weight}

    return PairViews, ConsistencyLoss


def consistency_model(model, first, second, weight: float):
    """``model`` trained to give two augmented views of each image the same answer (AugMix's
    consistency, Hendrycks et al. 2020), for ``fit``; ``model`` itself stays the published network.

    Each batch passes through the augmentation layers ``first`` and ``second`` (either may be None:
    the images as they are) and both views go through ``model`` in one batch. Binary cross-entropy
    (and the class weights) sees the first view only; ``weight`` times the Jensen-Shannon divergence
    between the two views' probabilities is added. The label decides the first view's answer and the
    consistency term only asks the second to agree, so what ``second`` adds (frames, grain) is taught
    as something to ignore, not as evidence for a class. At validation the images go through ``model``
    once, as they are.
    Tried as the experiment log's (aj) and not adopted: it repaired what ``second`` showed and lowered
    the ranking elsewhere.
    """
    import keras

    pair_views, consistency_loss = _consistency_layer_classes()
    first, second = (keras.layers.Identity() if view is None else view for view in (first, second))
    inputs = keras.Input(model.input_shape[1:], name="images")
    views = pair_views(name="views")([first(inputs), second(inputs)])
    outputs = consistency_loss(weight, name="consistency")(model(views))
    return keras.Model(inputs, outputs, name=f"{model.name}_consistent")


def images_per_step(run: TrainConfig) -> int:
    """Training images in one step: ``run.batch_size``, or half of it with ``run.consistency``, whose two
    views of each image fill the batch (a step then costs what a plain one does)."""
    if run.consistency:
        if run.batch_size % 2:
            raise ValueError("consistency needs an even batch_size: each image fills two places")
        return run.batch_size // 2
    return run.batch_size


def training_batches(images: np.ndarray, labels: np.ndarray, batch_size: int, seed: int, scale: float = 1 / 255,
                     augmentation=None, vertical_stretch: dict | None = None, weights: np.ndarray | None = None):
    """Shuffled training batches without end, and how many make one epoch: ``fit(data, steps_per_epoch=steps)``.

    Given a finite dataset, Keras builds a new iterator every epoch and tears the old one down; after
    a validation pass that teardown waited ~9 s for tf.data's background threads, in one epoch in
    three or four on the 2-core CPU (``make bench`` records both mean epochs: ``training_epoch_mean_s``
    and ``finite_iterator_epoch_mean_s``).
    Repeated, one iterator serves the whole fit, and each epoch is still a fresh shuffle of every
    image (a different order from the finite dataset's after the first epoch: Keras re-creates
    that one its own way). ``augmentation`` runs inside the pipeline (``make bench`` compares that
    placement; training runs it in the model instead, ``training_model``). ``vertical_stretch``: see
    ``preprocess.make_dataset``; it needs the labels, so it cannot run inside the model. ``weights``: one
    loss weight per image, shuffled with it.
    """
    data = preprocess.make_dataset(images, labels, batch_size, shuffle=True, augmentation=augmentation, seed=seed,
                                   scale=scale, vertical_stretch=vertical_stretch, weights=weights)
    return data.repeat(), math.ceil(len(labels) / batch_size)


# Chosen for each model by whoever trains it (notebook 04 loops over its ``variants``), never by a parameter.
PER_MODEL_FIELDS = ("name", "balance")


def config_from_parameters(parameters: dict) -> TrainConfig:
    """The ``TrainConfig`` that notebook 04's parameters describe: every key that names a field, except
    ``PER_MODEL_FIELDS``; the rest (``seeds``, or whatever else a notebook's namespace holds) is left out."""
    fields = {key: value for key, value in parameters.items()
              if key in TrainConfig.__dataclass_fields__ and key not in PER_MODEL_FIELDS}
    if "filters" in fields:
        fields["filters"] = tuple(fields["filters"])
    return TrainConfig(**fields)


def build_cnn(run: TrainConfig):
    """``models.make_cnn`` as ``run`` describes it (uncompiled)."""
    from pneumonia.models import make_cnn

    return make_cnn((run.image_size, run.image_size, run.channels), filters=tuple(run.filters),
                    stem_stride=run.stem_stride, dropout=run.dropout, l2=run.l2,
                    batchnorm_momentum=run.batchnorm_momentum, antialias=run.antialias,
                    instance_norm_blocks=run.instance_norm_blocks, group_norm_blocks=run.group_norm_blocks,
                    group_norm_groups=run.group_norm_groups, global_pooling=run.global_pooling,
                    mixstyle_blocks=run.mixstyle_blocks, statistics_noise_blocks=run.statistics_noise_blocks,
                    name=run.name)


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
    seed_everything(seed)
    models_dir = Path(models_dir or config.MODELS_DIR)
    logs_dir = Path(logs_dir or config.REPORTS_DIR / "training")
    stem = f"{run.name}-seed{seed}"

    raw_val_images = val_images
    sample_weights, weighting = None, {}
    if run.balance in COUNTER_CUE_CLASSES:  # measured on the images as decoded: the file's acquisition, not the input
        from pneumonia import acquisition
        from sklearn.metrics import roc_auc_score

        cue = acquisition.out_of_fold_scores(train_images, train_labels)
        sample_weights = acquisition.counter_cue_weights(cue, train_labels, preprocess.class_weights(train_labels),
                                                         classes=COUNTER_CUE_CLASSES[run.balance])
        weighting = {"counter_cue": {"classes": list(COUNTER_CUE_CLASSES[run.balance]),
                                     "cue_roc_auc_out_of_fold": round(float(roc_auc_score(train_labels, cue)), 4),
                                     "weight_min": round(float(sample_weights.min()), 4),
                                     "weight_max": round(float(sample_weights.max()), 4)}}
    train_images = preprocess.normalize_intensity(train_images, run.intensity)
    val_images = preprocess.normalize_intensity(val_images, run.intensity)
    class_weight = None
    synthetic = copies = 0
    real_images = len(train_labels)
    if run.balance == "smote":
        train_images, train_labels, is_synthetic = preprocess.smote_oversample(train_images, train_labels, seed=seed)
        synthetic = int(is_synthetic.sum())
    elif run.balance == "oversample":
        train_images, train_labels, is_copy = preprocess.random_oversample(train_images, train_labels, seed=seed)
        copies = int(is_copy.sum())
    elif run.balance == "class_weight":
        class_weight = preprocess.class_weights(train_labels)
    elif run.balance not in BALANCE_METHODS:
        raise ValueError(f"balance must be one of {', '.join(BALANCE_METHODS)}, not {run.balance!r}")

    train_data, _ = training_batches(train_images, train_labels, images_per_step(run), seed,
                                     vertical_stretch=run.vertical_stretch, weights=sample_weights)
    # As many steps as the images make in full batches, oversampled copies not counted: an epoch costs
    # what a class-weighted one does (with ``consistency`` too, whose steps take half as many images),
    # and early stopping's patience counts the same number of steps.
    steps_per_epoch = math.ceil((real_images if copies else len(train_labels)) / run.batch_size)
    refresh_data = batchnorm_refresh_data(run, train_images, train_labels, seed)
    val_data = preprocess.make_dataset(val_images, val_labels, run.batch_size)

    model = build_cnn(run)
    augmentation = preprocess.make_augmentation(**run.augmentation, seed=seed)
    if run.consistency:
        second = {**run.augmentation, **run.consistency.get("augmentation", {})}
        second_view = preprocess.make_augmentation(**second, seed=seed + 1, name="second_view")
        trainer = consistency_model(model, augmentation, second_view, run.consistency["weight"])
    else:
        trainer = training_model(model, augmentation)
    rate = learning_rate(run, steps_per_epoch)
    compile_model(trainer, rate, run.label_smoothing, run.ema_momentum)
    if trainer is not model:  # saved compiled as it trained, so a loaded model evaluates without guessing
        compile_model(model, rate, run.label_smoothing, run.ema_momentum)
    started = time.perf_counter()
    history = trainer.fit(
        train_data,
        steps_per_epoch=steps_per_epoch,
        validation_data=val_data,
        epochs=run.epochs,
        class_weight=class_weight,
        shuffle=False,  # the tf.data pipeline shuffles
        callbacks=make_callbacks(run, models_dir / "checkpoints" / f"{stem}.keras", logs_dir / f"{stem}.csv",
                                 refresh_batches=refresh_data),
        verbose=run.verbose,
    )
    seconds = time.perf_counter() - started

    val_prob = model.predict(val_data, verbose=0).ravel()
    return _save(model, run, seed, raw_val_images, val_labels, val_prob, history.history["val_loss"], seconds,
                 dataset_sha256, models_dir, weights="none (trained from scratch)", input_scaling="pixel / 255",
                 extra={"train_images": int(len(train_labels)), "smote_synthetic_images": synthetic,
                        "oversampled_copies": copies, "class_weight": class_weight, **weighting})


def operating_threshold(predict, val_images: np.ndarray, val_labels: np.ndarray, val_prob: np.ndarray,
                        shift_strength: float = 0.0) -> tuple[float, str]:
    """The decision threshold and how it was chosen: Youden's J on validation, and with ``shift_strength``
    > 0 on validation together with a simulated-acquisition-shift copy of it.

    Validation carved from train shares its equipment, so a threshold tuned on it alone sits where
    clean NORMAL images stop; images from other equipment score higher, and specificity collapses.
    Choosing on both copies puts the threshold where it holds under the shift, at some cost in
    sensitivity (notebook 04 measures both). ``predict`` maps uint8 images (as ``val_images``, before
    any preparation) to PNEUMONIA probabilities; ``val_prob`` is its answer for ``val_images``.
    """
    if not shift_strength:
        return evaluate.choose_threshold(val_labels, val_prob), "youden_j_midpoint"
    shifted = preprocess.simulate_acquisition_shift(val_images, seed=THRESHOLD_SHIFT_SEED, strength=shift_strength)
    threshold = evaluate.choose_threshold(np.r_[val_labels, val_labels], np.r_[val_prob, predict(shifted)])
    return threshold, (f"youden_j_midpoint on validation plus a simulated-shift copy of it "
                       f"(strength {shift_strength:g}, seed {THRESHOLD_SHIFT_SEED})")


def _save(model, run, seed, val_images, val_labels, val_prob, val_losses, seconds, dataset_sha256, models_dir,
          weights, input_scaling, extra) -> dict:
    """Choose the threshold on validation, save ``<name>-seed<seed>.keras`` and its sidecar; return the sidecar."""
    stem = f"{run.name}-seed{seed}"
    preparation = {"intensity": getattr(run, "intensity", "none"), "input_scaling": input_scaling}
    threshold, method = operating_threshold(lambda images: evaluate.predict_probabilities(model, images, preparation),
                                            val_images, val_labels, val_prob, run.threshold_shift)
    sidecar = {
        "name": run.name,
        "model_file": f"{stem}.keras",
        "image_size": run.image_size,
        "channels": run.channels,
        "class_names": list(config.CLASS_NAMES),
        "positive_class": config.CLASS_NAMES[1],
        **preparation,
        "threshold": threshold,
        "threshold_source": "validation",
        "threshold_method": method,
        "validation": evaluate.binary_metrics(val_labels, val_prob, threshold),
        "weights": weights,
        "seed": seed,
        "epochs_run": len(val_losses),
        "best_epoch": int(np.argmin(val_losses)) + 1,
        "train_seconds": round(seconds, 1),
        **extra,
        "data_manifest_sha256": dataset_sha256,
        "config": asdict(run),
        "versions": library_versions(),
        "machine": machine(),
    }
    models_dir.mkdir(parents=True, exist_ok=True)
    model.save(models_dir / f"{stem}.keras")
    (models_dir / f"{stem}.json").write_text(json.dumps(sidecar, indent=2) + "\n")
    return sidecar


@dataclass
class VGG16Config:
    """One VGG16 transfer-learning run (recorded in the model's sidecar)."""

    name: str = "vgg16"
    image_size: int = 160
    channels: int = 3
    weights: str | None = "imagenet"
    head: str = "gap"
    dense_units: int = 256
    dropout: float = 0.5
    batch_size: int = 32
    phase1_epochs: int = 10
    phase1_learning_rate: float = 1e-3
    phase2_epochs: int = 5
    phase2_learning_rate: float = 1e-5
    patience: int = 3
    step_schedule: dict | None = None
    threshold_shift: float = 0.0
    verbose: int = 2


def vgg16_features(frozen, images: np.ndarray, cache: Path | None, batch_size: int = 32, verbose: int = 1):
    """block4_pool features of ``images`` (0-255), computed once and cached as float16."""
    if cache is not None and cache.exists():
        return np.load(cache)
    from tqdm import tqdm

    # In chunks: a float32 copy of every image at once (and float32 features) would double peak memory.
    chunk = 256
    features = None
    for start in tqdm(range(0, len(images), chunk), desc="VGG16 blocks 1-4", unit="chunk", disable=not verbose):
        part = frozen.predict(images[start : start + chunk].astype(np.float32), batch_size=batch_size, verbose=0)
        if features is None:
            features = np.empty((len(images), *part.shape[1:]), dtype=np.float16)
        features[start : start + len(part)] = part
    if cache is not None:
        cache.parent.mkdir(parents=True, exist_ok=True)
        temporary = cache.with_name(f".{cache.name}.tmp.npy")
        np.save(temporary, features)
        temporary.replace(cache)
    return features


def train_vgg16(
    run: VGG16Config,
    seed: int,
    train_images: np.ndarray,
    train_labels: np.ndarray,
    val_images: np.ndarray,
    val_labels: np.ndarray,
    dataset_sha256: str,
    models_dir: Path | str | None = None,
    logs_dir: Path | str | None = None,
    cache_dir: Path | str | None = None,
) -> dict:
    """Transfer learning in two phases on cached block4_pool features; saves the full model and its sidecar.

    The frozen blocks 1-4 run once per image (cached); phase 1 trains the head with block5 frozen,
    phase 2 unfreezes block5 at a low learning rate. Both run only block5 and the head, on the
    cached features, so no augmentation is possible there: augmenting would mean running blocks 1-4
    again for every augmented copy.
    """
    from pneumonia.models import make_vgg16, set_vgg16_phase, split_vgg16

    seed_everything(seed)
    models_dir = Path(models_dir or config.MODELS_DIR)
    logs_dir = Path(logs_dir or config.REPORTS_DIR / "training")
    stem = f"{run.name}-seed{seed}"
    model = make_vgg16((run.image_size, run.image_size, run.channels), weights=run.weights, head=run.head,
                       dense_units=run.dense_units, dropout=run.dropout, name=run.name)
    provenance = model.weights_source
    frozen, top = split_vgg16(model)

    # ImageNet (or file) features are the same for every seed; random-init features are not.
    weights_key = provenance if isinstance(provenance, str) else provenance["sha256"][:16]
    key = f"{weights_key}-seed{seed}" if provenance == "none" else weights_key
    cache_dir = Path(cache_dir or config.PROCESSED_DIR / "cache")
    started = time.perf_counter()
    features = {}
    for split_name, images in (("train", train_images), ("val", val_images)):
        fingerprint = hashlib.sha256(images[:: max(1, len(images) // 64)].tobytes()).hexdigest()[:12]
        cache = cache_dir / f"vgg16-{split_name}-{run.image_size}px-{key}-{len(images)}-{fingerprint}.npy"
        features[split_name] = vgg16_features(frozen, images, cache, run.batch_size, verbose=min(run.verbose, 1))
    feature_seconds = time.perf_counter() - started

    # Cached features are model inputs as they are: no rescaling (scale=1), no augmentation.
    train_data, steps_per_epoch = training_batches(features["train"], train_labels, run.batch_size, seed, scale=1)
    val_data = preprocess.make_dataset(features["val"], val_labels, run.batch_size, scale=1)
    class_weight = preprocess.class_weights(train_labels)
    histories = []
    for phase, epochs, rate in ((1, run.phase1_epochs, run.phase1_learning_rate),
                                (2, run.phase2_epochs, run.phase2_learning_rate)):
        if epochs <= 0:
            continue
        set_vgg16_phase(model, phase)
        compile_model(top, rate)  # recompile: Keras reads `trainable` at compile time
        phase_run = TrainConfig(name=run.name, learning_rate=rate, patience=run.patience,
                                step_schedule=run.step_schedule)
        history = top.fit(
            train_data, steps_per_epoch=steps_per_epoch, validation_data=val_data, epochs=epochs,
            class_weight=class_weight, shuffle=False,
            callbacks=make_callbacks(phase_run, models_dir / "checkpoints" / f"{stem}-phase{phase}.keras",
                                     logs_dir / f"{stem}-phase{phase}.csv"),
            verbose=run.verbose,
        )
        histories += history.history["val_loss"]
    seconds = time.perf_counter() - started
    val_prob = top.predict(val_data, verbose=0).ravel()
    set_vgg16_phase(model, 2)
    return _save(model, run, seed, val_images, val_labels, val_prob, histories, seconds, dataset_sha256, models_dir,
                 weights=provenance, input_scaling="pixel (0-255); VGG16 caffe preprocessing inside the model",
                 extra={"train_images": int(len(train_labels)), "class_weight": class_weight,
                        "feature_seconds": round(feature_seconds, 1)})


def publish(sidecars: list[dict], models_dir: Path | str | None = None, val_images: np.ndarray | None = None,
            val_labels: np.ndarray | None = None) -> Path:
    """Copy the first seed's model to ``models/<name>.keras`` (what predict and the app load by default),
    with a sidecar listing every seed's model.

    With validation images (uint8, as trained on) and more than one seed, the sidecar also gets an
    ``ensemble`` block: the seeds' mean probability, with its own threshold chosen on validation the
    same way as each seed's (see :func:`ensemble_on_validation`).
    """
    models_dir = Path(models_dir or config.MODELS_DIR)
    first = sidecars[0]
    target = models_dir / f"{first['name']}.keras"
    shutil.copyfile(models_dir / first["model_file"], target)
    sidecar = {**first, "model_file": target.name, "seeds": [s["seed"] for s in sidecars],
               "seed_models": [s["model_file"] for s in sidecars]}
    if val_images is not None and len(sidecars) > 1:
        sidecar["ensemble"] = ensemble_on_validation(sidecars, val_images, val_labels, models_dir)
    target.with_suffix(".json").write_text(json.dumps(sidecar, indent=2) + "\n")
    return target


def ensemble_on_validation(sidecars: list[dict], val_images: np.ndarray, val_labels: np.ndarray,
                           models_dir: Path | str | None = None) -> dict:
    """The seeds' ensemble (mean probability) on validation: its threshold, chosen as each seed's was,
    and its validation metrics.

    Averaging models that differ only in their seed is the cheapest known way to rank better under a
    shift of the data (Lakshminarayanan et al. 2017; Ovadia et al. 2019): each seed's errors under an
    unfamiliar image are partly its own. The ensemble costs one prediction per member.
    """
    from pneumonia.models import load_model

    models_dir = Path(models_dir or config.MODELS_DIR)
    members = [(load_model(models_dir / s["model_file"]), s) for s in sidecars]

    def predict(images):
        return evaluate.ensemble_probabilities(members, images)

    val_prob = predict(val_images)
    threshold, method = operating_threshold(predict, val_images, val_labels, val_prob,
                                            sidecars[0]["config"].get("threshold_shift", 0.0))
    return {"members": [s["model_file"] for s in sidecars], "seeds": [s["seed"] for s in sidecars],
            "combination": "mean probability", "threshold": threshold, "threshold_source": "validation",
            "threshold_method": method, "validation": evaluate.binary_metrics(val_labels, val_prob, threshold)}
