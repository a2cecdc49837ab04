"""``pneumonia experiment``: a variant of notebook 04's CNN, trained and judged on validation only.

The experiment log (``reports/experiments/README.md``, summarised in notebook 04's "What we tried")
compares variants of the published configuration by how their seeds rank validation images under
changes that other equipment would make. This module makes those numbers, so that a row can be
regenerated and a new one added with one command::

    pneumonia experiment published                    # notebook 04's configuration, seeds 0-2
    pneumonia experiment longer --set epochs=40       # the same with one setting changed
    pneumonia experiment oversample --set balance=oversample --seeds 0 1 2 3 4 5 \
        --against published published-seeds345        # six seeds, against two reference runs pooled
    pneumonia experiment views --models published published-seeds345 --test-time views=8 zoom=0 \
        --seeds 0 1 2 3 4 5 --against published published-seeds345   # trained seeds, predicted with 8 views

Each run trains the seeds (models under ``models/experiments/TAG/``; with ``--models``, it takes recorded
runs' trained seeds instead), scores every seed at its own validation threshold on validation, on two
simulated-shift copies of it (seeds 1 and 3, strengths 1 and 1.5, as notebook 04), on the one-change map
(``preprocess.ONE_FACTOR_SHIFTS``) and on the counter-cue rows (:func:`counter_cue_validation`), and writes
``reports/experiments/TAG.json``. Against a reference run on the same seeds (``--against``, by default
``published``), it reports the paired gain in the map's mean ROC AUC and the rule's verdict (:func:`verdict`).
Training is not reproducible across CPUs (notebook 04), so both sides must be trained on one machine; each
record names its CPU. The test split is never read here.
"""

from __future__ import annotations

import json
from dataclasses import asdict, replace
from pathlib import Path

import numpy as np

from pneumonia import config, evaluate, preprocess, reporting, split, train

PUBLISHED = "published"
CONDITIONS = ("validation", "shifted", "shifted_x1.5")


def experiments_dir() -> Path:
    return config.REPORTS_DIR / "experiments"


def parse_settings(pairs: list[str]) -> dict:
    """``["epochs=40", "learning_rate=2e-3", "augmentation={zoom: 0.3}"]`` -> ``{"epochs": 40, "learning_rate":
    0.002, "augmentation": {"zoom": 0.3}}``: each value a Python literal, else YAML, checked against the type of
    the ``train.TrainConfig`` field it sets (YAML alone reads ``2e-3`` as a string)."""
    import ast
    from dataclasses import MISSING

    import yaml

    fields = train.TrainConfig.__dataclass_fields__
    settings = {}
    for pair in pairs:
        key, equals, text = pair.partition("=")
        if not equals or not key:
            raise ValueError(f"a setting is KEY=VALUE, not {pair!r}")
        if key not in fields or key == "name":
            raise ValueError(f"{key!r} is not a setting of the CNN (see train.TrainConfig)")
        try:
            value = ast.literal_eval(text)
        except (ValueError, SyntaxError):
            value = yaml.safe_load(text)
        field = fields[key]
        default = field.default if field.default is not MISSING else field.default_factory()
        if isinstance(default, float) and isinstance(value, int) and not isinstance(value, bool):
            value = float(value)
        elif isinstance(default, tuple) and isinstance(value, list):
            value = tuple(value)
        if default is not None and value is not None and not isinstance(value, type(default)):
            raise ValueError(f"{key} takes a {type(default).__name__}, not {value!r}")
        if key == "balance" and value not in train.BALANCE_METHODS:
            raise ValueError(f"balance is one of {', '.join(train.BALANCE_METHODS)}, not {value!r}")
        settings[key] = value
    return settings


TEST_TIME_KEYS = ("views", "smooth", "adapt", "adapt_layers", "rotation", "shift", "zoom")
INTEGER_TEST_TIME_KEYS = ("views", "smooth", "adapt", "adapt_layers")


