"""The upload app in a real browser: Debian's chromium driven headless by Playwright (`make test-browser`).

Browsers cannot be downloaded here, so Playwright drives the system chromium (/usr/bin/chromium).
"""

from __future__ import annotations

import io
import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
from PIL import Image


CHROMIUM = os.environ.get("CHROMIUM", "/usr/bin/chromium")
pytestmark = pytest.mark.browser


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture(scope="module")
def app_url(tmp_path_factory, tiny_model):
    workspace = tmp_path_factory.mktemp("browser-workspace")
    tiny_model(workspace / "models", workspace / "logs", name="cnn")

    port = _free_port()
    env = {**os.environ, "PNEUMONIA_WORKSPACE": str(workspace)}
    server = subprocess.Popen([sys.executable, "-m", "pneumonia.cli", "app", "--port", str(port)], env=env,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://localhost:{port}"
    deadline = time.monotonic() + 60
    while True:
        try:
            if urllib.request.urlopen(f"{url}/_stcore/health", timeout=2).read() == b"ok":
                break
        except OSError:
            if time.monotonic() > deadline or server.poll() is not None:
                server.kill()
                pytest.fail("the app did not start within 60 s")
            time.sleep(0.5)
    yield url
    server.terminate()
    server.wait(timeout=20)
    # Stopping `pneumonia app` must stop the server it started, not orphan it.
    with pytest.raises(OSError):
        urllib.request.urlopen(f"{url}/_stcore/health", timeout=2)


@pytest.fixture(scope="module")
def browser():
    if not Path(CHROMIUM).exists():
        pytest.fail(f"{CHROMIUM} not found: `make test-browser` installs Debian's chromium", pytrace=False)
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(
            executable_path=CHROMIUM,
            headless=True,
            args=["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync"],
        )
        yield launched
        launched.close()


def _upload(browser, app_url, path):
    """Open the app, upload ``path`` through its file input, return the page."""
    page = browser.new_page()
    page.goto(app_url)
    page.get_by_text("Upload a chest X-ray image...").wait_for(timeout=60_000)
    page.locator("input[type=file]").set_input_files(str(path))
    return page


def test_upload_shows_a_prediction(app_url, browser, tmp_path):
    image = tmp_path / "xray.png"
    Image.new("L", (320, 300), 90).save(image)
    page = _upload(browser, app_url, image)
    prediction = page.get_by_text("Prediction:")
    prediction.wait_for(timeout=60_000)
    assert prediction.inner_text() in ("Prediction: Pneumonia", "Prediction: No pneumonia")
    # Streamlit sends the page element by element: the probability line can arrive after the heading.
    page.get_by_text("Probability of pneumonia").wait_for(timeout=30_000)
    page.screenshot(path=str(tmp_path / "app.png"), full_page=True)


def test_a_bad_file_gets_one_line(app_url, browser, tmp_path):
    bad = tmp_path / "broken.jpeg"
    bad.write_bytes(b"this is not a jpeg")
    page = _upload(browser, app_url, bad)
    refusal = page.get_by_text("Refused broken.jpeg")
    refusal.wait_for(timeout=60_000)
    assert "not an image" in refusal.inner_text()
    assert "Traceback" not in page.content()
