"""`pneumonia experiment`: variants of notebook 04's CNN trained, scored on validation and judged by the rule."""

from __future__ import annotations

import json

import pytest

from pneumonia import config, experiment, train
from pneumonia.reproduce import notebook_parameters


def test_settings_are_read_as_literals_or_yaml_and_checked_against_the_training_config():
    assert experiment.parse_settings(["epochs=40", "learning_rate=2e-3", "ema_momentum=0.999", "dropout=1",
                                      "augmentation={zoom: 0.3}", "step_schedule=null", "filters=[8, 16]",
                                      "antialias=true"]) == {
        "epochs": 40, "learning_rate": 0.002, "ema_momentum": 0.999, "dropout": 1.0, "augmentation": {"zoom": 0.3},
        "step_schedule": None, "filters": (8, 16), "antialias": True}
    assert experiment.parse_settings(["balance=oversample"]) == {"balance": "oversample"}
    assert experiment.parse_settings(["balance=counter_cue_normal"]) == {"balance": "counter_cue_normal"}
    for bad in (["epochs"], ["=3"], ["epoch=40"], ["balance=undersample"], ["name=other"], ["epochs=forty"],
                ["learning_rate=fast"], ["augmentation=0.3"]):
        with pytest.raises(ValueError):
            experiment.parse_settings(bad)


def _record(tag, map_aucs, clean=0.997, shifted=0.993, seconds=200.0, cpu="CPU A", seeds=(0, 1, 2), data="abc",
            epochs=20, balanced=None, sensitivity=0.94, counter_cue=None):
    balanced = balanced or [0.92] * len(map_aucs)
    per_seed = [{"seed": seed, "map_roc_auc": auc, "map_balanced_accuracy": accuracy, "train_seconds": seconds,
                 "epochs_run": epochs} for seed, auc, accuracy in zip(seeds, map_aucs, balanced)]
    for row, accuracy in zip(per_seed, counter_cue or []):
        row["counter_cue_balanced_accuracy"] = accuracy
    return {"tag": tag, "settings": {}, "per_seed": per_seed, "machine": {"cpu_model": cpu},
            "data_manifest_sha256": data, "profile": "full",
            "summary": {"validation_roc_auc": clean, "shifted_x1.5_roc_auc": shifted, "train_seconds": seconds,
                        "validation_sensitivity": sensitivity, "validation_specificity": 0.99,
                        **({"counter_cue_balanced_accuracy": float(sum(counter_cue) / len(counter_cue))}
                           if counter_cue else {})}}


def test_the_comparison_pairs_seeds_by_number_not_by_position():
    reference = _record("published", [0.990, 0.991, 0.992])
    variant = _record("v", [0.997, 0.994, 0.994], seeds=(2, 0, 1))  # seed 2 first
    comparison = experiment.compare(variant, reference)
    assert comparison["map_roc_auc_gains"] == pytest.approx([0.005, 0.004, 0.003])
    assert comparison["map_roc_auc_gain"] == pytest.approx(0.004)
    assert comparison["map_roc_auc_gain_std"] == pytest.approx(0.001)
    with pytest.raises(ValueError, match="same seeds"):
        experiment.compare(_record("v", [0.99], seeds=(7,)), reference)


def test_the_verdict_adopts_only_when_every_check_passes():
    reference = _record("published", [0.990, 0.991, 0.992])
    steady = _record("v", [0.994, 0.995, 0.996])
    assert experiment.verdict(experiment.compare(steady, reference))["adopt"] is True
    failing = {
        "gain above twice its spread": _record("v", [0.990, 0.999, 0.996]),  # +0.000, +0.008, +0.004
        "gain above 0.002": _record("v", [0.9911, 0.9921, 0.9931]),  # steady, +0.0011
        "clean validation AUC kept": _record("v", [0.994, 0.995, 0.996], clean=0.994),
        "strength-1.5 AUC kept": _record("v", [0.994, 0.995, 0.996], shifted=0.990),
        "epoch time within 1.25x": _record("v", [0.994, 0.995, 0.996], seconds=260.0),
        "same CPU": _record("v", [0.994, 0.995, 0.996], cpu="CPU B"),
        "same data and profile": _record("v", [0.994, 0.995, 0.996], data="other"),
    }
    # early stopping can hide a slower network: fewer epochs, the same total time, each epoch 1.5x as long
    hidden = experiment.compare(_record("v", [0.994, 0.995, 0.996], seconds=200.0, epochs=12), reference)
    assert hidden["train_seconds_ratio"] == pytest.approx(1.0) and hidden["epoch_seconds_ratio"] == pytest.approx(20 / 12)
    assert experiment.verdict(hidden)["checks"]["epoch time within 1.25x"] is False
    for check, variant in failing.items():
        result = experiment.verdict(experiment.compare(variant, reference))
        assert result["adopt"] is False and [name for name, ok in result["checks"].items() if not ok] == [check]


