"""Fit face heads for a trained model and attach them to its run: ``facefair face-heads RUN`` and
``train.face_heads`` (docs/transfer.md).

The heads are fitted on the run's own train split and chosen on its val split, never on the test
split or another dataset; the run's test report is then recomputed with them, and the CNN-only
figures are kept beside it (``eval-test-cnn-only/`` and ``report.json``'s ``cnn_only``).
"""

from __future__ import annotations

import shutil
import time
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Optional, Sequence

import numpy as np

from facefair.run import Run

if TYPE_CHECKING:
    import pandas as pd

#: The blend weights of the transfer recipe: race from the face head alone (the CNN's race reads
#: capture, not faces), gender averaged (as good as the face head alone on other faces, and no
#: loss in distribution where the face head alone loses a point; docs/transfer.md).
RECIPE_WEIGHTS = {"gender": 0.5, "race": 1.0}


def check_weights(weights: dict[str, float], task_names: Sequence[str]) -> dict[str, float]:
    """``weights`` as floats in (0, 1], each naming one of the model's classification tasks."""
    checked = {}
    for name, value in weights.items():
        if name not in task_names:
            raise ValueError(f"face heads: {name!r} is not one of the model's tasks ({', '.join(task_names)})")
        try:
            value = float(value)
        except (TypeError, ValueError):
            raise ValueError(f"face heads: weight of {name} must be a number in (0, 1], got {value!r}") from None
        if not 0 < value <= 1:
            raise ValueError(f"face heads: weight of {name} must be in (0, 1] (1: the face head alone), got {value}")
        checked[name] = value
    return checked


def check_before_training(weights: dict[str, float], tasks) -> None:
    """``train.face_heads`` checked before the epochs: weights, classification tasks only, and
    dlib with its model files present (a missing piece would otherwise surface after training)."""
    check_weights(weights, [t.name for t in tasks])
    _classification_only([t for t in tasks if t.name in weights])
    from facefair.models.face_features import model_files

    model_files()


def _classification_only(tasks) -> None:
    not_classes = [t.name for t in tasks if t.kind != "classification"]
    if not_classes:
        raise ValueError(f"face heads cover classification tasks only, not {', '.join(not_classes)}: identity "
                         f"features discard much of what ages a face (MAE 7.8 years against the CNN's 4.5)")


def fit_for_run(run: Run, tasks, weights: dict[str, float], cache_dir: Optional[str],
                log: Callable[[str], None] = print, progress: bool = True, seed: int = 0,
                splits: "Optional[dict[str, pd.DataFrame]]" = None):
    """Face heads for ``tasks`` (the model's task specs) fitted on RUN's train split, each chosen
    on its val split, saved to the run folder.  ``splits``: those two splits' rows when the caller
    has them (:meth:`Run.split_frames`).  Returns :class:`FaceHeads`."""
    from facefair.baselines.face_embedding import EmbeddingConfig, fit_heads
    from facefair.models.face_features import face_descriptors

    wanted = [t for t in tasks if t.name in weights]
    if not wanted:
        raise ValueError("face heads: no task to fit (give e.g. race=1 gender=0.5)")
    _classification_only(wanted)
    started = time.perf_counter()
    splits = splits or run.split_frames(("train", "val"))
    train, val = splits["train"], splits["val"]
    log(f"face heads: describing {len(train)} train and {len(val)} val faces (dlib; "
        f"{'cached in ' + str(cache_dir) if cache_dir else 'not cached'})")
    described = face_descriptors(train["path"].tolist() + val["path"].tolist(), cache_dir, progress=progress)
    for problem in list(described.bad.values())[:3]:
        log(f"  {problem}")
    vectors_train, vectors_val = described.vectors[:len(train)], described.vectors[len(train):]
    heads, info = fit_heads(train, vectors_train, val, vectors_val, None,
                            EmbeddingConfig(tasks=tuple(t.name for t in wanted), max_val=None, seed=seed),
                            log, tasks=wanted, weights=weights)
    heads.info = {**info, "weights": weights, "unreadable": len(described.bad),
                  "fit_seconds": round(time.perf_counter() - started, 1)}
    heads.save(run.face_heads_path)
    log(f"face heads: {heads.describe()} -> {run.face_heads_path}")
    return heads


