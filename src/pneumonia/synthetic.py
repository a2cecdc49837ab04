"""A small synthetic chest-X-ray-like dataset for fast tests and smoke runs.

Real JPEG files in the Kaggle layout and naming (``personN_bacteria_M.jpeg``, ``IM-XXXX-YYYY.jpeg``,
``NORMAL2-IM-XXXX-YYYY.jpeg``), several images per patient, so that the same loaders, the same
patient parsing and the same notebooks run on it. The classes differ in a way a small CNN can
learn: PNEUMONIA images carry bright blotchy opacities inside the lung fields.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from pneumonia import config


def make_image(label: str, rng: np.random.Generator, image_size: int = 64) -> Image.Image:
    """One grey image: dark background, two lung fields, a mediastinum, optional opacities."""
    size = image_size
    y, x = np.mgrid[0:size, 0:size] / size
    image = 0.15 + 0.05 * rng.standard_normal((size, size))
    for centre_x in (0.3, 0.7):
        lung = ((x - centre_x) / 0.17) ** 2 + ((y - 0.5) / 0.32) ** 2 < 1
        image[lung] += 0.25
    image += 0.35 * (np.abs(x - 0.5) < 0.06)
    if label == "PNEUMONIA":
        for _ in range(rng.integers(2, 5)):
            cx, cy = rng.choice([0.3, 0.7]) + rng.normal(0, 0.05), rng.uniform(0.3, 0.7)
            radius = rng.uniform(0.06, 0.12)
            image += 0.35 * np.exp(-(((x - cx) ** 2 + (y - cy) ** 2) / (2 * radius**2)))
    pixels = (np.clip(image, 0, 1) * 255).astype(np.uint8)
    return Image.fromarray(pixels, mode="L").convert("RGB")


def make_synthetic_dataset(
    dest: Path | str,
    patients: dict[str, dict[str, int]] | None = None,
    images_per_patient: tuple[int, int] = (1, 3),
    image_size: int = 64,
    seed: int = 0,
) -> Path:
    """Write ``dest/{split}/{NORMAL,PNEUMONIA}/*.jpeg`` and return ``dest``.

    ``patients`` maps split -> label -> number of patients; the default gives a train split large
    enough for an 8-fold patient-grouped validation split and a small test split.
    """
    patients = patients or {
        "train": {"NORMAL": 16, "PNEUMONIA": 24},
        "test": {"NORMAL": 6, "PNEUMONIA": 8},
    }
    rng = np.random.default_rng(seed)
    dest = Path(dest)
    next_id = 1
    for split, by_label in patients.items():
        for label, count in by_label.items():
            if label not in config.CLASS_NAMES:
                raise ValueError(f"unknown label {label!r}")
            folder = dest / split / label
            folder.mkdir(parents=True, exist_ok=True)
            for patient in range(count):
                number = next_id
                next_id += 1
                for image in range(1, int(rng.integers(images_per_patient[0], images_per_patient[1] + 1)) + 1):
                    if label == "PNEUMONIA":
                        kind = "bacteria" if patient % 3 else "virus"
                        name = f"person{number}_{kind}_{number * 10 + image}.jpeg"
                    else:
                        prefix = "NORMAL2-IM" if patient % 2 else "IM"
                        name = f"{prefix}-{number:04d}-{image:04d}.jpeg"
                    make_image(label, rng, image_size).save(folder / name, quality=90)
    return dest
