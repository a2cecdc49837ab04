"""Every path and constant the project shares, resolved from the project root.

Two roots:

- ``PROJECT_ROOT`` is this checkout: the notebooks and run parameters live there.
- ``WORKSPACE`` is where runs write: ``data/``, ``models/`` and ``reports/``. It is the project
  root unless ``PNEUMONIA_WORKSPACE`` names another folder; the tests point it at a temporary
  folder so that a test run never touches your own data or reports.
"""

from __future__ import annotations

import os
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parents[2]
WORKSPACE = Path(os.environ.get("PNEUMONIA_WORKSPACE") or PROJECT_ROOT).resolve()

NOTEBOOKS_DIR = PROJECT_ROOT / "notebooks"
PARAMS_DIR = PROJECT_ROOT / "params"

DATA_DIR = WORKSPACE / "data"
RAW_DIR = DATA_DIR / "raw"
PROCESSED_DIR = DATA_DIR / "processed"
MODELS_DIR = WORKSPACE / "models"
REPORTS_DIR = WORKSPACE / "reports"
FIGURES_DIR = REPORTS_DIR / "figures"
METRICS_DIR = REPORTS_DIR / "metrics"
EXECUTED_NOTEBOOKS_DIR = REPORTS_DIR / "notebooks"

DATASET_FOLDER = "chest_xray"
"""Name of the image tree inside a raw-data folder: ``RAW_DIR / DATASET_FOLDER / split / class``."""
MANIFEST_NAME = "manifest.json"
SPLITS_CSV = PROCESSED_DIR / "splits.csv"

KAGGLE_DATASET = "paultimothymooney/chest-xray-pneumonia"
CLASS_NAMES = ("NORMAL", "PNEUMONIA")
"""Label order used everywhere: index 1 (PNEUMONIA) is the positive class."""
OFFICIAL_SPLITS = ("train", "val", "test")

DATASET_CITATION = (
    "Kermany, Zhang & Goldbaum (2018), Labeled Optical Coherence Tomography (OCT) and Chest X-Ray "
    "Images for Classification, Mendeley Data v2, doi:10.17632/rscbjbr9sj.2, CC BY 4.0; "
    "Kermany et al., Cell 172(5):1122-1131, 2018."
)


def dataset_dir(raw_dir: Path | str | None = None) -> Path:
    """The image tree (``.../chest_xray``) inside a raw-data folder (default ``data/raw``)."""
    return Path(raw_dir or RAW_DIR) / DATASET_FOLDER


def manifest_path(raw_dir: Path | str | None = None) -> Path:
    return Path(raw_dir or RAW_DIR) / MANIFEST_NAME
