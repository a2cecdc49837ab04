"""Benchmark records: every time says which CPU measured it."""

from __future__ import annotations

import json

from pneumonia import bench, config, train


def test_machine_names_the_cpu_and_its_vector_extensions(tmp_path, monkeypatch):
    machine = train.machine()
    assert machine["cpus"] >= 1 and machine["cpu_model"]
    assert set(machine.get("vector_extensions", [])) <= set(train.VECTOR_EXTENSIONS)
    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text("processor\t: 0\nmodel name\t: Test CPU 9000\nflags\t\t: fpu sse2 avx2 fma avx512f avx512_bf16\n")
    monkeypatch.setattr(train, "Path", lambda path: cpuinfo if path == "/proc/cpuinfo" else path)
    machine = train.machine()
    assert machine["cpu_model"] == "Test CPU 9000"
    assert machine["vector_extensions"] == ["avx2", "fma", "avx512f", "avx512_bf16"]


def test_record_says_which_machine_measured_the_bench_and_which_the_full_run(tmp_path, monkeypatch):
    monkeypatch.setattr(config, "REPORTS_DIR", tmp_path)
    (tmp_path / "benchmarks.json").write_text(json.dumps({"reproduce_full_s": 3000.0, "reproduce_machine": {
        "cpus": 2, "cpu_model": "Fast CPU", "vector_extensions": ["avx2", "avx512f"]}}))
    bench.record({"cnn_epoch_s": 9.0, "compute_epoch_s": 8.5,
                  "machine": {"cpus": 2, "cpu_model": "Slow CPU", "vector_extensions": ["avx2"], "tensorflow": "2.21.0"}})
    text = (tmp_path / "benchmarks.md").read_text()
    assert "`make bench` on 2 CPU cores (Slow CPU; avx2)" in text
    assert "`make reproduce`, on 2 CPU cores (Fast CPU; avx2, avx512f)" in text
    assert "| `reproduce_full_s` | 3000.0 |" in text and "reproduce_machine" not in text
    recorded = json.loads((tmp_path / "benchmarks.json").read_text())
    assert recorded["reproduce_machine"]["cpu_model"] == "Fast CPU" and recorded["machine"]["cpu_model"] == "Slow CPU"
    assert recorded["goals"]["cnn_epoch_s <= 1.15 x compute_epoch_s"] is True


def test_numbers_of_the_full_run_that_are_missing_are_named_and_the_earlier_ones_kept(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(config, "REPORTS_DIR", tmp_path)
    monkeypatch.setattr(config, "METRICS_DIR", tmp_path / "metrics")
    monkeypatch.setattr(config, "MODELS_DIR", tmp_path / "models")
    (tmp_path / "benchmarks.json").write_text(json.dumps({"cnn_train_s": 250.0, "predict_p50_ms": 14.0}))

    numbers = bench.full_run_numbers()
    assert set(numbers["not_measured_this_run"]) == {"cnn_train_s", "vgg16_train_s", "predict_p50_ms",
                                                     "predict_batch_images_per_s"}
    assert not {"cnn_train_s", "vgg16_train_s", "predict_p50_ms"} & set(numbers)
    printed = capsys.readouterr().out.strip().splitlines()
    assert len(printed) == 3 and all(line.startswith("not measured: ") for line in printed)
    assert any("predict_p50_ms, predict_batch_images_per_s: no models/cnn.keras" in line for line in printed)
    bench.record({"cnn_epoch_s": 9.0, **numbers})
    recorded = json.loads((tmp_path / "benchmarks.json").read_text())
    assert recorded["cnn_train_s"] == 250.0 and recorded["predict_p50_ms"] == 14.0
    assert "| `not_measured_this_run` | cnn_train_s: no cnn training time" in (tmp_path / "benchmarks.md").read_text()

    (tmp_path / "metrics").mkdir()
    (tmp_path / "metrics" / "04-cnn.json").write_text(json.dumps(
        {"models": {"cnn": {"per_seed": [{"seed": 0, "train_seconds": 261.5}, {"seed": 1, "train_seconds": 240.0}]}}}))
    (tmp_path / "metrics" / "05-vgg16.json").write_text(json.dumps({"vgg16_train_s": 800.0}))
    numbers = bench.full_run_numbers()
    assert numbers["cnn_train_s"] == 261.5 and numbers["vgg16_train_s"] == 800.0
    assert set(numbers["not_measured_this_run"]) == {"predict_p50_ms", "predict_batch_images_per_s"}
    bench.record(numbers)
    recorded = json.loads((tmp_path / "benchmarks.json").read_text())
    assert recorded["cnn_train_s"] == 261.5 and recorded["predict_p50_ms"] == 14.0


def test_the_quality_goal_is_read_from_the_test_scores_and_judged_beside_the_speed_goals(tmp_path, monkeypatch):
    monkeypatch.setattr(config, "REPORTS_DIR", tmp_path)
    bench.record({"cnn_epoch_s": 9.0})
    recorded = json.loads((tmp_path / "benchmarks.json").read_text())
    assert recorded["goals"]["cnn_test_specificity >= 0.9"] is None  # notebook 06 has not scored the test split

    test = {"accuracy": 0.9183, "accuracy_std": 0.007, "roc_auc": 0.9752, "roc_auc_std": 0.0025,
            "sensitivity": 0.9658, "sensitivity_std": 0.0059, "specificity": 0.839, "specificity_std": 0.0243}
    (tmp_path / "metrics.json").write_text(json.dumps({"cnn": {"test": test}, "cnn_smote": {"test": {"accuracy": 0.99}}}))
    bench.record({})
    recorded = json.loads((tmp_path / "benchmarks.json").read_text())
    assert recorded["cnn_test_specificity"] == 0.839 and recorded["cnn_test_specificity_std"] == 0.0243
    assert recorded["cnn_epoch_s"] == 9.0
    met = {goal: value for goal, value in recorded["goals"].items() if goal.startswith("cnn_test_")}
    assert met == {"cnn_test_accuracy >= 0.93": False, "cnn_test_roc_auc >= 0.98": False,
                   "cnn_test_sensitivity >= 0.9": True, "cnn_test_specificity >= 0.9": False}
    text = (tmp_path / "benchmarks.md").read_text()
    assert "| cnn_test_specificity >= 0.9 | no |" in text and "| `cnn_test_accuracy` | 0.9183 |" in text

    test.update(accuracy=0.95, roc_auc=0.985, specificity=0.92)
    (tmp_path / "metrics.json").write_text(json.dumps({"cnn": {"test": test}}))
    bench.record({})
    recorded = json.loads((tmp_path / "benchmarks.json").read_text())
    assert all(value for goal, value in recorded["goals"].items() if goal.startswith("cnn_test_"))
