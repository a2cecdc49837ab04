"""Metrics, the validation threshold and bootstrap intervals."""

from __future__ import annotations

import numpy as np
import pytest

from pneumonia import evaluate


def test_binary_metrics_on_a_known_confusion_matrix():
    truth = np.array([1, 1, 1, 1, 0, 0, 0, 0, 0, 0])
    prob = np.array([0.9, 0.8, 0.7, 0.2, 0.6, 0.1, 0.1, 0.2, 0.3, 0.4])
    scored = evaluate.binary_metrics(truth, prob, threshold=0.5)
    assert scored["confusion"] == {"tn": 5, "fp": 1, "fn": 1, "tp": 3}
    assert scored["sensitivity"] == pytest.approx(0.75)
    assert scored["specificity"] == pytest.approx(5 / 6)
    assert scored["accuracy"] == pytest.approx(0.8)


def test_choose_threshold_separates_separable_classes_in_the_middle():
    truth = np.array([0, 0, 0, 1, 1, 1])
    prob = np.array([0.1, 0.2, 0.3, 0.7, 0.8, 0.9])
    threshold = evaluate.choose_threshold(truth, prob)
    assert threshold == pytest.approx(0.5)
    assert evaluate.binary_metrics(truth, prob, threshold)["accuracy"] == 1.0


def test_choose_threshold_follows_the_data_not_a_constant():
    rng = np.random.default_rng(0)
    truth = np.array([0] * 200 + [1] * 200)
    prob = np.concatenate([rng.uniform(0.0, 0.85, 200), rng.uniform(0.8, 1.0, 200)])
    assert 0.8 <= evaluate.choose_threshold(truth, prob) <= 0.86


def test_bootstrap_interval_contains_the_estimate_and_narrows_with_data():
    rng = np.random.default_rng(1)
    def sample(n):
        truth = rng.integers(0, 2, n)
        return truth, np.clip(truth * 0.6 + rng.normal(0.2, 0.25, n), 0, 1)
    small, large = sample(100), sample(2000)
    ci_small = evaluate.bootstrap_ci(*small, 0.5, resamples=200)
    ci_large = evaluate.bootstrap_ci(*large, 0.5, resamples=200)
    accuracy = evaluate.binary_metrics(*large, 0.5)["accuracy"]
    assert ci_large["accuracy_ci95"][0] <= accuracy <= ci_large["accuracy_ci95"][1]
    width = lambda ci: ci[1] - ci[0]  # noqa: E731
    assert width(ci_large["accuracy_ci95"]) < width(ci_small["accuracy_ci95"])


def test_bootstrap_over_seeds_averages_them():
    truth = np.array([0, 1] * 50)
    perfect = truth.astype(float)
    wrong = 1 - perfect
    ci = evaluate.bootstrap_ci(truth, [perfect, wrong], [0.5, 0.5], resamples=50)
    assert ci["accuracy_ci95"] == pytest.approx([0.5, 0.5])


def test_summarize_seeds_reports_mean_and_spread():
    summary = evaluate.summarize_seeds([{m: 0.8 for m in evaluate.HEADLINE}, {m: 0.9 for m in evaluate.HEADLINE}])
    assert summary["accuracy"] == pytest.approx(0.85)
    assert summary["accuracy_std"] == pytest.approx(np.std([0.8, 0.9], ddof=1))


def test_choose_threshold_needs_both_classes():
    with pytest.raises(ValueError, match="both classes"):
        evaluate.choose_threshold(np.zeros(10), np.linspace(0, 1, 10))


def test_reports_readme_tables_every_model_and_links_the_benchmarks_instead_of_copying_them():
    from pneumonia import config, reporting

    test = {m: 0.9 for m in ("accuracy", "sensitivity", "specificity", "roc_auc")}
    metrics = {"cnn": {"test": test, "weights": "none (trained from scratch)", "seeds": [0, 1, 2], "threshold_source": "validation"}}
    path = reporting.write_reports_readme(metrics, {"reproduce_full_s": 1234.5, "machine": {"cpus": 2}}, [])
    text = path.read_text()
    assert path == config.REPORTS_DIR / "README.md"
    assert "| **cnn** | none (trained from scratch) | 3 |" in text and "| validation |" in text and "Kermany" in text
    assert "(benchmarks.md)" in text and "1234.5" not in text
    assert reporting.DISCLAIMER in text


