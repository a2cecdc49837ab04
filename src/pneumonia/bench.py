"""``make bench``: what the input pipeline costs next to the model's own compute, measured in one run.

Writes ``reports/benchmarks.json`` and a table in ``reports/benchmarks.md``. Every epoch time is the
fastest epoch after the first (which includes graph tracing) of five, over the full training split,
with the CNN configuration of the full run (notebook 04's parameters). The pipeline and the floor are
timed in alternating rounds, so that a slow spell of a shared machine cannot fall on one of them only.

- ``cnn_epoch_s``: our pipeline (cached uint8 -> tf.data -> Keras augmentation layers at the start of
  the training step, ``train.training_model``) + the CNN, as notebook 04 trains;
- ``compute_epoch_s``: the same CNN fed float32 images from memory, no augmentation (the floor);
- ``tfdata_augmentation_epoch_s``: the same augmentation run inside the tf.data pipeline instead (in
  parallel threads, competing with the model's step for the same cores);
- ``baseline_epoch_s``: the same CNN fed as the well-known tutorials do (ImageDataGenerator style):
  every JPEG opened, decoded, resized and affinely augmented per image in Python, every epoch;
- ``compute_epoch_jit_s``: the floor again with XLA ``jit_compile=True`` (recorded because it is the
  obvious thing to try; on this CPU it is slower).

The fastest epoch says what the pipeline can do, not what training costs, so two numbers are means
over every epoch after the first, validation included, as ``train.train_one`` fits:

- ``training_epoch_mean_s``: one endless iterator for the whole fit (``train.training_batches``);
- ``finite_iterator_epoch_mean_s``: a finite dataset, for which Keras builds a new iterator each
  epoch; tearing the old one down after a validation pass stalled about one epoch in three by ~9 s.

Training times and the prediction speed come from the last full run (:func:`full_run_numbers`); without
it they are named as not measured, and the values recorded earlier stay.

The quality goal sits beside the speed goals: ``cnn_test_accuracy``, ``cnn_test_roc_auc``,
``cnn_test_sensitivity`` and ``cnn_test_specificity`` (each the mean over seeds, with its ``_std``) are read
from ``reports/metrics.json``, the test split as notebook 06 scored it once (:func:`quality_numbers`).
"""

from __future__ import annotations

import json
import resource
import time
from functools import partial
from pathlib import Path

import numpy as np

from pneumonia import config, preprocess, reporting, split, train


# Alternating rounds of (pipeline, floor) timings; the fastest of each is kept.
ROUNDS = 2
# Epochs of the training-cost timings (the first is left out of the mean).
TRAINING_EPOCHS = 8


class EpochTimer:
    """Keras callback recording wall time per epoch."""

    def __new__(cls):
        import keras

        class _Timer(keras.callbacks.Callback):
            def on_train_begin(self, logs=None):
                self.seconds = []

            def on_epoch_begin(self, epoch, logs=None):
                self._started = time.perf_counter()

            def on_epoch_end(self, epoch, logs=None):
                self.seconds.append(time.perf_counter() - self._started)

        return _Timer()


def _epoch_seconds(model, data, epochs: int = 5, summary=min, callbacks=(), **fit_kwargs) -> float:
    """The fastest epoch after the first (which traces and warms up): the least disturbed by other load.
    ``summary=np.mean`` gives the mean epoch instead: what training really costs."""
    timer = EpochTimer()
    model.fit(data, epochs=epochs, verbose=0, callbacks=[*callbacks, timer], shuffle=False, **fit_kwargs)
    return round(float(summary(timer.seconds[1:])), 2)


def _tutorial_sequence(filepaths, labels, image_size, channels, batch_size, seed):
    """A ``keras.utils.PyDataset`` that decodes and augments every JPEG every epoch, per image, in Python."""
    import keras
    from scipy import ndimage

    rng = np.random.default_rng(seed)

    class TutorialSequence(keras.utils.PyDataset):
        def __len__(self):
            return int(np.ceil(len(filepaths) / batch_size))

        def __getitem__(self, index):
            batch = slice(index * batch_size, (index + 1) * batch_size)
            images = []
            for path in filepaths[batch]:
                image = preprocess.decode_image(path, image_size, channels).astype(np.float32) / 255.0
                angle = rng.uniform(-10, 10)
                zoom = rng.uniform(0.9, 1.1)
                shift = rng.uniform(-0.05, 0.05, 2) * image_size
                rotation = np.deg2rad(angle)
                matrix = np.array([[np.cos(rotation), -np.sin(rotation)], [np.sin(rotation), np.cos(rotation)]]) / zoom
                centre = np.array([image_size / 2, image_size / 2])
                offset = centre - matrix @ centre - shift
                image = np.stack([ndimage.affine_transform(image[..., c], matrix, offset, order=1, mode="constant")
                                  for c in range(channels)], axis=-1)
                images.append(image)
            return np.stack(images), labels[batch].astype(np.float32)

    return TutorialSequence(workers=1, use_multiprocessing=False)


