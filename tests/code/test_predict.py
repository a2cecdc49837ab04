"""`pneumonia predict`: every accepted image mode, every refusal, formats and exit codes."""

from __future__ import annotations

import csv
import io
import json
import struct
import subprocess
import sys
import zlib

import numpy as np
import pytest
from PIL import Image

from pneumonia import predict


@pytest.fixture(scope="module")
def model_path(tmp_path_factory, tiny_model):
    """A tiny trained model with its published sidecar."""
    folder = tmp_path_factory.mktemp("models")
    return tiny_model(folder, folder / "logs")


def _png_header_only(width, height):
    """A PNG that declares width x height pixels and holds none: a decompression bomb's calling card."""
    def chunk(kind, payload):
        return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", zlib.crc32(kind + payload))
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)) + chunk(b"IEND", b"")


def _write(path, image, **kwargs):
    image.save(path, **kwargs)
    return path


@pytest.fixture()
def accepted(tmp_path):
    exif = Image.Exif()
    exif[0x0112] = 6
    return [
        _write(tmp_path / "grey.jpeg", Image.new("L", (300, 200), 90)),
        _write(tmp_path / "rgb.jpg", Image.new("RGB", (64, 80), (20, 40, 60))),
        _write(tmp_path / "rgba.png", Image.new("RGBA", (50, 50), (200, 200, 200, 128))),
        _write(tmp_path / "palette.png", Image.new("RGB", (40, 40), (9, 9, 9)).convert("P")),
        _write(tmp_path / "cmyk.jpeg", Image.new("CMYK", (40, 40), (0, 0, 0, 30))),
        _write(tmp_path / "deep.png", Image.fromarray((np.arange(1600, dtype=np.uint16) * 40).reshape(40, 40))),
        _write(tmp_path / "large.jpeg", Image.new("L", (2400, 2000), 128)),
        _write(tmp_path / "rotated.jpeg", Image.new("L", (60, 30), 50), exif=exif),
        _write(tmp_path / "png-named.jpg", Image.new("L", (30, 30), 10), format="PNG"),
    ]


@pytest.fixture()
def refused(tmp_path):
    buffer = io.BytesIO()
    Image.new("L", (200, 200), 1).save(buffer, format="JPEG")
    (tmp_path / "empty.jpeg").write_bytes(b"")
    (tmp_path / "truncated.jpeg").write_bytes(buffer.getvalue()[:400])
    (tmp_path / "text.png").write_text("not an image at all")
    (tmp_path / "bomb.png").write_bytes(_png_header_only(40000, 40000))
    _write(tmp_path / "animation.gif", Image.new("L", (10, 10)))
    return {
        tmp_path / "empty.jpeg": "empty file",
        tmp_path / "truncated.jpeg": "truncated or corrupt",
        tmp_path / "text.png": "not an image",
        tmp_path / "bomb.png": "decompression bomb",
        tmp_path / "animation.gif": "unsupported format GIF",
        tmp_path / "missing.jpeg": "cannot read",
    }


def test_every_accepted_mode_is_predicted(model_path, accepted):
    results = predict.Predictor(model_path).predict_paths(accepted)
    assert [r.error for r in results] == [None] * len(accepted)
    for result in results:
        assert result.label in ("NORMAL", "PNEUMONIA") and 0.0 <= result.probability <= 1.0
        assert (result.label == "PNEUMONIA") == (result.probability >= result.threshold)


def test_every_refusal_has_its_reason_and_the_rest_goes_on(model_path, accepted, refused):
    paths = [accepted[0], *refused, accepted[1]]
    results = predict.Predictor(model_path).predict_paths(paths)
    assert results[0].label and results[-1].label
    for result, (path, reason) in zip(results[1:-1], refused.items()):
        assert result.path == str(path) and reason in result.error and result.label is None


def test_predictions_match_the_model_directly(model_path, accepted):
    predictor = predict.Predictor(model_path)
    result = predictor.predict_paths([accepted[0]])[0]
    image = predict.read_image(accepted[0], predictor.image_size, predictor.channels)
    direct = predictor.model.predict(image[None].astype("float32") / 255.0, verbose=0)[0, 0]
    assert result.probability == pytest.approx(float(direct), abs=1e-5)