def fit_at_end_of_training(trainer, test_outputs: dict) -> Optional[dict]:
    """``train.face_heads``: fit them on the train split (chosen on val) and attach them to the best
    model before the test evaluation; the CNN-only test figures (from ``test_outputs``, the CNN's
    outputs on the test split) go in the report beside them."""
    from facefair.evaluate.report import headline, print_headline, score_outputs, write_evaluation

    t = trainer.config.train
    weights = check_weights(t.face_heads, [task.name for task in trainer.tasks])
    cnn_predictions, cnn_metrics = score_outputs(trainer.model, trainer.data.splits["test"].frame, test_outputs)
    heads, run = None, Run(trainer.out_dir)
    if trainer.dist.is_main:
        heads = fit_for_run(run, trainer.tasks, weights, trainer.config.data.cache_dir, progress=t.progress,
                            seed=t.seed)
        write_evaluation(run.eval_dir("test-cnn-only"), cnn_predictions, cnn_metrics,
                         {"model": "the CNN alone, before the face heads"})
        print_headline("test (CNN alone)", cnn_metrics)
    trainer.dist.barrier()
    if heads is None:  # the other DDP ranks read what the main one fitted
        from facefair.models.face_heads import FaceHeads
        heads = FaceHeads.load(run.face_heads_path, trainer.tasks)
    trainer.model.face_heads = heads
    return {**heads.info, "heads": heads.describe(), "cnn_only": {"headline": headline(cnn_metrics)}}


def attach_to_run(run_dir: str, weights: dict[str, float], *, cache_dir: Optional[str] = None,
                  settings=None, progress: bool = True, seed: int = 0, log: Callable[[str], None] = print) -> dict:
    """``facefair face-heads RUN``: fit, attach, and recompute the run's test report with them;
    the CNN-only test predictions move to ``RUN/eval-test-cnn-only/``."""
    from facefair.evaluate.report import headline, print_headline, score_outputs, split_outputs, write_evaluation
    from facefair.data.prepare import prepare_data
    from facefair.inference.engine import model_device
    from facefair.inference.settings import DEFAULTS
    from facefair.inference.sources import load_model

    run = Run(run_dir)
    run.require(run.config_path, run.splits_path)
    config = run.config()
    cache_dir = cache_dir if cache_dir is not None else config.data.cache_dir
    # The test report is recomputed as training computed it (its TTA and precision), so the only
    # change from the CNN-only report is the heads.
    settings = settings or DEFAULTS.with_options(tta=config.train.tta, bf16=config.train.bf16)
    model = load_model(run.model_source(), settings)
    weights = check_weights(weights, [t.name for t in model.tasks])
    # One listing of the dataset for the heads' rows and the reuse check (seconds on 20k files).
    splits = run.split_frames(("train", "val", "test"), config)
    heads = fit_for_run(run, model.tasks, weights, cache_dir, log, progress, seed, splits)
    old_report = run.report()
    kept = run.eval_dir("test-cnn-only")
    if run.predictions_path.is_file() and not (kept / run.predictions_path.name).is_file() \
            and not old_report.get("face_heads"):
        kept.mkdir(parents=True, exist_ok=True)
        shutil.copy2(run.predictions_path, kept / run.predictions_path.name)
        if run.report_path.is_file():
            shutil.copy2(run.report_path, kept / run.report_path.name)
    model.face_heads = heads
    frame, outputs = _saved_cnn_outputs(splits["test"], old_report, kept / run.predictions_path.name, model.tasks)
    if outputs is None:
        log("  the CNN's saved test predictions do not cover the test split: predicting it again")
        config.data.splits_file = str(run.splits_path)
        test = prepare_data(config.data, [t.name for t in model.tasks], model.config.resolved_size(),
                            settings.batch_size, seed=config.train.seed, splits_wanted=("test",)).splits["test"]
        frame = test.frame
        outputs, errors = split_outputs(model, test, model_device(model), tta=settings.tta, amp=config.train.amp,
                                        bf16=settings.bf16)
        unreadable = len(errors)
    else:  # the very outputs the CNN-only report holds, so the two reports differ by the heads alone
        unreadable = int(np.isnan(np.column_stack(list(outputs.values()))).any(axis=1).sum())
    predictions, metrics = score_outputs(model, frame, outputs, cache_dir)
    cnn_only = (old_report.get("face_heads") or {}).get("cnn_only") or {
        "headline": old_report.get("headline"), "predictions": str(kept / run.predictions_path.name)}
    extra = {k: v for k, v in old_report.items() if k not in ("metrics", "headline")}
    extra["face_heads"] = {**heads.info, "heads": heads.describe(), "cnn_only": cnn_only}
    report = write_evaluation(run.folder, predictions, metrics, extra)
    print_headline("test (CNN + face heads)", metrics)
    if cnn_only.get("headline"):
        changed = {k: (cnn_only["headline"].get(k), v) for k, v in headline(metrics).items()}
        log("  was (CNN alone): " + ", ".join(f"{k} {a:.4f} -> {b:.4f}" for k, (a, b) in changed.items()
                                               if a is not None))
    if unreadable:
        log(f"  {unreadable} test images could not be read: they have no prediction")
    stale = [p for p in (run.audit_json_path, run.transfer_dir) if p.exists()]
    if stale:  # written from the CNN's predictions: the card would quote them as this model's
        log(f"  {', '.join(str(p) for p in stale)} describe the CNN alone: run `facefair audit {run.folder}` and "
            f"`facefair evaluate {run.folder} --data ...` again")
    return report


