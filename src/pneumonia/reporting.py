"""Writing figures and numbers into reports/ the same way from every notebook."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np

from pneumonia import config


def _plain(value):
    """JSON-ready copy of ``value`` (numpy scalars and arrays, paths, tuples, sets)."""
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, set)):
        items = sorted(value) if isinstance(value, set) else value
        return [_plain(v) for v in items]
    if isinstance(value, np.ndarray):
        return _plain(value.tolist())
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, Path):
        return str(value)
    return value


def write_json(path: Path | str, payload: dict) -> Path:
    """Write ``payload`` as indented JSON through a temporary file, so a reader never sees half of it."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.tmp")
    temporary.write_text(json.dumps(_plain(payload), indent=2) + "\n")
    os.replace(temporary, path)
    return path


def save_metrics(name: str, metrics: dict) -> Path:
    """``reports/metrics/<name>.json`` (``name`` is the notebook's, e.g. ``02-eda``)."""
    path = write_json(config.METRICS_DIR / f"{name}.json", metrics)
    print(f"wrote {path}")
    return path


def save_figure(figure, name: str, dpi: int = 110) -> Path:
    """``reports/figures/<name>.png``."""
    path = config.FIGURES_DIR / f"{name}.png"
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=dpi, bbox_inches="tight")
    print(f"wrote {path}")
    return path


def update_json(path: Path | str, values: dict) -> Path:
    """Merge ``values`` into the JSON object at ``path`` (created when missing)."""
    path = Path(path)
    current = json.loads(path.read_text()) if path.exists() else {}
    current.update(values)
    return write_json(path, current)