def test_every_set_option_on_the_command_line_reaches_the_run(monkeypatch):
    from pneumonia import cli

    received = {}
    monkeypatch.setattr(experiment, "run", lambda tag, settings, *args, **kwargs: received.update(settings) or {})
    monkeypatch.setattr(experiment, "describe", lambda record: "")
    cli.main(["experiment", "variant", "--set", "ema_momentum=0.999", "--set", "bn_refresh_batches=32",
              "epochs=30"])
    assert received == {"ema_momentum": 0.999, "bn_refresh_batches": 32, "epochs": 30}


def test_a_reference_without_the_runs_seeds_is_refused_before_any_training(tmp_path, monkeypatch):
    monkeypatch.setattr(config, "REPORTS_DIR", tmp_path / "reports")
    (tmp_path / "reports" / "experiments").mkdir(parents=True)
    (tmp_path / "reports" / "experiments" / "published.json").write_text(
        json.dumps({"tag": "published", "per_seed": [{"seed": 0}, {"seed": 1}, {"seed": 2}]}))
    monkeypatch.setattr(experiment.split, "read_splits", lambda *args: pytest.fail("read data before the check"))
    with pytest.raises(ValueError, match=r"seeds \[0, 1, 2\], not \[3, 4, 5\]"):
        experiment.run("fresh", {}, seeds=(3, 4, 5))


def test_a_mistyped_test_time_setting_is_refused_before_any_data_is_read(monkeypatch):
    monkeypatch.setattr(experiment.split, "read_splits", lambda *args: pytest.fail("read data before the check"))
    monkeypatch.setattr(experiment.train, "train_one", lambda *args, **kwargs: pytest.fail("trained a model"))
    with pytest.raises(ValueError, match="takes a number"):
        experiment.run("v", {"epochs": 3}, against=None, test_time=["views=eight"])


def test_notebook_04_has_a_parameter_for_every_training_setting_and_passes_it_on():
    parameters = notebook_parameters("04-cnn", "full")
    settings = set(train.TrainConfig.__dataclass_fields__) - set(train.PER_MODEL_FIELDS)
    assert settings <= set(parameters), f"notebook 04 has no parameter for {sorted(settings - set(parameters))}"
    configured = train.config_from_parameters(parameters)
    assert configured.ema_momentum == parameters["ema_momentum"] and configured.filters == tuple(parameters["filters"])
    # The notebook passes its whole namespace: the loop's per-model variables and other names must not leak in.
    namespace = parameters | {"name": "cnn_smote", "balance": "smote", "seeds": [0], "model": object()}
    assert train.config_from_parameters(namespace) == configured


def test_published_takes_no_settings():
    with pytest.raises(ValueError, match="another tag"):
        experiment.run(experiment.PUBLISHED, {"epochs": 2})


def _smoke_experiment(synthetic_source, tmp_path, monkeypatch) -> dict:
    """The synthetic dataset fetched and split under ``tmp_path``, models and reports written there too;
    returns the arguments of an ``experiment.run`` on it (one seed, smoke profile)."""
    from pneumonia import data, split

    raw = tmp_path / "raw"
    data.fetch(synthetic_source, raw, progress=False)
    split.split_data(raw, tmp_path / "splits.csv")
    monkeypatch.setattr(config, "MODELS_DIR", tmp_path / "models")
    monkeypatch.setattr(config, "REPORTS_DIR", tmp_path / "reports")
    return {"seeds": [0], "profile": "smoke", "data": raw, "splits_csv": tmp_path / "splits.csv"}


