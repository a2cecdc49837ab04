"""Model builders and training helpers."""

from __future__ import annotations

import json
import warnings

import keras
import numpy as np
import pandas as pd
import pytest

from pneumonia import evaluate, models, preprocess, train


def tiny_training_set():
    """40 small images, 12 NORMAL and 28 PNEUMONIA; a bright square in each PNEUMONIA image is the signal to learn."""
    rng = np.random.default_rng(0)
    images = rng.integers(0, 60, (40, 32, 32, 1), dtype=np.uint8)
    labels = np.array([0] * 12 + [1] * 28, dtype=np.int32)
    images[labels == 1, 8:24, 8:24] += 150
    return images, labels


def assert_predicts_the_same_once_saved(model, images, tmp_path):
    """``model`` saved as .keras and loaded again (its custom layers included) predicts as before."""
    model.save(tmp_path / "m.keras")
    assert np.allclose(models.load_model(tmp_path / "m.keras").predict(images, verbose=0), model.predict(images, verbose=0))


def standardise(features):
    """Each image's feature maps at zero mean and unit standard deviation, channel by channel."""
    return (features - features.mean(axis=(1, 2), keepdims=True)) / features.std(axis=(1, 2), keepdims=True)


@pytest.fixture
def fit_calls(monkeypatch) -> list[dict]:
    """What each ``keras.Model.fit`` call was given: its keyword arguments, the model and its first batch's size."""
    calls, fit = [], keras.Model.fit

    def recording_fit(self, data, *args, **kwargs):
        calls.append({**kwargs, "model": self, "batch": len(next(iter(data))[0])})
        return fit(self, data, *args, **kwargs)

    monkeypatch.setattr(keras.Model, "fit", recording_fit)
    return calls


@pytest.mark.parametrize(("size", "channels"), [(64, 1), (96, 3)])
def test_make_cnn_shapes_and_parameters(size, channels):
    model = models.make_cnn((size, size, channels), filters=(8, 16, 32))
    assert model.input_shape == (None, size, size, channels)
    assert model.output_shape == (None, 1)
    assert model.layers[-1].activation.__name__ == "sigmoid"
    # Trainable: convolutions (no bias), BatchNorm gamma/beta, the dense head.
    convs = 3 * 3 * channels * 8 + 3 * 3 * 8 * 16 + 3 * 3 * 16 * 32
    batchnorm = 2 * (8 + 16 + 32)
    dense = 32 + 1
    trainable = sum(int(np.prod(w.shape)) for w in model.trainable_weights)
    assert trainable == convs + batchnorm + dense
    assert models.last_conv_layer_name(model) == "block3_conv"
    assert models.gradcam_layer_name(model) == "block3_relu"
    assert model.get_layer("block1_conv").strides == (2, 2)


def test_make_cnn_predicts_probabilities():
    model = models.make_cnn((32, 32, 1), filters=(4, 8))
    output = model.predict(np.random.default_rng(0).random((3, 32, 32, 1), dtype=np.float32), verbose=0)
    assert output.shape == (3, 1) and ((output > 0) & (output < 1)).all()


def test_train_one_saves_model_sidecar_and_threshold(tmp_path):
    images, labels = tiny_training_set()
    run = train.TrainConfig(name="tiny", image_size=32, filters=(4, 8), epochs=2, batch_size=8, verbose=0,
                            balance="smote", augmentation={"rotation": 0.02}, threshold_shift=1.0)
    sidecar = train.train_one(run, 0, images, labels, images[::2], labels[::2], "hash", tmp_path / "m", tmp_path / "l")
    assert (tmp_path / "m" / "tiny-seed0.keras").exists()
    assert json.loads((tmp_path / "m" / "tiny-seed0.json").read_text()) == json.loads(json.dumps(sidecar))
    assert 0.0 <= sidecar["threshold"] <= 1.0 and sidecar["threshold_source"] == "validation"
    assert "simulated-shift copy" in sidecar["threshold_method"]
    assert sidecar["smote_synthetic_images"] == 16 and sidecar["train_images"] == 56
    assert sidecar["image_size"] == 32 and sidecar["class_names"] == ["NORMAL", "PNEUMONIA"]
    assert {"tensorflow", "keras", "numpy"} <= set(sidecar["versions"]) and sidecar["machine"]["cpus"] >= 1
    assert (tmp_path / "l" / "tiny-seed0.csv").read_text().startswith("epoch,")
    published = train.publish([sidecar], tmp_path / "m")
    assert published.name == "tiny.keras" and evaluate.load_sidecar(published)["seed_models"] == ["tiny-seed0.keras"]
    saved = models.load_model(published)  # the bare CNN: augmentation belonged to training only
    assert saved.layers[1].name == "block1_conv" and "augmentation" not in [layer.name for layer in saved.layers]


