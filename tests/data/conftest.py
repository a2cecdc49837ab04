"""The real dataset: DATA=PATH (PNEUMONIA_DATA), else a fetched copy in the workspace's data/raw.

Without it these tests skip, except under CI (CI=true), where a missing dataset is a failure.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from pneumonia import config, data, split


def _dataset_path() -> Path | None:
    given = os.environ.get("PNEUMONIA_DATA", "").strip()
    if given:
        return Path(given).expanduser()
    fetched = config.dataset_dir()
    return fetched if fetched.exists() else None


@pytest.fixture(scope="session")
def real_source() -> Path:
    path = _dataset_path()
    if path is None or not path.exists():
        message = f"real dataset not found ({path or 'set DATA=PATH'})"
        if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
            pytest.fail(f"{message}; CI needs it: make test DATA=../shared/data/chest_xray", pytrace=False)
        pytest.skip(message)
    return path


@pytest.fixture(scope="session")
def real_raw(real_source, tmp_path_factory):
    """The real dataset fetched through our own ingest into a temporary folder."""
    raw = tmp_path_factory.mktemp("real-raw")
    data.fetch(real_source, raw, progress=False)
    return raw


@pytest.fixture(scope="session")
def real_manifest(real_raw):
    return data.load_manifest(real_raw)


@pytest.fixture(scope="session")
def real_splits(real_raw, tmp_path_factory):
    return split.split_data(real_raw, tmp_path_factory.mktemp("processed") / "splits.csv")
