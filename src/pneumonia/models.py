"""Model builders (Functional API). Each returns an uncompiled ``keras.Model`` with one sigmoid output."""

from __future__ import annotations

import warnings

import keras
from keras import layers, regularizers


GLOBAL_POOLING = {"average": layers.GlobalAveragePooling2D, "max": layers.GlobalMaxPooling2D}


def make_cnn(
    input_shape: tuple[int, int, int],
    filters: tuple[int, ...] = (16, 32, 64, 128, 256),
    stem_stride: int = 2,
    dropout: float = 0.3,
    l2: float = 1e-4,
    batchnorm_momentum: float = 0.99,
    antialias: bool = False,
    instance_norm_blocks: int = 0,
    group_norm_blocks: int = 0,
    group_norm_groups: int = 4,
    global_pooling: str = "average",
    mixstyle_blocks: int = 0,
    statistics_noise_blocks: int = 0,
    name: str = "cnn",
) -> keras.Model:
    """A from-scratch CNN: conv blocks (Conv, BatchNorm, ReLU, MaxPool), global pooling, dropout, sigmoid.

    The first convolution has stride ``stem_stride`` (2 by default): at 224 px, full-resolution
    convolutions cost most of the compute and add little for a whole-image finding. Every block
    doubles the filters and halves the resolution; global average pooling keeps the head small.

    Two options against differences between machines (notebook 04). ``antialias``: every
    downsampling sees a blurred input (:class:`BlurPool2D`, stride 1, before each max pooling and
    before the strided stem), so that grain and sharpened edges do not alias into the coarse
    features (after Zhang 2019, "Making convolutional networks shift-invariant again", whose order
    — a stride-1 max, then blur and subsample — doubled the training step on a 2-core CPU: the
    gradient of an overlapping max pooling is slow). ``instance_norm_blocks``: the first that many
    blocks normalise half their channels per image (instance normalisation) and half with
    BatchNorm, as IBN-Net-a does (Pan et al. 2018) to keep appearance out of the shallow features.
    ``group_norm_blocks``: the first that many blocks normalise all their channels per image, in
    ``group_norm_groups`` groups (Wu and He 2018), in place of BatchNorm: statistics that neither the
    batch nor the set scored can move.

    ``global_pooling="max"`` keeps each feature's strongest response instead of its mean over the
    image: how much of the frame the chest, a border or the neck fills then moves no feature.
    ``mixstyle_blocks``: in training, the outputs of the first that many blocks take each other's
    per-image feature statistics (:class:`MixStyle`). Both were tried and not adopted: variants (aa)
    and (ab) of the experiment log, ``reports/experiments/README.md``. ``statistics_noise_blocks``:
    in training, the outputs of the first that many blocks get per-image feature statistics redrawn
    around their own (:class:`FeatureStatisticsNoise`; alone, variant (ak), not adopted; with
    ``intensity="equalize_cropped"``, variant (at), adopted and notebook 04's default since 2026-12-07).
    """
    if global_pooling not in GLOBAL_POOLING:
        raise ValueError(f"global_pooling is one of {', '.join(GLOBAL_POOLING)}, not {global_pooling!r}")
    if instance_norm_blocks and group_norm_blocks:
        raise ValueError("a block normalises one way: give instance_norm_blocks or group_norm_blocks, not both")
    regularizer = regularizers.L2(l2) if l2 else None
    inputs = keras.Input(shape=input_shape, name="image")
    x = inputs
    for index, width in enumerate(filters):
        block = f"block{index + 1}"
        stride = stem_stride if index == 0 else 1
        if antialias and stride > 1:
            x = BlurPool2D(1, name=f"{block}_input_blur")(x)
        x = layers.Conv2D(
            width,
            3,
            strides=stride,
            padding="same",
            use_bias=False,
            kernel_regularizer=regularizer,
            name=f"{block}_conv",
        )(x)
        if index < instance_norm_blocks:
            half = width // 2
            instance = layers.GroupNormalization(groups=half, name=f"{block}_in")(x[..., :half])
            batch = layers.BatchNormalization(momentum=batchnorm_momentum, name=f"{block}_bn")(x[..., half:])
            x = layers.Concatenate(name=f"{block}_ibn")([instance, batch])
        elif index < group_norm_blocks:
            x = layers.GroupNormalization(groups=group_norm_groups, name=f"{block}_gn")(x)
        else:
            x = layers.BatchNormalization(momentum=batchnorm_momentum, name=f"{block}_bn")(x)
        x = layers.Activation("relu", name=f"{block}_relu")(x)
        if index < len(filters) - 1:
            if antialias:
                x = BlurPool2D(1, name=f"{block}_blur")(x)
            x = layers.MaxPooling2D(2, name=f"{block}_pool")(x)
        if index < mixstyle_blocks:
            x = MixStyle(name=f"{block}_mixstyle")(x)
        if index < statistics_noise_blocks:
            x = FeatureStatisticsNoise(name=f"{block}_statistics_noise")(x)
    x = GLOBAL_POOLING[global_pooling](name="global_pool")(x)
    x = layers.Dropout(dropout, name="dropout")(x)
    outputs = layers.Dense(1, activation="sigmoid", kernel_regularizer=regularizer, name="pneumonia")(x)
    return keras.Model(inputs, outputs, name=name)