def test_oversampling_repeats_normal_images_without_making_an_epoch_longer(tmp_path, fit_calls):
    images, labels = tiny_training_set()
    run = train.TrainConfig(name="tiny", image_size=32, filters=(4, 8), epochs=1, batch_size=8, verbose=0,
                            balance="oversample")
    sidecar = train.train_one(run, 0, images, labels, images[::2], labels[::2], "hash", tmp_path / "m", tmp_path / "l")
    assert sidecar["oversampled_copies"] == 16 and sidecar["train_images"] == 56
    assert [(call["steps_per_epoch"], call["class_weight"]) for call in fit_calls] == [(5, None)]  # 40 real / 8, not 56 / 8
    with pytest.raises(ValueError, match="balance must be one of"):
        train.train_one(train.TrainConfig(balance="undersample"), 0, images, labels, images, labels, "hash", tmp_path)


@pytest.mark.parametrize(("ema_momentum", "bn_refresh_batches"), [(None, 0), (0.9, 0), (0.9, 3)])
def test_the_published_weights_are_the_ones_validation_scored_best(ema_momentum, bn_refresh_batches, tmp_path):
    rng = np.random.default_rng(1)
    images = rng.integers(0, 60, (48, 32, 32, 1), dtype=np.uint8)
    labels = np.array([0, 1] * 24, dtype=np.int32)
    images[labels == 1, 8:24, 8:24] += 150
    run = train.TrainConfig(name="tiny", image_size=32, filters=(4, 8), epochs=4, batch_size=8, verbose=0,
                            augmentation={"rotation": 0.05}, label_smoothing=0.1, ema_momentum=ema_momentum,
                            bn_refresh_batches=bn_refresh_batches)
    val_images, val_labels = images[::3], labels[::3]
    train.train_one(run, 0, images, labels, val_images, val_labels, "hash", tmp_path / "m", tmp_path / "l")
    best_val_loss = pd.read_csv(tmp_path / "l" / "tiny-seed0.csv")["val_loss"].min()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        model = models.load_model(tmp_path / "m" / "tiny-seed0.keras")  # compiled as it trained
    assert not [w for w in caught if "optimizer" in str(w.message)]  # its unused optimizer state is no user's concern
    assert model.optimizer.use_ema == (ema_momentum is not None) and model.loss.label_smoothing == 0.1
    loss = model.evaluate(val_images.astype(np.float32) / 255, val_labels.astype(np.float32), verbose=0)[0]
    assert loss == pytest.approx(best_val_loss, abs=1e-4)


def test_batchnorm_refresh_averages_training_batches_then_gives_training_its_statistics_back():
    inputs = keras.Input((4, 4, 1))
    augmented = keras.layers.RandomTranslation(0.1, 0.1, seed=3)(inputs)  # draws from a seed generator
    normalized = keras.layers.BatchNormalization(momentum=0.9)(augmented)
    model = keras.Model(inputs, keras.layers.Dense(1)(keras.layers.Flatten()(normalized)))
    layer = train.batchnorm_layers(model)[0]
    layer.moving_mean.assign([5.0])
    generators = [v for v in model.non_trainable_variables if "seed" in v.path]
    assert generators
    before = [v.numpy().copy() for v in generators]
    batches = [(np.full((2, 4, 4, 1), value, np.float32), np.zeros(2)) for value in (1.0, 2.0, 6.0, 100.0)]
    refresh = train.BatchNormRefresh(batches, steps=3)
    refresh.set_model(model)

    refresh.on_test_begin()
    # the plain mean of three constant batches (a constant image survives the translation)
    assert float(layer.moving_mean[0]) == pytest.approx(3.0, abs=1e-5)
    assert float(layer.moving_variance[0]) == pytest.approx(0.0, abs=1e-5)
    assert layer.momentum == 0.9
    assert all(np.array_equal(v.numpy(), b) for v, b in zip(generators, before))
    refresh.on_epoch_begin(1)
    assert float(layer.moving_mean[0]) == pytest.approx(5.0)