def test_a_variant_is_trained_scored_on_validation_and_compared_with_the_published_run(
        synthetic_source, tmp_path, monkeypatch):
    common = _smoke_experiment(synthetic_source, tmp_path, monkeypatch)
    published = experiment.run(experiment.PUBLISHED, **common)
    variant = experiment.run("smoother", {"ema_momentum": 0.9}, **common)

    notebook = notebook_parameters("04-cnn", "smoke")
    assert published["config"]["ema_momentum"] == notebook["ema_momentum"] != 0.9
    assert published["config"]["bn_refresh_batches"] == notebook["bn_refresh_batches"]
    assert variant["config"]["ema_momentum"] == 0.9
    assert "comparison" not in published and variant["comparison"]["against"] == experiment.PUBLISHED
    recorded = json.loads((tmp_path / "reports" / "experiments" / "smoother.json").read_text())
    (row,) = recorded["per_seed"]
    assert set(experiment.CONDITIONS) <= set(row) and 0 <= row["map_roc_auc"] <= 1
    assert set(recorded["map"]) == set(experiment.preprocess.ONE_FACTOR_SHIFTS)
    assert recorded["verdict"]["checks"]["same CPU"] is recorded["verdict"]["checks"]["same data and profile"] is True
    assert (tmp_path / "models" / "experiments" / "smoother" / "cnn-seed0.keras").exists()
    assert "against published: paired map AUC gain" in experiment.describe(recorded)
    assert 0 <= row["counter_cue_balanced_accuracy"] <= 1 and row[experiment.COUNTER_CUE]["sensitivity"] >= 0
    assert "paired counter-cue balanced-accuracy gain" in experiment.describe(recorded)

    weighted = experiment.run("weighted", {"balance": "counter_cue"}, **common)
    sidecar = json.loads((tmp_path / "models" / "experiments" / "weighted" / "cnn-seed0.json").read_text())
    assert sidecar["class_weight"] is None
    cue = sidecar["counter_cue"]
    assert 0 < cue["weight_min"] < cue["weight_max"] and 0 <= cue["cue_roc_auc_out_of_fold"] <= 1
    assert cue["classes"] == [0, 1]
    assert weighted["config"]["balance"] == "counter_cue"


def test_judge_applies_the_current_rule_to_a_recorded_run_without_training(tmp_path, monkeypatch):
    monkeypatch.setattr(config, "REPORTS_DIR", tmp_path)
    folder = experiment.experiments_dir()
    folder.mkdir(parents=True)
    reference = _record("published", [0.990, 0.991, 0.992])
    stale = {**_record("v", [0.994, 0.995, 0.996], seconds=200.0, epochs=12),
             "verdict": {"adopt": True, "checks": {"training time within 1.25x": True}}}
    (folder / "published.json").write_text(json.dumps(reference))
    (folder / "v.json").write_text(json.dumps(stale))

    judged = experiment.judge("v")
    assert judged["verdict"]["adopt"] is False  # each epoch took 20/12 as long
    assert json.loads((folder / "v.json").read_text())["verdict"] == judged["verdict"]
    assert set(judged["verdict"]["checks"]) == set(experiment.verdict(judged["comparison"])["checks"])
    with pytest.raises(ValueError, match="another recorded run"):
        experiment.judge("published")
    with pytest.raises(ValueError, match="another recorded run"):
        experiment.judge("v", against=None)
    with pytest.raises(ValueError, match="no recorded run 'missing'"):
        experiment.judge("v", against="missing")


def _scored(record):
    """``_record`` with the per-seed scores that ``experiment.summarize`` reads."""
    conditions = {condition: {metric: record["summary"]["validation_roc_auc"] if condition == "validation"
                              else record["summary"]["shifted_x1.5_roc_auc"] for metric in experiment.evaluate.HEADLINE}
                  for condition in experiment.CONDITIONS}
    for row in record["per_seed"]:
        row.update(map_balanced_accuracy=0.9, threshold=0.5, **conditions)
    return record