def test_reports_readme_says_which_floors_of_the_quality_goal_the_cnn_meets():
    from pneumonia import reporting

    test = {"accuracy": 0.9183, "sensitivity": 0.9658, "specificity": 0.839, "roc_auc": 0.9752}
    line = reporting.quality_goal_line({"cnn": {"test": test}})
    assert line == ("Quality goal for `cnn`, mean over its seeds: accuracy 91.8% (goal ≥ 93%: **not met**), "
                    "ROC AUC 0.975 (goal ≥ 0.98: **not met**), sensitivity 96.6% (goal ≥ 90%: met), "
                    "specificity 83.9% (goal ≥ 90%: **not met**).")
    assert line in reporting.write_reports_readme({"cnn": {"test": test, "seeds": [0]}}).read_text()
    assert reporting.quality_goal_line({"cnn": {"test": {**test, "accuracy": 0.93}}}).count("**not met**") == 2
    assert reporting.quality_goal_line({"cnn_smote": {"test": test}}) is None
    assert reporting.quality_goal_line({"cnn": {"test": {"accuracy": 0.95}}}) is None


def test_comparison_table_says_when_a_threshold_also_saw_a_shifted_copy():
    from pneumonia import reporting

    test = {m: 0.9 for m in ("accuracy", "sensitivity", "specificity", "roc_auc")}
    entry = {"test": test, "weights": "none", "seeds": [0], "threshold_source": "validation"}
    plain = {**entry, "threshold_shift": 0.0}
    shifted = {**entry, "threshold_shift": 1.0}
    table = reporting.comparison_table({"plain": plain, "shifted": shifted, "unsaid": entry})
    assert "| validation |" in table and "| validation + shifted copy |" in table


def test_comparison_table_adds_a_row_for_an_ensemble_of_seeds():
    from pneumonia import reporting

    test = {m: 0.9 for m in ("accuracy", "sensitivity", "specificity", "roc_auc")}
    ensemble = {"test": {**test, "accuracy": 0.91, "accuracy_ci95": [0.88, 0.93]}, "seeds": [0, 1, 2],
                "threshold_source": "validation", "threshold_method": "youden_j_midpoint"}
    table = reporting.comparison_table({"cnn": {"test": test, "weights": "none", "seeds": [0, 1, 2],
                                                "threshold_source": "validation", "ensemble": ensemble}})
    rows = table.splitlines()
    index = next(i for i, row in enumerate(rows) if row.startswith("| **cnn** |"))
    assert rows[index + 1].startswith("| **cnn**, ensemble of its seeds | **random init (not transfer learning)** | 3 averaged | 91.0 [88.0, 93.0] |")


def test_one_factor_table_scores_each_member_at_its_own_threshold_under_each_change():
    from pneumonia import preprocess

    class MeanBrightness:
        """A 'model' whose probability of pneumonia is the image's mean brightness."""

        def predict(self, inputs, batch_size=64, verbose=0):
            return inputs.reshape(len(inputs), -1).mean(1, keepdims=True)

    rng = np.random.default_rng(0)
    labels = np.array([0] * 10 + [1] * 10)
    images = np.where(labels[:, None, None, None] == 1, 170, 80).astype(np.uint8) + rng.integers(0, 10, (20, 24, 24, 1),
                                                                                               dtype=np.uint8)
    members = [(MeanBrightness(), {"name": "toy", "seed": seed, "threshold": threshold})
               for seed, threshold in ((0, 0.5), (1, 0.95))]
    table = evaluate.one_factor_table(members, images, labels, shifts=["gamma 0.6", "white frame 8%"], progress=False)
    assert list(table["shift"].unique()) == ["none", "gamma 0.6", "white frame 8%"]
    assert len(table) == 3 * 2 and set(table.columns) >= {"model", "seed", *evaluate.HEADLINE}
    clean = table[table["shift"] == "none"].set_index("seed")
    assert clean.loc[0, "accuracy"] == 1.0  # 0.5 separates the two brightness levels
    assert clean.loc[1, "sensitivity"] == 0.0  # nothing reaches 0.95
    brighter = table[(table["shift"] == "gamma 0.6") & (table["seed"] == 0)].iloc[0]
    assert brighter["specificity"] < 1.0  # brighter NORMAL images now cross the threshold