def run_benchmarks(profile: str = "full", data: Path | str | None = None, splits_csv: Path | str | None = None) -> dict:
    import keras

    from pneumonia.reproduce import notebook_parameters

    settings = notebook_parameters("04-cnn", profile)
    run = train.config_from_parameters(settings)
    limit = settings.get("limit")
    splits = split.read_splits(splits_csv, data)
    images, labels, rows = preprocess.load_split(splits, "train", run.image_size, run.channels, limit=limit)
    val_images, val_labels, _ = preprocess.load_split(splits, "val", run.image_size, run.channels, limit=limit)

    def fresh_model(jit: bool = False, augmentation=None):
        keras.utils.set_random_seed(0)
        model = train.build_cnn(run)
        model = train.training_model(model, augmentation)
        train.compile_model(model, train.learning_rate(run, steps_per_epoch), run.label_smoothing, run.ema_momentum)
        if jit:
            model.compile(optimizer=model.optimizer, loss=model.loss, jit_compile=True)
        return model

    import tensorflow as tf

    results = {"image_size": run.image_size, "channels": run.channels, "train_images": int(len(labels)),
               "batch_size": run.batch_size, "augmentation": run.augmentation, "profile": profile}
    augmentation = preprocess.make_augmentation(**run.augmentation, seed=0)
    pipeline, steps_per_epoch = train.training_batches(images, labels, run.batch_size, seed=0)
    floats = tf.constant(images.astype(np.float32) / 255.0)
    in_memory = tf.data.Dataset.from_tensor_slices((floats, labels.astype(np.float32))).batch(run.batch_size)
    ours, floor = [], []
    for round_ in range(1, ROUNDS + 1):
        print(f"timing, round {round_} of {ROUNDS}: our pipeline + CNN", flush=True)
        ours.append(_epoch_seconds(fresh_model(augmentation=augmentation), pipeline, steps_per_epoch=steps_per_epoch))
        print(f"timing, round {round_} of {ROUNDS}: in-memory tensor, no augmentation (floor)", flush=True)
        floor.append(_epoch_seconds(fresh_model(), in_memory.prefetch(tf.data.AUTOTUNE)))
    results["cnn_epoch_s"], results["compute_epoch_s"] = min(ours), min(floor)
    results["cnn_epoch_s_rounds"], results["compute_epoch_s_rounds"] = ours, floor
    print("timing: augmentation inside the tf.data pipeline instead of the training step", flush=True)
    in_pipeline, _ = train.training_batches(images, labels, run.batch_size, seed=0, augmentation=augmentation)
    results["tfdata_augmentation_epoch_s"] = _epoch_seconds(fresh_model(), in_pipeline, steps_per_epoch=steps_per_epoch)
    validation = preprocess.make_dataset(val_images, val_labels, run.batch_size)
    # As train_one does: the averaged weights' BatchNorm statistics are refreshed on batches of their own.
    refresh = train.batchnorm_refresh_data(run, images, labels, seed=0)
    for key, data, steps in (("training_epoch_mean_s", pipeline, steps_per_epoch),
                             ("finite_iterator_epoch_mean_s", preprocess.make_dataset(images, labels, run.batch_size,
                                                                                    shuffle=True), None)):
        print(f"timing: {TRAINING_EPOCHS} epochs with validation, mean ({key})", flush=True)
        results[key] = _epoch_seconds(fresh_model(augmentation=augmentation), data, epochs=TRAINING_EPOCHS,
                                      summary=np.mean, callbacks=train.weight_average_callbacks(run, refresh),
                                      steps_per_epoch=steps, validation_data=validation)
    print("timing: floor with XLA jit_compile", flush=True)
    results["compute_epoch_jit_s"] = _epoch_seconds(fresh_model(jit=True), in_memory.prefetch(tf.data.AUTOTUNE))
    del floats, in_memory

    print("timing: tutorial-style per-image decode + augmentation every epoch", flush=True)
    sequence = _tutorial_sequence(rows["filepath"].to_numpy(), labels, run.image_size, run.channels,
                                  run.batch_size, seed=0)
    results["baseline_epoch_s"] = _epoch_seconds(fresh_model(), sequence)

    results["pipeline_overhead"] = round(results["cnn_epoch_s"] / results["compute_epoch_s"], 3)
    results["speedup_vs_baseline"] = round(results["baseline_epoch_s"] / results["cnn_epoch_s"], 2)
    results["peak_rss_mb"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)
    results.update(full_run_numbers())
    results["machine"] = {**train.machine(), "tensorflow": tf.__version__}
    return results