def test_reference_runs_on_other_seeds_pool_into_one_reference(tmp_path, monkeypatch):
    monkeypatch.setattr(config, "REPORTS_DIR", tmp_path)
    folder = experiment.experiments_dir()
    folder.mkdir(parents=True)
    first = _scored(_record("published", [0.990, 0.991, 0.992]))
    second = _scored(_record("published-seeds345", [0.993, 0.994, 0.995], seconds=300.0, seeds=(3, 4, 5)))
    for record in (first, second):
        (folder / f"{record['tag']}.json").write_text(json.dumps(record))

    pooled = experiment.load_reference(["published", "published-seeds345"], "v")
    assert pooled["tag"] == "published+published-seeds345" and [r["seed"] for r in pooled["per_seed"]] == [0, 1, 2, 3, 4, 5]
    assert pooled["summary"]["map_roc_auc"] == pytest.approx(0.9925)
    assert pooled["summary"]["train_seconds"] == pytest.approx(250.0)
    variant = _record("v", [0.994, 0.995, 0.996, 0.997, 0.998, 0.999], seeds=range(6))
    assert experiment.compare(variant, pooled)["map_roc_auc_gains"] == pytest.approx([0.004] * 6)
    assert experiment.load_reference("published", "v") == first
    assert experiment.load_reference(["published"], "published") is None and experiment.load_reference(None, "v") is None

    for clash, match in ((_scored(_record("elsewhere", [0.99] * 3, cpu="CPU B", seeds=(3, 4, 5))), "cannot be pooled"),
                         (_scored(_record("again", [0.99] * 3)), "share seeds"),
                         ({**second, "tag": "tuned", "settings": {"epochs": 30}}, "cannot be pooled")):
        (folder / f"{clash['tag']}.json").write_text(json.dumps(clash))
        with pytest.raises(ValueError, match=match):
            experiment.load_reference(["published", clash["tag"]], "v")
    with pytest.raises(ValueError, match="no recorded run 'missing'"):
        experiment.load_reference(["published", "missing"], "v")


def test_several_references_on_the_command_line_reach_the_run(monkeypatch):
    from pneumonia import cli

    received = {}
    monkeypatch.setattr(experiment, "run", lambda tag, settings, seeds, profile, against, models_from, test_time, rule:
                        received.update(seeds=seeds, against=against, models_from=models_from,
                                        test_time=test_time, rule=rule) or {})
    monkeypatch.setattr(experiment, "describe", lambda record: "")
    cli.main(["experiment", "v", "--seeds", "0", "1", "2", "3", "--against", "published", "published-seeds345"])
    assert received == {"seeds": [0, 1, 2, 3], "against": ["published", "published-seeds345"], "models_from": None,
                        "test_time": [], "rule": "third"}
    cli.main(["experiment", "v", "--against", "none"])
    assert received["against"] == [None]
    cli.main(["experiment", "v", "--models", "published", "published-seeds345", "--test-time", "views=8",
              "--test-time", "zoom=0"])
    assert received["models_from"] == ["published", "published-seeds345"]
    assert received["test_time"] == ["views=8", "zoom=0"]
    cli.main(["experiment", "v", "--rule", "fourth"])
    assert received["rule"] == "fourth"
    cli.main(["experiment", "v", "--rule", "fifth"])
    assert received["rule"] == "fifth"


def test_test_time_settings_default_to_the_training_augmentation_and_are_checked():
    augmentation = {"rotation": 0.03, "shift": 0.05, "zoom": 0.2}
    assert experiment.parse_test_time(["views=8", "zoom=0"], augmentation) == {
        "views": 8, "smooth": 0, "adapt": 0, "adapt_layers": 0, "rotation": 0.03, "shift": 0.05, "zoom": 0.0}
    assert experiment.parse_test_time(["smooth=2"], augmentation)["views"] == 1  # one smoothed view
    assert experiment.parse_test_time(["adapt=1"], augmentation)["adapt"] == 1  # one view, its own statistics
    assert experiment.parse_test_time([], augmentation) is None
    assert experiment.describe_test_time({"views": 8, "smooth": 2}) == (
        "each input smoothed over 2 x 2 pixels, each probability the mean of 8 views")
    assert experiment.describe_test_time({"views": 1, "adapt": 1}) == (
        "BatchNorm statistics re-estimated on the images scored together")
    assert experiment.describe_test_time(experiment.parse_test_time(["adapt=1", "adapt_layers=2"], augmentation)) == (
        "the first 2 BatchNorm layers' statistics re-estimated on the images scored together")
    for bad, match in ((["views=1"], "views=2 or more"), (["zoom=0"], "views=2 or more"), (["smooth=1"], "smooth=2"),
                       (["adapt=0"], "adapt=1"), (["adapt=2"], "0 or 1"),
                       (["adapt_layers=2"], "give adapt=1 too"), (["flip=1"], "one of"),
                       (["views=eight"], "takes a number"), (["views=8", "shift=-0.1"], "negative"), (["views"], "one of")):
        with pytest.raises(ValueError, match=match):
            experiment.parse_test_time(bad, augmentation)


