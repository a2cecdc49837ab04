"""Model builders (Functional API). Each returns an uncompiled ``keras.Model`` with one sigmoid output."""

from __future__ import annotations

import keras
from keras import layers, regularizers


def make_cnn(
    input_shape: tuple[int, int, int],
    filters: tuple[int, ...] = (16, 32, 64, 128, 256),
    stem_stride: int = 2,
    dropout: float = 0.3,
    l2: float = 1e-4,
    name: str = "cnn",
) -> keras.Model:
    """A from-scratch CNN: conv blocks (Conv, BatchNorm, ReLU, MaxPool), global pooling, dropout, sigmoid.

    The first convolution has stride ``stem_stride`` (2 by default): at 224 px, full-resolution
    convolutions cost most of the compute and add little for a whole-image finding. Every block
    doubles the filters and halves the resolution; global average pooling keeps the head small.
    """
    regularizer = regularizers.L2(l2) if l2 else None
    inputs = keras.Input(shape=input_shape, name="image")
    x = inputs
    for index, width in enumerate(filters):
        x = layers.Conv2D(
            width,
            3,
            strides=stem_stride if index == 0 else 1,
            padding="same",
            use_bias=False,
            kernel_regularizer=regularizer,
            name=f"block{index + 1}_conv",
        )(x)
        x = layers.BatchNormalization(name=f"block{index + 1}_bn")(x)
        x = layers.Activation("relu", name=f"block{index + 1}_relu")(x)
        if index < len(filters) - 1:
            x = layers.MaxPooling2D(2, name=f"block{index + 1}_pool")(x)
    x = layers.GlobalAveragePooling2D(name="global_pool")(x)
    x = layers.Dropout(dropout, name="dropout")(x)
    outputs = layers.Dense(1, activation="sigmoid", kernel_regularizer=regularizer, name="pneumonia")(x)
    return keras.Model(inputs, outputs, name=name)


def last_conv_layer_name(model: keras.Model) -> str:
    """Name of the last convolution (Grad-CAM's target layer)."""
    for layer in reversed(model.layers):
        if isinstance(layer, layers.Conv2D):
            return layer.name
    raise ValueError(f"{model.name} has no Conv2D layer")
