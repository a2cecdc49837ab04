"""The diagnostic behind the experiment log's "Acquisition cues": how much of an image's class do measures of its
acquisition alone tell, and where do a recorded run's seeds fail along them? It decides nothing.

    .venv/bin/python reports/experiments/cue_marks.py [TAG]

TAG is a recorded run whose seeds are in models/experiments/TAG/ (default published-seeds84to89). The measures are
``acquisition.MEASURES`` on the images as decoded at the models' 160 px. Prints:

- the cue model's ROC AUC: on the training split out of fold (folds drawn per image, then grouped by patient), and on
  validation when fitted on the whole training split; the same for subsets of the measures;
- how the training images spread over fifths of their out-of-fold cue score, per class (where the classes'
  acquisitions overlap), and the mean measures of each class's thirds by that score (what a counter-cue image is);
- TAG's seeds on validation, each at its own threshold: specificity per third of the NORMAL images and sensitivity per
  third of the PNEUMONIA images, ordered by cue score, and ROC AUC on the counter-cue rows (``counter_cue_rows``).
"""

import sys

import numpy as np
import pandas as pd
from sklearn.metrics import roc_auc_score
from sklearn.model_selection import GroupKFold, cross_val_predict

from pneumonia import acquisition, evaluate, experiment, preprocess, split

IMAGE_SIZE = 160
THIRDS = ("lowest", "middle", "highest")
SUBSETS = {
    "all nine measures": list(acquisition.MEASURES),
    "anisotropy alone": ["anisotropy"],
    "all but anisotropy": [name for name in acquisition.MEASURES if name != "anisotropy"],
    "border lines and ring only": [name for name in acquisition.MEASURES if name.startswith(("border", "ring"))],
}


def thirds(cue: np.ndarray, labels: np.ndarray, label: int) -> list[np.ndarray]:
    """The indices of class ``label``'s images in three parts, from the lowest cue scores to the highest."""
    rows = np.flatnonzero(labels == label)
    return np.array_split(rows[np.argsort(cue[rows], kind="stable")], 3)


def main(tag: str = "published-seeds84to89"):
    splits = split.read_splits()
    train_images, train_labels, train_rows = preprocess.load_split(splits, "train", IMAGE_SIZE, 1, progress=False)
    val_images, val_labels, _ = preprocess.load_split(splits, "val", IMAGE_SIZE, 1, progress=False)
    train_measures, val_measures = acquisition.measures(train_images), acquisition.measures(val_images)
    print(f"cue model ROC AUC ({len(train_labels)} training, {len(val_labels)} validation images, {IMAGE_SIZE} px):")
    for name, columns in SUBSETS.items():
        grouped = cross_val_predict(acquisition.cue_model(), train_measures[columns], train_labels,
                                    groups=train_rows["patient"], cv=GroupKFold(5), method="predict_proba")[:, 1]
        fitted = acquisition.cue_model().fit(train_measures[columns], train_labels)
        print(f"  {name:28s} training, grouped folds {roc_auc_score(train_labels, grouped):.3f}; "
              f"validation {roc_auc_score(val_labels, fitted.predict_proba(val_measures[columns])[:, 1]):.3f}")
    out_of_fold = acquisition.out_of_fold_scores(train_images, train_labels)
    print(f"  all nine, folds per image (what training weights use): {roc_auc_score(train_labels, out_of_fold):.3f}")
    fifths = pd.crosstab(pd.qcut(out_of_fold, 5, labels=[f"fifth {i}" for i in range(1, 6)]),
                         np.where(train_labels == 1, "PNEUMONIA", "NORMAL"), rownames=["cue score"], colnames=["class"])
    print("training images per fifth of the out-of-fold cue score (fifth 5 looks most like PNEUMONIA):")
    print(fifths.to_string())
    print("mean measures of the training images per third of their class, ordered by out-of-fold cue score:")
    for label, name in ((0, "NORMAL"), (1, "PNEUMONIA")):
        means = pd.DataFrame({f"{name}, {position} cue third": train_measures.iloc[third].mean()
                              for position, third in zip(THIRDS, thirds(out_of_fold, train_labels, label))}).T
        print(means.round(3).to_string())

    cue = acquisition.scores(acquisition.fit(train_images, train_labels), val_images)
    members, _ = experiment.recorded_members(tag)
    probabilities = evaluate.seed_probabilities(members, val_images)
    print(f"{tag}: {len(members)} seeds on validation, each at its own threshold (mean ± sd over seeds)")
    for label, name, metric in ((0, "NORMAL specificity", "specificity"), (1, "PNEUMONIA sensitivity", "sensitivity")):
        cells = []
        for position, third in zip(THIRDS, thirds(cue, val_labels, label)):
            values = [evaluate.binary_metrics(val_labels[third], probability[third], sidecar["threshold"])[metric]
                      for probability, (_, sidecar) in zip(probabilities, members)]
            cells.append(f"{position} cue third (n={len(third)}) {np.mean(values):.3f} ± {np.std(values):.3f}")
        print(f"  {name:22s} " + "; ".join(cells))
    rows = acquisition.counter_cue_rows(cue, val_labels)
    aucs = [roc_auc_score(val_labels[rows], probability[rows]) for probability in probabilities]
    whole = [roc_auc_score(val_labels, probability) for probability in probabilities]
    print(f"  ROC AUC on the {len(rows)} counter-cue rows {np.mean(aucs):.4f} ± {np.std(aucs):.4f}; "
          f"on all validation {np.mean(whole):.4f}")


if __name__ == "__main__":
    main(*sys.argv[1:])
