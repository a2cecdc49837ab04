"""Ingest: sources, verification, the Kaggle archive's quirks, atomic writes, Kaggle fail-fast."""

from __future__ import annotations

import hashlib
import io
import json
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
from PIL import Image

from pneumonia import config, data
from pneumonia.data import DataError


def _jpeg_bytes(size=(32, 32), mode="RGB") -> bytes:
    buffer = io.BytesIO()
    Image.new(mode, size, color=128 if mode == "L" else (90, 120, 150)).save(buffer, format="JPEG")
    return buffer.getvalue()


# --------------------------------------------------------------------------- inspect_image


def test_inspect_image_accepts_jpeg_and_png():
    info, reason = data.inspect_image(_jpeg_bytes((40, 30)))
    assert reason is None and info == {"width": 40, "height": 30, "mode": "RGB"}
    buffer = io.BytesIO()
    Image.new("L", (8, 9)).save(buffer, format="PNG")
    assert data.inspect_image(buffer.getvalue())[0]["mode"] == "L"


@pytest.mark.parametrize(
    ("payload", "expected"),
    [
        (b"", "empty file"),
        (b"hello, not an image", "not an image"),
        (_jpeg_bytes((64, 64))[:300], "corrupt or truncated"),
    ],
)
def test_inspect_image_refuses_bad_files_with_a_reason(payload, expected):
    info, reason = data.inspect_image(payload)
    assert info is None and expected in reason


# --------------------------------------------------------------------------- ingest from a folder


def test_ingest_folder_copies_verifies_and_hashes(synthetic_source, tmp_path):
    manifest = data.ingest(synthetic_source, tmp_path / "raw", progress=False)
    on_disk = sorted(p.relative_to(synthetic_source).as_posix() for p in synthetic_source.rglob("*.jpeg"))
    assert [f["path"] for f in manifest["files"]] == on_disk
    assert manifest["total"] == len(on_disk)
    assert set(manifest["counts"]) == {"train", "test"}
    assert sum(sum(c.values()) for c in manifest["counts"].values()) == len(on_disk)
    first = manifest["files"][0]
    copied = config.dataset_dir(tmp_path / "raw") / first["path"]
    assert hashlib.sha256(copied.read_bytes()).hexdigest() == first["sha256"]
    assert first["bytes"] == copied.stat().st_size
    assert json.loads(config.manifest_path(tmp_path / "raw").read_text()) == manifest
    assert manifest["dataset_sha256"] == data.dataset_hash(manifest["files"])


def test_ingest_is_idempotent(synthetic_source, tmp_path):
    dest = tmp_path / "raw"
    first = data.ingest(synthetic_source, dest, progress=False)
    second = data.ingest(synthetic_source, dest, progress=False)
    assert first == second
    assert sorted(p.name for p in dest.iterdir()) == [config.DATASET_FOLDER, config.MANIFEST_NAME]
    assert data.is_complete(dest)


def test_dataset_hash_changes_when_one_byte_changes(synthetic_source, tmp_path):
    source = tmp_path / "copy"
    shutil.copytree(synthetic_source, source)
    before = data.ingest(source, tmp_path / "a", progress=False)["dataset_sha256"]
    victim = next(source.rglob("*.jpeg"))
    Image.new("RGB", (64, 64), (1, 2, 3)).save(victim)
    assert data.ingest(source, tmp_path / "b", progress=False)["dataset_sha256"] != before


# --------------------------------------------------------------------------- the Kaggle archive's quirks


@pytest.fixture()
def kaggle_like_zip(synthetic_source, tmp_path):
    """A zip laid out like the real Kaggle archive, with its quirks and two bad images."""
    path = tmp_path / "chest-xray-pneumonia.zip"
    good = sorted(synthetic_source.rglob("*.jpeg"))
    with zipfile.ZipFile(path, "w") as archive:
        for file in good:
            relative = file.relative_to(synthetic_source).as_posix()
            archive.write(file, f"chest_xray/{relative}")
            archive.write(file, f"chest_xray/chest_xray/{relative}")  # the nested duplicate tree
            archive.writestr(f"__MACOSX/chest_xray/{Path(relative).parent}/._{file.name}", b"\x00\x05\x16\x07")
        archive.writestr("chest_xray/val/NORMAL/NORMAL2-IM-9001-0001.jpeg", _jpeg_bytes())
        archive.writestr("chest_xray/val/PNEUMONIA/person9002_bacteria_1.jpeg", _jpeg_bytes())
        archive.writestr("chest_xray/train/NORMAL/IM-9999-0001.jpeg", _jpeg_bytes((64, 64))[:200])  # truncated
        archive.writestr("chest_xray/train/PNEUMONIA/person9999_virus_1.jpeg", b"")  # empty
        archive.writestr("chest_xray/train/.DS_Store", b"\x00\x00\x00\x01Bud1")
    return path, len(good)


