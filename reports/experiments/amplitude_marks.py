"""The measurement behind the experiment log's (ae): where the training images' mark of the label lives, in the
amplitude or in the phase of their Fourier spectra (training split only, no network, no validation image).

    .venv/bin/python reports/experiments/amplitude_marks.py

Prints, for the equalised training images as they are and with their amplitude spectra changed, the ROC AUC with
which notebook 02's grey-level steps (across, down) and their anisotropy separate the classes.
"""

import numpy as np
from sklearn.metrics import roc_auc_score

from pneumonia import eda, preprocess, split

IMAGE_SIZE = 160


def with_amplitude(pixels: np.ndarray, amplitude: np.ndarray) -> np.ndarray:
    """uint8 images with each one's own phase and the given amplitude spectra."""
    spectra = np.fft.rfft2(pixels)
    mixed = np.fft.irfft2(amplitude * np.exp(1j * np.angle(spectra)), s=pixels.shape[1:])
    return np.clip(np.rint(mixed), 0, 255).astype(np.uint8)


def main():
    images, labels, _ = preprocess.load_split(split.read_splits(), "train", IMAGE_SIZE, 1, progress=False)
    pixels = preprocess.normalize_intensity(images, "equalize_masked")[..., 0].astype(np.float64)
    amplitude = np.abs(np.fft.rfft2(pixels))
    rng = np.random.default_rng(0)
    partner = rng.permutation(len(pixels))
    share = rng.uniform(0, 1, (len(pixels), 1, 1))
    variants = {
        "as they are": pixels.astype(np.uint8),
        "another image's amplitude": with_amplitude(pixels, amplitude[partner]),
        "(ae)'s mix, every image": with_amplitude(pixels, (1 - share) * amplitude + share * amplitude[partner]),
        "the mean amplitude": with_amplitude(pixels, amplitude.mean(0)),
    }
    print(f"{len(pixels)} training images; ROC AUC for PNEUMONIA (lower steps, higher anisotropy)")
    for name, variant in variants.items():
        across, down = eda.grey_steps(variant)
        print(f"{name:28s} steps across {roc_auc_score(labels, -across):.3f}, down {roc_auc_score(labels, -down):.3f}, "
              f"anisotropy {roc_auc_score(labels, eda.step_anisotropy(variant)):.3f}")


if __name__ == "__main__":
    main()
