"""The diagnostic after the experiment log's "The fifth rule has no room left": is the published configuration's
largest failure on the map, a taller chest, a failure of geometry or of smoothing, and which part of its geometry? It
decides nothing.

    .venv/bin/python reports/experiments/scale_marks.py [TAG]

TAG is a recorded run whose seeds are in models/experiments/TAG/ (default published-seeds84to89). The map's framing
changes (``preprocess.one_factor_shift``) resample the 160 px image the network sees, so a taller chest or a zoom-in
is also an upsampling: new rows interpolated between old ones, a smoother image. Here each is made two more ways,
on the validation images:

- at the source: the same part of the 224 px file resized straight to 160 px, as every image is decoded. The shape
  is the map's, and the image is still a downsampling, as sharp as any other;
- smoothing alone: the 160 px image resized down and back up along the same axes by the same factor. The shape is
  unchanged, and the image is smoothed about as the map's upsampling smooths it.

Prints, for each case, the seeds' mean sensitivity, specificity and ROC AUC at each seed's own threshold, and each
seed's specificity.
"""

import sys

import numpy as np
from PIL import Image

from pneumonia import evaluate, experiment, preprocess, split

IMAGE_SIZE = 160
# The files' own size (the dataset's README): decoded at it, an image is not resampled.
SOURCE_SIZE = 224
# (left, top, right, bottom) as fractions of the image: the part that fills the frame after the change.
BOXES = {
    "stretch vertically x1.25": (0.0, 0.1, 1.0, 0.9),
    "crop top 10%": (0.0, 0.1, 1.0, 1.0),
    "zoom in x1.2": (1 / 12, 1 / 12, 11 / 12, 11 / 12),
}
# The taller chest taken apart, both at the source: its framing without its shape (the same top and bottom cut away,
# the sides cut to match), and its shape without its framing (the whole chest squeezed across by the same ratio, the
# sides filled with their own mirror image, which ``equalize_cropped`` does not take for a uniform border).
FRAMING_ALONE = (0.1, 0.1, 0.9, 0.9)
SQUEEZE = 0.8


def at_source(sources: np.ndarray, box) -> np.ndarray:
    """The ``box`` of each source image (the files as decoded at their own size) resized straight to the network's
    size: the map's framing without an upsampling."""
    height, width = sources.shape[1:3]
    pixels = (box[0] * width, box[1] * height, box[2] * width, box[3] * height)
    images = np.empty((len(sources), IMAGE_SIZE, IMAGE_SIZE, 1), dtype=np.uint8)
    for index, source in enumerate(sources):
        images[index, ..., 0] = np.asarray(Image.fromarray(source[..., 0]).resize(
            (IMAGE_SIZE, IMAGE_SIZE), Image.Resampling.BILINEAR, box=pixels))
    return images


def squeezed_at_source(sources: np.ndarray, share: float = SQUEEZE) -> np.ndarray:
    """Each whole source image resized to ``share`` of the width and the full height, its sides mirrored out to a square."""
    width = round(share * IMAGE_SIZE)
    left = (IMAGE_SIZE - width) // 2
    images = np.empty((len(sources), IMAGE_SIZE, IMAGE_SIZE, 1), dtype=np.uint8)
    for index, source in enumerate(sources):
        narrow = np.asarray(Image.fromarray(source[..., 0]).resize((width, IMAGE_SIZE), Image.Resampling.BILINEAR))
        images[index, ..., 0] = np.pad(narrow, ((0, 0), (left, IMAGE_SIZE - width - left)), mode="symmetric")
    return images


def smoothed_alone(images: np.ndarray, box) -> np.ndarray:
    """Each image resized to the size ``box`` has and back, with the map's bilinear filter: its smoothing, not its shape."""
    width = max(1, round((box[2] - box[0]) * IMAGE_SIZE))
    height = max(1, round((box[3] - box[1]) * IMAGE_SIZE))
    out = np.empty_like(images)
    for index, image in enumerate(images):
        small = Image.fromarray(image[..., 0]).resize((width, height), Image.Resampling.BILINEAR)
        out[index, ..., 0] = np.asarray(small.resize((IMAGE_SIZE, IMAGE_SIZE), Image.Resampling.BILINEAR))
    return out


def main(tag: str = "published-seeds84to89"):
    members, _ = experiment.recorded_members(tag)
    if {(sidecar["image_size"], sidecar["channels"]) for _, sidecar in members} != {(IMAGE_SIZE, 1)}:
        raise SystemExit(f"{tag}: this diagnostic is written for {IMAGE_SIZE} px grey models")
    splits = split.read_splits()
    images, labels, _ = preprocess.load_split(splits, "val", IMAGE_SIZE, 1, progress=False)
    sources, _, _ = preprocess.load_split(splits, "val", SOURCE_SIZE, 1, progress=False)
    cases = {"none": images}
    for name, box in BOXES.items():
        cases[f"{name}: the map's (upsampled at 160 px)"] = preprocess.one_factor_shift(images, name)
        cases[f"{name}: at the source (224 px file)"] = at_source(sources, box)
        cases[f"{name}: its smoothing alone"] = smoothed_alone(images, box)
    cases["taller chest's framing alone: zoom in x1.25 at the source"] = at_source(sources, FRAMING_ALONE)
    cases["taller chest's shape alone: squeeze across x0.8 at the source"] = squeezed_at_source(sources)
    print(f"{tag}: {len(members)} seeds on {len(images)} validation images, each at its own threshold (mean of seeds); "
          f"intensity {members[0][1].get('intensity', 'none')}")
    for name, changed in cases.items():
        scores = [evaluate.binary_metrics(labels, probability, sidecar["threshold"])
                  for probability, (_, sidecar) in zip(evaluate.seed_probabilities(members, changed), members)]
        print(f"  {name:58s} " + ", ".join(f"{metric} {np.mean([score[metric] for score in scores]):.3f}"
                                           for metric in ("sensitivity", "specificity", "roc_auc"))
              + "; specificity per seed " + " ".join(f"{score['specificity']:.2f}" for score in scores))


if __name__ == "__main__":
    main(*sys.argv[1:])
