"""Predicting new images with a saved model and its sidecar (``pneumonia predict``, the app).

Any JPEG or PNG is accepted — grayscale, RGB, RGBA, palette, CMYK, 16-bit, any size, EXIF
orientation applied — and the content decides, not the file name. Empty, truncated and non-image
files and decompression bombs are refused with one line each, and the rest go on.
"""

from __future__ import annotations

import csv
import io
import json
import sys
import warnings
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from pneumonia import config, preprocess

ACCEPTED_FORMATS = {"JPEG", "PNG", "MPO"}  # MPO: the multi-picture JPEG some cameras write
FOLDER_SUFFIXES = {".jpg", ".jpeg", ".png"}


class PredictError(RuntimeError):
    """A usage problem (no model, no images); its message is one line."""


@dataclass
class Prediction:
    path: str
    label: str | None = None
    probability: float | None = None
    threshold: float | None = None
    error: str | None = None

    def as_dict(self) -> dict:
        if self.error:
            return {"path": self.path, "error": self.error}
        return {k: v for k, v in asdict(self).items() if k != "error"}


def read_image(source, image_size: int, channels: int) -> np.ndarray:
    """Decode ``source`` (a path, bytes or a binary file) for the model, or raise ValueError with the reason."""
    if isinstance(source, (str, Path)):
        try:
            payload = Path(source).read_bytes()
        except OSError as error:
            raise ValueError(f"cannot read ({error.strerror or error})") from None
    elif isinstance(source, bytes):
        payload = source
    else:
        payload = source.read()
    if not payload:
        raise ValueError("empty file")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(payload)) as image:
                if image.format not in ACCEPTED_FORMATS:
                    raise ValueError(f"unsupported format {image.format} (JPEG or PNG only)")
                image.load()
                return preprocess.prepare_image(image, image_size, channels)
    except UnidentifiedImageError:
        raise ValueError("not an image (JPEG or PNG expected)") from None
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise ValueError("refused: too many pixels (possible decompression bomb)") from None
    except (OSError, SyntaxError) as error:
        raise ValueError(f"truncated or corrupt image ({error})") from None


def find_images(paths) -> list[Path]:
    """Files as given; folders searched recursively for .jpg/.jpeg/.png files (hidden files skipped)."""
    found = []
    for path in map(Path, paths):
        if path.is_dir():
            found += sorted(
                p for p in path.rglob("*")
                if p.is_file() and p.suffix.lower() in FOLDER_SUFFIXES and not p.name.startswith(".")
            )
        else:
            found.append(path)
    return found


def traced_inference(model):
    """``model(inputs, training=False)`` as one traced TensorFlow graph for float32 batches of any size.

    Called eagerly, every Keras layer pays Python overhead on each call; for one image that overhead,
    not the arithmetic, is most of the time. ``model.predict`` pays its own set-up on each call instead.
    """
    import tensorflow as tf

    spec = tf.TensorSpec((None, *model.input_shape[1:]), tf.float32)
    return tf.function(lambda inputs: model(inputs, training=False), input_signature=[spec])