def parse_test_time(pairs: list[str], augmentation: dict) -> dict | None:
    """``["views=8", "zoom=0"]`` -> test-time settings (``evaluate.augmented_views``): the number of views,
    ranges that default to the training ``augmentation``'s, the window of a smoothing before them
    (``smooth=2``), and ``adapt=1`` for BatchNorm statistics of the images scored together
    (``evaluate.adapted_batchnorm``), of the first ``adapt_layers`` BatchNorm layers only if given.
    None without pairs."""
    if not pairs:
        return None
    ranges = [key for key in TEST_TIME_KEYS if key not in INTEGER_TEST_TIME_KEYS]
    test_time = {"views": 1, "smooth": 0, "adapt": 0, "adapt_layers": 0,
                 **{key: float(augmentation.get(key, 0.0)) for key in ranges}}
    for pair in pairs:
        key, equals, text = pair.partition("=")
        if not equals or key not in TEST_TIME_KEYS:
            raise ValueError(f"a test-time setting is one of {', '.join(k + '=...' for k in TEST_TIME_KEYS)}, "
                             f"not {pair!r}")
        try:
            value = int(text) if key in INTEGER_TEST_TIME_KEYS else float(text)
        except ValueError:
            raise ValueError(f"{key} takes a number, not {text!r}") from None
        if value < 0:
            raise ValueError(f"{key} cannot be negative ({pair!r})")
        test_time[key] = value
    if test_time["adapt"] not in (0, 1):
        raise ValueError(f"adapt is 0 or 1, not {test_time['adapt']}")
    if test_time["adapt_layers"] and not test_time["adapt"]:
        raise ValueError("adapt_layers=N chooses the layers that adapt=1 adapts: give adapt=1 too")
    if test_time["views"] < 2 and test_time["smooth"] < 2 and not test_time["adapt"]:
        raise ValueError("a test-time change needs views=2 or more (the image itself is one of them), smooth=2 "
                         "or more, or adapt=1")
    return test_time


def validation_conditions(val_images: np.ndarray, strength: float = 1.0) -> dict[str, np.ndarray]:
    """Validation as it is and two simulated-shift copies of it, as notebook 04 scores them. Seeds 1 and
    3: the copy that chooses thresholds (``train.THRESHOLD_SHIFT_SEED``) is not one that checks them."""
    return {"validation": val_images,
            "shifted": preprocess.simulate_acquisition_shift(val_images, seed=1, strength=strength),
            "shifted_x1.5": preprocess.simulate_acquisition_shift(val_images, seed=3, strength=1.5 * strength)}


def score(members, val_images: np.ndarray, val_labels: np.ndarray, shift_strength: float = 1.0,
          progress: bool = True, test_time: dict | None = None, counter_cue: np.ndarray | None = None) -> dict:
    """Every ``(model, sidecar)`` member at its own threshold: validation, the shifted copies and the map;
    with ``test_time``, each probability the mean over those views (``evaluate.augmented_views``).

    The map's score per seed is the mean over its changes of ROC AUC (how well the seed ranks changed
    images, whatever its threshold) and of balanced accuracy (at its threshold). ``counter_cue``: the
    indices of the validation images whose acquisition points to the other class
    (:func:`counter_cue_validation`), scored as well, each as it was scored in the whole validation set.
    """
    per_seed = [{"seed": sidecar["seed"], "threshold": sidecar["threshold"], "epochs_run": sidecar["epochs_run"],
                 "best_epoch": sidecar["best_epoch"], "train_seconds": sidecar["train_seconds"]}
                for _, sidecar in members]
    ensemble = {}
    for condition, images in validation_conditions(val_images, shift_strength).items():
        probabilities = evaluate.seed_probabilities(members, images, test_time=test_time)
        for row, (_, sidecar), probability in zip(per_seed, members, probabilities):
            scored = evaluate.binary_metrics(val_labels, probability, sidecar["threshold"])
            row[condition] = {metric: scored[metric] for metric in evaluate.HEADLINE}
            if condition == "validation" and counter_cue is not None:
                scored = evaluate.binary_metrics(val_labels[counter_cue], probability[counter_cue],
                                                 sidecar["threshold"])
                row[COUNTER_CUE] = {metric: scored[metric] for metric in evaluate.HEADLINE}
                row["counter_cue_balanced_accuracy"] = evaluate.balanced_accuracy(scored)
        ensemble[f"{condition}_roc_auc"] = evaluate.binary_metrics(val_labels, np.mean(probabilities, axis=0))["roc_auc"]
    table = evaluate.one_factor_table(members, val_images, val_labels, progress=progress, test_time=test_time)
    changed = table[table["shift"] != "none"].assign(balanced_accuracy=evaluate.balanced_accuracy)
    by_seed = changed.groupby("seed")[["roc_auc", "balanced_accuracy"]].mean()
    for row in per_seed:
        row["map_roc_auc"] = float(by_seed.loc[row["seed"], "roc_auc"])
        row["map_balanced_accuracy"] = float(by_seed.loc[row["seed"], "balanced_accuracy"])
    changes = changed.groupby("shift", sort=False)[list(evaluate.HEADLINE)].mean().round(4).to_dict("index")
    if test_time and test_time.get("adapt"):
        # Adapted statistics depend on the set's mix of classes: a set with another mix must not move the answers.
        rows = half_normal(val_labels)
        for row, (_, sidecar), probability in zip(per_seed, members, evaluate.seed_probabilities(
                members, val_images[rows], test_time=test_time)):
            scored = evaluate.binary_metrics(val_labels[rows], probability, sidecar["threshold"])
            row[HALF_NORMAL] = {metric: scored[metric] for metric in evaluate.HEADLINE}
    return {"per_seed": per_seed, "summary": summarize(per_seed), "ensemble": ensemble, "map": changes}