def test_one_factor_heatmap_shows_a_broken_ranking_in_warning_colours():
    import pandas as pd

    from pneumonia import plots

    table = pd.DataFrame([{"shift": shift, "model": "cnn", "seed": 0, "specificity": spec, "sensitivity": 0.95,
                           "roc_auc": auc} for shift, spec, auc in (("none", 0.99, 0.997), ("sharpened", 0.74, 0.939))])
    figure = plots.one_factor(table)
    auc_panel = next(axis for axis in figure.axes if axis.get_title() == "ROC AUC")
    mesh = auc_panel.collections[0]
    assert (mesh.norm.vmin, mesh.norm.vmax) == (0.9, 1.0)
    sharpened = mesh.cmap(mesh.norm(0.939))
    assert sharpened[0] > sharpened[1]  # more red than green: an AUC of 0.94 is a broken ranking here
    rates = next(axis for axis in figure.axes if axis.get_title() == "specificity").collections[0]
    assert (rates.norm.vmin, rates.norm.vmax) == (0.0, 1.0)


def test_test_time_views_are_the_image_and_seeded_resampled_copies_the_same_for_every_call():
    rng = np.random.default_rng(0)
    inputs = rng.random((5, 24, 24, 1)).astype(np.float32)
    views = evaluate.augmented_views(inputs, views=4, rotation=0.03, shift=0.1, batch_size=2)
    assert len(views) == 4 and views[0] is inputs
    assert all(view.shape == inputs.shape and view.dtype == np.float32 for view in views)
    assert all(not np.allclose(view, inputs) for view in views[1:])  # each copy moved
    assert not np.allclose(views[1], views[2])  # and differently
    again = evaluate.augmented_views(inputs, views=4, rotation=0.03, shift=0.1, batch_size=2)
    assert all(np.array_equal(a, b) for a, b in zip(views, again))
    assert evaluate.augmented_views(inputs) == [inputs]
    still = evaluate.augmented_views(inputs, views=2)[1]  # no range: an identity resampling
    np.testing.assert_allclose(still, inputs, atol=1e-5)


def test_with_test_time_views_a_probability_is_the_mean_over_the_views():
    class MeanBrightness:
        def predict(self, inputs, batch_size=64, verbose=0):
            return inputs.reshape(len(inputs), -1).mean(1, keepdims=True)

    rng = np.random.default_rng(1)
    images = rng.integers(0, 255, (6, 24, 24, 1), dtype=np.uint8)
    sidecar = {"intensity": "none", "input_scaling": "pixel / 255"}
    test_time = {"views": 3, "rotation": 0.0, "shift": 0.2, "zoom": 0.0}
    (plain,) = evaluate.seed_probabilities([(MeanBrightness(), sidecar)], images)
    (averaged,) = evaluate.seed_probabilities([(MeanBrightness(), sidecar)], images, test_time=test_time)
    views = evaluate.augmented_views(images.astype(np.float32) / 255, **test_time)
    expected = np.mean([view.reshape(6, -1).mean(1) for view in views], axis=0)
    np.testing.assert_allclose(averaged, expected, rtol=1e-5)
    assert not np.allclose(averaged, plain)  # shifted views bring black borders in


def test_box_smoothing_averages_each_two_by_two_window_and_keeps_flat_images_and_edges():
    from pneumonia import preprocess

    flat = np.full((2, 6, 6, 1), 0.4, np.float32)
    np.testing.assert_allclose(preprocess.box_smooth(flat), flat, rtol=1e-6)  # edges too: no zero padding
    spike = np.zeros((1, 6, 6, 1), np.float32)
    spike[0, 3, 3] = 1.0
    smoothed = preprocess.box_smooth(spike)[0, ..., 0]
    assert smoothed.sum() == pytest.approx(1.0) and smoothed.max() == pytest.approx(0.25)
    assert set(zip(*np.nonzero(smoothed))) == {(2, 2), (2, 3), (3, 2), (3, 3)}  # windows that start up and left of it
    views = evaluate.augmented_views(spike, smooth=2)
    assert len(views) == 1 and np.allclose(views[0], preprocess.box_smooth(spike))