def test_batchnorm_refresh_is_a_weight_average_option():
    assert train.weight_average_callbacks(train.TrainConfig()) == []
    with pytest.raises(ValueError, match="ema_momentum"):
        train.weight_average_callbacks(train.TrainConfig(bn_refresh_batches=4))
    with pytest.raises(ValueError, match="training batches"):
        train.weight_average_callbacks(train.TrainConfig(ema_momentum=0.99, bn_refresh_batches=4))
    callbacks = train.weight_average_callbacks(train.TrainConfig(ema_momentum=0.99, bn_refresh_batches=4), [])
    assert [type(c).__name__ for c in callbacks] == ["SwapEMAWeights", "BatchNormRefresh"]
    images, labels = np.zeros((6, 8, 8, 1), np.uint8), np.array([0, 1, 0, 1, 0, 1])
    assert train.batchnorm_refresh_data(train.TrainConfig(), images, labels, seed=0) is None
    batches = train.batchnorm_refresh_data(train.TrainConfig(ema_momentum=0.99, bn_refresh_batches=4, batch_size=4),
                                           images, labels, seed=0)
    first_images, first_labels = next(iter(batches))
    assert first_images.shape == (4, 8, 8, 1) and first_labels.shape[0] == 4


def test_training_model_augments_in_training_only_and_trains_the_model_itself():
    model = models.make_cnn((32, 32, 1), filters=(4, 8))
    augmentation = preprocess.make_augmentation(rotation=0.1, shift=0.1, zoom=0.1, seed=0)
    trainer = train.training_model(model, augmentation)
    assert train.training_model(model, None) is model
    assert {id(w) for w in trainer.trainable_weights} == {id(w) for w in model.trainable_weights}
    images = np.random.default_rng(0).random((4, 32, 32, 1), dtype=np.float32)
    np.testing.assert_allclose(trainer(images, training=False), model(images, training=False), rtol=1e-6)
    assert not np.allclose(trainer.get_layer("augmentation")(images, training=True), images)
    before = [w.numpy().copy() for w in model.trainable_weights]
    train.compile_model(trainer)
    trainer.fit(images, np.array([0, 1, 0, 1], dtype=np.float32), epochs=1, verbose=0)
    assert any(not np.allclose(b, w.numpy()) for b, w in zip(before, model.trainable_weights))


def test_training_batches_shuffle_every_image_once_per_epoch_without_end():
    images = np.arange(70, dtype=np.uint8).reshape(70, 1, 1, 1)
    labels = np.arange(70) % 2

    def epochs(seed, count=3):
        data, steps = train.training_batches(images, labels, batch_size=32, seed=seed)
        assert steps == 3
        iterator = iter(data)
        return [np.concatenate([np.rint(next(iterator)[0].numpy().ravel() * 255) for _ in range(steps)]).astype(int)
                for _ in range(count)]

    first = epochs(seed=3)
    for epoch in first:
        assert sorted(epoch) == list(range(70))  # every image once: no batch crosses an epoch's end
    assert not np.array_equal(first[0], first[1])  # each pass reshuffles
    np.testing.assert_array_equal(np.stack(epochs(seed=3)), np.stack(first))
    assert not np.array_equal(epochs(seed=4)[0], first[0])
    augmented, _ = train.training_batches(images, labels, batch_size=32, seed=3, augmentation=lambda x, training: 1 - x)
    np.testing.assert_allclose(next(iter(augmented))[0].numpy().ravel(), 1 - first[0][:32] / 255, atol=1e-6)


class _Brightness:
    """A stand-in model whose PNEUMONIA score is the mean pixel: no training needed to test thresholds."""

    def predict(self, images, batch_size=None, verbose=0):
        return images.mean(axis=(1, 2, 3))[:, None]


