"""Getting the dataset: from a folder, a zip or Kaggle, verified once, into ``data/raw``.

``fetch`` is the one entry point (``pneumonia data fetch`` and notebook 01 call it). It produces

    DEST/chest_xray/{train,val,test}/{NORMAL,PNEUMONIA}/<original file name>
    DEST/manifest.json

Every image is decoded exactly once, here. Files that do not decode are named on the console,
listed in the manifest with the reason and left out; nothing is dropped silently. The manifest
also carries per-file sha256, size and colour mode, so later stages (EDA included) never have to
decode an image just to describe it.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import shutil
import socket
import warnings
import zipfile
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Callable, Iterator

from PIL import Image, UnidentifiedImageError
from tqdm import tqdm

from pneumonia import config

IGNORED_FILE_NAMES = {".DS_Store", "Thumbs.db", "desktop.ini"}


class DataError(RuntimeError):
    """A problem with the data that the user can fix; its message is one complete line."""


@dataclass(frozen=True)
class _SourceFile:
    parts: tuple[str, ...]
    read: Callable[[], bytes]

    @property
    def path(self) -> str:
        return "/".join(self.parts)


# --------------------------------------------------------------------------- image checks


def inspect_image(data: bytes) -> tuple[dict | None, str | None]:
    """Decode ``data`` fully. Return ``(info, None)`` for an image, ``(None, reason)`` otherwise."""
    if not data:
        return None, "empty file"
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(data)) as image:
                image.load()
                return {"width": image.width, "height": image.height, "mode": image.mode}, None
    except UnidentifiedImageError:
        return None, "not an image (unrecognised format)"
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as error:
        return None, f"refused: decompression bomb ({error})"
    except (OSError, SyntaxError, ValueError) as error:
        return None, f"corrupt or truncated image ({error})"


# --------------------------------------------------------------------------- reading a source


def _iter_folder(root: Path) -> Iterator[_SourceFile]:
    for path in sorted(p for p in root.rglob("*") if p.is_file() or p.is_symlink()):
        yield _SourceFile(path.relative_to(root).parts, path.read_bytes)


def _iter_zip(archive: zipfile.ZipFile) -> Iterator[_SourceFile]:
    for info in sorted(archive.infolist(), key=lambda i: i.filename):
        if info.is_dir():
            continue
        yield _SourceFile(PurePosixPath(info.filename).parts, lambda info=info: archive.read(info))


def _layout_key(parts: tuple[str, ...]) -> tuple[tuple[str, ...], str, str] | None:
    """``(prefix, split, label)`` when ``parts`` ends in ``<split>/<label>/<file>``."""
    if len(parts) < 3:
        return None
    split, label = parts[-3].lower(), parts[-2].upper()
    if split in config.OFFICIAL_SPLITS and label in config.CLASS_NAMES:
        return tuple(parts[:-3]), split, label
    return None


def _plan(files: list[_SourceFile], source: Path) -> tuple[list[tuple[_SourceFile, str, str]], dict]:
    """Choose the files to ingest and account for every file that is not."""
    ignored: dict[str, list[str]] = {}
    candidates: dict[tuple[str, ...], list[tuple[_SourceFile, str, str]]] = {}
    for file in files:
        name = file.parts[-1]
        if "__MACOSX" in file.parts or name.startswith("._"):
            ignored.setdefault("macOS resource forks (__MACOSX, ._*)", []).append(file.path)
        elif name in IGNORED_FILE_NAMES:
            ignored.setdefault("system files (.DS_Store ...)", []).append(file.path)
        elif (key := _layout_key(file.parts)) is None:
            ignored.setdefault("outside <split>/<class>/ folders", []).append(file.path)
        else:
            prefix, split, label = key
            candidates.setdefault(prefix, []).append((file, split, label))

    if not candidates:
        raise DataError(
            f"no images in {{train,val,test}}/{{NORMAL,PNEUMONIA}}/ folders under {source}: "
            "is this the chest X-ray dataset?"
        )
    # The Kaggle archive holds the tree twice (chest_xray/ and chest_xray/chest_xray/):
    # the shallowest tree is the dataset, deeper copies are duplicates.
    depth = min(len(prefix) for prefix in candidates)
    roots = [prefix for prefix in candidates if len(prefix) == depth]
    if len(roots) > 1:
        names = ", ".join("/".join(r) or "." for r in sorted(roots))
        raise DataError(f"{source} holds several dataset trees at the same depth ({names}): point --source at one")
    root = roots[0]
    for prefix, entries in candidates.items():
        if prefix != root:
            ignored.setdefault(f"nested duplicate tree {'/'.join(prefix)}", []).extend(e[0].path for e in entries)
    if not any(split == "train" for _, split, _ in candidates[root]):
        raise DataError(f"no train/ split found under {source}")
    return candidates[root], ignored


# --------------------------------------------------------------------------- manifest


def dataset_hash(files: list[dict]) -> str:
    """One sha256 for the whole set, over ``sha256sum``-style lines sorted by path."""
    lines = "".join(f"{f['sha256']}  {f['path']}\n" for f in sorted(files, key=lambda f: f["path"]))
    return hashlib.sha256(lines.encode()).hexdigest()


def _counts(files: list[dict]) -> dict:
    counter = Counter((f["split"], f["label"]) for f in files)
    splits = [s for s in config.OFFICIAL_SPLITS if any(k[0] == s for k in counter)]
    return {s: {label: counter[(s, label)] for label in config.CLASS_NAMES} for s in splits}


def load_manifest(raw_dir: Path | str | None = None) -> dict:
    path = config.manifest_path(raw_dir)
    if not path.exists():
        raise DataError(f"no manifest at {path}: run `pneumonia data fetch` (or notebook 01) first")
    return json.loads(path.read_text())


def is_complete(raw_dir: Path | str | None = None) -> bool:
    """True when ``raw_dir`` holds a manifest and every file it lists, at the listed size."""
    try:
        manifest = load_manifest(raw_dir)
    except (DataError, json.JSONDecodeError):
        return False
    tree = config.dataset_dir(raw_dir)
    for entry in manifest.get("files", []):
        path = tree / entry["path"]
        if not path.is_file() or path.stat().st_size != entry["bytes"]:
            return False
    return bool(manifest.get("files"))


# --------------------------------------------------------------------------- ingest


def ingest(source: Path | str, dest: Path | str | None = None, *, workers: int = 4, progress: bool = True) -> dict:
    """Copy and verify the dataset from a folder or a ``.zip`` into ``dest`` (default ``data/raw``)."""
    source = Path(source).expanduser()
    dest = Path(dest or config.RAW_DIR)
    if not source.exists():
        raise DataError(f"--source {source} does not exist")
    if source.is_dir():
        return _ingest_files(list(_iter_folder(source)), source, dest, workers, progress)
    if zipfile.is_zipfile(source):
        with zipfile.ZipFile(source) as archive:
            return _ingest_files(list(_iter_zip(archive)), source, dest, workers, progress)
    raise DataError(f"--source {source} is neither a folder nor a .zip archive")


def _ingest_files(files: list[_SourceFile], source: Path, dest: Path, workers: int, progress: bool) -> dict:
    selected, ignored = _plan(files, source)
    dest.mkdir(parents=True, exist_ok=True)
    staging = dest / f".fetch-{os.getpid()}"
    shutil.rmtree(staging, ignore_errors=True)
    tree = staging / config.DATASET_FOLDER
    kept: list[dict] = []
    skipped: list[dict] = []

    def check(item: tuple[_SourceFile, str, str]) -> tuple[_SourceFile, str, str, bytes, dict | None, str | None]:
        file, split, label = item
        data = file.read()
        info, reason = inspect_image(data)
        return file, split, label, data, info, reason

    try:
        bar = tqdm(total=len(selected), desc="verify images", unit="img", disable=not progress)
        with ThreadPoolExecutor(max_workers=workers) as pool:
            # Chunks bound the memory held by bytes in flight (originals are ~200 kB each).
            for start in range(0, len(selected), 256):
                for file, split, label, data, info, reason in pool.map(check, selected[start : start + 256]):
                    bar.update()
                    if reason:
                        skipped.append({"path": file.path, "reason": reason})
                        tqdm.write(f"skipped {file.path}: {reason}")
                        continue
                    relative = f"{split}/{label}/{file.parts[-1]}"
                    target = tree / relative
                    target.parent.mkdir(parents=True, exist_ok=True)
                    target.write_bytes(data)
                    kept.append(
                        {
                            "path": relative,
                            "split": split,
                            "label": label,
                            "sha256": hashlib.sha256(data).hexdigest(),
                            "bytes": len(data),
                            **info,
                        }
                    )
        bar.close()
        if not kept:
            raise DataError(f"no readable image in {source}")
        kept.sort(key=lambda f: f["path"])
        manifest = {
            "dataset": config.KAGGLE_DATASET,
            "source": str(source),
            "counts": _counts(kept),
            "total": len(kept),
            "dataset_sha256": dataset_hash(kept),
            "skipped": skipped,
            "ignored": {reason: {"count": len(paths), "examples": paths[:5]} for reason, paths in ignored.items()},
            "files": kept,
        }
        (staging / config.MANIFEST_NAME).write_text(json.dumps(manifest, indent=1) + "\n")
        _swap_into_place(staging, dest)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    _print_summary(manifest, dest)
    return manifest


def _swap_into_place(staging: Path, dest: Path) -> None:
    """Replace ``dest``'s tree and manifest with the staged ones, each by a rename."""
    final_tree = config.dataset_dir(dest)
    if final_tree.exists():
        final_tree.rename(staging / "previous")
    (staging / config.DATASET_FOLDER).rename(final_tree)
    os.replace(staging / config.MANIFEST_NAME, config.manifest_path(dest))


