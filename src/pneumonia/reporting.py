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
    """``reports/metrics/<name>.json`` (``name`` is the notebook's, e.g. ``02-eda``), with the peak
    memory of this process so far (``peak_rss_mb``): called at a notebook's end, that is the notebook's."""
    import resource

    peak_mb = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)
    path = write_json(config.METRICS_DIR / f"{name}.json", {**metrics, "peak_rss_mb": peak_mb})
    print(f"wrote {path}")
    return path


def save_figure(figure, name: str, dpi: int = 110) -> Path:
    """``reports/figures/<name>.png``."""
    path = config.FIGURES_DIR / f"{name}.png"
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=dpi, bbox_inches="tight")
    print(f"wrote {path}")
    return path



ANCHORS = [
    {"model": "Kermany et al. 2018 (InceptionV3, ImageNet transfer)", "weights": "ImageNet", "accuracy": 0.928, "sensitivity": 0.932,
     "specificity": 0.901, "roc_auc": 0.968, "caveat": "chosen on the test split"},
    {"model": "MedMNIST+ 2024 (ResNet-18, 224 px)", "weights": "ImageNet", "accuracy": 0.911, "roc_auc": 0.980,
     "caveat": "PneumoniaMNIST benchmark; sensitivity/specificity not reported"},
    {"model": "Tutorial-style scratch CNN", "weights": "none", "accuracy": 0.87,
     "caveat": "typical public notebook; usually chosen on the 16-image val or on test"},
]
DISCLAIMER = ("For education and research only. These models are not medical devices, have not been validated "
              "clinically, and must not be used to diagnose or treat anyone.")


def _cell(test: dict, metric: str) -> str:
    if metric not in test:
        return "–"
    text = f"{100 * test[metric]:.1f}" if metric != "roc_auc" else f"{test[metric]:.3f}"
    if f"{metric}_std" in test:
        spread = test[f"{metric}_std"]
        text += f" ± {100 * spread:.1f}" if metric != "roc_auc" else f" ± {spread:.3f}"
    if f"{metric}_ci95" in test:
        low, high = test[f"{metric}_ci95"]
        text += f" [{100 * low:.1f}, {100 * high:.1f}]" if metric != "roc_auc" else f" [{low:.3f}, {high:.3f}]"
    return text


def _cells(test: dict) -> str:
    return " | ".join(_cell(test, m) for m in ("accuracy", "sensitivity", "specificity", "roc_auc"))


def weights_label(weights) -> str:
    if isinstance(weights, dict):
        return f"file (sha256 {weights['sha256'][:12]}…)"
    if weights == "none":
        return "**random init (not transfer learning)**"
    return str(weights)


def threshold_label(entry: dict) -> str:
    """Where a model's threshold came from, in a table cell: ``validation`` or ``validation + shifted copy``
    (``threshold_shift``, the shifted copy's strength, above 0)."""
    source = entry.get("threshold_source", "–")
    return f"{source} + shifted copy" if entry.get("threshold_shift") else source


def comparison_table(metrics: dict) -> str:
    """Markdown: our models (mean ± sd over seeds [bootstrap 95% CI]) beside the published anchors.

    A model trained with several seeds also gets a row for their ensemble (mean probability, one
    threshold of its own from validation): one model, so a bootstrap interval and no spread."""
    header = ("| model | weights | seeds | accuracy % | sensitivity % | specificity % | ROC AUC | threshold from |\n"
              "|---|---|---|---|---|---|---|---|\n")
    rows = []
    for name, entry in metrics.items():
        test = entry.get("test", {})
        rows.append(f"| **{name}** | {weights_label(entry.get('weights'))} | {len(entry.get('seeds', []))} | "
                    + _cells(test) + f" | {threshold_label(entry)} |")
        if "ensemble" in entry:
            ensemble = entry["ensemble"]
            rows.append(f"| **{name}**, ensemble of its seeds | {weights_label(entry.get('weights'))} | "
                        f"{len(ensemble.get('seeds', []))} averaged | "
                        + _cells(ensemble.get("test", {})) + f" | {threshold_label(ensemble)} |")
    for anchor in ANCHORS:
        rows.append(f"| {anchor['model']} (published) | {anchor['weights']} | – | " + _cells(anchor)
                    + f" | {anchor['caveat']} |")
    return header + "\n".join(rows) + "\n"