HALF_NORMAL = "validation_half_normal"
COUNTER_CUE = "validation_counter_cue"


def counter_cue_validation(train_images: np.ndarray, train_labels: np.ndarray, val_images: np.ndarray,
                           val_labels: np.ndarray) -> np.ndarray:
    """The validation rows whose acquisition points to the other class (``acquisition.counter_cue_rows``), by
    a cue model fitted on the training images: the same rows for every run on the same data."""
    from pneumonia import acquisition

    model = acquisition.fit(train_images, train_labels)
    return acquisition.counter_cue_rows(acquisition.scores(model, val_images), val_labels)


def half_normal(labels: np.ndarray, seed: int = 0) -> np.ndarray:
    """Indices of a validation set with another mix of classes: every NORMAL image and as many PNEUMONIA
    images drawn at random, in their original order."""
    normal, pneumonia = np.flatnonzero(labels == 0), np.flatnonzero(labels == 1)
    drawn = np.random.default_rng(seed).choice(pneumonia, size=min(len(normal), len(pneumonia)), replace=False)
    return np.sort(np.r_[normal, drawn])


def summarize(per_seed: list[dict]) -> dict:
    """Mean and standard deviation over the seeds of each scored row's numbers."""
    keys = ("map_roc_auc", "map_balanced_accuracy", "counter_cue_balanced_accuracy", "threshold", "train_seconds")
    flat = [{**{key: r[key] for key in keys if key in r},
             **{f"{c}_{m}": r[c][m] for c in (*CONDITIONS, HALF_NORMAL, COUNTER_CUE) if c in r
                for m in evaluate.HEADLINE}}
            for r in per_seed]
    return evaluate.summarize_seeds(flat, tuple(flat[0]))


def pool(records: list[dict]) -> dict:
    """Recorded runs of one configuration on different seeds, as one reference: ``published`` on seeds
    0-2 and ``published-seeds345`` on 3-5 make a six-seed reference. They must share CPU, data and profile."""
    if len(records) == 1:
        return records[0]
    first = records[0]
    for record in records[1:]:
        if record["settings"] != first["settings"] or not all(same_conditions(record, first)):
            raise ValueError(f"{record['tag']!r} and {first['tag']!r} differ in settings, CPU, data or profile: "
                             "they cannot be pooled")
    per_seed = [row for record in records for row in record["per_seed"]]
    seeds = [row["seed"] for row in per_seed]
    if len(set(seeds)) < len(seeds):
        raise ValueError(f"the runs {[r['tag'] for r in records]} share seeds: each seed must come from one run")
    return {**{key: first[key] for key in ("settings", "profile", "data_manifest_sha256", "machine")},
            "tag": "+".join(record["tag"] for record in records), "per_seed": per_seed, "summary": summarize(per_seed)}


def same_conditions(record: dict, other: dict) -> tuple[bool, bool]:
    """Whether two records were trained on the same CPU, and on the same data and profile."""
    return (all(record["machine"].get(key) == other["machine"].get(key) for key in ("cpu_model", "vector_extensions")),
            all(record.get(key) == other.get(key) for key in ("data_manifest_sha256", "profile")))


