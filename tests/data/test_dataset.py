"""Contracts of the real chest X-ray dataset, after our ingest and split."""

from __future__ import annotations

import re

import pytest

from pneumonia import config, split

pytestmark = pytest.mark.data

# Official Kaggle counts (Kermany et al. 2018, Kaggle v2 layout).
OFFICIAL = {
    "train": {"NORMAL": 1341, "PNEUMONIA": 3875},
    "test": {"NORMAL": 234, "PNEUMONIA": 390},
    "val": {"NORMAL": 8, "PNEUMONIA": 8},
}


def test_counts_match_the_official_splits(real_manifest):
    counts = real_manifest["counts"]
    assert counts["train"] == OFFICIAL["train"]
    assert counts["test"] == OFFICIAL["test"]
    assert counts.get("val", OFFICIAL["val"]) == OFFICIAL["val"]


def test_every_image_decodes_and_classes_are_the_two_expected(real_manifest):
    assert real_manifest["skipped"] == []
    assert {f["label"] for f in real_manifest["files"]} == set(config.CLASS_NAMES)
    assert all(f["width"] > 0 and f["height"] > 0 for f in real_manifest["files"])


def test_file_names_carry_patients_of_the_right_class(real_manifest):
    for entry in real_manifest["files"]:
        name = entry["path"].rsplit("/", 1)[-1]
        assert split.has_known_patient_pattern(name), name
        expected = "PNEUMONIA" if re.match(r"person\d+_", name) else "NORMAL"
        assert entry["label"] == expected, entry["path"]


def test_no_patient_is_in_both_train_and_val(real_splits):
    assert not split.patient_overlap(real_splits, "train", "val")
    assert real_splits.groupby("patient")["split"].apply(lambda s: set(s) & {"train", "val"}).map(len).max() == 1


def test_validation_split_is_about_twelve_percent_and_stratified(real_splits):
    carved = real_splits[real_splits["split"].isin(["train", "val"])]
    val = carved[carved["split"] == "val"]
    assert 0.10 <= len(val) / len(carved) <= 0.15
    share = lambda frame: (frame["label"] == "PNEUMONIA").mean()  # noqa: E731
    assert share(val) == pytest.approx(share(carved), abs=0.03)


def test_hashes_match_the_sources_checksum_list(real_source, real_manifest):
    sums = real_source / "SHA256SUMS"
    if not sums.exists():
        pytest.skip("this copy ships no SHA256SUMS")
    listed = {}
    for line in sums.read_text().splitlines():
        digest, name = line.split(maxsplit=1)
        listed[name.lstrip("*").removeprefix("./")] = digest
    ours = {f["path"]: f["sha256"] for f in real_manifest["files"]}
    assert {path: listed.get(path) for path in ours} == ours