@keras.saving.register_keras_serializable(package="pneumonia")
class MixStyle(layers.Layer):
    """In training, each image's features take a random mix of their own and another image's
    per-channel mean and standard deviation (MixStyle, Zhou et al. 2021); at inference, nothing.

    Feature statistics of the shallow layers carry an image's style (its exposure, contrast,
    texture), so mixing them between images of a batch trains the network on styles that no single
    training image had. With ``probability`` a batch is mixed; the weights are Beta(``alpha``,
    ``alpha``) per image, and the statistics are not differentiated through, as in the paper.
    """

    def __init__(self, probability: float = 0.5, alpha: float = 0.1, epsilon: float = 1e-6, seed=None, **kwargs):
        super().__init__(**kwargs)
        self.probability, self.alpha, self.epsilon, self.seed = probability, alpha, epsilon, seed
        self.seed_generator = keras.random.SeedGenerator(seed)

    def call(self, inputs, training=False):
        if not training or not self.probability:
            return inputs
        ops = keras.ops
        batch = ops.shape(inputs)[0]
        weight = keras.random.beta((batch, 1, 1, 1), self.alpha, self.alpha, seed=self.seed_generator)
        partner = keras.random.shuffle(ops.arange(batch), seed=self.seed_generator)
        mix = keras.random.uniform((), seed=self.seed_generator) < self.probability

        def mixed():
            mean = ops.stop_gradient(ops.mean(inputs, axis=(1, 2), keepdims=True))
            std = ops.stop_gradient(ops.sqrt(ops.var(inputs, axis=(1, 2), keepdims=True) + self.epsilon))
            mixed_mean = weight * mean + (1 - weight) * ops.take(mean, partner, axis=0)
            mixed_std = weight * std + (1 - weight) * ops.take(std, partner, axis=0)
            return (inputs - mean) / std * mixed_std + mixed_mean

        # A batch left unmixed skips the statistics and the rescaling (half the batches at probability 0.5).
        return ops.cond(mix, mixed, lambda: inputs)

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        return {**super().get_config(), "probability": self.probability, "alpha": self.alpha,
                "epsilon": self.epsilon, "seed": self.seed}


@keras.saving.register_keras_serializable(package="pneumonia")
class FeatureStatisticsNoise(layers.Layer):
    """In training, each image's per-channel feature mean and standard deviation are redrawn from
    normal distributions centred on them, as wide as those statistics spread over the batch (DSU, Li et
    al. 2022, "Uncertainty modeling for out-of-distribution generalization"); at inference, nothing.

    MixStyle only interpolates between the statistics of the batch's images; this also reaches beyond
    them, in the directions in which the batch's images differ most, as images from another machine
    might. With ``probability`` a batch is perturbed. Gradients flow through the statistics, as in
    the paper.
    """

    def __init__(self, probability: float = 0.5, epsilon: float = 1e-6, seed=None, **kwargs):
        super().__init__(**kwargs)
        self.probability, self.epsilon, self.seed = probability, epsilon, seed
        self.seed_generator = keras.random.SeedGenerator(seed)

    def call(self, inputs, training=False):
        if not training or not self.probability:
            return inputs
        ops = keras.ops
        statistics_shape = (ops.shape(inputs)[0], 1, 1, ops.shape(inputs)[-1])
        mean_noise = keras.random.normal(statistics_shape, seed=self.seed_generator)
        std_noise = keras.random.normal(statistics_shape, seed=self.seed_generator)
        perturb = keras.random.uniform((), seed=self.seed_generator) < self.probability

        def perturbed():
            mean, variance = ops.moments(inputs, axes=(1, 2), keepdims=True)
            std = ops.sqrt(variance + self.epsilon)
            mean_spread = ops.sqrt(ops.var(mean, axis=0, keepdims=True) + self.epsilon)
            std_spread = ops.sqrt(ops.var(std, axis=0, keepdims=True) + self.epsilon)
            return (inputs - mean) / std * (std + std_noise * std_spread) + mean + mean_noise * mean_spread

        return ops.cond(perturb, perturbed, lambda: inputs)

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        return {**super().get_config(), "probability": self.probability, "epsilon": self.epsilon,
                "seed": self.seed}