def test_a_slow_test_time_variant_fails_its_one_image_guard():
    reference = _record("published", [0.990, 0.991, 0.992])
    variant = _record("v", [0.994, 0.995, 0.996])
    for row, seconds in zip(variant["per_seed"], (0.08, 0.09, 0.3)):
        row["one_image_seconds"] = seconds
    comparison = experiment.compare(variant, reference)
    assert comparison["one_image_seconds"] == 0.3  # the slowest seed
    result = experiment.verdict(comparison)
    assert result["adopt"] is False and [name for name, ok in result["checks"].items() if not ok] == [
        "one image within 250 ms"]
    assert "one image within 250 ms" not in experiment.verdict(experiment.compare(reference, reference))["checks"]


def test_recorded_models_are_found_once_per_seed_among_the_named_runs(tmp_path, monkeypatch):
    monkeypatch.setattr(config, "MODELS_DIR", tmp_path)
    for tag, seeds in (("published", (0, 1, 2)), ("published-seeds345", (3, 4, 5)), ("again", (2,))):
        (tmp_path / "experiments" / tag).mkdir(parents=True)
        for seed in seeds:
            (tmp_path / "experiments" / tag / f"cnn-seed{seed}.keras").touch()
    found = experiment.recorded_models(["published", "published-seeds345"], [0, 4])
    assert [path.parent.name for path in found] == ["published", "published-seeds345"]
    with pytest.raises(ValueError, match="seed 6 needs one trained model .* found 0"):
        experiment.recorded_models(["published", "published-seeds345"], [6])
    with pytest.raises(ValueError, match="seed 2 needs one trained model .* found 2"):
        experiment.recorded_models(["published", "again"], [2])
    with pytest.raises(ValueError, match="no settings"):
        experiment.run("v", {"epochs": 3}, models_from=["published"])


def test_recorded_models_are_scored_with_test_time_views_without_training(synthetic_source, tmp_path, monkeypatch):
    common = _smoke_experiment(synthetic_source, tmp_path, monkeypatch)
    published = experiment.run(experiment.PUBLISHED, **common)
    monkeypatch.setattr(experiment.train, "train_one", lambda *args, **kwargs: pytest.fail("trained a model"))
    sidecar_path = tmp_path / "models" / "experiments" / experiment.PUBLISHED / "cnn-seed0.json"
    older = json.loads(sidecar_path.read_text())
    del older["config"]["bn_refresh_batches"]  # as sidecars written before the setting existed
    sidecar_path.write_text(json.dumps(older))
    viewed = experiment.run("views", models_from=[experiment.PUBLISHED], test_time=["views=3", "zoom=0"], **common)

    augmentation = published["config"]["augmentation"]
    assert viewed["models_from"] == [experiment.PUBLISHED]
    # The sidecar's, as trained; a setting it lacks reads as its default (0: no refresh, as before it existed).
    assert viewed["config"] == json.loads(json.dumps(published["config"])) | {"bn_refresh_batches": 0}
    assert viewed["test_time"] == {"views": 3, "smooth": 0, "adapt": 0, "adapt_layers": 0, "rotation": augmentation.get("rotation", 0.0),
                                   "shift": augmentation.get("shift", 0.0), "zoom": 0.0}
    (row,) = viewed["per_seed"]
    assert row["one_image_seconds"] > 0 and row["epochs_run"] == published["per_seed"][0]["epochs_run"]
    assert row["threshold"] != published["per_seed"][0]["threshold"]  # chosen again on the views' mean
    assert viewed["comparison"]["epoch_seconds_ratio"] == 1.0  # the same trained models
    assert "one image within 250 ms" in viewed["verdict"]["checks"]
    assert json.loads((tmp_path / "reports" / "experiments" / "views.json").read_text())["test_time"]["views"] == 3

    adapted = experiment.run("adapted", models_from=[experiment.PUBLISHED], test_time=["adapt=1", "adapt_layers=2"],
                             rule="fifth", **common)
    (row,) = adapted["per_seed"]
    assert set(row["validation_half_normal"]) == {"accuracy", "roc_auc", "sensitivity", "specificity"}
    assert "another class mix, same answers" in adapted["verdict"]["checks"]
    assert "one_image_seconds" not in row and "one image within 250 ms" not in adapted["verdict"]["checks"]
    assert "class_mix_change" in adapted["comparison"]