# The quality goal for notebook 04's CNN on the official test split, each metric the mean over its seeds
# (``make bench`` judges it beside the speed goals).
QUALITY_MODEL = "cnn"
QUALITY_FLOORS = {"accuracy": 0.93, "roc_auc": 0.98, "sensitivity": 0.90, "specificity": 0.90}


def quality_goal_line(metrics: dict) -> str | None:
    """One sentence: ``QUALITY_MODEL``'s test scores (mean over seeds) against each floor of the quality goal,
    met or not; None when the model or one of the metrics is missing."""
    test = metrics.get(QUALITY_MODEL, {}).get("test", {})
    if not all(metric in test for metric in QUALITY_FLOORS):
        return None
    parts = []
    for metric, floor in QUALITY_FLOORS.items():
        value = test[metric]
        shown, goal = ((f"{value:.3f}", f"{floor:.2f}") if metric == "roc_auc"
                       else (f"{100 * value:.1f}%", f"{100 * floor:g}%"))
        name = {"roc_auc": "ROC AUC"}.get(metric, metric)
        parts.append(f"{name} {shown} (goal ≥ {goal}: {'met' if value >= floor else '**not met**'})")
    return f"Quality goal for `{QUALITY_MODEL}`, mean over its seeds: " + ", ".join(parts) + "."


def write_reports_readme(metrics: dict, benchmarks: dict | None = None, figures: list[str] | None = None) -> Path:
    """Regenerate reports/README.md: the one-page summary of the last full run."""
    from pneumonia import config

    lines = [
        "# Results",
        "",
        "Generated by notebook 06 from `reports/metrics.json` and `reports/benchmarks.json`. Every model was scored once "
        "on the official Kaggle test split (624 images: 234 NORMAL, 390 PNEUMONIA) at the decision threshold chosen on "
        "our patient-grouped validation split; nothing was chosen on the test split.",
        "",
        "Cells: mean ± standard deviation over seeds [bootstrap 95% interval over test images]. "
        "Sensitivity = pneumonia found; specificity = normal X-rays cleared. An \"ensemble of its seeds\" row averages "
        "the seeds' probabilities at a threshold of its own, also chosen on validation: one model, so an interval and "
        "no spread.",
        "",
        comparison_table(metrics),
    ]
    goal = quality_goal_line(metrics)
    if goal:
        lines += [goal, ""]
    if any(entry.get("weights") == "none" for entry in metrics.values()):
        lines += ["A model with random-init weights was trained without ImageNet weights (unavailable offline): it is "
                  "not transfer learning and says nothing about what VGG16's ImageNet features would achieve.", ""]
    if benchmarks:
        # The numbers live in benchmarks.md alone: `make bench` and the end of `make reproduce` rewrite it after
        # this page is written, so a copy here would always be one run behind.
        cpus = benchmarks.get("machine", {}).get("cpus", "?")
        lines += ["## Cost", "", f"Training time, epoch time against the bare compute, the whole run's time and peak memory, "
                  f"and prediction speed on {cpus} CPU cores, with each goal met or not: "
                  "[benchmarks.md](benchmarks.md).", ""]
    for figure in figures or []:
        lines += [f"![{figure}](figures/{figure}.png)", ""]
    lines += ["## Data", "", f"Chest X-Ray Images (Pneumonia): {config.DATASET_CITATION}", "",
              "## Disclaimer", "", DISCLAIMER, ""]
    path = config.REPORTS_DIR / "README.md"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines))
    print(f"wrote {path}")
    return path
