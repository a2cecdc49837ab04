"""The diagnostic after the experiment log's "(av) under the sixth rule": do (au) and (av) gain on the counter-cue rows
by ranking better, or only by a lower threshold? It decides nothing.

    .venv/bin/python reports/experiments/fixed_point_marks.py [REFERENCE [VARIANT ...]]

Defaults: the reference ``published-seeds84to89-rescored`` and the variants ``counter-cue-seeds84to89`` and
``counter-cue-normal-seeds84to89``, all recorded runs whose seeds are in models/experiments/ (a rescored run's models
are those of the run it names). Each variant seed is read twice on validation: at its own threshold, as the sixth rule
read it, and at a *fixed operating point*: the lowest threshold at which its clean validation specificity reaches the
reference's for the same seed. At that point a gain can come only from the ranking. Prints, per variant, the mean over
seeds and the paired change against the reference of the counter-cue balanced accuracy, the map's balanced accuracy
and clean sensitivity, each way.
"""

import sys

import numpy as np

from pneumonia import evaluate, experiment, preprocess, split

IMAGE_SIZE = 160


def balanced(labels: np.ndarray, probability: np.ndarray, threshold: float) -> float:
    return evaluate.balanced_accuracy(evaluate.binary_metrics(labels, probability, threshold))


def main(reference: str = "published-seeds84to89-rescored", *variants: str):
    variants = variants or ("counter-cue-seeds84to89", "counter-cue-normal-seeds84to89")
    splits = split.read_splits()
    train_images, train_labels, _ = preprocess.load_split(splits, "train", IMAGE_SIZE, 1, progress=False)
    images, labels, _ = preprocess.load_split(splits, "val", IMAGE_SIZE, 1, progress=False)
    rows = experiment.counter_cue_validation(train_images, train_labels, images, labels)
    views = {name: preprocess.one_factor_shift(images, name) for name in preprocess.ONE_FACTOR_SHIFTS}
    reference_rows = {row["seed"]: row for row in experiment.load_reference(reference, tag="")["per_seed"]}
    for tag in variants:
        members, _ = experiment.recorded_members(tag)
        clean = evaluate.seed_probabilities(members, images)
        changed = {name: evaluate.seed_probabilities(members, view) for name, view in views.items()}
        results = {"own threshold": [], "fixed operating point": []}
        for index, (_, sidecar) in enumerate(members):
            ours = reference_rows[sidecar["seed"]]
            target = ours["validation"]["specificity"]
            fixed = evaluate.threshold_for_specificity(labels, clean[index], target)
            for way, threshold in (("own threshold", sidecar["threshold"]), ("fixed operating point", fixed)):
                counter_cue = balanced(labels[rows], clean[index][rows], threshold)
                results[way].append({
                    "threshold": threshold,
                    "counter_cue": counter_cue - ours["counter_cue_balanced_accuracy"],
                    "map": np.mean([balanced(labels, changed[name][index], threshold) for name in views])
                           - ours["map_balanced_accuracy"],
                    "sensitivity": evaluate.binary_metrics(labels, clean[index], threshold)["sensitivity"]
                                   - ours["validation"]["sensitivity"],
                })
        print(f"{tag} against {reference}, paired changes, mean over {len(members)} seeds (per seed):")
        for way, scored in results.items():
            print(f"  {way:22s} thresholds {' '.join(format(r['threshold'], '.2f') for r in scored)}")
            for key, name in (("counter_cue", "counter-cue balanced accuracy"), ("map", "map balanced accuracy"),
                              ("sensitivity", "clean sensitivity")):
                values = [r[key] for r in scored]
                print(f"    {name:30s} {np.mean(values):+.4f} ({', '.join(format(v, '+.3f') for v in values)})")


if __name__ == "__main__":
    main(*sys.argv[1:])