def test_the_fourth_rule_asks_for_a_gain_in_every_one_of_six_seeds_instead_of_a_small_spread():
    reference = _record("published", [0.990] * 6, seeds=range(6))
    uneven = _record("v", [0.9910, 0.9920, 0.9945, 0.9930, 0.9920, 0.9910], seeds=range(6))  # +0.001 .. +0.0045
    comparison = experiment.compare(uneven, reference)
    third, fourth = experiment.verdict(comparison), experiment.verdict(comparison, rule="fourth")
    assert third["rule"] == "third" and third["adopt"] is False
    assert [name for name, ok in third["checks"].items() if not ok] == ["gain above twice its spread"]
    assert fourth["rule"] == "fourth" and fourth["adopt"] is True
    one_loss = experiment.compare(_record("v", [0.9890, 0.9960, 0.9945, 0.9930, 0.9920, 0.9910], seeds=range(6)),
                                  reference)
    assert one_loss["map_roc_auc_gain"] > 0.002 and experiment.verdict(one_loss, rule="fourth")["checks"][
        "a gain in every seed, 6 or more"] is False
    five = experiment.compare(_record("v", [0.995] * 5, seeds=range(5)), reference)
    assert experiment.verdict(five, rule="fourth")["adopt"] is False  # a sign test on five seeds is too weak
    small = experiment.compare(_record("v", [0.9915] * 6, seeds=range(6)), reference)
    assert experiment.verdict(small, rule="fourth")["checks"]["gain above 0.002"] is False
    with pytest.raises(ValueError, match="one of third, fourth, fifth, sixth"):
        experiment.verdict(comparison, rule="seventh")
    with pytest.raises(ValueError, match="one of third, fourth, fifth, sixth"):
        experiment.run("v", {}, rule="seventh")


def test_the_fifth_rule_judges_the_maps_balanced_accuracy_at_each_seeds_threshold_with_its_guards():
    seeds = range(6)
    reference = _record("published", [0.993] * 6, seeds=seeds, balanced=[0.92, 0.93, 0.91, 0.92, 0.94, 0.92])
    gaining = [0.95, 0.955, 0.94, 0.93, 0.96, 0.95]  # +0.01 .. +0.03, the map's AUC unchanged
    comparison = experiment.compare(_record("v", [0.993] * 6, seeds=seeds, balanced=gaining), reference)
    assert comparison["map_balanced_accuracy_gains"] == pytest.approx([0.03, 0.025, 0.03, 0.01, 0.02, 0.03])
    fifth = experiment.verdict(comparison, rule="fifth")
    assert fifth["adopt"] is True and "gain above 0.002" not in fifth["checks"]  # the AUC's floor is not this rule's
    assert experiment.verdict(comparison, rule="fourth")["adopt"] is False  # no AUC gain
    failing = {
        "a balanced-accuracy gain in every seed, 6 or more": _record(
            "v", [0.993] * 6, seeds=seeds, balanced=[0.95, 0.955, 0.94, 0.91, 0.96, 0.95]),
        "balanced-accuracy gain above 0.01": _record(
            "v", [0.993] * 6, seeds=seeds, balanced=[0.925, 0.935, 0.915, 0.925, 0.945, 0.925]),
        "map AUC kept": _record("v", [0.990] * 6, seeds=seeds, balanced=gaining),
        "clean validation sensitivity kept": _record("v", [0.993] * 6, seeds=seeds, balanced=gaining, sensitivity=0.91),
    }
    for check, variant in failing.items():
        result = experiment.verdict(experiment.compare(variant, reference), rule="fifth")
        assert result["adopt"] is False and [name for name, ok in result["checks"].items() if not ok] == [check]
    mixed = _record("v", [0.993] * 6, seeds=seeds, balanced=gaining)
    mixed["summary"].update({"validation_half_normal_sensitivity": 0.93, "validation_half_normal_specificity": 0.95})
    result = experiment.verdict(experiment.compare(mixed, reference), rule="fifth")
    assert result["checks"]["another class mix, same answers"] is False  # specificity 0.99 -> 0.95 with more NORMAL
    mixed["summary"]["validation_half_normal_specificity"] = 0.98
    assert experiment.verdict(experiment.compare(mixed, reference), rule="fifth")["adopt"] is True


