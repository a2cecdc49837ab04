"""Shared fixtures. Every test run writes into a temporary workspace, never into your data/ or reports/."""

from __future__ import annotations

import os
import tempfile

# Before `pneumonia.config` is imported anywhere: the workspace is fixed at import time.
os.environ.setdefault("PNEUMONIA_WORKSPACE", tempfile.mkdtemp(prefix="pneumonia-test-workspace-"))

import pytest  # noqa: E402

from pneumonia.synthetic import make_synthetic_dataset  # noqa: E402


@pytest.fixture(scope="session")
def synthetic_source(tmp_path_factory):
    """A small synthetic dataset in the Kaggle layout (train and test, no val)."""
    return make_synthetic_dataset(tmp_path_factory.mktemp("synthetic") / "chest_xray", seed=0)
