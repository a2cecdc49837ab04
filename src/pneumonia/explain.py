"""Grad-CAM, computed the way the keras-io example does it, with no extra library.

The gradient of the PNEUMONIA score with respect to the last convolution's feature maps, averaged
over space, weighs those maps; their ReLU'd weighted sum is the heatmap.
"""

from __future__ import annotations

import numpy as np


def grad_cam(model, images: np.ndarray, layer_name: str | None = None) -> np.ndarray:
    """Heatmaps in [0, 1], one per image, at the resolution of ``layer_name``
    (default: the last convolution's activated output, ``models.gradcam_layer_name``)."""
    import keras
    import tensorflow as tf

    from pneumonia.models import gradcam_layer_name

    layer_name = layer_name or gradcam_layer_name(model)
    grad_model = keras.Model(model.inputs, [model.get_layer(layer_name).output, model.output])
    inputs = tf.convert_to_tensor(images, dtype=tf.float32)
    with tf.GradientTape() as tape:
        feature_maps, predictions = grad_model(inputs, training=False)
        score = predictions[:, 0]
    gradients = tape.gradient(score, feature_maps)
    weights = tf.reduce_mean(gradients, axis=(1, 2), keepdims=True)
    heatmaps = tf.nn.relu(tf.reduce_sum(feature_maps * weights, axis=-1)).numpy()
    peaks = heatmaps.max(axis=(1, 2), keepdims=True)
    return np.divide(heatmaps, peaks, out=np.zeros_like(heatmaps), where=peaks > 0)


def overlay(image: np.ndarray, heatmap: np.ndarray, alpha: float = 0.4) -> np.ndarray:
    """An RGB uint8 picture: the image in grey with the heatmap (jet colours) blended over it."""
    import matplotlib
    from PIL import Image

    base = image.squeeze(-1) if image.ndim == 3 and image.shape[-1] == 1 else image
    base = np.asarray(Image.fromarray(base.astype(np.uint8)).convert("RGB"), dtype=np.float32)
    resized = np.asarray(
        Image.fromarray((heatmap * 255).astype(np.uint8)).resize(base.shape[1::-1], Image.Resampling.BILINEAR),
        dtype=np.float32,
    ) / 255.0
    colours = matplotlib.colormaps["jet"](resized)[..., :3] * 255
    return np.clip((1 - alpha) * base + alpha * colours, 0, 255).astype(np.uint8)
