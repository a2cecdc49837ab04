"""The upload app, driven headless by Streamlit's AppTest."""

from __future__ import annotations

import io
import shutil
from pathlib import Path

import pytest
from PIL import Image

streamlit_testing = pytest.importorskip("streamlit.testing.v1")

from pneumonia import app, config  # noqa: E402

APP_FILE = str(Path(app.__file__))


class Upload:
    """What st.file_uploader returns, for the app's code path."""

    def __init__(self, name, payload):
        self.name, self._payload = name, payload

    def getvalue(self):
        return self._payload


@pytest.fixture(scope="module")
def trained(tmp_path_factory, tiny_model):
    """A tiny published model of two seeds (so with an ensemble) in the test workspace's models/ folder."""
    yield tiny_model(config.MODELS_DIR, tmp_path_factory.mktemp("logs"), name="cnn", seeds=(0, 1))
    shutil.rmtree(config.MODELS_DIR, ignore_errors=True)


def _run_with_upload(monkeypatch, upload):
    import streamlit as st

    monkeypatch.setattr(st, "file_uploader", lambda *a, **k: upload)
    tester = streamlit_testing.AppTest.from_file(APP_FILE, default_timeout=120)
    tester.run()
    return tester


def _jpeg(shade=120):
    buffer = io.BytesIO()
    Image.new("L", (300, 280), shade).save(buffer, format="JPEG")
    return buffer.getvalue()


def test_app_without_a_model_says_how_to_train_one(tmp_path, monkeypatch):
    monkeypatch.setattr(config, "MODELS_DIR", tmp_path / "empty")
    tester = _run_with_upload(monkeypatch, None)
    assert not tester.exception
    assert "No trained model" in tester.info[0].value and "make reproduce" in tester.info[0].value
    assert "not be used to diagnose" in tester.warning[0].value


def test_app_predicts_an_upload(trained, monkeypatch):
    tester = _run_with_upload(monkeypatch, Upload("xray.jpeg", _jpeg()))
    assert not tester.exception and not tester.error
    assert tester.subheader[0].value in ("Prediction: Pneumonia", "Prediction: No pneumonia")
    assert "Probability of pneumonia" in tester.markdown[0].value and "threshold" in tester.markdown[0].value
    assert "seed 0" in tester.markdown[0].value


def test_app_averages_the_seeds_when_asked(trained, monkeypatch):
    from pneumonia.predict import Predictor, read_image

    tester = _run_with_upload(monkeypatch, Upload("xray.jpeg", _jpeg()))
    assert tester.checkbox[0].label == "Average its 2 seeds (ensemble)" and not tester.checkbox[0].value
    tester.checkbox[0].check().run()
    assert not tester.exception and not tester.error
    shown = tester.markdown[0].value
    assert "ensemble of seeds 0, 1" in shown
    ensemble = Predictor(trained, ensemble=True)
    probability = float(ensemble.probabilities(read_image(_jpeg(), ensemble.image_size, ensemble.channels)[None])[0])
    assert f"**{probability:.1%}**" in shown and f"threshold {ensemble.threshold:.2f}" in shown


@pytest.mark.parametrize(("payload", "reason"), [(b"", "empty file"), (b"<html>", "not an image"),
                                                 (_jpeg()[:300], "truncated or corrupt")])
def test_app_refuses_bad_files_in_one_line(trained, monkeypatch, payload, reason):
    tester = _run_with_upload(monkeypatch, Upload("bad.jpeg", payload))
    assert not tester.exception
    assert len(tester.error) == 1 and reason in tester.error[0].value and "\n" not in tester.error[0].value
    assert not tester.subheader
