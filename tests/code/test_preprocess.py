"""The input pipeline: decoding any image mode, the cache, tf.data batches, class balance."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from pneumonia import data, preprocess, split, train


def _save(path, image, **kwargs):
    image.save(path, **kwargs)
    return path


@pytest.mark.parametrize(
    "make",
    [
        lambda p: _save(p / "grey.jpeg", Image.new("L", (50, 40), 100)),
        lambda p: _save(p / "rgb.png", Image.new("RGB", (30, 60), (10, 200, 30))),
        lambda p: _save(p / "rgba.png", Image.new("RGBA", (20, 20), (255, 255, 255, 0))),
        lambda p: _save(p / "palette.png", Image.new("RGB", (20, 20), (1, 2, 3)).convert("P")),
        lambda p: _save(p / "cmyk.jpeg", Image.new("CMYK", (20, 20), (0, 0, 0, 50))),
        lambda p: _save(p / "deep.png", Image.fromarray(np.arange(400, dtype=np.uint16).reshape(20, 20) * 100)),
    ],
    ids=["L", "RGB", "RGBA", "P", "CMYK", "16-bit"],
)
@pytest.mark.parametrize("channels", [1, 3])
def test_decode_image_accepts_every_mode(make, channels, tmp_path):
    array = preprocess.decode_image(make(tmp_path), image_size=24, channels=channels)
    assert array.shape == (24, 24, channels) and array.dtype == np.uint8


def test_sixteen_bit_images_keep_their_contrast(tmp_path):
    ramp = np.tile(np.linspace(0, 4000, 32, dtype=np.uint16), (32, 1))
    path = _save(tmp_path / "ramp.png", Image.fromarray(ramp))
    array = preprocess.decode_image(path, image_size=32, channels=1)[..., 0]
    assert array[:, 0].mean() < 10 and array[:, -1].mean() > 245


def test_exif_orientation_is_applied(tmp_path):
    image = Image.new("L", (40, 20), 0)
    image.paste(255, (0, 0, 20, 20))  # left half white
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise to display
    path = _save(tmp_path / "rotated.jpeg", image, exif=exif)
    array = preprocess.decode_image(path, image_size=20, channels=1)[..., 0]
    assert array[:8].mean() > 200 and array[-8:].mean() < 50  # white ends up on top


@pytest.fixture(scope="module")
def splits(synthetic_source, tmp_path_factory):
    raw = tmp_path_factory.mktemp("raw")
    data.ingest(synthetic_source, raw, progress=False)
    out = tmp_path_factory.mktemp("processed") / "splits.csv"
    split.split_data(raw, out)
    return split.read_splits(out, raw)


def test_load_split_decodes_once_then_reads_the_cache(splits, tmp_path, monkeypatch):
    images, labels, rows = preprocess.load_split(splits, "train", 32, 1, cache_dir=tmp_path, progress=False)
    assert images.shape == (len(rows), 32, 32, 1) and images.dtype == np.uint8
    assert labels.tolist() == (rows["label"] == "PNEUMONIA").astype(int).tolist()
    monkeypatch.setattr(preprocess, "decode_images", lambda *a, **k: pytest.fail("decoded again"))
    cached, _, _ = preprocess.load_split(splits, "train", 32, 1, cache_dir=tmp_path, progress=False)
    np.testing.assert_array_equal(images, cached)


def test_cache_is_invalidated_when_a_file_changes(splits, tmp_path):
    first, _, rows = preprocess.load_split(splits, "val", 16, 1, cache_dir=tmp_path, progress=False)
    Image.new("RGB", (64, 64), (255, 255, 255)).save(rows["filepath"].iloc[0], format="JPEG")
    second, _, _ = preprocess.load_split(splits, "val", 16, 1, cache_dir=tmp_path, progress=False)
    assert second[0].mean() > 250 and not np.array_equal(first[0], second[0])


def test_limit_keeps_a_stratified_sample(splits, tmp_path):
    _, labels, rows = preprocess.load_split(splits, "train", 16, 1, cache_dir=tmp_path, limit=20, progress=False)
    assert 18 <= len(rows) <= 22 and 0 < labels.mean() < 1


@pytest.mark.parametrize("augment", [False, True])
def test_make_dataset_yields_float_batches_in_unit_range(augment):
    images = np.random.default_rng(0).integers(0, 256, (10, 32, 32, 1), dtype=np.uint8)
    labels = np.array([0, 1] * 5)
    layer = preprocess.make_augmentation(rotation=0.05, shift=0.1, shear=0.1, zoom=0.1, contrast=0.2, brightness=0.2,
                                         seed=0) if augment else None
    batches = list(preprocess.make_dataset(images, labels, batch_size=4, shuffle=True, augmentation=layer))
    assert [int(x.shape[0]) for x, _ in batches] == [4, 4, 2]
    x, y = batches[0]
    assert x.shape[1:] == (32, 32, 1) and x.dtype.name == "float32" and y.dtype.name == "float32"
    values = np.concatenate([b[0].numpy().ravel() for b in batches])
    assert values.min() >= 0.0 and values.max() <= 1.0
    if not augment:
        np.testing.assert_allclose(np.sort(values), np.sort(images.ravel() / 255.0), rtol=1e-6)


def test_make_dataset_shuffles_each_weight_with_its_image():
    images = np.arange(12, dtype=np.uint8).reshape(12, 1, 1, 1) * 20  # each image one grey level: its index
    labels = np.array([0, 1] * 6)
    weights = np.arange(12, dtype=np.float32) / 10
    batches = list(preprocess.make_dataset(images, labels, batch_size=5, shuffle=True, seed=3, weights=weights,
                                           augmentation=preprocess.make_augmentation(contrast=0.0001, seed=0)))
    seen = []
    for x, y, w in batches:
        index = np.rint(x.numpy().ravel() * 255 / 20).astype(int)
        np.testing.assert_allclose(w.numpy(), weights[index], rtol=1e-6)
        np.testing.assert_array_equal(y.numpy(), labels[index])
        seen.extend(index)
    assert sorted(seen) == list(range(12)) and seen != list(range(12))  # all of them, shuffled
    assert all(len(batch) == 2 for batch in preprocess.make_dataset(images, labels, batch_size=5))


def test_make_augmentation_is_none_when_nothing_is_asked_for():
    assert preprocess.make_augmentation() is None
    layers = preprocess.make_augmentation(rotation=0.1, shift=0.1, zoom=0.1, horizontal_flip=True).layers
    assert [type(layer).__name__ for layer in layers] == ["RandomAffine", "RandomFlip"]


def test_make_augmentation_adds_the_machine_difference_layers_in_order():
    layers = preprocess.make_augmentation(zoom=0.2, sharpness=(0.15, 0.95), noise=0.03, frame=0.08, seed=0).layers
    assert [type(layer).__name__ for layer in layers] == ["RandomAffine", "RandomSharpness", "GaussianNoise",
                                                         "RandomFrame"]
    images = np.full((16, 32, 32, 1), 0.5, np.float32)
    out = np.asarray(preprocess.make_augmentation(sharpness=(0.15, 0.95), noise=0.03, seed=0)(images, training=True))
    assert out.shape == images.shape and 0.01 < out.std() < 0.05  # grain of about the asked size


def test_random_frame_draws_black_or_white_borders_on_about_half_the_images():
    images = np.full((400, 50, 50, 1), 0.5, np.float32)
    layer = preprocess.RandomFrame(width=0.1, seed=0)
    np.testing.assert_array_equal(np.asarray(layer(images, training=False)), images)
    out = np.asarray(layer(images, training=True))[..., 0]
    changed = out != 0.5
    framed = changed.any(axis=(1, 2))
    assert 0.35 < framed.mean() < 0.65
    assert set(np.unique(out[changed])) <= {0.0, 1.0}
    assert {float(image[0, 0]) for image in out[framed]} == {0.0, 1.0}  # both colours occur
    assert np.all(out[:, 5:45, 5:45] == 0.5)  # never wider than 10% of the side
    for image, mask in zip(out[framed], changed[framed]):  # a frame: the same width on every side
        width = int(mask[25].argmin())
        assert mask[:width].all() and mask[-width:].all() and mask[:, :width].all() and mask[:, -width:].all()
        assert not mask[width:-width, width:-width].any()
    clone = preprocess.RandomFrame.from_config(layer.get_config())  # checkpoints of the training model save it
    assert (clone.width, clone.probability, clone.seed) == (0.1, 0.5, 0)



def test_random_amplitude_mix_keeps_each_images_phase_and_mixes_amplitudes():
    rng = np.random.default_rng(0)
    smooth = np.cumsum(np.cumsum(rng.normal(size=(2, 32, 32)), 1), 2)  # two different mid-grey images, no clipping
    images = (0.5 + 0.2 * smooth / np.abs(smooth).max())[..., None].astype(np.float32)
    batch = np.repeat(images, 100, axis=0)
    layer = preprocess.RandomAmplitudeMix(strength=1.0, seed=0)
    np.testing.assert_array_equal(np.asarray(layer(batch, training=False)), batch)
    out = np.asarray(layer(batch, training=True))
    assert out.shape == batch.shape and out.min() >= 0.0 and out.max() <= 1.0
    changed = np.abs(out - batch).max(axis=(1, 2, 3)) > 1e-4
    assert 0.15 < changed.mean() < 0.35  # half the images mix, and half of those draw the other image as partner
    spectra = np.fft.fft2(images[..., 0])
    low, high = np.minimum(*np.abs(spectra)), np.maximum(*np.abs(spectra))
    for index in np.flatnonzero(changed)[:10]:
        own = spectra[index // 100]
        spectrum = np.fft.fft2(out[index, ..., 0])
        assert np.all(np.abs(spectrum) >= low - 1e-2) and np.all(np.abs(spectrum) <= high + 1e-2)
        strong = np.abs(own) > 1.0
        np.testing.assert_allclose(np.angle(spectrum[strong] / own[strong]), 0.0, atol=1e-3)  # phase kept
    same = np.repeat(images[:1], 8, axis=0)  # partners with the same amplitude: nothing to mix
    np.testing.assert_allclose(np.asarray(layer(same, training=True)), same, atol=1e-5)
    clone = preprocess.RandomAmplitudeMix.from_config(layer.get_config())
    assert (clone.strength, clone.probability, clone.seed) == (1.0, 0.5, 0)
    assert [type(layer).__name__ for layer in preprocess.make_augmentation(zoom=0.2, amplitude_mix=1.0).layers] == [
        "RandomAffine", "RandomAmplitudeMix"]

def _square(size=32, batch=8):
    images = np.zeros((batch, size, size, 1), np.float32)
    images[:, 12:20, 12:20] = 1.0
    return images


def test_random_affine_is_the_identity_at_zero_amounts_and_at_inference():
    images = np.random.default_rng(0).random((4, 32, 32, 1)).astype(np.float32)
    moving = preprocess.RandomAffine(rotation=0.1, shift=0.1, shear=0.1, zoom=0.1, seed=0)
    np.testing.assert_array_equal(np.asarray(moving(images, training=False)), images)
    still = preprocess.RandomAffine(seed=0)
    np.testing.assert_allclose(np.asarray(still(images, training=True)), images, atol=1e-6)


def test_random_affine_moves_each_image_differently_within_its_ranges():
    images = _square()
    out = np.asarray(preprocess.RandomAffine(rotation=0.03, shift=0.1, zoom=0.1, seed=0)(images, training=True))
    assert out.shape == images.shape and out.dtype == np.float32
    assert len({out[i].tobytes() for i in range(len(out))}) == len(out)
    rows, cols = np.mgrid[:32, :32]
    for image in out[..., 0]:
        centre = (float((rows * image).sum() / image.sum()), float((cols * image).sum() / image.sum()))
        assert abs(centre[0] - 15.5) <= 0.1 * 32 * 1.1 + 1 and abs(centre[1] - 15.5) <= 0.1 * 32 * 1.1 + 1
        assert 64 / 1.1**2 - 6 <= image.sum() <= 64 / 0.9**2 + 6  # zoom changes the square's area by at most 1.1²


def test_random_affine_rotates_about_the_centre():
    bar = np.zeros((1, 33, 33, 1), np.float32)
    bar[0, 16, 4:29] = 1.0  # horizontal bar through the centre
    layer = preprocess.RandomAffine(rotation=0.25, seed=3)  # up to a quarter turn either way
    turned = np.asarray(layer(np.repeat(bar, 16, axis=0), training=True))[..., 0]
    assert np.all(turned[:, 16, 16] > 0.5)  # the centre stays put
    assert (turned[:, :8].sum(axis=(1, 2)) > 1).any()  # and some copies now reach the top rows


def test_random_affine_repeats_with_its_seed():
    images = _square()
    first = preprocess.RandomAffine(rotation=0.05, shift=0.1, seed=7)(images, training=True)
    second = preprocess.RandomAffine(rotation=0.05, shift=0.1, seed=7)(images, training=True)
    np.testing.assert_array_equal(np.asarray(first), np.asarray(second))


def test_class_weights_balance_the_loss():
    labels = np.array([0] * 25 + [1] * 75)
    weights = preprocess.class_weights(labels)
    assert weights[0] * 25 == pytest.approx(weights[1] * 75)
    assert weights[0] == pytest.approx(2.0)


def test_smote_adds_only_interpolated_minority_images_and_keeps_originals():
    rng = np.random.default_rng(0)
    normal = rng.integers(0, 100, (12, 8, 8, 1), dtype=np.uint8)
    pneumonia = rng.integers(150, 256, (30, 8, 8, 1), dtype=np.uint8)
    images = np.concatenate([normal, pneumonia])
    labels = np.array([0] * 12 + [1] * 30)
    resampled, resampled_labels, synthetic = preprocess.smote_oversample(images, labels, seed=0)
    np.testing.assert_array_equal(resampled[: len(images)], images)
    assert (resampled_labels == 0).sum() == (resampled_labels == 1).sum() == 30
    assert synthetic.sum() == 18 and (resampled_labels[synthetic] == 0).all()
    new = resampled[synthetic]
    assert new.min() >= normal.min() and new.max() <= normal.max()  # between NORMAL neighbours, nothing else


def test_random_oversampling_repeats_only_minority_images_and_keeps_originals():
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (42, 8, 8, 1), dtype=np.uint8)
    labels = np.array([0] * 12 + [1] * 30)
    resampled, resampled_labels, copies = preprocess.random_oversample(images, labels, seed=0)
    np.testing.assert_array_equal(resampled[: len(images)], images)
    assert (resampled_labels == 0).sum() == (resampled_labels == 1).sum() == 30
    assert copies.sum() == 18 and (resampled_labels[copies] == 0).all()
    normal = {image.tobytes() for image in images[labels == 0]}
    assert all(image.tobytes() in normal for image in resampled[copies])  # exact repeats, nothing new
    again, _, _ = preprocess.random_oversample(images, labels, seed=0)
    other, _, _ = preprocess.random_oversample(images, labels, seed=1)
    np.testing.assert_array_equal(again, resampled)
    assert not np.array_equal(other, resampled)


def test_simulated_acquisition_shift_changes_images_but_not_shapes():
    images = np.random.default_rng(0).integers(0, 256, (4, 32, 32, 1), dtype=np.uint8)
    shifted = preprocess.simulate_acquisition_shift(images, seed=0)
    assert shifted.shape == images.shape and shifted.dtype == np.uint8
    assert not np.array_equal(shifted, images)
    np.testing.assert_array_equal(shifted, preprocess.simulate_acquisition_shift(images, seed=0))


def test_simulated_blur_scales_with_the_image_so_one_strength_means_one_shift_at_every_size():
    def edge_widths(size):
        images = np.full((8, size, size, 1), 60, dtype=np.uint8)
        images[:, :, size // 2:] = 180  # a vertical step edge through the centre, where zoom keeps it
        rows = preprocess.simulate_acquisition_shift(images, seed=0, strength=1.5)[:, size // 2, :, 0].astype(float)
        centre, away = size // 2, size // 8  # plateaus near the edge: a zoomed-out frame has black borders
        low, high = rows[:, [centre - away]], rows[:, [centre + away]]
        level = (rows - low) / (high - low)
        return ((level > 0.1) & (level < 0.9)).sum(1)  # pixels in the edge's 10-90% rise

    # Twice the pixels per side: a blur that is the same on the chest spreads the edge over twice the pixels.
    assert edge_widths(320).sum() >= 1.6 * edge_widths(160).sum()


def test_masked_equalisation_ignores_a_black_border_that_plain_equalisation_does_not():
    from pneumonia import preprocess

    rng = np.random.default_rng(0)
    chest = rng.integers(20, 200, (1, 32, 32, 1)).astype(np.uint8)
    framed = np.zeros((1, 48, 48, 1), dtype=np.uint8)  # the same chest, smaller in the frame
    framed[:, 8:40, 8:40] = chest
    for method, same in (("equalize", False), ("equalize_masked", True)):
        alone = preprocess.normalize_intensity(chest, method)
        inside = preprocess.normalize_intensity(framed, method)[:, 8:40, 8:40]
        assert np.array_equal(alone, inside) == same, method
    masked = preprocess.normalize_intensity(framed, "equalize_masked")
    assert masked.dtype == np.uint8 and masked[0, :8].max() == 0 and masked.max() == 255
    with pytest.raises(ValueError, match="intensity method"):
        preprocess.normalize_intensity(chest, "clahe")


@pytest.mark.parametrize("channels", [1, 3])
def test_middle_equalisation_ignores_a_grey_border_that_masked_equalisation_counts(channels):
    rng = np.random.default_rng(0)
    images = rng.integers(20, 230, (2, 48, 48, channels), dtype=np.uint8)
    framed = images.copy()
    framed[:, :5], framed[:, -5:], framed[:, :, :5], framed[:, :, -5:] = 40, 40, 40, 40  # above the mask level
    middle = (slice(None), slice(6, 42), slice(6, 42))
    for method, same in (("equalize_masked", False), ("equalize_middle", True)):
        plain = preprocess.normalize_intensity(images, method)[middle]
        inside = preprocess.normalize_intensity(framed, method)[middle]
        assert np.array_equal(plain, inside) == same, method
    out = preprocess.normalize_intensity(framed, "equalize_middle")
    assert out.dtype == np.uint8 and out.shape == framed.shape and out.max() == 255


@pytest.mark.parametrize("channels", [1, 3])
def test_blank_border_equalisation_ignores_whatever_lies_in_the_border(channels):
    rng = np.random.default_rng(0)
    images = rng.integers(20, 230, (2, 50, 50, channels), dtype=np.uint8)
    band = round(preprocess.BLANK_BORDER * 50)
    framed = images.copy()
    for level in (9, 40, 255):
        framed[:, :band], framed[:, -band:], framed[:, :, :band], framed[:, :, -band:] = level, level, level, level
        out = preprocess.normalize_intensity(framed, "equalize_blank_border")
        assert np.array_equal(out, preprocess.normalize_intensity(images, "equalize_blank_border")), level
    assert out.dtype == np.uint8 and out.shape == images.shape
    assert not out[:, :band].any() and not out[:, :, -band:].any()
    blanked = images.copy()
    blanked[:, :band], blanked[:, -band:], blanked[:, :, :band], blanked[:, :, -band:] = 0, 0, 0, 0
    assert np.array_equal(out, preprocess.normalize_intensity(blanked, "equalize_masked"))
    assert not np.array_equal(out, preprocess.normalize_intensity(images, "equalize_masked"))


def test_blank_border_augmentation_blacks_out_the_same_band_after_the_random_changes():
    rng = np.random.default_rng(0)
    images = preprocess.normalize_intensity(rng.integers(20, 230, (4, 50, 50, 1), dtype=np.uint8),
                                            "equalize_blank_border").astype("float32") / 255.0
    settings = {"rotation": 0.03, "shift": 0.05, "zoom": 0.2, "seed": 3}
    plain = np.asarray(preprocess.make_augmentation(**settings)(images, training=True))
    blanked = np.asarray(preprocess.make_augmentation(**settings, blank_border=preprocess.BLANK_BORDER)(
        images, training=True))
    band = round(preprocess.BLANK_BORDER * 50)
    inside = (slice(None), slice(band, 50 - band), slice(band, 50 - band))
    assert np.allclose(blanked[inside], plain[inside])
    assert not blanked[:, :band].any() and not blanked[:, :, -band:].any()
    assert plain[:, :band].any()  # the zoom and shift moved content into the band, and the layer took it out
    layer = preprocess.make_augmentation(blank_border=preprocess.BLANK_BORDER).layers[-1]
    assert type(layer).from_config(layer.get_config()).share == preprocess.BLANK_BORDER


@pytest.mark.parametrize("name", list(preprocess.ONE_FACTOR_SHIFTS))
@pytest.mark.parametrize("channels", [1, 3])
def test_each_one_factor_shift_changes_images_but_not_shapes(name, channels):
    rng = np.random.default_rng(0)
    images = rng.integers(30, 220, (3, 40, 40, channels), dtype=np.uint8)
    shifted = preprocess.one_factor_shift(images, name, seed=0)
    assert shifted.shape == images.shape and shifted.dtype == np.uint8
    assert not np.array_equal(shifted, images)
    np.testing.assert_array_equal(shifted, preprocess.one_factor_shift(images, name, seed=0))


def test_one_factor_shifts_do_what_their_names_say():
    size = 100
    lines = np.zeros((1, size, size, 1), dtype=np.uint8)
    lines[:, 50] = 200  # a horizontal line through the middle
    # Cropping the top 10% and stretching the rest back to full height moves the line up to row (50 - 10) / 0.9.
    moved = preprocess.one_factor_shift(lines, "crop top 10%")[0, :, size // 2, 0]
    assert abs(int(np.argmax(moved)) - round(40 / 0.9)) <= 1
    grey = np.full((1, size, size, 1), 128, dtype=np.uint8)
    framed = preprocess.one_factor_shift(grey, "black frame 8%")[0, ..., 0]
    assert (framed[:8] == 0).all() and (framed[:, -8:] == 0).all() and (framed[8:-8, 8:-8] == 128).all()
    assert (preprocess.one_factor_shift(grey, "white marker")[0, ..., 0] == 255).sum() == 11 * 11
    assert preprocess.one_factor_shift(grey, "gamma 0.6").mean() > 128 > preprocess.one_factor_shift(grey, "gamma 1.6").mean()
    noisy = preprocess.one_factor_shift(grey, "noise sd 8 grey levels").astype(float)
    assert 6 < noisy.std() < 10
    assert not np.array_equal(noisy, preprocess.one_factor_shift(grey, "noise sd 8 grey levels", seed=1))


def test_unknown_names_are_attribute_errors():
    assert not hasattr(preprocess, "RandomNothing")
    with pytest.raises(AttributeError, match="RandomNothing"):
        preprocess.RandomNothing


@pytest.mark.parametrize("pneumonia_range", [None, (1.0, 1.2)])
def test_vertical_stretch_draws_each_image_a_factor_from_its_class_range(pneumonia_range):
    # Each image: one bright row 12 px above the centre. A vertical stretch by s moves it to 12 * s above.
    size, offset = 65, 12
    images = np.zeros((40, size, size, 1), dtype=np.uint8)
    images[:, size // 2 - offset] = 255
    labels = np.arange(40) % 2  # NORMAL, PNEUMONIA, ...
    ranges = {"NORMAL": (1.2, 1.4)} | ({"PNEUMONIA": pneumonia_range} if pneumonia_range else {})

    def batches(seed):
        data, steps = train.training_batches(images, labels, batch_size=40, seed=seed, vertical_stretch=ranges)
        iterator = iter(data)
        return [next(iterator) for _ in range(2)]

    def stretches(batch):
        rows = batch[..., 0].mean(axis=2)
        centre_of_mass = (rows * np.arange(size)).sum(axis=1) / rows.sum(axis=1)
        return (size // 2 - centre_of_mass) / offset

    (first, first_labels), (second, second_labels) = batches(seed=1)
    for batch, batch_labels in ((first, first_labels), (second, second_labels)):
        batch, batch_labels = batch.numpy(), batch_labels.numpy()
        normal = stretches(batch[batch_labels == 0])
        assert np.all(normal > 1.2 - 0.02) and np.all(normal < 1.4 + 0.02) and normal.std() > 0.02
        pneumonia = batch[batch_labels == 1]
        if pneumonia_range is None:  # a class not named is left exactly as it was
            np.testing.assert_array_equal(pneumonia, np.broadcast_to(images[:1] / 255, pneumonia.shape))
        else:
            assert np.all(stretches(pneumonia) > 1.0 - 0.02) and np.all(stretches(pneumonia) < 1.2 + 0.02)
    np.testing.assert_array_equal(batches(seed=1)[0][0].numpy(), first.numpy())  # the same seed, the same draws
    assert not np.array_equal(np.sort(first.numpy().ravel()), np.sort(second.numpy().ravel()))  # new draws each epoch
    plain, _ = train.training_batches(images, labels, batch_size=40, seed=1)
    assert np.isin(np.unique(next(iter(plain))[0].numpy()), [0.0, 1.0]).all()  # off by default: nothing resampled
    with pytest.raises(ValueError, match="vertical_stretch names classes"):
        train.training_batches(images, labels, batch_size=40, seed=1, vertical_stretch={"normal": (1.0, 1.2)})


@pytest.mark.parametrize("channels", [1, 3])
def test_cropped_equalisation_crops_a_frame_of_any_grey_level_and_leaves_the_chest_whole(channels):
    rng = np.random.default_rng(0)
    chest = rng.integers(20, 230, (40, 40, channels), dtype=np.uint8)
    unframed = np.asarray(Image.fromarray(chest.squeeze(-1) if channels == 1 else chest).resize(
        (50, 50), Image.Resampling.BILINEAR)).reshape(1, 50, 50, channels)
    assert np.array_equal(preprocess.crop_uniform_border(unframed), unframed)  # nothing uniform: untouched
    for level in (0, 9, 40, 255):
        framed = np.full((1, 50, 50, channels), level, dtype=np.uint8)
        framed[0, 5:45, 5:45] = chest
        assert preprocess.uniform_border(framed).tolist() == [[5, 5, 5, 5]], level
        assert np.array_equal(preprocess.crop_uniform_border(framed), unframed), level
        out = preprocess.normalize_intensity(framed, "equalize_cropped")
        assert np.array_equal(out, preprocess.normalize_intensity(unframed, "equalize_masked")), level
    assert out.dtype == np.uint8 and out.shape == framed.shape


def test_cropping_ignores_grain_in_a_border_and_stops_at_its_limit():
    rng = np.random.default_rng(1)
    image = rng.integers(20, 230, (1, 60, 60, 1), dtype=np.uint8)
    grainy = image.copy()
    grainy[0, :6] = np.clip(rng.normal(30, 4, (6, 60, 1)), 0, 255).astype(np.uint8)  # a grey bar with grain
    assert preprocess.uniform_border(grainy).tolist() == [[6, 0, 0, 0]]
    wide = image.copy()
    wide[0, :, :30] = 0  # half the image black: only the limit is cropped
    assert preprocess.uniform_border(wide)[0, 2] == int(preprocess.CROP_LIMIT * 60)
    blank = np.zeros((1, 60, 60, 1), dtype=np.uint8)
    assert preprocess.uniform_border(blank).tolist() == [[15, 15, 15, 15]]