@keras.saving.register_keras_serializable(package="pneumonia")
class BlurPool2D(layers.Layer):
    """Blur each channel with a [1, 2, 1] binomial filter in both directions, then keep every
    ``strides``-th pixel (1: blur only): a downsampling that does not alias fine texture (Zhang 2019).

    The filter is two 2x2 average poolings, the second one strided: on a 2-core CPU they added about a
    tenth of the time that a depthwise convolution with the same 3x3 kernel added to a training step.
    Average pooling leaves the padding out of each mean, so the image's edge does not darken.
    """

    def __init__(self, strides: int = 2, **kwargs):
        super().__init__(**kwargs)
        self.strides = strides

    def call(self, inputs):
        from keras import ops

        blurred = ops.average_pool(inputs, 2, strides=1, padding="same")
        return ops.average_pool(blurred, 2, strides=self.strides, padding="same")

    def compute_output_shape(self, input_shape):
        batch, height, width, channels = input_shape
        steps = [None if size is None else -(-size // self.strides) for size in (height, width)]
        return (batch, *steps, channels)

    def get_config(self):
        return {**super().get_config(), "strides": self.strides}


def last_conv_layer_name(model: keras.Model) -> str:
    """Name of the last convolution (Grad-CAM's target layer)."""
    for layer in reversed(model.layers):
        if isinstance(layer, layers.Conv2D):
            return layer.name
    raise ValueError(f"{model.name} has no Conv2D layer")


def gradcam_layer_name(model: keras.Model) -> str:
    """Grad-CAM's target: the last convolution's *activated* output — its ReLU layer when it has a
    separate one (our CNN: conv -> BatchNorm -> ReLU), else the convolution itself (VGG16's convs
    carry their ReLU). Pre-activation maps can be negative, and Grad-CAM's final ReLU would zero them."""
    conv = last_conv_layer_name(model)
    names = [layer.name for layer in model.layers]
    for layer in model.layers[names.index(conv) + 1 :]:
        if isinstance(layer, layers.Activation):
            return layer.name
        if not isinstance(layer, layers.BatchNormalization):
            break
    return conv


# --------------------------------------------------------------------------- VGG16 transfer learning

VGG16_NOTOP_FILE = "vgg16_weights_tf_dim_ordering_tf_kernels_notop.h5"
VGG16_FEATURE_LAYER = "block4_pool"
VGG16_FINE_TUNE_PREFIX = "block5_"


class WeightsUnavailable(RuntimeError):
    """ImageNet weights are neither cached nor downloadable; the message says what to do, in one line."""


@keras.saving.register_keras_serializable(package="pneumonia")
class VGG16Preprocess(layers.Layer):
    """``keras.applications.vgg16.preprocess_input`` as a layer (caffe mode: RGB -> BGR, minus the ImageNet
    channel means). It expects 0-255 pixels, so the model takes unscaled images."""

    def call(self, inputs):
        from keras import ops

        bgr = ops.flip(inputs, axis=-1)
        return bgr - ops.convert_to_tensor([103.939, 116.779, 123.68], dtype=inputs.dtype)


def keras_models_dir():
    """Where Keras caches downloaded weights: $KERAS_HOME/models, else ~/.keras/models."""
    from pathlib import Path
    import os

    return Path(os.environ.get("KERAS_HOME") or Path.home() / ".keras") / "models"


def resolve_vgg16_weights(weights, host: str = "storage.googleapis.com"):
    """``"imagenet"``, a local ``.h5`` path or None -> (what to pass to Keras, provenance for the sidecar)."""
    import hashlib
    import socket
    from pathlib import Path

    if weights is None or weights == "none":
        return None, "none"
    if weights != "imagenet":
        path = Path(weights).expanduser()
        if not path.is_file():
            raise WeightsUnavailable(f"VGG16 weights file {path} does not exist")
        return str(path), {"file": str(path), "sha256": hashlib.sha256(path.read_bytes()).hexdigest()}
    cached = keras_models_dir() / VGG16_NOTOP_FILE
    if not cached.exists():
        try:
            socket.create_connection((host, 443), timeout=5).close()
        except OSError:
            raise WeightsUnavailable(
                f"ImageNet weights for VGG16 are not cached and cannot be downloaded (offline): put "
                f"{VGG16_NOTOP_FILE} in {cached.parent}/, or pass weights=PATH to a local copy "
                f"(make reproduce VGG16_WEIGHTS=PATH), or weights=None for random initialisation"
            ) from None
    return "imagenet", "imagenet"


def make_vgg16(
    input_shape: tuple[int, int, int] = (224, 224, 3),
    weights="imagenet",
    head: str = "gap",
    dense_units: int = 256,
    dropout: float = 0.5,
    name: str = "vgg16",
) -> keras.Model:
    """VGG16 (include_top=False) with a small head, as **one flat functional graph**.

    Every VGG16 layer is a layer of the returned model (``block5_conv3`` included, for Grad-CAM),
    not a nested sub-model. The model takes 0-255 RGB pixels; ``VGG16Preprocess`` does the rest.
    ``weights``: ``"imagenet"`` (Keras downloads and caches it), a path to a local notop ``.h5``
    file, or None (random initialisation, for tests). Its provenance is ``model.weights_source``.
    """
    source, provenance = resolve_vgg16_weights(weights)
    inputs = keras.Input(shape=input_shape, name="image")
    preprocessed = VGG16Preprocess(name="vgg16_preprocess")(inputs)
    # Built on our tensor (input_tensor), VGG16's layers join this graph one by one instead of as a
    # nested model, so block5_conv3 is a layer of the returned model.
    base = keras.applications.VGG16(
        include_top=False, weights="imagenet" if source == "imagenet" else None, input_tensor=preprocessed
    )
    if source not in (None, "imagenet"):
        base.load_weights(source)
    x = base.output
    if head == "flatten":
        x = layers.Flatten(name="flatten")(x)
    elif head == "gap":
        x = layers.GlobalAveragePooling2D(name="global_pool")(x)
    else:
        raise ValueError(f"head must be 'gap' or 'flatten', not {head!r}")
    x = layers.Dense(dense_units, activation="relu", name="head_dense")(x)
    x = layers.BatchNormalization(name="head_bn")(x)
    x = layers.Dropout(dropout, name="head_dropout")(x)
    outputs = layers.Dense(1, activation="sigmoid", name="pneumonia")(x)
    model = keras.Model(inputs, outputs, name=name)
    model.weights_source = provenance
    return model


def set_vgg16_phase(model: keras.Model, phase: int) -> keras.Model:
    """Phase 1: the VGG16 base frozen, the head trainable. Phase 2: block5 trainable too.
    Recompile after calling this: Keras reads ``trainable`` at compile time."""
    if phase not in (1, 2):
        raise ValueError("phase is 1 or 2")
    for layer in model.layers:
        if layer.name.startswith("block"):
            layer.trainable = phase == 2 and layer.name.startswith(VGG16_FINE_TUNE_PREFIX)
    return model


def split_vgg16(model: keras.Model) -> tuple[keras.Model, keras.Model]:
    """(frozen part up to ``block4_pool``, the rest: block5 + head) sharing the same layer objects.

    The frozen part runs once per image to cache features; phase 1 and phase 2 epochs then run only
    the second model, whose trained weights are the full model's, since the layers are shared.
    """
    feature = model.get_layer(VGG16_FEATURE_LAYER)
    frozen = keras.Model(model.inputs, feature.output, name=f"{model.name}_frozen")
    top_inputs = keras.Input(shape=feature.output.shape[1:], name="block4_features")
    x = top_inputs
    names = [layer.name for layer in model.layers]
    for layer in model.layers[names.index(VGG16_FEATURE_LAYER) + 1 :]:
        x = layer(x)
    return frozen, keras.Model(top_inputs, x, name=f"{model.name}_top")


def load_model(path) -> keras.Model:
    """Load a saved model; importing this module first registers the custom layers (``VGG16Preprocess``).

    Models are saved compiled as they trained; when another model took the steps (the augmented
    wrapper of ``train.training_model``), the saved optimizer holds no state and Keras warns that it
    skips loading it. Prediction never needs optimizer state, so that one warning is silenced.
    """
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Skipping variable loading for optimizer", category=UserWarning)
        return keras.models.load_model(path)
