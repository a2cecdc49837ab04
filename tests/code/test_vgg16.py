"""VGG16 transfer learning: the flat graph, the phases, the weights sources, the offline error."""

from __future__ import annotations

import os
import subprocess
import sys
import time

import numpy as np
import pytest

from pneumonia import models


@pytest.fixture(scope="module")
def vgg():
    return models.make_vgg16((32, 32, 3), weights=None, dense_units=8)


def test_make_vgg16_is_one_flat_graph_with_a_sigmoid_output(vgg):
    assert vgg.output_shape == (None, 1)
    assert vgg.get_layer("block5_conv3") in vgg.layers  # reachable for Grad-CAM, not nested
    assert not any(hasattr(layer, "layers") for layer in vgg.layers)
    assert vgg.weights_source == "none"
    assert models.last_conv_layer_name(vgg) == models.gradcam_layer_name(vgg) == "block5_conv3"


def test_phases_set_which_layers_train(vgg):
    models.set_vgg16_phase(vgg, 1)
    trainable = {layer.name for layer in vgg.layers if layer.trainable and layer.weights}
    assert trainable == {"head_dense", "head_bn", "pneumonia"}
    models.set_vgg16_phase(vgg, 2)
    trainable = {layer.name for layer in vgg.layers if layer.trainable and layer.weights}
    assert trainable == {"block5_conv1", "block5_conv2", "block5_conv3", "head_dense", "head_bn", "pneumonia"}


def test_split_model_equals_the_whole(vgg):
    frozen, top = models.split_vgg16(vgg)
    images = np.random.default_rng(0).uniform(0, 255, (3, 32, 32, 3)).astype("float32")
    np.testing.assert_allclose(vgg.predict(images, verbose=0), top.predict(frozen.predict(images, verbose=0), verbose=0),
                               rtol=1e-5, atol=1e-6)


def test_preprocessing_is_caffe_mode_on_unscaled_pixels():
    import keras

    pixels = np.array([[[[10.0, 20.0, 30.0]]]], dtype="float32")
    expected = keras.applications.vgg16.preprocess_input(pixels.copy())
    np.testing.assert_allclose(np.asarray(models.VGG16Preprocess()(pixels)), expected, rtol=1e-6)


def test_offline_imagenet_fails_at_once_with_one_clear_line(tmp_path, monkeypatch):
    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "keras"))
    started = time.perf_counter()
    with pytest.raises(models.WeightsUnavailable) as caught:
        models.resolve_vgg16_weights("imagenet", host="weights.invalid")
    assert time.perf_counter() - started < 10
    message = str(caught.value)
    assert "\n" not in message and "http" not in message
    assert models.VGG16_NOTOP_FILE in message and str(tmp_path / "keras" / "models") in message
    assert "weights=PATH" in message


def test_weights_load_from_a_local_file(tmp_path):
    import keras

    base = keras.applications.VGG16(include_top=False, weights=None, input_shape=(32, 32, 3))
    path = tmp_path / "vgg16-notop.weights.h5"
    base.save_weights(path)
    model = models.make_vgg16((32, 32, 3), weights=str(path), dense_units=8)
    for name in ("block1_conv1", "block5_conv3"):
        for ours, theirs in zip(model.get_layer(name).get_weights(), base.get_layer(name).get_weights()):
            np.testing.assert_array_equal(ours, theirs)
    assert model.weights_source["file"] == str(path) and len(model.weights_source["sha256"]) == 64


def test_reproduce_checks_imagenet_weights_before_running_anything(tmp_path):
    env = {**os.environ, "KERAS_HOME": str(tmp_path / "keras"), "PNEUMONIA_WORKSPACE": str(tmp_path)}
    result = subprocess.run([sys.executable, "-m", "pneumonia.cli", "reproduce", "--only", "05",
                             "--vgg16-weights", "imagenet"], capture_output=True, text=True, env=env, timeout=120)
    assert result.returncode == 1
    assert result.stderr.startswith("error: 05-vgg16.ipynb cannot run:") and models.VGG16_NOTOP_FILE in result.stderr
    assert not (tmp_path / "reports" / "notebooks").exists() or not any((tmp_path / "reports" / "notebooks").iterdir())