def test_operating_threshold_also_uses_a_shifted_copy_of_validation():
    from pneumonia import preprocess

    rng = np.random.default_rng(0)
    labels = np.array([0] * 30 + [1] * 30)
    images = rng.integers(40, 120, (60, 24, 24, 1)).astype(np.uint8)
    images[labels == 1] += 30
    preparation = {"intensity": "none", "input_scaling": "pixel / 255"}
    model = _Brightness()
    probabilities = evaluate.predict_probabilities(model, images, preparation)

    def predict(batch):
        return evaluate.predict_probabilities(model, batch, preparation)

    plain, method = train.operating_threshold(predict, images, labels, probabilities, 0.0)
    assert method == "youden_j_midpoint" and plain == evaluate.choose_threshold(labels, probabilities)

    threshold, method = train.operating_threshold(predict, images, labels, probabilities, 1.5)
    shifted = preprocess.simulate_acquisition_shift(images, seed=train.THRESHOLD_SHIFT_SEED, strength=1.5)
    both = np.r_[probabilities, evaluate.predict_probabilities(model, shifted, preparation)]
    assert threshold == evaluate.choose_threshold(np.r_[labels, labels], both) != plain
    assert "strength 1.5" in method and f"seed {train.THRESHOLD_SHIFT_SEED}" in method


def test_publish_adds_an_ensemble_of_the_seeds_with_its_own_validation_threshold(tmp_path):
    from pneumonia import preprocess

    rng = np.random.default_rng(0)
    images = rng.integers(0, 60, (40, 32, 32, 1), dtype=np.uint8)
    labels = np.array([0, 1] * 20, dtype=np.int32)
    images[labels == 1, 8:24, 8:24] += 90
    run = train.TrainConfig(name="tiny", image_size=32, filters=(4, 8), epochs=1, batch_size=8, verbose=0,
                            threshold_shift=1.0)
    val_images, val_labels = images[:20], labels[:20]
    sidecars = [train.train_one(run, seed, images, labels, val_images, val_labels, "hash", tmp_path, tmp_path / "l")
                for seed in (0, 1)]

    alone = evaluate.load_sidecar(train.publish(sidecars[:1], tmp_path, val_images, val_labels))
    assert "ensemble" not in alone  # one seed is not an ensemble
    ensemble = evaluate.load_sidecar(train.publish(sidecars, tmp_path, val_images, val_labels))["ensemble"]

    members = [(models.load_model(tmp_path / s["model_file"]), s) for s in sidecars]
    mean = evaluate.ensemble_probabilities(members, val_images)
    assert not np.allclose(mean, evaluate.predict_probabilities(members[0][0], val_images, sidecars[0]))
    shifted = preprocess.simulate_acquisition_shift(val_images, seed=train.THRESHOLD_SHIFT_SEED, strength=1.0)
    expected = evaluate.choose_threshold(np.r_[val_labels, val_labels],
                                         np.r_[mean, evaluate.ensemble_probabilities(members, shifted)])
    assert ensemble["threshold"] == pytest.approx(expected)
    assert ensemble["members"] == ["tiny-seed0.keras", "tiny-seed1.keras"] and ensemble["seeds"] == [0, 1]
    assert ensemble["threshold_source"] == "validation" and "simulated-shift copy" in ensemble["threshold_method"]
    assert ensemble["validation"]["roc_auc"] == pytest.approx(evaluate.binary_metrics(val_labels, mean)["roc_auc"])


def test_cosine_decay_lowers_the_rate_to_zero_by_the_last_step_and_replaces_the_plateau_rule(tmp_path):
    run = train.TrainConfig(epochs=4, learning_rate=1e-3, cosine_decay=True)
    schedule = train.learning_rate(run, steps_per_epoch=10)
    assert [float(schedule(step)) for step in (0, 20, 40)] == pytest.approx([1e-3, 5e-4, 0.0], abs=1e-9)
    assert train.learning_rate(train.TrainConfig(learning_rate=1e-3), 10) == 1e-3
    callbacks = [type(c).__name__ for c in train.make_callbacks(run, tmp_path / "c.keras", tmp_path / "l.csv")]
    assert "ReduceLROnPlateau" not in callbacks and "EarlyStopping" in callbacks
    assert "ReduceLROnPlateau" in [type(c).__name__ for c in
                                   train.make_callbacks(train.TrainConfig(), tmp_path / "c.keras", tmp_path / "l.csv")]
    with pytest.raises(ValueError, match="cosine_decay"):
        train.learning_rate(train.TrainConfig(cosine_decay=True, step_schedule={"every": 2}), 10)


