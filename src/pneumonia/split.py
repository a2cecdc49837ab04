"""A validation split carved from train, grouped by patient and stratified by class.

Kaggle's own ``val/`` holds 16 images: far too few to choose anything. One patient can have many
images, so a random image-level split would put the same patient in train and validation and
flatter every validation number. Patients are read from the file names:

- ``person<N>_bacteria_<M>.jpeg`` / ``person<N>_virus_<M>.jpeg``: PNEUMONIA patient N;
- ``IM-<XXXX>-<YYYY>.jpeg``: NORMAL patient XXXX;
- ``NORMAL2-IM-<XXXX>-<YYYY>.jpeg``: NORMAL patient XXXX of a second numbering (its own patients).

The official test split is copied through untouched; Kaggle's val images become ``kaggle_val``,
reported but never used to select anything.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pandas as pd
from sklearn.model_selection import StratifiedGroupKFold

from pneumonia import config
from pneumonia.data import DataError, load_manifest

_PATIENT_PATTERNS = (
    re.compile(r"^(person\d+)_", re.IGNORECASE),
    re.compile(r"^(NORMAL2-IM-\d+)-", re.IGNORECASE),
    re.compile(r"^(IM-\d+)-", re.IGNORECASE),
)
SPLIT_NAMES = ("train", "val", "test", "kaggle_val")
COLUMNS = ["path", "label", "patient", "split"]


def patient_id(filename: str) -> str:
    """Patient key of a file name; a name of no known pattern is its own patient."""
    name = Path(filename).name
    for pattern in _PATIENT_PATTERNS:
        if match := pattern.match(name):
            return match.group(1)
    return Path(name).stem


def has_known_patient_pattern(filename: str) -> bool:
    return any(p.match(Path(filename).name) for p in _PATIENT_PATTERNS)


def make_splits(files: pd.DataFrame, val_fraction: float = 0.12, seed: int = 42) -> pd.DataFrame:
    """Assign train/val (grouped by patient, stratified by label), test and kaggle_val.

    ``files`` has columns ``path``, ``label`` and ``split`` (the official split). The validation
    share is realised as one fold of ``round(1 / val_fraction)`` (0.12 -> 8 folds, 12.5%).
    """
    if not 0.0 < val_fraction < 0.5:
        raise ValueError(f"val_fraction must be in (0, 0.5), got {val_fraction}")
    frame = files[["path", "label", "split"]].copy()
    frame["patient"] = frame["path"].map(patient_id)
    frame["split"] = frame["split"].replace({"val": "kaggle_val"})

    train = frame[frame["split"] == "train"]
    n_splits = max(2, round(1 / val_fraction))
    min_patients = train.groupby("label")["patient"].nunique().min()
    if min_patients < n_splits:
        raise DataError(
            f"too few patients for a {1 / n_splits:.0%} grouped validation split "
            f"({min_patients} in the smallest class; need at least {n_splits})"
        )
    folds = StratifiedGroupKFold(n_splits=n_splits, shuffle=True, random_state=seed)
    _, val_index = next(folds.split(train, y=train["label"], groups=train["patient"]))
    frame.loc[train.index[val_index], "split"] = "val"

    order = {name: i for i, name in enumerate(SPLIT_NAMES)}
    frame = frame.sort_values(["split", "path"], key=lambda s: s.map(order) if s.name == "split" else s)
    return frame[COLUMNS].reset_index(drop=True)


def summarize(splits: pd.DataFrame) -> dict:
    """Counts of images and patients per split and class."""
    summary = {}
    for name, group in splits.groupby("split", sort=False):
        summary[name] = {
            "images": {label: int((group["label"] == label).sum()) for label in config.CLASS_NAMES},
            "patients": {
                label: int(group.loc[group["label"] == label, "patient"].nunique()) for label in config.CLASS_NAMES
            },
        }
    return summary


def patient_overlap(splits: pd.DataFrame, first: str, second: str) -> set[str]:
    patients = splits.groupby("split")["patient"].apply(set)
    return patients.get(first, set()) & patients.get(second, set())


def split_data(
    data: Path | str | None = None,
    out: Path | str | None = None,
    val_fraction: float = 0.12,
    seed: int = 42,
) -> pd.DataFrame:
    """Read ``DATA/manifest.json`` (default ``data/raw``), write ``out`` (default
    ``data/processed/splits.csv``) and a ``.json`` summary beside it; return the table."""
    manifest = load_manifest(data)
    splits = make_splits(pd.DataFrame(manifest["files"]), val_fraction=val_fraction, seed=seed)
    if leaked := patient_overlap(splits, "train", "val"):
        raise AssertionError(f"patients in both train and val: {sorted(leaked)[:5]}")
    out = Path(out or config.SPLITS_CSV)
    out.parent.mkdir(parents=True, exist_ok=True)
    splits.to_csv(out, index=False)
    unknown = sorted({p for p in splits["path"] if not has_known_patient_pattern(p)})
    summary = {
        "data": str(config.dataset_dir(data)),
        "dataset_sha256": manifest["dataset_sha256"],
        "seed": seed,
        "val_fraction_requested": val_fraction,
        "val_folds": max(2, round(1 / val_fraction)),
        "splits": summarize(splits),
        "files_without_patient_pattern": unknown,
    }
    out.with_suffix(".json").write_text(json.dumps(summary, indent=2) + "\n")
    for name, counts in summary["splits"].items():
        images, patients = counts["images"], counts["patients"]
        print(
            f"{name:>10}: {sum(images.values()):5d} images "
            f"({images['NORMAL']} NORMAL / {images['PNEUMONIA']} PNEUMONIA), "
            f"{sum(patients.values())} patients"
        )
    if unknown:
        print(f"{len(unknown)} files have no patient pattern and count as their own patient, e.g. {unknown[0]}")
    print(f"wrote {out}")
    return splits


def read_splits(path: Path | str | None = None, data: Path | str | None = None) -> pd.DataFrame:
    """Load ``splits.csv`` with an absolute ``filepath`` column pointing into ``DATA/chest_xray``."""
    path = Path(path or config.SPLITS_CSV)
    if not path.exists():
        raise DataError(f"no split table at {path}: run `pneumonia data split` (or notebook 01) first")
    splits = pd.read_csv(path)
    splits["filepath"] = [str(config.dataset_dir(data) / p) for p in splits["path"]]
    return splits