def _print_summary(manifest: dict, dest: Path) -> None:
    parts = [
        f"{split} " + "/".join(f"{n} {label}" for label, n in counts.items())
        for split, counts in manifest["counts"].items()
    ]
    print(f"{manifest['total']} images in {config.dataset_dir(dest)} ({'; '.join(parts)})")
    for reason, info in manifest["ignored"].items():
        print(f"ignored {info['count']} files: {reason}")
    if manifest["skipped"]:
        print(f"skipped {len(manifest['skipped'])} unreadable files (listed in {config.manifest_path(dest)})")


# --------------------------------------------------------------------------- Kaggle


def kaggle_credentials() -> str | None:
    """Where Kaggle credentials would come from, or None. Looks without importing ``kaggle``,
    whose import ends the process when there are none."""
    if os.environ.get("KAGGLE_API_TOKEN"):
        return "KAGGLE_API_TOKEN"
    if os.environ.get("KAGGLE_USERNAME") and os.environ.get("KAGGLE_KEY"):
        return "KAGGLE_USERNAME/KAGGLE_KEY"
    home = Path.home()
    folders = [Path(os.environ["KAGGLE_CONFIG_DIR"])] if os.environ.get("KAGGLE_CONFIG_DIR") else []
    folders += [home / ".kaggle", Path(os.environ.get("XDG_CONFIG_HOME") or home / ".config") / "kaggle"]
    for folder in folders:
        for name in ("kaggle.json", "access_token", "access_token.txt"):
            if (folder / name).is_file():
                return str(folder / name)
    return None