def test_train_one_with_cosine_decay_ends_at_a_rate_of_zero_and_saves_a_loadable_model(tmp_path):
    rng = np.random.default_rng(0)
    images = rng.integers(0, 60, (32, 32, 32, 1), dtype=np.uint8)
    labels = np.array([0] * 12 + [1] * 20, dtype=np.int32)
    images[labels == 1, 8:24, 8:24] += 150
    run = train.TrainConfig(name="tiny", image_size=32, filters=(4, 8), epochs=2, batch_size=8, verbose=0,
                            cosine_decay=True, patience=5)
    sidecar = train.train_one(run, 0, images, labels, images, labels, "hash", tmp_path / "m", tmp_path / "l")
    loaded = models.load_model(tmp_path / "m" / sidecar["model_file"])
    optimizer = loaded.optimizer
    assert float(optimizer.learning_rate) == pytest.approx(0.0, abs=1e-9)  # 2 epochs x 4 steps: the schedule's end
    assert sidecar["config"]["cosine_decay"] is True


def test_step_decay_divides_the_rate_every_few_epochs():
    schedule = train.step_decay(1e-3, factor=0.5, every=3).schedule
    assert [schedule(e) for e in (0, 2, 3, 6)] == pytest.approx([1e-3, 1e-3, 5e-4, 2.5e-4])


def test_grad_cam_highlights_the_region_that_drives_the_score():
    import keras

    from pneumonia import explain

    # A model whose score is the mean activation of its only conv: bright top-left means high score.
    inputs = keras.Input((16, 16, 1))
    x = keras.layers.Conv2D(1, 1, kernel_initializer="ones", use_bias=False, name="conv")(inputs)
    x = keras.layers.Activation("relu", name="relu")(x)
    outputs = keras.layers.Dense(1, activation="sigmoid", kernel_initializer="ones")(keras.layers.GlobalAveragePooling2D()(x))
    model = keras.Model(inputs, outputs)
    image = np.zeros((1, 16, 16, 1), dtype="float32")
    image[0, :8, :8] = 1.0
    heat = explain.grad_cam(model, image)[0]
    assert heat.shape == (16, 16) and heat.max() == pytest.approx(1.0)
    assert heat[:8, :8].mean() > 0.9 and heat[8:, 8:].max() == 0.0
    overlay = explain.overlay((image[0] * 255).astype(np.uint8), heat)
    assert overlay.shape == (16, 16, 3) and overlay.dtype == np.uint8


def test_batchnorm_momentum_is_a_parameter():
    model = models.make_cnn((32, 32, 1), filters=(4, 8), batchnorm_momentum=0.9)
    assert {model.get_layer(f"block{i}_bn").momentum for i in (1, 2)} == {0.9}
    assert models.make_cnn((32, 32, 1), filters=(4,)).get_layer("block1_bn").momentum == 0.99


def test_blurpool_removes_what_plain_subsampling_aliases():
    checkerboard = (np.indices((8, 8)).sum(axis=0) % 2).astype(np.float32)[None, :, :, None]
    # Every other pixel of a one-pixel checkerboard is all ones or all zeros: the finest texture
    # turns into a flat, wrong brightness. Blurred first, it becomes its mean.
    assert np.unique(checkerboard[:, ::2, ::2]).size == 1
    blurred = np.asarray(models.BlurPool2D(2)(checkerboard))
    assert blurred.shape == (1, 4, 4, 1)
    assert np.allclose(blurred[:, :3, :3], 0.5)
    flat = np.full((1, 7, 7, 3), 0.8, np.float32)  # the padding is left out of each mean: edges stay as bright
    assert np.allclose(models.BlurPool2D(2)(flat), 0.8) and models.BlurPool2D(2)(flat).shape == (1, 4, 4, 3)
    impulse = np.zeros((1, 5, 5, 1), np.float32)
    impulse[0, 2, 2] = 16.0
    spread = np.asarray(models.BlurPool2D(1)(impulse))[0, :, :, 0]
    assert spread.sum() == pytest.approx(16.0) and np.count_nonzero(spread) == 9  # a 3x3 binomial


def test_antialiased_cnn_blurs_every_downsampling_and_keeps_its_parameters(tmp_path):
    plain = models.make_cnn((32, 32, 1), filters=(4, 8, 16))
    model = models.make_cnn((32, 32, 1), filters=(4, 8, 16), antialias=True)
    blurs = [layer.name for layer in model.layers if isinstance(layer, models.BlurPool2D)]
    assert blurs == ["block1_input_blur", "block1_blur", "block2_blur"]
    assert all(model.get_layer(name).strides == 1 for name in blurs)
    names = [layer.name for layer in model.layers]
    assert names.index("block1_input_blur") < names.index("block1_conv")
    assert all(names.index(f"block{i}_blur") + 1 == names.index(f"block{i}_pool") for i in (1, 2))
    assert model.get_layer("block1_conv").strides == (2, 2)
    assert model.get_layer("block3_relu").output.shape == plain.get_layer("block3_relu").output.shape
    assert model.count_params() == plain.count_params()
    images = np.random.default_rng(0).random((2, 32, 32, 1), dtype=np.float32)
    assert_predicts_the_same_once_saved(model, images, tmp_path)