def test_the_sixth_rule_judges_the_counter_cue_images_and_keeps_the_maps_gains():
    seeds = range(6)
    map_balanced = [0.95, 0.955, 0.94, 0.95, 0.96, 0.95]
    reference = _record("ref", [0.993] * 6, seeds=seeds, balanced=map_balanced,
                        counter_cue=[0.92, 0.93, 0.91, 0.92, 0.94, 0.92])
    gaining = [0.94, 0.95, 0.93, 0.935, 0.96, 0.94]  # +0.015 .. +0.02
    variant = _record("v", [0.993] * 6, seeds=seeds, balanced=map_balanced, counter_cue=gaining)
    comparison = experiment.compare(variant, reference)
    assert comparison["counter_cue_balanced_accuracy_gains"] == pytest.approx([0.02, 0.02, 0.02, 0.015, 0.02, 0.02])
    sixth = experiment.verdict(comparison, rule="sixth")
    assert sixth["adopt"] is True and "balanced-accuracy gain above 0.01" not in sixth["checks"]
    assert experiment.verdict(comparison, rule="fifth")["adopt"] is False  # the map did not gain
    failing = {
        "a counter-cue balanced-accuracy gain in every seed, 6 or more": _record(
            "v", [0.993] * 6, seeds=seeds, balanced=map_balanced, counter_cue=[0.96, 0.96, 0.94, 0.91, 0.97, 0.95]),
        "counter-cue balanced-accuracy gain above 0.01": _record(
            "v", [0.993] * 6, seeds=seeds, balanced=map_balanced,
            counter_cue=[0.925, 0.935, 0.915, 0.925, 0.945, 0.925]),
        "map balanced accuracy kept": _record(
            "v", [0.993] * 6, seeds=seeds, balanced=[b - 0.006 for b in map_balanced], counter_cue=gaining),
        "map AUC kept": _record("v", [0.990] * 6, seeds=seeds, balanced=map_balanced, counter_cue=gaining),
        "clean validation sensitivity kept": _record(
            "v", [0.993] * 6, seeds=seeds, balanced=map_balanced, counter_cue=gaining, sensitivity=0.91),
        "clean validation AUC kept": _record(
            "v", [0.993] * 6, seeds=seeds, balanced=map_balanced, counter_cue=gaining, clean=0.994),
    }
    for check, failed in failing.items():
        result = experiment.verdict(experiment.compare(failed, reference), rule="sixth")
        assert result["adopt"] is False and [name for name, ok in result["checks"].items() if not ok] == [check]
    older = _record("old", [0.993] * 6, seeds=seeds, balanced=map_balanced)  # recorded before counter-cue scores
    with pytest.raises(ValueError, match="score the older run again"):
        experiment.verdict(experiment.compare(variant, older), rule="sixth")


def test_a_half_normal_validation_set_keeps_every_normal_image_and_as_many_pneumonia_ones():
    import numpy as np

    labels = np.array([1, 0, 1, 1, 0, 1, 1, 1, 0, 1])
    rows = experiment.half_normal(labels)
    assert list(rows) == sorted(rows) and len(set(rows)) == len(rows)
    assert set(rows[labels[rows] == 0]) == {1, 4, 8} and (labels[rows] == 1).sum() == 3
    assert np.array_equal(rows, experiment.half_normal(labels)) and not all(
        np.array_equal(rows, experiment.half_normal(labels, seed)) for seed in range(1, 6))