def test_one_trace_serves_every_batch_size(model_path):
    predictor = predict.Predictor(model_path)
    rng = np.random.default_rng(0)
    batches = [rng.integers(0, 256, (count, predictor.image_size, predictor.image_size, predictor.channels),
                            dtype=np.uint8) for count in (1, 5, 2)]
    for images in batches:
        inputs = predictor.inputs(images)
        direct = predictor.model.predict(inputs, verbose=0).ravel()
        assert predictor.probabilities(images) == pytest.approx(direct, abs=1e-5)
    assert predictor.forward[0].experimental_get_tracing_count() == 1


def test_ensemble_averages_the_seeds_at_its_own_threshold(tmp_path, tiny_model, accepted):
    published = tiny_model(tmp_path, tmp_path / "logs", seeds=(0, 1))
    ensemble = predict.Predictor(published, ensemble=True)
    seeds = [predict.Predictor(tmp_path / f"tiny-seed{seed}.keras") for seed in (0, 1)]
    images = np.stack([predict.read_image(path, 32, 1) for path in accepted[:3]])
    expected = np.mean([seed.probabilities(images) for seed in seeds], axis=0)
    assert not np.allclose(seeds[0].probabilities(images), seeds[1].probabilities(images))
    assert ensemble.probabilities(images) == pytest.approx(expected, abs=1e-6)
    assert ensemble.threshold == pytest.approx(json.loads(published.with_suffix(".json").read_text())["ensemble"]["threshold"])

    ok = _cli(accepted[0], "--model", published, "--ensemble", "--format", "json")
    assert ok.returncode == 0, ok.stderr
    assert json.loads(ok.stdout)[0]["threshold"] == pytest.approx(ensemble.threshold, abs=1e-6)


def test_ensemble_of_a_single_seed_is_refused_in_one_line(model_path, accepted):
    with pytest.raises(predict.PredictError, match="has no ensemble"):
        predict.Predictor(model_path, ensemble=True)
    refused = _cli(accepted[0], "--model", model_path, "--ensemble")
    assert refused.returncode == 2 and refused.stderr.startswith("error:") and "Traceback" not in refused.stderr


def test_heatmaps_are_written(model_path, accepted, tmp_path):
    predict.Predictor(model_path).predict_paths(accepted[:2], heatmaps=tmp_path / "heat")
    written = sorted(p.name for p in (tmp_path / "heat").iterdir())
    assert written == ["grey-gradcam.png", "rgb-gradcam.png"]
    with Image.open(tmp_path / "heat" / written[0]) as picture:
        assert picture.mode == "RGB" and picture.size == (32, 32)


def test_folders_are_searched_for_images(accepted, refused, tmp_path):
    found = predict.find_images([tmp_path])
    assert set(accepted) <= set(found) and tmp_path / "animation.gif" not in found


def _cli(*args):
    return subprocess.run([sys.executable, "-m", "pneumonia.cli", "predict", *map(str, args)],
                          capture_output=True, text=True, timeout=300)


def test_cli_formats_and_exit_codes(model_path, accepted, refused, tmp_path):
    ok = _cli(*accepted[:2], "--model", model_path, "--format", "json")
    assert ok.returncode == 0, ok.stderr
    rows = json.loads(ok.stdout)
    assert [set(r) for r in rows] == [{"path", "label", "probability", "threshold"}] * 2

    mixed = _cli(accepted[0], tmp_path / "empty.jpeg", "--model", model_path, "--format", "csv")
    assert mixed.returncode == 1
    table = list(csv.DictReader(io.StringIO(mixed.stdout)))
    assert table[0]["label"] and table[1]["error"] == "empty file"
    assert "refused" in mixed.stderr and "Traceback" not in mixed.stderr

    no_model = _cli(accepted[0], "--model", tmp_path / "nothing.keras")
    assert no_model.returncode == 2 and no_model.stderr.startswith("error: no model at")
    assert no_model.stderr.count("\n") == 1
    (tmp_path / "void").mkdir()
    no_images = _cli(tmp_path / "void", "--model", model_path)
    assert no_images.returncode == 2 and "no images found" in no_images.stderr
    assert _cli("--format", "yaml", accepted[0]).returncode == 2
