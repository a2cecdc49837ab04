"""The diagnostic after the experiment log's (ae): which part of a frame turns NORMAL images into pneumonia for the
published configuration, and how the training images' borders differ by class. It decides nothing.

    .venv/bin/python reports/experiments/frame_marks.py [TAG]

TAG is a recorded run whose seeds are in models/experiments/TAG/ (default published-seeds42to47; train it with
``pneumonia experiment published-seeds42to47 --seeds 42 43 44 45 46 47 --against none``). Prints the seeds' mean
sensitivity, specificity and ROC AUC on validation under frames taken apart (width, sides, edge, grey level), the mean
grey level of the middle of the image after the seeds' equalisation (what the network sees there) and each seed's
specificity; then the share of black pixels at each border of the training images, and of dark grey ones
in their outer 8%, by class.
"""

import sys

import numpy as np
from sklearn.metrics import roc_auc_score

from pneumonia import evaluate, experiment, preprocess, split

IMAGE_SIZE = 160


def framed(images: np.ndarray, share: float, level: int = 0, sides: str = "all", soft: int = 0) -> np.ndarray:
    """uint8 ``images`` with a border ``share`` of the side wide at grey ``level``: on ``sides`` all, top and bottom
    ("rows") or left and right ("columns"), its inner edge fading over ``soft`` pixels."""
    size = images.shape[1]
    width = max(1, round(share * size))
    edge = np.minimum(np.arange(size), size - 1 - np.arange(size)).astype(np.float32)
    distance = {"all": np.minimum(edge[:, None], edge[None, :]), "rows": np.repeat(edge[:, None], size, 1),
                "columns": np.repeat(edge[None, :], size, 0)}[sides]
    weight = np.clip((width + soft - distance) / soft, 0, 1) if soft else (distance < width).astype(np.float32)
    weight = weight[None, :, :, None]
    return np.clip(np.rint(images * (1 - weight) + level * weight), 0, 255).astype(np.uint8)


def main(tag: str = "published-seeds42to47"):
    members, _ = experiment.recorded_members(tag)
    sidecars = [sidecar for _, sidecar in members]
    splits = split.read_splits()
    images, labels, _ = preprocess.load_split(splits, "val", IMAGE_SIZE, 1, progress=False)
    cases = {
        "none": images,
        "black, 2%": framed(images, 0.02), "black, 4%": framed(images, 0.04),
        "black, 8% (the map's)": framed(images, 0.08),
        "black, 8%, top and bottom": framed(images, 0.08, sides="rows"),
        "black, 8%, left and right": framed(images, 0.08, sides="columns"),
        "black, 8%, soft edge 8 px": framed(images, 0.08, soft=8),
        "grey 8, 8%": framed(images, 0.08, level=8), "grey 9, 8%": framed(images, 0.08, level=9),
        "grey 40, 8%": framed(images, 0.08, level=40), "grey 128, 8%": framed(images, 0.08, level=128),
        "white, 8% (the map's)": framed(images, 0.08, level=255),
        "white, 8%, soft edge 8 px": framed(images, 0.08, level=255, soft=8),
        "black, 12%": framed(images, 0.12), "grey 9, 12%": framed(images, 0.12, level=9),
    }
    intensity = sidecars[0].get("intensity", "none")
    print(f"{tag}: {len(members)} seeds on {len(images)} validation images, each at its own threshold (mean of seeds); "
          f"intensity {intensity}")
    for name, changed in cases.items():
        scores = [evaluate.binary_metrics(labels, probability, sidecar["threshold"])
                  for probability, (_, sidecar) in zip(evaluate.seed_probabilities(members, changed), members)]
        quarter = IMAGE_SIZE // 4
        middle = preprocess.normalize_intensity(changed, intensity)[:, quarter:-quarter, quarter:-quarter].mean()
        print(f"  {name:28s} " + ", ".join(f"{metric} {np.mean([score[metric] for score in scores]):.3f}"
                                           for metric in ("sensitivity", "specificity", "roc_auc"))
              + f", equalised middle {middle:.0f}; specificity per seed "
              + " ".join(f"{score['specificity']:.2f}" for score in scores))
    train, train_labels, _ = preprocess.load_split(splits, "train", IMAGE_SIZE, 1, progress=False)
    pixels = train[..., 0]
    band = 5
    print(f"training split: share of black pixels (level <= {preprocess.MASK_LEVEL}) in the outer {band} px, by class")
    for side, edge in (("top", pixels[:, :band]), ("bottom", pixels[:, -band:]), ("left", pixels[:, :, :band]),
                       ("right", pixels[:, :, -band:])):
        black = (edge.reshape(len(edge), -1) <= preprocess.MASK_LEVEL).mean(1)
        normal, pneumonia = black[train_labels == 0].mean(), black[train_labels == 1].mean()
        print(f"  {side:6s} NORMAL {normal:.2f}, PNEUMONIA {pneumonia:.2f}, "
              f"ROC AUC for NORMAL {roc_auc_score(1 - train_labels, black):.2f}")
    border = ~preprocess.inner_window(*pixels.shape[1:], 0.08)
    grey = ((pixels > preprocess.MASK_LEVEL) & (pixels <= 60))[:, border].mean(1)
    print(f"training split: share of dark grey pixels ({preprocess.MASK_LEVEL} < level <= 60) in the outer 8%: "
          f"NORMAL {grey[train_labels == 0].mean():.2f}, PNEUMONIA {grey[train_labels == 1].mean():.2f}, "
          f"ROC AUC for PNEUMONIA {roc_auc_score(train_labels, grey):.2f}")


if __name__ == "__main__":
    main(*sys.argv[1:])