def full_run_numbers() -> dict:
    """What the bench takes from the last full run instead of training again, and the prediction speed
    of its published model: cnn_train_s (the published ``cnn`` model's training, its first seed's, from
    reports/metrics/04-cnn.json), vgg16_train_s (reports/metrics/05-vgg16.json), predict_p50_ms and
    predict_batch_images_per_s (models/cnn.keras).

    A number that cannot be had is left out, so that :func:`record` keeps the one measured earlier, and is
    named with its reason in one printed line and under ``not_measured_this_run``."""
    found, missing = {}, {}
    cnn, vgg16 = config.METRICS_DIR / "04-cnn.json", config.METRICS_DIR / "05-vgg16.json"
    try:
        found["cnn_train_s"] = json.loads(cnn.read_text())["models"]["cnn"]["per_seed"][0]["train_seconds"]
    except (OSError, KeyError, IndexError, ValueError):
        missing["cnn_train_s"] = f"no cnn training time in reports/metrics/{cnn.name} (notebook 04)"
    try:
        found["vgg16_train_s"] = json.loads(vgg16.read_text())["vgg16_train_s"]
    except (OSError, KeyError, ValueError):
        missing["vgg16_train_s"] = f"no reports/metrics/{vgg16.name} (notebook 05)"
    speed = _predict_speed()
    if speed is None:
        missing.update(dict.fromkeys(("predict_p50_ms", "predict_batch_images_per_s"),
                                     "no models/cnn.keras (notebook 04: make reproduce)"))
    else:
        found.update(speed)
    for reason in dict.fromkeys(missing.values()):
        keys = ", ".join(key for key, why in missing.items() if why == reason)
        print(f"not measured: {keys}: {reason}; benchmarks.json keeps any earlier value", flush=True)
    return {**found, "not_measured_this_run": missing}


def _predict_speed(repeats: int = 50, batch: int = 256) -> dict | None:
    """predict_p50_ms (one image, model loaded) and predict_batch_images_per_s, with models/cnn.keras;
    None without it."""
    from pneumonia.predict import Predictor

    if not (config.MODELS_DIR / "cnn.keras").exists():
        return None
    predictor = Predictor()
    rng = np.random.default_rng(0)
    image = rng.integers(0, 256, (1, predictor.image_size, predictor.image_size, predictor.channels), dtype=np.uint8)
    predictor.probabilities(image)  # trace once
    single = []
    for _ in range(repeats):
        started = time.perf_counter()
        predictor.probabilities(image)
        single.append(time.perf_counter() - started)
    images = rng.integers(0, 256, (batch, *image.shape[1:]), dtype=np.uint8)
    predictor.probabilities(images)
    started = time.perf_counter()
    predictor.probabilities(images)
    return {"predict_p50_ms": round(float(np.median(single)) * 1000, 2),
            "predict_batch_images_per_s": round(batch / (time.perf_counter() - started), 1)}


def _at_least(key: str, floor: float, results: dict) -> bool:
    return results[key] >= floor


def quality_numbers() -> dict:
    """``cnn_test_<metric>`` and ``cnn_test_<metric>_std`` for each metric of ``reporting.QUALITY_FLOORS``,
    from reports/metrics.json; empty without it or without the model there (the values recorded earlier stay)."""
    path = config.REPORTS_DIR / "metrics.json"
    model = reporting.QUALITY_MODEL
    test = json.loads(path.read_text()).get(model, {}).get("test", {}) if path.exists() else {}
    numbers = {}
    for metric in reporting.QUALITY_FLOORS:
        if metric in test:
            numbers[f"{model}_test_{metric}"] = round(float(test[metric]), 4)
            numbers[f"{model}_test_{metric}_std"] = round(float(test.get(f"{metric}_std", 0.0)), 4)
    return numbers