def test_instance_norm_blocks_normalise_half_the_channels_per_image(tmp_path):
    model = models.make_cnn((32, 32, 1), filters=(4, 8, 16), instance_norm_blocks=2)
    for block, width in (("block1", 4), ("block2", 8)):
        instance = model.get_layer(f"{block}_in")
        assert instance.groups == width // 2 and instance.output.shape[-1] == width // 2  # one channel a group
        assert model.get_layer(f"{block}_bn").output.shape[-1] == width // 2
    assert model.get_layer("block3_bn").output.shape[-1] == 16
    assert "block3_in" not in [layer.name for layer in model.layers]
    # Per image and channel, at inference too: mean 0 and standard deviation 1 (before any learnt scale),
    # whatever the image's brightness; BatchNorm's half keeps the training set's statistics instead.
    # The check is exact: the standard deviation alone sits below 1 by GroupNormalization's epsilon,
    # by how much depending on the random initial weights.
    probe = keras.Model(model.input, [model.get_layer(name).output for name in ("block1_conv", "block1_in", "block1_bn")])
    images = np.random.default_rng(0).random((2, 32, 32, 1), dtype=np.float32) * [[[[1.0]]], [[[5.0]]]]
    conv, instance, batch = (np.asarray(output) for output in probe(images, training=False))
    first_half = conv[..., :2]
    centred = first_half - first_half.mean(axis=(1, 2), keepdims=True)
    expected = centred / np.sqrt(first_half.var(axis=(1, 2), keepdims=True) + model.get_layer("block1_in").epsilon)
    assert np.allclose(instance, expected, atol=1e-4)
    assert np.allclose(instance.mean(axis=(1, 2)), 0, atol=1e-4)
    assert not np.allclose(batch.std(axis=(1, 2))[0], batch.std(axis=(1, 2))[1], rtol=0.5)
    assert_predicts_the_same_once_saved(model, images, tmp_path)


def test_group_norm_blocks_replace_batchnorm_with_per_image_groups(tmp_path):
    model = models.make_cnn((32, 32, 1), filters=(4, 8, 16), group_norm_blocks=2, group_norm_groups=2)
    names = [layer.name for layer in model.layers]
    assert "block1_bn" not in names and "block2_bn" not in names and "block3_bn" in names
    assert model.get_layer("block2_gn").groups == 2 and model.get_layer("block2_gn").output.shape[-1] == 8
    # Per image and group of channels, at inference too: mean 0 and variance 1 (before the learnt scale),
    # so an image five times brighter gives the same normalised features (up to epsilon: the images are
    # bright enough that it weighs little against their variance).
    probe = keras.Model(model.input, [model.get_layer("block1_conv").output, model.get_layer("block1_gn").output])
    image = 10 * np.random.default_rng(0).random((1, 32, 32, 1), dtype=np.float32)
    conv, grouped = (np.asarray(output) for output in probe(np.concatenate([image, 5 * image]), training=False))
    first_group = conv[..., :2]
    expected = (first_group - first_group.mean(axis=(1, 2, 3), keepdims=True)) / np.sqrt(
        first_group.var(axis=(1, 2, 3), keepdims=True) + model.get_layer("block1_gn").epsilon)
    assert np.allclose(grouped[..., :2], expected, atol=1e-4)
    assert np.allclose(grouped[0], grouped[1], atol=0.01) and not np.allclose(conv[0], conv[1], atol=0.01)
    assert_predicts_the_same_once_saved(model, image, tmp_path)
    with pytest.raises(ValueError, match="one way"):
        models.make_cnn((32, 32, 1), filters=(4, 8), instance_norm_blocks=1, group_norm_blocks=1)