def missing_seeds(seeds, reference: dict) -> list[int]:
    """The ``seeds`` that the recorded ``reference`` was not trained on: a paired comparison needs none."""
    recorded = {row["seed"] for row in reference["per_seed"]}
    return [seed for seed in seeds if seed not in recorded]


def compare(variant: dict, reference: dict) -> dict:
    """Seed by seed, the variant's map ROC AUC minus the reference's, and the guards' differences."""
    reference_seeds = {row["seed"]: row for row in reference["per_seed"]}
    missing = missing_seeds([row["seed"] for row in variant["per_seed"]], reference)
    if missing:
        raise ValueError(f"the reference has no seed {missing}: a paired comparison needs the same seeds")
    gains = [row["map_roc_auc"] - reference_seeds[row["seed"]]["map_roc_auc"] for row in variant["per_seed"]]
    balanced_gains = [row["map_balanced_accuracy"] - reference_seeds[row["seed"]]["map_balanced_accuracy"]
                      for row in variant["per_seed"]]
    ours, theirs = variant["summary"], reference["summary"]
    same_machine, same_data = same_conditions(variant, reference)
    counter_cue = {}
    if "counter_cue_balanced_accuracy" in ours and "counter_cue_balanced_accuracy" in theirs:
        cue_gains = [row["counter_cue_balanced_accuracy"]
                     - reference_seeds[row["seed"]]["counter_cue_balanced_accuracy"] for row in variant["per_seed"]]
        counter_cue = {"counter_cue_balanced_accuracy_gains": cue_gains,
                       "counter_cue_balanced_accuracy_gain": float(np.mean(cue_gains)),
                       "map_balanced_accuracy_change": float(np.mean(balanced_gains))}
    return {
        "against": reference["tag"],
        "map_roc_auc_gains": gains,
        "map_roc_auc_gain": float(np.mean(gains)),
        "map_roc_auc_gain_std": float(np.std(gains, ddof=1)) if len(gains) > 1 else 0.0,
        "map_balanced_accuracy_gains": balanced_gains,
        "map_balanced_accuracy_gain": float(np.mean(balanced_gains)),
        "map_balanced_accuracy_gain_std": float(np.std(balanced_gains, ddof=1)) if len(balanced_gains) > 1 else 0.0,
        "validation_sensitivity_change": ours["validation_sensitivity"] - theirs["validation_sensitivity"],
        **({"class_mix_change": max(abs(ours[f"{HALF_NORMAL}_{metric}"] - ours[f"validation_{metric}"])
                                    for metric in ("sensitivity", "specificity"))}
           if f"{HALF_NORMAL}_sensitivity" in ours else {}),
        "validation_roc_auc_change": ours["validation_roc_auc"] - theirs["validation_roc_auc"],
        **counter_cue,
        "shifted_x1.5_roc_auc_change": ours["shifted_x1.5_roc_auc"] - theirs["shifted_x1.5_roc_auc"],
        "train_seconds_ratio": ours["train_seconds"] / theirs["train_seconds"],
        "epoch_seconds_ratio": epoch_seconds(variant) / epoch_seconds(reference),
        "same_machine": same_machine,
        "same_data": same_data,
        **({"one_image_seconds": max(row["one_image_seconds"] for row in variant["per_seed"])}
           if "one_image_seconds" in variant["per_seed"][0] else {}),
    }


def epoch_seconds(record: dict) -> float:
    """Mean seconds per training epoch (its steps, the validation pass and whatever callbacks add) over the seeds.

    The third rule's cost guard: a seed's total time also depends on when early stopping ends it,
    which can hide a slower network (variant (l)); an epoch is a fixed number of steps."""
    return float(np.mean([row["train_seconds"] / row["epochs_run"] for row in record["per_seed"]]))


RULES = ("third", "fourth", "fifth", "sixth")


