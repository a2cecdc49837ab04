"""The ``pneumonia`` command line.

    pneumonia data fetch [--source PATH] [--dest DIR]
    pneumonia data split [--data DIR] [--out FILE] [--val-fraction F] [--seed S]
    pneumonia data synthetic DEST [--seed S] [--image-size N]
    pneumonia reproduce [--profile full|smoke] [--data PATH] [--vgg16-weights imagenet|PATH|none] [--only NN ...]
                        [--prepare-only DIR]
    pneumonia bench [--profile full|smoke]
    pneumonia app [--port N]
    pneumonia predict PATH... [--model models/cnn.keras] [--ensemble] [--format table|json|csv] [--heatmaps DIR]

Errors the user can fix print one line (``error: ...``) and exit 1; usage errors exit 2.
``predict`` exits 0 when every image was predicted, 1 when some were refused, 2 on usage errors.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from pneumonia import config


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="pneumonia", description="Pneumonia detection in chest X-rays.")
    commands = parser.add_subparsers(dest="command", required=True)

    data = commands.add_parser("data", help="get, verify and split the dataset")
    data_commands = data.add_subparsers(dest="data_command", required=True)

    fetch = data_commands.add_parser("fetch", help="copy and verify the dataset (folder, zip or Kaggle)")
    fetch.add_argument("--source", type=Path, help="a folder or .zip laid out like the Kaggle archive")
    fetch.add_argument("--dest", type=Path, default=None, help=f"where to put it (default {config.RAW_DIR})")
    fetch.add_argument("--no-progress", action="store_true", help="no progress bar")

    split = data_commands.add_parser("split", help="carve a patient-grouped validation split from train")
    split.add_argument("--data", type=Path, default=None, help=f"fetched data folder (default {config.RAW_DIR})")
    split.add_argument("--out", type=Path, default=None, help=f"split table (default {config.SPLITS_CSV})")
    split.add_argument("--val-fraction", type=float, default=0.12, help="share of train patients (default 0.12)")
    split.add_argument("--seed", type=int, default=42)

    synthetic = data_commands.add_parser("synthetic", help="write a small synthetic dataset (for tests and smoke runs)")
    synthetic.add_argument("dest", type=Path)
    synthetic.add_argument("--seed", type=int, default=0)
    synthetic.add_argument("--image-size", type=int, default=64)

    reproduce = commands.add_parser("reproduce", help="run the numbered notebooks in order with papermill")
    reproduce.add_argument("--profile", choices=["full", "smoke"], default="full")
    reproduce.add_argument("--data", type=Path, default=None, help="an existing copy of the dataset (folder or zip)")
    reproduce.add_argument("--vgg16-weights", default=None, metavar="imagenet|PATH|none",
                           help="VGG16 base weights for notebook 05 (default: the profile's, imagenet in full)")
    reproduce.add_argument("--only", nargs="+", default=None, help="notebook numbers or stems to run, e.g. 01 02")
    reproduce.add_argument("--prepare-only", type=Path, default=None, metavar="DIR",
                           help="write the parameterised notebooks to DIR without running them (for nbval)")

    bench = commands.add_parser("bench", help="time the input pipeline against the model's compute")
    bench.add_argument("--profile", choices=["full", "smoke"], default="full")

    experiment = commands.add_parser(
        "experiment", help="train a variant of notebook 04's CNN and judge it on validation (reports/experiments/)")
    experiment.add_argument("tag", help="the run's name; 'published' is notebook 04's configuration as it is")
    # "extend": a repeated --set adds to the settings; "store" would keep only the last one's.
    experiment.add_argument("--set", dest="settings", nargs="+", action="extend", default=[], metavar="KEY=VALUE",
                            help="change TrainConfig settings, e.g. epochs=40 'augmentation={zoom: 0.3}'")
    experiment.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    experiment.add_argument("--profile", choices=["full", "smoke"], default="full")
    experiment.add_argument("--against", nargs="+", default=["published"],
                            type=lambda text: None if text == "none" else text,
                            help="the recorded run to compare with (same seeds), or several pooled (e.g. published "
                                 "published-seeds345 for seeds 0-5); 'none' compares with nothing")
    experiment.add_argument("--models", nargs="+", default=None, metavar="TAG",
                            help="train nothing: score these recorded runs' seeds as they were trained "
                                 "(models/experiments/TAG/), e.g. with --test-time")
    experiment.add_argument("--test-time", nargs="+", action="extend", default=[], metavar="KEY=VALUE",
                            help="change how the seeds predict: views=N for test-time augmentation, with rotation, "
                                 "shift and zoom ranges (default: the training augmentation's), and smooth=N to "
                                 "average each N x N window first, e.g. views=8 zoom=0, or smooth=2; adapt=1 "
                                 "re-estimates BatchNorm statistics on the images scored together")
    experiment.add_argument("--rule", choices=["third", "fourth", "fifth", "sixth"], default="third",
                            help="notebook 04's rule for the verdict: the third (gain above twice its spread), the "
                                 "fourth (a gain in every one of six or more seeds), declared for variants after (u), "
                                 "the fifth (the map's balanced accuracy at each seed's threshold), declared "
                                 "before (w), or the sixth (the counter-cue validation images' balanced accuracy), "
                                 "declared before (au)")
    experiment.add_argument("--judge", action="store_true",
                            help="train nothing: judge the recorded run again by the current rule")

    predict = commands.add_parser("predict", help="predict PNEUMONIA / NORMAL for image files or folders")
    predict.add_argument("paths", nargs="+", type=Path, metavar="PATH")
    predict.add_argument("--model", type=Path, default=None, help=f"default {config.MODELS_DIR / 'cnn.keras'}")
    predict.add_argument("--ensemble", action="store_true",
                         help="average every seed of the published model, at the ensemble's validation threshold")
    predict.add_argument("--format", choices=["table", "json", "csv"], default="table")
    predict.add_argument("--heatmaps", type=Path, default=None, help="write a Grad-CAM overlay per image here")

    app = commands.add_parser("app", help="start the upload app (Streamlit) on localhost")
    app.add_argument("--port", type=int, default=8501)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.command in ("predict", "bench", "reproduce", "experiment"):
        from pneumonia._quiet import import_tensorflow

        import_tensorflow()
    # Imported here so that `pneumonia --help` stays instant.
    from pneumonia.data import DataError
    from pneumonia.reproduce import NotebookFailed

    try:
        if args.command == "data" and args.data_command == "fetch":
            from pneumonia.data import fetch

            fetch(args.source, args.dest, progress=not args.no_progress)
        elif args.command == "data" and args.data_command == "split":
            from pneumonia.split import split_data

            split_data(args.data, args.out, val_fraction=args.val_fraction, seed=args.seed)
        elif args.command == "data" and args.data_command == "synthetic":
            from pneumonia.synthetic import make_synthetic_dataset

            print(f"wrote {make_synthetic_dataset(args.dest, image_size=args.image_size, seed=args.seed)}")
        elif args.command == "reproduce":
            from pneumonia.reproduce import prepare, run

            if args.prepare_only:
                written = prepare(args.prepare_only, profile=args.profile, data=args.data, only=args.only,
                                  vgg16_weights=args.vgg16_weights)
                print(f"wrote {len(written)} notebooks with {args.profile} parameters to {args.prepare_only}")
            else:
                run(profile=args.profile, data=args.data, only=args.only, vgg16_weights=args.vgg16_weights)
        elif args.command == "predict":
            from pneumonia import predict

            try:
                return predict.main(args.paths, args.model, args.format, args.heatmaps, args.ensemble)
            except predict.PredictError as error:
                print(f"error: {error}", file=sys.stderr)
                return 2
        elif args.command == "app":
            import os

            from pneumonia import app as app_module

            command = [sys.executable, "-m", "streamlit", "run", app_module.__file__, "--server.headless", "true",
                       "--server.address", "localhost", "--server.port", str(args.port),
                       "--browser.gatherUsageStats", "false"]
            # Become the server rather than wait for it, so that a signal to this process (a service manager,
            # a test's terminate) reaches the server instead of leaving it running, orphaned.
            os.execv(sys.executable, command)
        elif args.command == "experiment":
            from pneumonia import experiment

            if args.judge:
                print(experiment.describe(experiment.judge(args.tag, args.against, args.rule)))
            else:
                settings = experiment.parse_settings(args.settings)
                print(experiment.describe(experiment.run(args.tag, settings, args.seeds, args.profile,
                                                         against=args.against, models_from=args.models,
                                                         test_time=args.test_time, rule=args.rule)))
        elif args.command == "bench":
            from pneumonia import bench

            bench.record(bench.run_benchmarks(args.profile))
    except (DataError, NotebookFailed, ValueError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