def _batchnorm_model(size=8):
    import keras

    inputs = keras.Input((size, size, 1))
    x = keras.layers.BatchNormalization(name="first_bn")(inputs)
    x = keras.layers.Conv2D(3, 3, name="conv")(x)
    x = keras.layers.BatchNormalization(name="second_bn")(x)
    outputs = keras.layers.Dense(1, activation="sigmoid")(keras.layers.GlobalAveragePooling2D()(x))
    return keras.Model(inputs, outputs)


def test_adapted_batchnorm_pools_the_statistics_of_the_whole_set_and_puts_the_trained_ones_back():
    model = _batchnorm_model()
    first = model.get_layer("first_bn")
    trained = [variable.numpy().copy() for variable in model.non_trainable_variables]
    inputs = (np.random.default_rng(2).random((10, 8, 8, 1)) * 3 + 5).astype(np.float32)
    with evaluate.adapted_batchnorm(model, inputs, batch_size=4):  # batches of 4, 4 and 2
        np.testing.assert_allclose(first.moving_mean.numpy(), [inputs.mean()], rtol=1e-5)
        np.testing.assert_allclose(first.moving_variance.numpy(), [inputs.var()], rtol=1e-4)
        assert first.momentum == model.get_layer("second_bn").momentum == 0.99
    second = model.get_layer("second_bn")
    with evaluate.adapted_batchnorm(model, inputs, batch_size=4, first=1):  # the first layer only
        np.testing.assert_allclose(first.moving_mean.numpy(), [inputs.mean()], rtol=1e-5)
        np.testing.assert_array_equal(second.moving_mean.numpy(), trained[2])
        np.testing.assert_array_equal(second.moving_variance.numpy(), trained[3])
    with evaluate.adapted_batchnorm(model, inputs, batch_size=16):  # one batch: later layers see adapted inputs
        features = np.asarray(model.get_layer("conv")(first(inputs, training=False)))
        np.testing.assert_allclose(model.get_layer("second_bn").moving_mean.numpy(), features.mean((0, 1, 2)),
                                   rtol=1e-4, atol=1e-6)
    for variable, value in zip(model.non_trainable_variables, trained):
        np.testing.assert_array_equal(variable.numpy(), value)


def test_adapted_probabilities_depend_on_the_set_they_are_scored_with():
    model = _batchnorm_model()
    sidecar = {"intensity": "none", "input_scaling": "pixel / 255"}
    rng = np.random.default_rng(3)
    images = rng.integers(0, 120, (12, 8, 8, 1), dtype=np.uint8)
    brighter = np.concatenate([images, rng.integers(120, 255, (12, 8, 8, 1), dtype=np.uint8)])
    (plain,) = evaluate.seed_probabilities([(model, sidecar)], images)
    (alone,) = evaluate.seed_probabilities([(model, sidecar)], images, test_time={"adapt": 1})
    (together,) = evaluate.seed_probabilities([(model, sidecar)], brighter, test_time={"adapt": 1})
    assert not np.allclose(alone, plain)  # the untrained statistics (0 and 1) are not these images'
    assert not np.allclose(alone, together[:12])  # the same images, scored among others
    (again,) = evaluate.seed_probabilities([(model, sidecar)], images)
    np.testing.assert_array_equal(again, plain)  # nothing left behind


def test_threshold_for_specificity_is_the_lowest_that_reaches_it():
    truth = np.array([0, 0, 0, 0, 0, 1, 1, 1])
    prob = np.array([0.05, 0.1, 0.2, 0.3, 0.6, 0.4, 0.7, 0.9])
    threshold = evaluate.threshold_for_specificity(truth, prob, 0.8)
    assert evaluate.binary_metrics(truth, prob, threshold)["specificity"] == pytest.approx(0.8)
    assert 0.3 < threshold < 0.31
    lower = np.nextafter(threshold, 0.0)
    assert evaluate.binary_metrics(truth, prob, lower)["specificity"] < 0.8
    assert evaluate.threshold_for_specificity(truth, prob, 0.0) == 0.0
    every_normal = evaluate.threshold_for_specificity(truth, prob, 1.0)
    assert evaluate.binary_metrics(truth, prob, every_normal)["specificity"] == 1.0


def test_threshold_for_specificity_needs_normal_images():
    with pytest.raises(ValueError, match="NORMAL"):
        evaluate.threshold_for_specificity(np.array([1, 1]), np.array([0.2, 0.8]), 0.9)