def verdict(comparison: dict, rule: str = "third", min_gain: float = 0.002, tolerance: float = 0.002,
            max_time_ratio: float = 1.25, max_one_image_seconds: float = 0.25, min_seeds: int = 6,
            min_balanced_gain: float = 0.01, sensitivity_tolerance: float = 0.02, class_mix_tolerance: float = 0.03,
            map_tolerance: float = 0.005) -> dict:
    """Notebook 04's rules. The third: adopt when the mean paired gain in the map's ROC AUC is more than
    twice its standard deviation between seeds and more than ``min_gain``, clean validation AUC and the
    strength-1.5 AUC are each no more than ``tolerance`` lower, a training epoch takes no more than
    ``max_time_ratio`` times as long, and both sides were trained on the same CPU, data and profile.
    A variant that predicts with several views also answers for one image within ``max_one_image_seconds``
    (variant (g)'s guard).

    The fourth (declared after (u), for variants from then on) replaces the spread check by a sign test:
    a gain in every one of at least ``min_seeds`` seeds. The guards are the same.

    The fifth (declared before (w)) judges the map's balanced accuracy at each seed's own threshold, the
    operating point that fails under framing changes: a gain in every one of at least ``min_seeds``
    seeds and a mean gain above ``min_balanced_gain``; the map's ROC AUC no more than ``tolerance``
    lower, clean validation sensitivity no more than ``sensitivity_tolerance`` lower, and, for answers
    that depend on the set scored (``adapt``), sensitivity and specificity on a half-NORMAL validation
    set within ``class_mix_tolerance`` of the whole set's. The other guards are the third rule's.

    The sixth (declared before (au)) judges the counter-cue validation images (:func:`counter_cue_validation`)
    the same way: their balanced accuracy at each seed's own threshold gains in every one of at least
    ``min_seeds`` seeds, by more than ``min_balanced_gain`` on average; the map's balanced accuracy no more
    than ``map_tolerance`` lower, so that robustness to the simulated changes is not traded away; and the
    fifth rule's other guards."""
    if rule not in RULES:
        raise ValueError(f"the rule is one of {', '.join(RULES)}, not {rule!r}")
    gains = comparison["map_roc_auc_gains"]
    if rule == "third":
        checks = {"gain above twice its spread": comparison["map_roc_auc_gain"] > 2 * comparison["map_roc_auc_gain_std"]}
    elif rule == "fourth":
        checks = {f"a gain in every seed, {min_seeds} or more": len(gains) >= min_seeds and all(g > 0 for g in gains)}
    else:
        # The fifth judges the map's balanced accuracy, the sixth the counter-cue rows' with the map's as a guard.
        judged = "counter_cue_balanced_accuracy" if rule == "sixth" else "map_balanced_accuracy"
        if rule == "sixth" and f"{judged}_gains" not in comparison:
            raise ValueError("the sixth rule needs counter-cue scores on both sides: score the older run again "
                             "(--models TAG, no test-time change)")
        balanced, named = comparison[f"{judged}_gains"], "counter-cue " if rule == "sixth" else ""
        checks = {
            f"a {named}balanced-accuracy gain in every seed, {min_seeds} or more":
                len(balanced) >= min_seeds and all(g > 0 for g in balanced),
            f"{named}balanced-accuracy gain above {min_balanced_gain:g}":
                comparison[f"{judged}_gain"] > min_balanced_gain,
        }
        if rule == "sixth":
            checks["map balanced accuracy kept"] = comparison["map_balanced_accuracy_change"] >= -map_tolerance
        checks["map AUC kept"] = comparison["map_roc_auc_gain"] >= -tolerance
        checks["clean validation sensitivity kept"] = \
            comparison["validation_sensitivity_change"] >= -sensitivity_tolerance
        if "class_mix_change" in comparison:
            checks["another class mix, same answers"] = comparison["class_mix_change"] <= class_mix_tolerance
    if rule in ("third", "fourth"):
        checks[f"gain above {min_gain:g}"] = comparison["map_roc_auc_gain"] > min_gain
    checks.update({
        "clean validation AUC kept": comparison["validation_roc_auc_change"] >= -tolerance,
        "strength-1.5 AUC kept": comparison["shifted_x1.5_roc_auc_change"] >= -tolerance,
        f"epoch time within {max_time_ratio:g}x": comparison["epoch_seconds_ratio"] <= max_time_ratio,
        "same CPU": comparison["same_machine"],
        "same data and profile": comparison["same_data"],
    })
    if "one_image_seconds" in comparison:
        checks[f"one image within {max_one_image_seconds * 1000:g} ms"] = \
            comparison["one_image_seconds"] <= max_one_image_seconds
    return {"rule": rule, "adopt": all(checks.values()), "checks": checks}