class Predictor:
    """A model loaded once, with the preprocessing and threshold of its sidecar.

    ``ensemble=True`` loads every seed listed in the published sidecar's ``ensemble`` block and
    averages their probabilities, at the ensemble's own validation threshold; Grad-CAM heatmaps then
    come from the first seed.
    """

    def __init__(self, model_path: Path | str | None = None, ensemble: bool = False):
        from pneumonia.evaluate import load_sidecar
        from pneumonia.models import load_model

        self.model_path = Path(model_path or config.MODELS_DIR / "cnn.keras")
        if not self.model_path.exists():
            raise PredictError(f"no model at {self.model_path}: train one first (make reproduce, notebook 04)")
        sidecar = self.model_path.with_suffix(".json")
        if not sidecar.exists():
            raise PredictError(f"no sidecar {sidecar} beside the model (it gives image size, channels and threshold)")
        self.sidecar = load_sidecar(self.model_path)
        if ensemble and "ensemble" not in self.sidecar:
            raise PredictError(f"{self.model_path.name} has no ensemble: its sidecar lists one seed")
        chosen = self.sidecar["ensemble"] if ensemble else self.sidecar
        files = [self.model_path.parent / name for name in chosen["members"]] if ensemble else [self.model_path]
        self.members = [load_model(path) for path in files]
        self.model = self.members[0]
        self.forward = [traced_inference(member) for member in self.members]
        self.threshold = float(chosen["threshold"])
        self.image_size = self.sidecar["image_size"]
        self.channels = self.sidecar["channels"]
        self.class_names = self.sidecar["class_names"]

    def inputs(self, images: np.ndarray) -> np.ndarray:
        return preprocess.model_inputs(images, self.sidecar)

    def probabilities(self, images: np.ndarray, batch_size: int = 64) -> np.ndarray:
        out = []
        for i in range(0, len(images), batch_size):
            inputs = self.inputs(images[i : i + batch_size])
            out.append(np.mean([np.asarray(forward(inputs)).ravel() for forward in self.forward], axis=0))
        return np.concatenate(out) if out else np.empty(0)

    def label(self, probability: float) -> str:
        return self.class_names[1] if probability >= self.threshold else self.class_names[0]

    def predict_paths(self, paths, heatmaps: Path | str | None = None, batch_size: int = 64) -> list[Prediction]:
        results, images, keep = [], [], []
        for path in paths:
            try:
                images.append(read_image(path, self.image_size, self.channels))
                keep.append(len(results))
                results.append(Prediction(str(path)))
            except ValueError as reason:
                results.append(Prediction(str(path), error=str(reason)))
        if images:
            stack = np.stack(images)
            for index, probability in zip(keep, self.probabilities(stack, batch_size)):
                result = results[index]
                result.probability = round(float(probability), 6)
                result.threshold = round(self.threshold, 6)
                result.label = self.label(probability)
            if heatmaps:
                self.write_heatmaps(stack, [results[i] for i in keep], Path(heatmaps), batch_size)
        return results

    def heatmap(self, image: np.ndarray) -> np.ndarray:
        """A Grad-CAM overlay (RGB uint8) for one uint8 image."""
        from pneumonia.explain import grad_cam, overlay

        return overlay(image, grad_cam(self.model, self.inputs(image[None]))[0])

    def write_heatmaps(self, images: np.ndarray, results: list[Prediction], folder: Path, batch_size: int) -> None:
        from pneumonia.explain import grad_cam, overlay

        folder.mkdir(parents=True, exist_ok=True)
        used = set()
        for start in range(0, len(images), batch_size):
            batch = images[start : start + batch_size]
            for image, heat, result in zip(batch, grad_cam(self.model, self.inputs(batch)), results[start:]):
                stem = Path(result.path).stem
                name, n = f"{stem}-gradcam.png", 1
                while name in used:
                    n += 1
                    name = f"{stem}-{n}-gradcam.png"
                used.add(name)
                Image.fromarray(overlay(image, heat)).save(folder / name)


def write(results: list[Prediction], format: str = "table", stream=None) -> None:
    stream = stream or sys.stdout
    if format == "json":
        json.dump([r.as_dict() for r in results], stream, indent=2)
        stream.write("\n")
    elif format == "csv":
        writer = csv.DictWriter(stream, fieldnames=["path", "label", "probability", "threshold", "error"])
        writer.writeheader()
        for result in results:
            writer.writerow(asdict(result))
    else:
        width = max([len(r.path) for r in results] + [4])
        stream.write(f"{'path':<{width}}  {'label':<9}  probability  threshold\n")
        for result in results:
            if result.error:
                stream.write(f"{result.path:<{width}}  refused: {result.error}\n")
            else:
                stream.write(f"{result.path:<{width}}  {result.label:<9}  {result.probability:11.4f}  "
                             f"{result.threshold:9.4f}\n")


def main(paths, model=None, format="table", heatmaps=None, ensemble=False) -> int:
    """The CLI: 0 when every image was predicted, 1 when some were refused (``PredictError`` for usage)."""
    files = find_images(paths)
    if not files:
        raise PredictError(f"no images found in {', '.join(map(str, paths))}")
    predictor = Predictor(model, ensemble=ensemble)
    results = predictor.predict_paths(files, heatmaps=heatmaps)
    for result in results:
        if result.error:
            print(f"refused {result.path}: {result.error}", file=sys.stderr)
    write(results, format)
    return 1 if any(r.error for r in results) else 0