def _saved_cnn_outputs(frame: "pd.DataFrame", report: dict, path: Path,
                       tasks) -> tuple[Optional["pd.DataFrame"], Optional[dict]]:
    """The test split's rows (``frame``) and the CNN's outputs for them, read from its saved test
    table; (None, None) unless that table holds every task for the rows training scored (``report``'s
    ``split_sizes``: the test split less the images it could not read), in the split's order.
    Reading them needs neither the images nor the network."""
    import pandas as pd

    from facefair.table import model_outputs, read_predictions

    if not path.is_file():
        return None, None
    table = read_predictions(path)
    scored = (report.get("run") or {}).get("split_sizes", {}).get("test", len(frame))
    index = pd.Index(frame["path"].astype(str))
    if not index.is_unique:  # a path listed twice cannot be matched row for row
        return None, None
    rows = index.get_indexer(table["path"].astype(str))
    if len(table) != scored or (rows < 0).any() or (np.diff(rows) <= 0).any():
        return None, None
    outputs = model_outputs(table, tasks)
    return (frame.iloc[rows].reset_index(drop=True), outputs) if outputs else (None, None)


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "face-heads", help="attach face heads (dlib face descriptors) to a trained run, so it transfers",
        description="Fit one classifier per task on dlib's face-recognition descriptors of RUN's train split "
                    "(chosen on its val split) and attach them to RUN: every command that loads RUN then "
                    "outputs WEIGHT x face head + (1 - WEIGHT) x CNN for those tasks. The test report is "
                    "recomputed; the CNN-only one is kept in RUN/eval-test-cnn-only/. See docs/transfer.md.")
    parser.add_argument("run", help="a finished training run folder")
    parser.add_argument("--weights", nargs="+", metavar="TASK=WEIGHT",
                        default=[f"{k}={v:g}" for k, v in RECIPE_WEIGHTS.items()],
                        help="blend weight per task, in (0, 1]; 1: the face head alone (default: %(default)s)")
    parser.add_argument("--cache-dir", help="descriptor cache (default: the run's data.cache_dir)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the MLP candidates")
    parser.add_argument("--no-progress", dest="progress", action="store_false", help="no progress bars")
    parser.set_defaults(func=_command)


def _command(args) -> int:
    from facefair.config import parse_pairs

    attach_to_run(args.run, parse_pairs("--weights", args.weights), cache_dir=args.cache_dir,
                  progress=args.progress, seed=args.seed)
    return 0