def download_from_kaggle(download_dir: Path, host: str = "www.kaggle.com") -> Path:
    """Download the Kaggle archive into ``download_dir`` and return the path of the zip."""
    if kaggle_credentials() is None:
        raise DataError(
            "no Kaggle credentials: put kaggle.json in ~/.kaggle/ (or $KAGGLE_CONFIG_DIR), or set "
            "KAGGLE_USERNAME and KAGGLE_KEY, or KAGGLE_API_TOKEN; or use a copy you already have "
            "with --source PATH (make reproduce DATA=PATH)"
        )
    try:
        socket.create_connection((host, 443), timeout=5).close()
    except OSError as error:
        raise DataError(
            f"cannot reach {host} ({error}): offline? Use a copy of the dataset with --source PATH "
            "(make reproduce DATA=PATH)"
        ) from None
    try:
        import kaggle  # noqa: PLC0415  (authenticates on import)
    except SystemExit:
        raise DataError("Kaggle rejected the credentials; see https://www.kaggle.com/settings (API)") from None
    download_dir.mkdir(parents=True, exist_ok=True)
    try:
        kaggle.api.dataset_download_files(config.KAGGLE_DATASET, path=str(download_dir), quiet=False, unzip=False)
    except Exception as error:  # the client raises many kinds; all mean the same to the user
        raise DataError(f"Kaggle download of {config.KAGGLE_DATASET} failed: {error}") from None
    archives = sorted(download_dir.glob("*.zip"))
    if not archives:
        raise DataError(f"Kaggle download finished but no .zip is in {download_dir}")
    return archives[0]


def fetch(source: Path | str | None = None, dest: Path | str | None = None, *, progress: bool = True) -> dict:
    """Make ``dest`` (default ``data/raw``) hold the verified dataset and return its manifest.

    Sources, in order: ``source`` (a folder or .zip laid out like the Kaggle archive), an existing
    complete copy in ``dest``, else the Kaggle API.
    """
    dest = Path(dest or config.RAW_DIR)
    if source is not None:
        return ingest(source, dest, progress=progress)
    if is_complete(dest):
        manifest = load_manifest(dest)
        print(f"using the existing copy in {config.dataset_dir(dest)} ({manifest['total']} images)")
        return manifest
    download_dir = dest / ".download"
    archive = download_from_kaggle(download_dir)
    manifest = ingest(archive, dest, progress=progress)
    shutil.rmtree(download_dir, ignore_errors=True)
    return manifest