def run(tag: str, settings: dict | None = None, seeds=(0, 1, 2), profile: str = "full",
        data: Path | str | None = None, splits_csv: Path | str | None = None,
        against: str | list[str] | None = PUBLISHED, models_from: list[str] | None = None,
        test_time: list[str] | None = None, rule: str = "third") -> dict:
    """Train ``tag`` (notebook 04's configuration with ``settings`` changed) over ``seeds``, score it and
    write ``reports/experiments/TAG.json``; against the recorded ``against`` run (or runs, pooled), add
    the comparison and ``rule``'s verdict (:func:`verdict`).

    ``models_from`` names recorded runs whose trained seeds are scored instead, as they are (no
    settings); ``test_time`` (``KEY=VALUE`` pairs, :func:`parse_test_time`) changes how they predict
    (smoothing, views, BatchNorm statistics of each set scored), each seed's threshold chosen again by the
    same rule on the new probabilities.
    """
    from pneumonia import data as dataset
    from pneumonia.models import load_model
    from pneumonia.reproduce import notebook_parameters

    settings = settings or {}
    if rule not in RULES:
        raise ValueError(f"the rule is one of {', '.join(RULES)}, not {rule!r}")
    if tag == PUBLISHED and (settings or models_from or test_time):
        raise ValueError(f"{PUBLISHED!r} is notebook 04's configuration as it is; give a variant another tag")
    if models_from and settings:
        raise ValueError("recorded models (--models) are scored as they were trained: they take no settings")
    reference = load_reference(against, tag)
    if reference is not None and missing_seeds(seeds, reference):
        # Checked before training: the comparison would otherwise fail after the seeds had been trained.
        raise ValueError(f"{reference['tag']!r} was trained on seeds {[row['seed'] for row in reference['per_seed']]}, "
                         f"not {list(seeds)}: a paired comparison needs the same seeds. Train a reference on them first "
                         f"(no settings, --against none) and compare with it (--against, several runs pooled)")
    parameters = notebook_parameters("04-cnn", profile)
    run_config = replace(train.config_from_parameters(parameters), **settings)
    if models_from:
        trained_files, sidecars, run_settings = recorded_seeds(models_from, seeds, run_config.name)
    else:
        run_settings = asdict(run_config)
    # Parsed before anything trains: a mistyped setting must not cost the seeds' training.
    prediction = parse_test_time(test_time or [], run_settings["augmentation"])
    manifest_hash = dataset.load_manifest(data)["dataset_sha256"]
    if models_from and any(sidecar["data_manifest_sha256"] != manifest_hash for sidecar in sidecars):
        raise ValueError(f"the models of {models_from} were trained on other data than {data or 'data/raw'}")
    splits = split.read_splits(splits_csv, data)
    val_images, val_labels, _ = preprocess.load_split(splits, "val", run_config.image_size, run_config.channels)
    train_images, train_labels, _ = preprocess.load_split(splits, "train", run_config.image_size,
                                                          run_config.channels, limit=parameters.get("limit"))
    counter_cue = counter_cue_validation(train_images, train_labels, val_images, val_labels)
    if models_from:
        members = [(load_model(path), sidecar) for path, sidecar in zip(trained_files, sidecars)]
    else:
        members = train_seeds(tag, run_config, seeds, (train_images, train_labels), (val_images, val_labels),
                              manifest_hash)
    if prediction:
        members = [(model, threshold_for_test_time(model, sidecar, prediction, val_images, val_labels))
                   for model, sidecar in members]
    record = {"tag": tag, "settings": settings, "profile": profile, "config": run_settings,
              **({"models_from": list(models_from)} if models_from else {}),
              **({"test_time": prediction} if prediction else {}),
              "data_manifest_sha256": manifest_hash, "machine": train.machine(), "versions": train.library_versions(),
              **score(members, val_images, val_labels, parameters.get("shift_strength", 1.0), test_time=prediction,
                      counter_cue=counter_cue)}
    if prediction and not prediction["adapt"]:  # adapted answers need a set: one image alone has no such answer
        for row, (model, sidecar) in zip(record["per_seed"], members):
            row["one_image_seconds"] = evaluate.one_image_seconds(
                model, preprocess.model_inputs(val_images[:1], sidecar), prediction)
    if reference is not None:
        _judge_against(record, reference, rule)
    reporting.write_json(experiments_dir() / f"{tag}.json", record)
    return record


