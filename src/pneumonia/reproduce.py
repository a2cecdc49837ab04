"""Run the numbered notebooks in order with papermill (``make reproduce``).

Parameters come from ``params/<profile>.yaml`` (one mapping per notebook, keyed by its file stem),
then from the caller (``data`` becomes notebook 01's ``source``). Each executed notebook is written
to a temporary folder and moved into ``reports/notebooks/`` only when it succeeded, so a failure
leaves the previous executed copy in place; the run stops at the first failing notebook and names
it and the failing cell.
"""

from __future__ import annotations

import ast
import json
import shutil
import time
from pathlib import Path

import papermill
import yaml
from papermill.exceptions import PapermillExecutionError

from pneumonia import config

PROFILES = ("full", "smoke")


class NotebookFailed(RuntimeError):
    """A notebook raised; the message names the notebook and the cell."""


def notebooks(only: list[str] | None = None) -> list[Path]:
    """The numbered notebooks (``NN-name.ipynb``), in order; ``only`` keeps those whose number or stem is listed."""
    found = sorted(config.NOTEBOOKS_DIR.glob("[0-9][0-9]-*.ipynb"))
    if only:
        found = [nb for nb in found if nb.stem in only or nb.stem[:2] in only]
    return found


def load_parameters(profile: str = "full") -> dict[str, dict]:
    if profile not in PROFILES:
        raise ValueError(f"unknown profile {profile!r}; choose one of {', '.join(PROFILES)}")
    path = config.PARAMS_DIR / f"{profile}.yaml"
    return yaml.safe_load(path.read_text()) or {}


def notebook_parameters(stem: str, profile: str = "full") -> dict:
    """The values a notebook runs with under ``profile``: its ``parameters`` cell, overlaid by the profile's YAML.

    Code outside the notebooks (``make bench``) reads its settings here, so the notebook stays their one source.
    """
    (notebook,) = [nb for nb in notebooks() if nb.stem == stem]
    defaults = {name: ast.literal_eval(spec["default"]) for name, spec in papermill.inspect_notebook(str(notebook)).items()}
    return {**defaults, **load_parameters(profile).get(stem, {})}


def _check_vgg16_weights(values: dict) -> None:
    from pneumonia.models import WeightsUnavailable, resolve_vgg16_weights

    try:
        resolve_vgg16_weights(values.get("weights"))
    except WeightsUnavailable as error:
        raise NotebookFailed(f"05-vgg16.ipynb cannot run: {error}") from None


def run_parameters(profile: str = "full", data: Path | str | None = None, vgg16_weights: str | None = None) -> dict:
    """Each notebook's parameters for a run: params/<profile>.yaml plus the command line's data and weights."""
    parameters = load_parameters(profile)
    if data is not None:
        parameters.setdefault("01-download", {})["source"] = str(Path(data).expanduser().resolve())
    if vgg16_weights:
        weights = None if vgg16_weights.lower() == "none" else vgg16_weights
        if weights not in (None, "imagenet"):
            weights = str(Path(weights).expanduser().resolve())
        parameters.setdefault("05-vgg16", {})["weights"] = weights
    return parameters


def prepare(
    destination: Path | str,
    profile: str = "full",
    data: Path | str | None = None,
    only: list[str] | None = None,
    vgg16_weights: str | None = None,
) -> list[Path]:
    """Write the notebooks with a run's parameters injected, unexecuted (``papermill --prepare-only``).

    ``make test-nbval`` runs ``pytest --nbval-lax`` over the smoke profile's copies: the stored notebooks'
    defaults are the full run, which does not fit in a test.
    """
    parameters = run_parameters(profile, data, vgg16_weights)
    destination = Path(destination)
    destination.mkdir(parents=True, exist_ok=True)
    written = []
    for notebook in notebooks(only):
        target = destination / notebook.name
        papermill.execute_notebook(str(notebook), str(target), parameters=parameters.get(notebook.stem, {}),
                                   kernel_name="python3", prepare_only=True, progress_bar=False)
        written.append(target)
    return written


def run(
    profile: str = "full",
    data: Path | str | None = None,
    only: list[str] | None = None,
    progress: bool = True,
    vgg16_weights: str | None = None,
) -> list[Path]:
    """Execute the notebooks; return the executed copies written to ``reports/notebooks``.

    ``vgg16_weights`` ("imagenet", a path, or "none") overrides notebook 05's ``weights``. ImageNet
    weights are checked before the first notebook runs, so an offline machine learns it at once,
    not after the CNN has trained.
    """
    parameters = run_parameters(profile, data, vgg16_weights)
    selected = notebooks(only)
    if not selected:
        raise NotebookFailed(f"no notebooks matched {only} in {config.NOTEBOOKS_DIR}")
    if any(nb.stem == "05-vgg16" for nb in selected):
        _check_vgg16_weights(notebook_parameters("05-vgg16", profile) | parameters.get("05-vgg16", {}))
    config.EXECUTED_NOTEBOOKS_DIR.mkdir(parents=True, exist_ok=True)
    staging = config.REPORTS_DIR / ".tmp-notebooks"
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    written = []
    run_started = time.perf_counter()
    try:
        for notebook in selected:
            values = parameters.get(notebook.stem, {})
            print(f"==> {notebook.name} ({profile}) {values or ''}", flush=True)
            started = time.perf_counter()
            try:
                papermill.execute_notebook(
                    str(notebook),
                    str(staging / notebook.name),
                    parameters=values,
                    kernel_name="python3",
                    progress_bar=progress,
                    log_output=True,
                    cwd=str(config.NOTEBOOKS_DIR),
                )
            except PapermillExecutionError as error:
                raise NotebookFailed(
                    f"{notebook.name} failed in cell [{error.exec_count}] (cell index {error.cell_index}): "
                    f"{error.ename}: {error.evalue}"
                ) from None
            target = config.EXECUTED_NOTEBOOKS_DIR / notebook.name
            shutil.move(staging / notebook.name, target)
            written.append(target)
            print(f"<== {notebook.name} done in {time.perf_counter() - started:.0f} s -> {target}", flush=True)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    if profile == "full" and not only:
        _record_run(time.perf_counter() - run_started)
    return written


def _notebook_peaks() -> dict[str, float]:
    """Each notebook's peak memory, as its kernel wrote it into reports/metrics/<stem>.json."""
    peaks = {}
    for notebook in notebooks():
        path = config.METRICS_DIR / f"{notebook.stem}.json"
        if path.exists():
            peaks[notebook.stem] = json.loads(path.read_text()).get("peak_rss_mb")
    return peaks


def _record_run(seconds: float) -> None:
    """Whole-run wall time and peak memory (this process or any kernel it ran) into reports/benchmarks.json."""
    import resource

    from pneumonia.bench import record
    from pneumonia.train import machine

    peak_kb = max(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)
    values = {"reproduce_full_s": round(seconds, 1), "reproduce_peak_rss_mb": round(peak_kb / 1024, 1),
              "reproduce_peak_rss_mb_by_notebook": _notebook_peaks(), "reproduce_machine": machine()}
    record(values)
    print(f"full run: {seconds / 60:.1f} min, peak memory {values['reproduce_peak_rss_mb']:.0f} MiB")