def test_build_cnn_follows_the_training_config():
    run = train.TrainConfig(image_size=32, filters=(4, 8), antialias=True, instance_norm_blocks=1, name="variant")
    model = train.build_cnn(run)
    assert "block1_gn" not in [layer.name for layer in model.layers]
    grouped = train.build_cnn(train.TrainConfig(image_size=32, filters=(4, 8), group_norm_blocks=1, group_norm_groups=2))
    assert grouped.get_layer("block1_gn").groups == 2 and "block2_bn" in [layer.name for layer in grouped.layers]
    assert model.name == "variant" and model.input_shape == (None, 32, 32, 1)
    assert "block1_blur" in [layer.name for layer in model.layers if isinstance(layer, models.BlurPool2D)]
    assert model.get_layer("block1_in").groups == 2


def test_global_max_pooling_keeps_each_features_strongest_response(tmp_path):
    model = models.make_cnn((32, 32, 1), filters=(4, 8), global_pooling="max")
    features = keras.Model(model.input, [model.get_layer("block2_relu").output, model.get_layer("global_pool").output])
    image = np.random.default_rng(0).random((1, 32, 32, 1), dtype=np.float32)
    maps, pooled = (np.asarray(output) for output in features(image, training=False))
    assert np.allclose(pooled, maps.max(axis=(1, 2))) and not np.allclose(pooled, maps.mean(axis=(1, 2)))
    average = train.build_cnn(train.TrainConfig(image_size=32, filters=(4, 8)))
    assert isinstance(average.get_layer("global_pool"), keras.layers.GlobalAveragePooling2D)
    assert isinstance(train.build_cnn(train.TrainConfig(image_size=32, filters=(4, 8), global_pooling="max"))
                      .get_layer("global_pool"), keras.layers.GlobalMaxPooling2D)
    assert_predicts_the_same_once_saved(model, image, tmp_path)
    with pytest.raises(ValueError, match="global_pooling"):
        models.make_cnn((32, 32, 1), filters=(4, 8), global_pooling="sum")


def test_mixstyle_mixes_per_image_feature_statistics_in_training_only(tmp_path):
    rng = np.random.default_rng(0)
    features = (rng.random((8, 6, 6, 3)) * np.arange(1, 9)[:, None, None, None] + np.arange(8)[:, None, None, None])
    features = features.astype(np.float32)
    always = models.MixStyle(probability=1.0, alpha=0.5, seed=1)
    mixed = np.asarray(always(features, training=True))
    means, mixed_means = features.mean(axis=(1, 2)), mixed.mean(axis=(1, 2))
    # Each image's new mean is a mix of two images' means: within the batch's range, and not its own.
    assert np.all(mixed_means >= means.min(axis=0) - 1e-4) and np.all(mixed_means <= means.max(axis=0) + 1e-4)
    assert not np.allclose(mixed_means, means, atol=1e-2)
    # Normalised, each image's pattern is unchanged: only its statistics move.
    assert np.allclose(standardise(mixed), standardise(features), atol=1e-3)
    assert np.array_equal(np.asarray(always(features, training=False)), features)
    assert np.array_equal(np.asarray(models.MixStyle(probability=0.0)(features, training=True)), features)

    model = models.make_cnn((32, 32, 1), filters=(4, 8, 16), mixstyle_blocks=2)
    names = [layer.name for layer in model.layers]
    assert "block1_mixstyle" in names and "block2_mixstyle" in names and "block3_mixstyle" not in names
    assert "block1_mixstyle" in [layer.name for layer in train.build_cnn(
        train.TrainConfig(image_size=32, filters=(4, 8), mixstyle_blocks=1)).layers]
    image = rng.random((2, 32, 32, 1), dtype=np.float32)
    assert_predicts_the_same_once_saved(model, image, tmp_path)


