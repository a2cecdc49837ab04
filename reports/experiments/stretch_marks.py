"""The measurement behind the experiment log's "(ac′) under the fifth rule": where a class-conditional
vertical stretch moves the mark of the label, on the training split only (no network, no validation image).

    .venv/bin/python reports/experiments/stretch_marks.py

Prints the classes' grey-level steps across and down and, for the training images as they are and under
three stretches, the class gap and ROC AUC of notebook 02's step anisotropy and the log share of vertical
spectral power in the top fifth of the band.
"""

import numpy as np
from PIL import Image
from sklearn.metrics import roc_auc_score

from pneumonia import eda, preprocess, split

IMAGE_SIZE = 160
AC = {"NORMAL": (1.0, 1.2)}
AC_PRIME = {"NORMAL": (1.2, 1.4), "PNEUMONIA": (1.0, 1.2)}


def vertical_top_band(images: np.ndarray, top: float = 0.2) -> np.ndarray:
    """Log share of each grey image's vertical spectral power (mean over columns) in the top ``top`` of the band."""
    pixels = images[..., 0].astype(np.float32)
    pixels -= pixels.mean(axis=1, keepdims=True)
    power = (np.abs(np.fft.rfft(pixels, axis=1)) ** 2).mean(axis=2)
    cut = int(round(power.shape[1] * (1 - top)))
    return np.log(power[:, cut:].sum(1) / power[:, 1:].sum(1))


def stretched_in_pipeline(images, labels, ranges):
    """As training stretched them: at the network's size, in tf.data (``preprocess.stretch_vertically``)."""
    import tensorflow as tf

    generator = tf.random.Generator.from_seed(1)
    batches = [preprocess.stretch_vertically(tf.constant(images[start:start + 256], tf.float32),
                                             tf.constant(labels[start:start + 256]), ranges, generator).numpy()
               for start in range(0, len(images), 256)]
    return np.clip(np.rint(np.concatenate(batches)), 0, 255).astype(np.uint8)


def stretched_at_source(rows, ranges, seed=0):
    """Each file's middle band resized down to the network's size: a stretch that leaves no empty band."""
    rng = np.random.default_rng(seed)
    out = np.empty((len(rows), IMAGE_SIZE, IMAGE_SIZE, 1), np.uint8)
    for index, (path, label) in enumerate(zip(rows["filepath"], rows["label"])):
        low, high = ranges.get(label, (1.0, 1.0))
        with Image.open(path) as image:
            image = image.convert("L")
            width, height = image.size
            band = height / rng.uniform(low, high)
            top = (height - band) / 2
            image = image.resize((IMAGE_SIZE, IMAGE_SIZE), Image.Resampling.BILINEAR, box=(0, top, width, top + band))
        out[index, ..., 0] = np.asarray(image)
    return out


def main():
    images, labels, rows = preprocess.load_split(split.read_splits(), "train", IMAGE_SIZE, 1, progress=False)
    variants = {
        "as they are": images,
        "(ac), stretched at 160 px": stretched_in_pipeline(images, labels, AC),
        "(ac′), stretched at 160 px": stretched_in_pipeline(images, labels, AC_PRIME),
        "(ac′)'s ranges, at the source": stretched_at_source(rows, AC_PRIME),
    }
    print(f"{len(images)} training images; AUC for PNEUMONIA, higher values")
    across, down = eda.grey_steps(preprocess.normalize_intensity(images, "equalize_masked"))
    for label, name in enumerate(("NORMAL", "PNEUMONIA")):
        print(f"equalised grey-level steps, {name}: across {across[labels == label].mean():.1f}, "
              f"down {down[labels == label].mean():.1f}")
    print(f"steps down alone: AUC {roc_auc_score(labels, -down):.3f} (lower values)")
    for name, variant in variants.items():
        equalised = preprocess.normalize_intensity(variant, "equalize_masked")
        anisotropy, band = eda.step_anisotropy(equalised), vertical_top_band(equalised)
        gap = anisotropy[labels == 1].mean() - anisotropy[labels == 0].mean()
        print(f"{name:32s} anisotropy gap {gap:+.3f} AUC {roc_auc_score(labels, anisotropy):.3f} | "
              f"top band NORMAL {band[labels == 0].mean():.2f} PNEUMONIA {band[labels == 1].mean():.2f} "
              f"AUC {roc_auc_score(labels, band):.3f}")


if __name__ == "__main__":
    main()