def train_seeds(tag: str, run_config: train.TrainConfig, seeds, training: tuple, validation: tuple,
                manifest_hash: str) -> list[tuple]:
    """Train ``run_config`` once per seed on ``training`` (images, labels), validated on ``validation``,
    into ``models/experiments/TAG/``; each seed's (model, sidecar)."""
    from pneumonia.models import load_model

    models_dir = config.MODELS_DIR / "experiments" / tag
    members = []
    for seed in seeds:
        print(f"--- {tag}, seed {seed}", flush=True)
        sidecar = train.train_one(run_config, seed, *training, *validation, manifest_hash, models_dir,
                                  models_dir / "training")
        members.append((load_model(models_dir / sidecar["model_file"]), sidecar))
    return members


def recorded_seeds(tags: list[str], seeds, name: str = "cnn") -> tuple[list[Path], list[dict], dict]:
    """The seeds that the recorded runs ``tags`` trained: their model files, their sidecars and the one
    configuration they share (an error if they differ)."""
    trained_files = recorded_models(tags, seeds, name)
    sidecars = [json.loads(path.with_suffix(".json").read_text()) for path in trained_files]
    # A setting added after a model was trained is missing from its sidecar: it trained with the default.
    defaults = asdict(train.TrainConfig())
    configs = {json.dumps({**defaults, **sidecar["config"]}, sort_keys=True) for sidecar in sidecars}
    if len(configs) > 1:
        raise ValueError(f"the models of {tags} differ in configuration: score them apart")
    return trained_files, sidecars, {**defaults, **sidecars[0]["config"]}


def recorded_models(tags: list[str], seeds, name: str = "cnn") -> list[Path]:
    """Each seed's trained model among the recorded runs ``tags`` (``models/experiments/TAG/``): one per seed."""
    files = []
    for seed in seeds:
        found = [path for tag in tags
                 if (path := config.MODELS_DIR / "experiments" / tag / f"{name}-seed{seed}.keras").exists()]
        if len(found) != 1:
            raise ValueError(f"seed {seed} needs one trained model among the runs {list(tags)}, "
                             f"found {len(found)} in {config.MODELS_DIR / 'experiments'}")
        files.append(found[0])
    return files


def recorded_members(tag: str) -> tuple[list, dict]:
    """The recorded run ``tag``'s seeds loaded as ``(model, sidecar)`` members, each at its sidecar's threshold,
    and the record itself; a run that scored other runs' models (``--models``) gives those models."""
    from pneumonia.models import load_model

    record = json.loads((experiments_dir() / f"{tag}.json").read_text())
    paths = recorded_models(record.get("models_from", [tag]), [row["seed"] for row in record["per_seed"]])
    return [(load_model(path), evaluate.load_sidecar(path)) for path in paths], record


def threshold_for_test_time(model, sidecar: dict, test_time: dict, val_images: np.ndarray,
                            val_labels: np.ndarray) -> dict:
    """``sidecar`` with its threshold chosen again, by the rule that chose it, on the probabilities that
    ``test_time`` gives (smoothed inputs, the mean over views): they differ from the plain ones, so the
    plain threshold no longer fits them."""
    def predict(images):
        return evaluate.seed_probabilities([(model, sidecar)], images, test_time=test_time)[0]

    threshold, method = train.operating_threshold(predict, val_images, val_labels, predict(val_images),
                                                  sidecar["config"].get("threshold_shift", 0.0))
    return {**sidecar, "threshold": threshold,
            "threshold_method": f"{method}; {describe_test_time(test_time)}"}