def test_feature_statistics_noise_redraws_statistics_by_the_batch_spread_in_training_only(tmp_path):
    rng = np.random.default_rng(0)
    # Channel 0's per-image means spread widely over the batch (sd 5), channel 1's barely (sd about 0.02).
    features = rng.normal(0, 0.1, size=(64, 6, 6, 2))
    features[..., 0] += rng.normal(0, 5, 64)[:, None, None]
    features = features.astype(np.float32)
    always = models.FeatureStatisticsNoise(probability=1.0, seed=1)
    noisy = np.asarray(always(features, training=True))
    moved = np.abs(noisy.mean(axis=(1, 2)) - features.mean(axis=(1, 2))).mean(axis=0)
    # Means move by about the batch's spread of them (E|N(0, s)| = 0.8 s), channel by channel.
    assert 2.5 < moved[0] < 6 and moved[1] < 0.05
    assert not np.allclose(noisy.std(axis=(1, 2)), features.std(axis=(1, 2)), atol=1e-2)
    # Normalised, each image's pattern is unchanged: only its statistics move.
    assert np.allclose(standardise(noisy), standardise(features), atol=1e-3)
    assert np.array_equal(np.asarray(always(features, training=False)), features)
    assert np.array_equal(np.asarray(models.FeatureStatisticsNoise(probability=0.0)(features, training=True)), features)

    model = models.make_cnn((32, 32, 1), filters=(4, 8, 16), statistics_noise_blocks=3)
    names = [layer.name for layer in model.layers]
    assert {"block1_statistics_noise", "block2_statistics_noise", "block3_statistics_noise"} <= set(names)
    assert "block1_statistics_noise" in [layer.name for layer in train.build_cnn(
        train.TrainConfig(image_size=32, filters=(4, 8), statistics_noise_blocks=1)).layers]
    image = rng.random((2, 32, 32, 1), dtype=np.float32)
    assert_predicts_the_same_once_saved(model, image, tmp_path)


def test_jensen_shannon_matches_scipy_and_is_zero_only_for_equal_probabilities():
    from scipy.spatial.distance import jensenshannon

    first = np.array([0.1, 0.5, 0.9, 0.3], dtype=np.float32)
    second = np.array([0.1, 0.2, 0.6, 0.99], dtype=np.float32)
    expected = [jensenshannon([p, 1 - p], [q, 1 - q]) ** 2 for p, q in zip(first, second)]
    np.testing.assert_allclose(train.jensen_shannon(first, second), expected, rtol=1e-4, atol=1e-7)
    assert float(train.jensen_shannon(first, second)[0]) == pytest.approx(0.0, abs=1e-7)


def test_consistency_model_adds_the_views_disagreement_in_training_only():
    model = models.make_cnn((32, 32, 1), filters=(4, 8), dropout=0.0)
    darker = keras.Sequential([keras.layers.Rescaling(0.5)], name="second_view")  # a fixed second view
    trainer = train.consistency_model(model, None, darker, weight=12.0)
    assert {id(w) for w in trainer.trainable_weights} == {id(w) for w in model.trainable_weights}
    images = np.random.default_rng(0).random((4, 32, 32, 1), dtype=np.float32)
    np.testing.assert_allclose(trainer(images, training=False), model(images, training=False), rtol=1e-6)
    trainer(images, training=False)
    regularisation = sum(float(loss) for loss in trainer.losses)  # L2 alone: nothing is added outside training
    output = trainer(images, training=True)
    added = sum(float(loss) for loss in trainer.losses) - regularisation
    both = model(np.concatenate([images, 0.5 * images]), training=True).numpy()  # one batch: shared BatchNorm statistics
    np.testing.assert_allclose(output, both[:4], rtol=1e-5)
    expected = 12.0 * float(np.mean(train.jensen_shannon(both[:4], both[4:])))
    assert expected > 0 and added == pytest.approx(expected, rel=1e-4)


def test_train_one_with_consistency_fills_each_step_with_two_views_of_half_as_many_images(tmp_path, fit_calls):
    images, labels = tiny_training_set()
    run = train.TrainConfig(name="tiny", image_size=32, filters=(4, 8), epochs=1, batch_size=8, verbose=0,
                            augmentation={"zoom": 0.1}, consistency={"weight": 12.0, "augmentation": {"frame": 0.08}},
                            ema_momentum=0.99, bn_refresh_batches=2)
    sidecar = train.train_one(run, 0, images, labels, images[::2], labels[::2], "hash", tmp_path / "m", tmp_path / "l")
    [fitted] = fit_calls
    assert fitted["steps_per_epoch"] == 5 and fitted["batch"] == 4  # 40 images / 8 a step, 4 in two views each
    trainer = fitted["model"]
    assert trainer.name == "tiny_consistent"
    assert {"augmentation", "second_view", "consistency"} <= {layer.name for layer in trainer.layers}
    assert sidecar["config"]["consistency"] == {"weight": 12.0, "augmentation": {"frame": 0.08}}
    saved = models.load_model(tmp_path / "m" / "tiny-seed0.keras")
    assert saved.name == "tiny" and "consistency" not in [layer.name for layer in saved.layers]
    with pytest.raises(ValueError, match="even batch_size"):
        train.images_per_step(train.TrainConfig(batch_size=7, consistency={"weight": 1.0}))