GOALS = {
    "cnn_epoch_s <= 1.15 x compute_epoch_s": lambda r: r["cnn_epoch_s"] <= 1.15 * r["compute_epoch_s"],
    "cnn_epoch_s < baseline_epoch_s": lambda r: r["cnn_epoch_s"] < r["baseline_epoch_s"],
    "cnn_train_s <= 1200 (20 min)": lambda r: r["cnn_train_s"] <= 1200,
    "vgg16_train_s <= 1800 (30 min)": lambda r: r["vgg16_train_s"] <= 1800,
    "reproduce_full_s <= 3600 (60 min)": lambda r: r["reproduce_full_s"] <= 3600,
    "reproduce_peak_rss_mb <= 6144 (6 GiB)": lambda r: r["reproduce_peak_rss_mb"] <= 6144,
    "predict_p50_ms <= 50": lambda r: r["predict_p50_ms"] <= 50,
    "predict_batch_images_per_s >= 100": lambda r: r["predict_batch_images_per_s"] >= 100,
}
for _metric, _floor in reporting.QUALITY_FLOORS.items():
    _key = f"{reporting.QUALITY_MODEL}_test_{_metric}"
    GOALS[f"{_key} >= {_floor:g}"] = partial(_at_least, _key, _floor)


def goals(results: dict) -> dict:
    """Each goal: True / False, or None where its numbers are missing."""
    met = {}
    for goal, check in GOALS.items():
        try:
            met[goal] = bool(check(results))
        except (KeyError, TypeError):
            met[goal] = None
    return met


def _describe(machine: dict) -> str:
    """'2 CPU cores (AMD EPYC; avx2, fma)', or what is known of it."""
    if not machine:
        return "an unrecorded machine"
    extensions = ", ".join(machine.get("vector_extensions", [])) or "no vector extensions recorded"
    return f"{machine.get('cpus', '?')} CPU cores ({machine.get('cpu_model', machine.get('processor', '?'))}; {extensions})"


def record(results: dict) -> None:
    """Merge ``results`` and the quality figures (:func:`quality_numbers`) into reports/benchmarks.json (keys
    from other runs are kept), re-check every goal against the merged numbers, and rewrite the table in
    reports/benchmarks.md.

    Both ``make bench`` and a full ``make reproduce`` record through here, so the goals never go stale."""
    path = config.REPORTS_DIR / "benchmarks.json"
    current = json.loads(path.read_text()) if path.exists() else {}
    current.update(results)
    current.update(quality_numbers())
    current["goals"] = goals(current)
    reporting.write_json(path, current)
    machine = current.get("machine", {})
    lines = ["# Benchmarks", "", f"Measured by `make bench` on {_describe(machine)} "
             f"(TensorFlow {machine.get('tensorflow', '?')}), {current.get('train_images', '?')} training images at "
             f"{current.get('image_size', '?')} px, {current.get('channels', '?')} channel(s); `reproduce_*` by the last "
             f"full `make reproduce`, on {_describe(current.get('reproduce_machine', {}))}. Times from different CPUs "
             "do not compare: this CNN trains ~3x faster with AVX-512 than with AVX2 alone. The `cnn_test_*` "
             "figures are notebook 06's scores on the official test split (reports/metrics.json), the mean over "
             "the seeds with its `_std`: the quality goal, not a time.", "",
             "| key | value |", "|---|---|"]
    for key, value in current.items():
        if isinstance(value, dict) and key not in ("goals", "machine", "reproduce_machine"):
            value = ", ".join(f"{name}: {number}" for name, number in value.items()) or "none"
        if not isinstance(value, dict):
            lines.append(f"| `{key}` | {value} |")
    lines += ["", "| goal | met |", "|---|---|"]
    lines += [f"| {goal} | {'n/a' if met is None else ('yes' if met else 'no')} |" for goal, met in current["goals"].items()]
    (config.REPORTS_DIR / "benchmarks.md").write_text("\n".join(lines) + "\n")
    print(f"wrote {path} and benchmarks.md")
