"""The patient-grouped, class-stratified validation split."""

from __future__ import annotations

import json

import pandas as pd
import pytest

from pneumonia import data, split
from pneumonia.data import DataError


@pytest.mark.parametrize(
    ("name", "patient"),
    [
        ("person1000_bacteria_2931.jpeg", "person1000"),
        ("person22_virus_55.jpeg", "person22"),
        ("IM-0115-0001.jpeg", "IM-0115"),
        ("NORMAL2-IM-0115-0001.jpeg", "NORMAL2-IM-0115"),
        ("train/NORMAL/IM-0007-0002.jpeg", "IM-0007"),
        ("odd-name.png", "odd-name"),
    ],
)
def test_patient_id(name, patient):
    assert split.patient_id(name) == patient


@pytest.fixture(scope="module")
def files(synthetic_source, tmp_path_factory):
    manifest = data.ingest(synthetic_source, tmp_path_factory.mktemp("raw"), progress=False)
    return pd.DataFrame(manifest["files"])


def test_split_is_grouped_by_patient_and_stratified(files):
    splits = split.make_splits(files, val_fraction=0.12, seed=1)
    assert not split.patient_overlap(splits, "train", "val")
    assert splits.groupby("patient")["split"].nunique().max() == 1
    val = splits[splits["split"] == "val"]
    assert set(val["label"]) == {"NORMAL", "PNEUMONIA"}
    train_patients = files[files["split"] == "train"]["path"].map(split.patient_id).nunique()
    assert val["patient"].nunique() == pytest.approx(train_patients / 8, abs=2)


def test_test_rows_are_the_official_test_split_untouched(files):
    splits = split.make_splits(files, seed=3)
    official = files.loc[files["split"] == "test", ["path", "label"]].sort_values("path").reset_index(drop=True)
    ours = splits.loc[splits["split"] == "test", ["path", "label"]].sort_values("path").reset_index(drop=True)
    pd.testing.assert_frame_equal(official, ours)


def test_split_is_deterministic_by_seed(files):
    first = split.make_splits(files, seed=7)
    pd.testing.assert_frame_equal(first, split.make_splits(files, seed=7))
    assert not first.equals(split.make_splits(files, seed=8))


def test_kaggle_val_is_kept_apart(files):
    extra = pd.DataFrame(
        [
            {"path": "val/NORMAL/IM-9001-0001.jpeg", "label": "NORMAL", "split": "val"},
            {"path": "val/PNEUMONIA/person9001_virus_1.jpeg", "label": "PNEUMONIA", "split": "val"},
        ]
    )
    splits = split.make_splits(pd.concat([files, extra], ignore_index=True), seed=0)
    kaggle_val = splits[splits["split"] == "kaggle_val"]
    assert sorted(kaggle_val["path"]) == sorted(extra["path"])
    assert set(splits["split"]) == {"train", "val", "test", "kaggle_val"}


def test_too_few_patients_is_a_clear_error(files):
    tiny = files[files["split"] == "test"].assign(split="train")
    with pytest.raises(DataError, match="too few patients"):
        split.make_splits(tiny.head(6), val_fraction=0.12)
    with pytest.raises(ValueError, match="val_fraction"):
        split.make_splits(files, val_fraction=0.7)


def test_split_data_writes_table_and_summary(synthetic_source, tmp_path):
    raw = tmp_path / "raw"
    data.ingest(synthetic_source, raw, progress=False)
    out = tmp_path / "processed" / "splits.csv"
    written = split.split_data(raw, out, val_fraction=0.12, seed=42)
    table = pd.read_csv(out)
    assert list(table.columns) == split.COLUMNS
    assert len(table) == len(written) == data.load_manifest(raw)["total"]
    summary = json.loads(out.with_suffix(".json").read_text())
    assert summary["dataset_sha256"] == data.load_manifest(raw)["dataset_sha256"]
    assert sum(summary["splits"]["val"]["images"].values()) == (table["split"] == "val").sum()
    read = split.read_splits(out, raw)
    assert all(path.endswith(row) for path, row in zip(read["filepath"], read["path"]))
