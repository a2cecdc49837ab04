"""The exploratory analysis' own measurements (notebook 02)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from pneumonia import eda


def test_sharpness_is_the_mean_step_between_neighbouring_pixels_and_falls_with_a_blur():
    flat = np.full((1, 8, 8, 1), 100, np.uint8)
    stripes = np.zeros((1, 8, 8, 1), np.uint8)
    stripes[:, :, ::2] = 40  # a 40-level step between every pair of columns, none between rows
    assert eda.sharpness(flat)[0] == 0.0
    assert eda.sharpness(stripes)[0] == pytest.approx(20.0)  # (40 across + 0 down) / 2
    rng = np.random.default_rng(0)
    grain = rng.integers(0, 255, (1, 32, 32, 1)).astype(np.uint8)
    blurred = ((grain[:, 1:, 1:].astype(float) + grain[:, :-1, :-1]) / 2).astype(np.uint8)
    assert eda.sharpness(blurred)[0] < eda.sharpness(grain)[0]
    assert eda.sharpness(np.repeat(stripes, 3, axis=-1))[0] == pytest.approx(20.0)  # RGB: the grey mean


def test_step_anisotropy_is_the_log_ratio_of_horizontal_to_vertical_steps():
    stripes = np.zeros((1, 8, 8, 1), np.uint8)
    stripes[:, :, ::2] = 40  # steps between columns only
    assert eda.step_anisotropy(stripes)[0] > 5
    assert eda.step_anisotropy(np.swapaxes(stripes, 1, 2))[0] < -5
    assert eda.step_anisotropy(np.full((1, 8, 8, 1), 9, np.uint8))[0] == 0.0
    rng = np.random.default_rng(0)
    grain = rng.integers(0, 255, (2, 64, 64, 1)).astype(np.uint8)
    assert abs(eda.step_anisotropy(grain)).max() < 0.05  # no direction
    across, down = eda.grey_steps(grain)
    np.testing.assert_allclose(eda.sharpness(grain), (across + down) / 2)


def test_a_vertical_stretch_raises_the_anisotropy_and_a_vertical_squeeze_lowers_it():
    rng = np.random.default_rng(1)
    images = np.kron(rng.integers(0, 255, (8, 20, 20, 1)), np.ones((1, 4, 4, 1))).astype(np.uint8)  # smooth blobs
    moved = eda.anisotropy_under_changes(images, ["stretch vertically x1.25", "squeeze vertically x0.8"])
    assert moved["stretch vertically x1.25"] > 0.1 and moved["squeeze vertically x0.8"] < -0.1
    assert list(moved.index) == ["stretch vertically x1.25", "squeeze vertically x0.8"]  # sorted, largest first


def test_separability_is_the_auc_of_lower_values_for_pneumonia():
    frame = pd.DataFrame({"label": ["NORMAL", "NORMAL", "PNEUMONIA", "PNEUMONIA"], "sharpness": [5.0, 4.0, 3.0, 2.0]})
    assert eda.separability(frame, "sharpness") == 1.0
    assert eda.separability(frame.assign(sharpness=[2.0, 3.0, 4.0, 5.0]), "sharpness") == 0.0
    assert eda.separability(frame, "sharpness", higher=True) == 0.0


def test_sharpness_table_names_each_images_numbering(synthetic_source, tmp_path, monkeypatch):
    from pneumonia import config, data, split

    raw = tmp_path / "raw"
    data.fetch(synthetic_source, raw, progress=False)
    monkeypatch.setattr(config, "PROCESSED_DIR", tmp_path / "processed")
    split.split_data(raw, tmp_path / "splits.csv")
    splits = split.read_splits(tmp_path / "splits.csv", raw)
    table = eda.sharpness_table(splits, "train", image_size=32, progress=False)
    assert len(table) == (splits["split"] == "train").sum()
    normal = table["label"] == "NORMAL"
    assert set(table.loc[~normal, "numbering"]) == {"person"}
    assert set(table.loc[normal, "numbering"]) == {"IM", "NORMAL2-IM"}
    assert table.loc[table["path"].str.contains("NORMAL2-"), "numbering"].eq("NORMAL2-IM").all()
    assert (table[["sharpness", "sharpness_equalised"]] >= 0).all().all()
    assert np.isfinite(table[["anisotropy", "anisotropy_equalised"]]).all().all()


def test_sharpness_summary_separates_classes_and_compares_the_normal_numberings():
    frame = pd.DataFrame({
        "label": ["NORMAL"] * 4 + ["PNEUMONIA"] * 2,
        "numbering": ["IM", "IM", "NORMAL2-IM", "NORMAL2-IM", "person", "person"],
        "sharpness": [6.0, 5.0, 5.5, 4.5, 3.0, 5.2],
        "sharpness_equalised": [8.0, 7.0, 8.5, 7.5, 6.0, 6.5],
        "anisotropy": [0.1, 0.2, 0.2, 0.1, 0.4, 0.15],
        "anisotropy_equalised": [0.1, 0.2, 0.2, 0.1, 0.4, 0.3],
    })
    summary = eda.sharpness_summary(frame)
    assert summary["images"] == 6 and summary["by_numbering"]["IM"] == {
        "images": 2, "sharpness_mean": 5.5, "sharpness_std": pytest.approx(0.707, abs=1e-3),
        "sharpness_equalised_mean": 7.5, "sharpness_equalised_std": pytest.approx(0.707, abs=1e-3),
        "anisotropy_mean": 0.15, "anisotropy_std": pytest.approx(0.0707, abs=1e-3),
        "anisotropy_equalised_mean": 0.15, "anisotropy_equalised_std": pytest.approx(0.0707, abs=1e-3)}
    assert summary["roc_auc_alone"] == pytest.approx(6 / 8)  # 5.2 outranks two of the four NORMAL images
    assert summary["roc_auc_alone_equalised"] == 1.0
    assert summary["anisotropy_roc_auc_alone"] == pytest.approx(6 / 8)  # higher means PNEUMONIA; 0.15 outranks two
    assert summary["anisotropy_roc_auc_alone_equalised"] == 1.0
    assert summary["normal_numberings_roc_auc"] == pytest.approx(0.75)  # NORMAL2-IM as the lower one
    assert eda.sharpness_summary(frame[frame["numbering"] != "IM"])["normal_numberings_roc_auc"] is None