def describe_test_time(test_time: dict) -> str:
    """``{"views": 8, "smooth": 2, ...}`` -> "each input smoothed over 2 x 2 pixels, each probability the mean of 8 views"."""
    parts = []
    if test_time.get("adapt"):
        first = test_time.get("adapt_layers")
        layers = f"the first {first} BatchNorm layers'" if first else "BatchNorm"
        parts.append(f"{layers} statistics re-estimated on the images scored together")
    if test_time.get("smooth", 0) > 1:
        parts.append(f"each input smoothed over {test_time['smooth']} x {test_time['smooth']} pixels")
    if test_time["views"] > 1:
        parts.append(f"each probability the mean of {test_time['views']} views")
    return ", ".join(parts)


def _judge_against(record: dict, reference: dict, rule: str = "third") -> None:
    """Set ``record``'s comparison with ``reference`` and ``rule``'s verdict, as ``run`` and ``judge`` both do."""
    record["comparison"] = compare(record, reference)
    record["verdict"] = verdict(record["comparison"], rule)


def load_reference(against: str | list[str] | None, tag: str) -> dict | None:
    """The recorded run that ``against`` names, or its runs pooled (:func:`pool`); None when it names
    none but ``tag`` itself. A named run that was never recorded is an error, before anything trains."""
    tags = [against] if isinstance(against, str) else [name for name in against or () if name]
    tags = [name for name in tags if name != tag]
    for name in tags:
        if not (experiments_dir() / f"{name}.json").exists():
            raise ValueError(f"no recorded run {name!r} in {experiments_dir()}: train it first, or --against none")
    return pool([json.loads((experiments_dir() / f"{name}.json").read_text()) for name in tags]) if tags else None


def judge(tag: str, against: str | list[str] | None = PUBLISHED, rule: str = "third") -> dict:
    """Compare the recorded ``tag`` with the recorded ``against`` again, by ``rule`` as it is now, and
    rewrite its record: a rule's later checks apply to earlier runs without training them again."""
    path = experiments_dir() / f"{tag}.json"
    if not path.exists():
        raise ValueError(f"no recorded run {tag!r} in {experiments_dir()}")
    reference = load_reference(against, tag)
    if reference is None:
        raise ValueError(f"judging {tag!r} needs another recorded run to compare with (--against)")
    record = json.loads(path.read_text())
    _judge_against(record, reference, rule)
    reporting.write_json(path, record)
    return record


def describe(record: dict) -> str:
    """A few lines for the terminal: the run's scores and, with a reference, the paired gain and verdict."""
    summary = record["summary"]
    lines = [f"{record['tag']}: map ROC AUC {summary['map_roc_auc']:.4f} ± {summary['map_roc_auc_std']:.4f}, "
             f"map balanced accuracy {summary['map_balanced_accuracy']:.4f}, "
             f"clean validation AUC {summary['validation_roc_auc']:.4f}, "
             f"shifted 1.0 / 1.5 AUC {summary['shifted_roc_auc']:.4f} / {summary['shifted_x1.5_roc_auc']:.4f}, "
             f"thresholds {', '.join(format(r['threshold'], '.3f') for r in record['per_seed'])}"]
    if "comparison" in record:
        comparison, checks = record["comparison"], record["verdict"]["checks"]
        lines.append(f"against {comparison['against']}: paired map AUC gain {comparison['map_roc_auc_gain']:+.4f} "
                     f"(2 sd {2 * comparison['map_roc_auc_gain_std']:.4f}; per seed "
                     f"{', '.join(format(g, '+.4f') for g in comparison['map_roc_auc_gains'])})")
        if "counter_cue_balanced_accuracy_gains" in comparison:
            per_seed = ", ".join(format(g, "+.4f") for g in comparison["counter_cue_balanced_accuracy_gains"])
            gain = comparison["counter_cue_balanced_accuracy_gain"]
            lines.append(f"paired counter-cue balanced-accuracy gain {gain:+.4f} (per seed {per_seed})")
        if "map_balanced_accuracy_gains" in comparison:
            per_seed = ", ".join(format(g, "+.4f") for g in comparison["map_balanced_accuracy_gains"])
            lines.append(f"paired map balanced-accuracy gain {comparison['map_balanced_accuracy_gain']:+.4f} "
                         f"(per seed {per_seed})")
        lines.append(("adopt" if record["verdict"]["adopt"] else "not adopted") +
                     f" by the {record['verdict'].get('rule', 'third')} rule: " +
                     "; ".join(f"{name} {'yes' if ok else 'NO'}" for name, ok in checks.items()))
    return "\n".join(lines)