def test_ingest_zip_handles_kaggle_quirks(kaggle_like_zip, tmp_path, capsys):
    archive, n_good = kaggle_like_zip
    manifest = data.ingest(archive, tmp_path / "raw", progress=False)
    assert manifest["total"] == n_good + 2  # the good images once, plus the two val images
    assert manifest["counts"]["val"] == {"NORMAL": 1, "PNEUMONIA": 1}
    assert {s["path"]: s["reason"].split(" (")[0] for s in manifest["skipped"]} == {
        "chest_xray/train/NORMAL/IM-9999-0001.jpeg": "corrupt or truncated image",
        "chest_xray/train/PNEUMONIA/person9999_virus_1.jpeg": "empty file",
    }
    ignored = {reason: info["count"] for reason, info in manifest["ignored"].items()}
    assert ignored["nested duplicate tree chest_xray/chest_xray"] == n_good
    assert ignored["macOS resource forks (__MACOSX, ._*)"] == n_good
    assert ignored["system files (.DS_Store ...)"] == 1
    printed = capsys.readouterr()
    assert "skipped chest_xray/train/NORMAL/IM-9999-0001.jpeg: corrupt or truncated" in printed.out + printed.err
    assert "skipped chest_xray/train/PNEUMONIA/person9999_virus_1.jpeg: empty file" in printed.out + printed.err
    tree = config.dataset_dir(tmp_path / "raw")
    assert not list(tree.rglob("._*")) and not (tree / "chest_xray").exists()
    assert not (tree / "train/NORMAL/IM-9999-0001.jpeg").exists()


def test_ingest_refuses_a_folder_that_is_not_the_dataset(tmp_path):
    (tmp_path / "photos").mkdir()
    (tmp_path / "photos" / "cat.jpeg").write_bytes(_jpeg_bytes())
    with pytest.raises(DataError, match="no images in"):
        data.ingest(tmp_path / "photos", tmp_path / "raw", progress=False)
    with pytest.raises(DataError, match="does not exist"):
        data.ingest(tmp_path / "missing", tmp_path / "raw", progress=False)


# --------------------------------------------------------------------------- atomicity


def test_a_failed_ingest_leaves_the_previous_copy_intact(synthetic_source, tmp_path, monkeypatch):
    dest = tmp_path / "raw"
    before = data.ingest(synthetic_source, dest, progress=False)
    calls = {"n": 0}
    real = data.inspect_image

    def failing(payload):
        calls["n"] += 1
        if calls["n"] == 10:
            raise RuntimeError("disk on fire")
        return real(payload)

    monkeypatch.setattr(data, "inspect_image", failing)
    with pytest.raises(RuntimeError, match="disk on fire"):
        data.ingest(synthetic_source, dest, progress=False)
    assert data.load_manifest(dest) == before
    assert data.is_complete(dest)
    assert sorted(p.name for p in dest.iterdir()) == [config.DATASET_FOLDER, config.MANIFEST_NAME]


def test_a_failed_first_ingest_leaves_nothing_half_written(synthetic_source, tmp_path, monkeypatch):
    monkeypatch.setattr(data, "inspect_image", lambda payload: 1 / 0)
    with pytest.raises(ZeroDivisionError):
        data.ingest(synthetic_source, tmp_path / "raw", progress=False)
    assert list((tmp_path / "raw").iterdir()) == []


# --------------------------------------------------------------------------- fetch: source order and Kaggle


@pytest.fixture()
def no_kaggle_credentials(monkeypatch, tmp_path):
    for name in ("KAGGLE_API_TOKEN", "KAGGLE_USERNAME", "KAGGLE_KEY", "KAGGLE_CONFIG_DIR"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "home" / ".config"))


def test_fetch_uses_an_existing_complete_copy_before_kaggle(synthetic_source, tmp_path, monkeypatch):
    dest = tmp_path / "raw"
    first = data.fetch(synthetic_source, dest, progress=False)
    monkeypatch.setattr(data, "download_from_kaggle", lambda *a, **k: pytest.fail("Kaggle must not be called"))
    assert data.fetch(None, dest) == first


def test_fetch_without_credentials_fails_with_one_clear_line(no_kaggle_credentials, tmp_path):
    with pytest.raises(DataError) as caught:
        data.fetch(None, tmp_path / "raw")
    message = str(caught.value)
    assert "\n" not in message
    for hint in ("kaggle.json", "KAGGLE_USERNAME", "KAGGLE_KEY", "KAGGLE_API_TOKEN", "--source"):
        assert hint in message


def test_kaggle_offline_fails_fast(no_kaggle_credentials, monkeypatch, tmp_path):
    monkeypatch.setenv("KAGGLE_USERNAME", "someone")
    monkeypatch.setenv("KAGGLE_KEY", "0" * 32)
    with pytest.raises(DataError, match=r"cannot reach .*--source PATH"):
        data.download_from_kaggle(tmp_path / "download", host="kaggle.invalid")


def test_kaggle_credentials_are_found_in_kaggle_json(no_kaggle_credentials, tmp_path):
    folder = tmp_path / "home" / ".kaggle"
    folder.mkdir(parents=True)
    (folder / "kaggle.json").write_text('{"username": "u", "key": "k"}')
    assert data.kaggle_credentials() == str(folder / "kaggle.json")


def test_cli_reports_errors_in_one_line(tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", "pneumonia.cli", "data", "fetch", "--source", str(tmp_path / "nope")],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 1
    assert result.stderr.strip().count("\n") == 0 and result.stderr.startswith("error: ")
    assert "Traceback" not in result.stderr
