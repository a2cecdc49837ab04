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


@pytest.fixture(scope="session")
def tiny_model():
    """A function that trains and publishes a tiny CNN: ``tiny_model(models_dir, logs_dir, name)`` -> ``.keras`` path."""
    return _train_tiny_model


def _train_tiny_model(models_dir, logs_dir, name: str = "tiny", seeds=(0,)):
    """Train and publish a tiny CNN on a learnable synthetic signal (with the seeds' ensemble when there are
    several); return the published ``.keras`` path."""
    import numpy as np

    from pneumonia import train

    rng = np.random.default_rng(0)
    images = rng.integers(0, 60, (40, 32, 32, 1), dtype=np.uint8)
    labels = np.array([0, 1] * 20, dtype=np.int32)
    images[labels == 1, 8:24, 8:24] += 150
    run = train.TrainConfig(name=name, image_size=32, filters=(4, 8), epochs=1, batch_size=8, verbose=0)
    sidecars = [train.train_one(run, seed, images, labels, images, labels, "hash", models_dir, logs_dir)
                for seed in seeds]
    return train.publish(sidecars, models_dir, images, labels)
