"""Acquisition cues: measures of how an image was made, the cue model, counter-cue rows and weights."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from pneumonia import acquisition


def _chests(count: int, rng: np.random.Generator, side_bars: int = 0, size: int = 64) -> np.ndarray:
    """Grainy grey images with a bright middle; ``side_bars`` columns of black at the left and right."""
    images = np.clip(rng.normal(110, 25, (count, size, size, 1)), 0, 255)
    images[:, size // 4: 3 * size // 4, size // 4: 3 * size // 4] += 60
    if side_bars:
        images[:, :, :side_bars] = 0
        images[:, :, -side_bars:] = 0
    return np.clip(images, 0, 255).astype(np.uint8)


def test_measures_read_frames_and_shape_from_the_image_as_decoded():
    rng = np.random.default_rng(0)
    plain, barred = _chests(4, rng), _chests(4, rng, side_bars=6)
    table = acquisition.measures(np.concatenate([plain, barred]))
    assert list(table.columns) == list(acquisition.MEASURES) and len(table) == 8
    assert (table["border_left"][:4] == 0).all() and (table["border_left"][4:] >= 6).all()
    assert (table["border_right"][4:] >= 6).all() and (table["border_top"] == 0).all()
    assert (table["ring_dark"][4:] > 0.3).all() and (table["ring_dark"][:4] < 0.05).all()
    # Stretched across (every other column, each twice), an image has smaller steps across than down.
    stretched = plain[:, :, ::2].repeat(2, axis=2)
    assert (acquisition.measures(stretched)["anisotropy"] < table["anisotropy"][:4].to_numpy()).all()
    rgb = acquisition.measures(np.repeat(plain, 3, axis=-1))
    assert np.allclose(rgb.to_numpy(), table[:4].to_numpy(), atol=1e-4)


def test_out_of_fold_scores_find_a_cue_that_is_there_and_none_that_is_not():
    rng = np.random.default_rng(1)
    labels = np.r_[np.zeros(40, int), np.ones(40, int)]
    images = np.concatenate([_chests(40, rng, side_bars=5), _chests(40, rng)])  # NORMAL framed, PNEUMONIA not
    assert roc_auc_score(labels, acquisition.out_of_fold_scores(images, labels)) > 0.95
    shuffled = np.random.default_rng(2).permutation(labels)  # frames no longer go with the class
    assert abs(roc_auc_score(shuffled, acquisition.out_of_fold_scores(images, shuffled)) - 0.5) < 0.2
    model = acquisition.fit(images, labels)
    scores = acquisition.scores(model, np.concatenate([_chests(5, rng, side_bars=5), _chests(5, rng)]))
    assert scores[:5].max() < 0.5 < scores[5:].min()


def test_counter_cue_rows_are_the_normal_images_that_look_like_pneumonia_and_the_reverse():
    labels = np.array([0, 0, 0, 1, 1, 1, 1, 1, 1, 0, 0, 0])
    cue = np.array([0.1, 0.9, 0.2, 0.8, 0.1, 0.7, 0.95, 0.3, 0.6, 0.4, 0.05, 0.5])
    rows = acquisition.counter_cue_rows(cue, labels, share=1 / 3)
    assert list(rows) == [1, 4, 7, 11]  # NORMAL 0.9 and 0.5; PNEUMONIA 0.1 and 0.3
    assert len(acquisition.counter_cue_rows(cue, labels, share=0.5)) == 6


def test_counter_cue_weights_keep_each_class_total_and_move_weight_to_images_that_look_like_the_other_class():
    labels = np.array([0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1])
    cue = np.array([0.05, 0.3, 0.6, 0.99, 0.2, 0.5, 0.9, 0.9, 0.95, 0.99, 0.99, 0.9])
    class_weight = {0: 1.5, 1: 0.75}
    weights = acquisition.counter_cue_weights(cue, labels, class_weight, cap=5.0)
    assert weights[labels == 0].sum() == pytest.approx(1.5 * 4)
    assert weights[labels == 1].sum() == pytest.approx(0.75 * 8)
    normal = weights[:4]
    assert list(np.argsort(normal)) == [0, 1, 2, 3]  # the more a NORMAL image looks like PNEUMONIA, the more weight
    assert weights[4] > weights[5] > weights[6]  # and a PNEUMONIA image the less it does
    # The cap: an image whose own class has probability 0.01 counts as if it had 0.2.
    assert normal[3] / normal[0] == pytest.approx(5.0 / (1 / 0.95))
    assert np.allclose(acquisition.counter_cue_weights(np.full(12, 0.5), labels, class_weight),
                       [class_weight[label] for label in labels])
    normal_only = acquisition.counter_cue_weights(cue, labels, class_weight, cap=5.0, classes=(0,))
    assert np.allclose(normal_only[:4], normal) and np.allclose(normal_only[4:], 0.75)
