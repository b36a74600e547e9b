"""``facefair predict``: a trained model over new images -> OUT/predictions.csv, and OUT/predict.json
saying how it was made.

Cropped faces (a folder, a CSV with an image column, or one image) are classified as they are;
with ``--detect BACKEND`` the same sources are raw photos, and every face found is aligned
FairFace's way first (one row per face; photos without a face go to OUT/no_face.csv).  Every
other option (``--tta``, ``--bf16``, ``--thresholds``, ``--group-column``, ``--logit-adjust``, ``--image-root``,
``--batch-size``, ``--device``) means the same in both modes.
"""

from __future__ import annotations

import json
import sys
import time
from dataclasses import dataclass, fields
from pathlib import Path
from typing import TYPE_CHECKING, Optional

from facefair.inference.settings import DEFAULTS, InferenceSettings
from facefair.run import PREDICTIONS

if TYPE_CHECKING:
    import pandas as pd

    from facefair.mitigate.thresholds import GroupThresholds
    from facefair.models.multitask import MultiTaskModel

PREDICTIONS_NAME = PREDICTIONS
NO_FACE_NAME = "no_face.csv"
FRAMING_NAME = "framing.json"
#: What produced OUT/predictions.csv: the model, the source, every inference setting and the counts.
RECORD_NAME = "predict.json"


@dataclass
class PredictConfig:
    checkpoint: str
    source: str
    out: str = "predictions"                 # folder: predictions.csv (+ no_face.csv with detect)
    image_root: Optional[str] = None         # a CSV source's paths are relative to this
    # Every inference setting defaults to facefair.inference.DEFAULTS, as in serve, evaluate and the API.
    device: str = DEFAULTS.device
    batch_size: int = DEFAULTS.batch_size
    tta: bool = DEFAULTS.tta
    bf16: Optional[bool] = DEFAULTS.bf16     # None: as the model was trained, where the CPU computes bf16 natively
    adapt_bn: bool = DEFAULTS.adapt_bn       # re-estimate BatchNorm statistics over these faces first
    thresholds: Optional[str] = None         # thresholds.json from `facefair mitigate thresholds`
    group_column: Optional[str] = None       # column with each face's group for thresholds
    logit_adjust: Optional[str] = None       # adjustment.json from `facefair mitigate logit-adjust`
    decode_workers: Optional[int] = None     # image-decoding processes (None: one per core on a GPU, none on a CPU)
    trust_checkpoint: bool = False
    progress: bool = True
    layout: Optional[str] = None             # label folders: the attribute of each level (default: detected)
    label_map: tuple[str, ...] = ()          # YAML files or ATTRIBUTE:RAW=LABEL for other spellings
    overwrite: bool = False                  # replace an existing OUT/predictions.csv
    # raw photos only
    detect: Optional[str] = None             # None: the images are already cropped faces
    detect_workers: int = 1                  # detector processes (photos are spread over them)
    min_face: int = DEFAULTS.min_face
    max_side: int = DEFAULTS.max_side        # photos shrunk to this longer side before detection
    chip_size: int = DEFAULTS.chip_size
    padding: Optional[float] = DEFAULTS.padding  # None: the padding the model's training chips were measured to have
    framing_check: bool = True               # cropped faces: warn when they are framed unlike the training chips
    save_chips: Optional[str] = None
    upsample: int = DEFAULTS.upsample
    threshold: Optional[float] = DEFAULTS.threshold
    model_dir: Optional[str] = DEFAULTS.model_dir

    #: options that only mean something for raw photos
    DETECT_ONLY = ("detect_workers", "min_face", "max_side", "chip_size", "padding", "save_chips", "upsample",
                   "threshold", "model_dir")

    def check(self) -> None:
        if self.detect is None:
            defaults = PredictConfig(self.checkpoint, self.source)
            given = [f"--{name.replace('_', '-')}" for name in self.DETECT_ONLY
                     if getattr(self, name) != getattr(defaults, name)]
            if given:
                raise ValueError(f"{', '.join(given)} only apply to raw photos: add --detect BACKEND")
        elif self.decode_workers is not None:
            raise ValueError("--decode-workers is for cropped faces; with --detect use --detect-workers")
        if self.batch_size < 1:
            raise ValueError(f"--batch-size must be at least 1, got {self.batch_size}")
        self.settings()  # bad values (a negative --max-side ...) are one-line errors before any work

    def settings(self) -> InferenceSettings:
        """The inference settings this command runs with."""
        return InferenceSettings.from_object(self)


def attach_truth(frame: "pd.DataFrame", model: "MultiTaskModel", config: PredictConfig) -> "pd.DataFrame":
    """The source's labels, where it has any (label folders, a UTKFace folder, a label CSV), read by
    the one dataset reader and put beside the predictions: ``race``/``gender``/``age_group`` and
    ``T_true`` per task, so the table can be audited as it is.  A source without labels (a flat folder
    of photos) is predicted without them, unless ``layout``/``label_map`` said it has some."""
    from facefair.data.readers import IMAGE_EXTENSIONS, read_dataset, restrict_race_scheme
    from facefair.labels import ATTRIBUTES, RACE_SCHEMES, shared_scheme

    source = Path(config.source)
    if source.suffix.lower() in IMAGE_EXTENSIONS:
        return frame
    try:
        table = read_dataset(source, image_root=config.image_root, layout=config.layout,
                             label_map=list(config.label_map))
    except (ValueError, FileNotFoundError):
        if config.layout or config.label_map:
            raise
        return frame  # no labels to keep: predicting unlabelled photos is the common case
    labels = table.frame
    if not any(labels[a].notna().any() for a in (*ATTRIBUTES, "age") if a in labels):
        return frame
    race_task = next((t for t in model.tasks if t.name == "race"), None)
    model_scheme = next((s for s, c in RACE_SCHEMES.items() if race_task and c == race_task.classes), None)
    compared_on = shared_scheme(table.race_scheme, model_scheme) if model_scheme else None
    if compared_on:
        labels = restrict_race_scheme(table, compared_on).frame
    import pandas as pd
    by_path = labels.set_index(labels["path"].map(lambda p: str(Path(p).resolve())))
    keys = frame["path"].map(lambda p: str(Path(p).resolve()))
    columns = {a: by_path[a].reindex(keys).to_numpy() for a in ATTRIBUTES if by_path[a].notna().any()}
    for task in model.tasks:
        if task.column in by_path and by_path[task.column].notna().any():
            if task.name == "race" and compared_on != model_scheme:
                continue  # a race5 face has no race7 truth; `facefair evaluate --data` compares on race5
            columns[f"{task.name}_true"] = by_path[task.column].reindex(keys).to_numpy()
    position = frame.columns.get_loc("path") + 1
    truth = pd.DataFrame(columns, index=frame.index)
    return pd.concat([frame.iloc[:, :position], truth, frame.iloc[:, position:]], axis=1)


def check_output(out: Path, checkpoint: str, overwrite: bool) -> None:
    """Refuse an output folder whose files would replace finished work: a run or model folder (its
    predictions.csv holds the labelled test split the audit reads), or an existing predictions
    table unless ``overwrite``."""
    from facefair.run import Run
    target = Run(out)
    model_folder = Path(checkpoint) if Path(checkpoint).is_dir() else Path(checkpoint).parent
    if out.is_dir() and (out.resolve() == model_folder.resolve() or target.is_training_run() or target.has_model()):
        raise ValueError(f"--out {out} is a run or model folder, whose own {PREDICTIONS_NAME} must not be replaced: "
                         f"give another folder (e.g. --out {out / 'predict'})")
    if target.predictions_path.exists() and not overwrite:
        raise ValueError(f"{target.predictions_path} exists: add --overwrite to replace it, or give another --out")


def group_column_for(rules: "GroupThresholds", group_column: Optional[str] = None) -> str:
    """The column that gives each new face its group: ``group_column`` when given; the column the
    thresholds were fitted on when that was already a prediction (``--attribute-column race_pred``);
    otherwise the model's prediction of the attribute (``race`` -> ``race_pred``), since new
    images come without demographic labels."""
    if group_column:
        return group_column
    return rules.attribute if rules.attribute.endswith("_pred") else f"{rules.attribute}_pred"


def _apply_thresholds(frame: "pd.DataFrame", config: PredictConfig) -> "pd.DataFrame":
    from facefair.mitigate.thresholds import GroupThresholds, apply_group_thresholds

    path = Path(config.thresholds)
    try:
        rules = GroupThresholds.from_json(path.read_text())
    except (ValueError, TypeError, KeyError) as error:
        raise ValueError(f"{path}: not a thresholds.json from `facefair mitigate thresholds` ({error})") from None
    rules.attribute = group_column_for(rules, config.group_column)
    if rules.attribute not in frame:
        raise ValueError(f"--thresholds {path}: the predictions have no {rules.attribute!r} column to give each face "
                         f"its group; name one with --group-column")
    return apply_group_thresholds(frame, rules)


def _apply_logit_adjust(frame: "pd.DataFrame", path: Path) -> "pd.DataFrame":
    from facefair.mitigate.logit_adjust import LogitAdjustment, apply_logit_adjustment
    try:
        adjustment = LogitAdjustment.from_json(path.read_text())
    except (ValueError, TypeError, KeyError) as error:
        raise ValueError(f"{path}: not an adjustment.json from `facefair mitigate logit-adjust` ({error})") from None
    return apply_logit_adjustment(frame, adjustment)


def _say_padding(model, config: PredictConfig) -> None:
    from facefair.inference.photos import chip_padding_for

    if config.padding is None:
        measured = (getattr(model, "framing", None) or {}).get("padding") is not None
        print(f"chips cut with padding {chip_padding_for(model, config.settings()):g} ("
              + ("measured on the training chips" if measured else "FairFace's: the model records no framing") + ")",
              flush=True)


def run_predict(config: PredictConfig) -> "pd.DataFrame":
    """Predict, write ``OUT/predictions.csv``, ``OUT/predict.json`` (and ``OUT/no_face.csv`` with
    ``detect``), print counts and speed; returns the predictions."""
    from facefair.align.framing import framing_report
    from facefair.inference.engine import precision_name
    from facefair.inference.sources import list_images, load_model, predict_paths
    from facefair.table import write_predictions

    config.check()
    settings = config.settings()
    paths = list_images(config.source, config.image_root)
    if not paths:
        raise ValueError(f"no images found in {config.source}")
    if config.thresholds is not None and not Path(config.thresholds).is_file():
        raise FileNotFoundError(f"--thresholds {config.thresholds} not found (thresholds.json from "
                                f"`facefair mitigate thresholds`)")
    if config.logit_adjust is not None and not Path(config.logit_adjust).is_file():
        raise FileNotFoundError(f"--logit-adjust {config.logit_adjust} not found (adjustment.json from "
                                f"`facefair mitigate logit-adjust`)")
    out = Path(config.out)
    check_output(out, config.checkpoint, config.overwrite)  # before the model loads: a refusal costs nothing
    model = load_model(config.checkpoint, settings, trust_checkpoint=config.trust_checkpoint)
    out.mkdir(parents=True, exist_ok=True)
    if config.detect is None and config.framing_check:
        report = framing_report(paths, getattr(model, "framing", None))
        if report is not None and report["warning"]:
            print(f"warning: {report['warning']}", file=sys.stderr, flush=True)
            (out / FRAMING_NAME).write_text(json.dumps(report, indent=1) + "\n")
    started = time.perf_counter()  # the speed printed is the prediction's, not the framing check's
    if config.detect is not None:
        _say_padding(model, config)
    predicted = predict_paths(model, paths, settings, detect=config.detect, detect_workers=config.detect_workers,
                              decode_workers=config.decode_workers, save_chips=config.save_chips,
                              progress=config.progress)
    frame, no_face = predicted.frame, predicted.no_face
    precision = precision_name(model, settings)
    seconds = max(time.perf_counter() - started, 1e-9)
    frame = attach_truth(frame, model, config)
    if config.thresholds is not None:
        frame = _apply_thresholds(frame, config)
    if config.logit_adjust is not None:
        frame = _apply_logit_adjust(frame, Path(config.logit_adjust))
    write_predictions(frame, out / PREDICTIONS_NAME)
    counts = _counts(frame, no_face, len(paths))
    _write_record(out, config, settings, precision, seconds, counts)
    if no_face is None:
        failed, predicted = counts["unreadable"], counts["predicted"]
        print(f"{predicted} images predicted in {seconds:.1f} s ({predicted / seconds:.0f} "
              f"img/s, {precision}"
              + (", BatchNorm statistics re-estimated on these faces (--adapt-bn)" if settings.adapt_bn else "")
              + f") -> {out / PREDICTIONS_NAME}"
              + (f"; {failed} unreadable (see the error column)" if failed else ""), flush=True)
        for _, row in frame[frame["error"].notna()].head(5).iterrows():  # the first few by name, here too
            print(f"  skipped {row['path']}: {row['error']}", flush=True)
        if predicted == 0:
            raise ValueError(f"no image in {config.source} could be read ({failed} unreadable; the error column of "
                             f"{out / PREDICTIONS_NAME} says why for each)")
    else:
        no_face.to_csv(out / NO_FACE_NAME, index=False)
        print(f"{len(paths)} photos, {len(frame)} faces in {seconds:.1f} s ({len(frame) / seconds:.1f} faces/s, "
              f"{len(paths) / seconds:.1f} photos/s, {precision}) -> {out / PREDICTIONS_NAME}; "
              f"{len(no_face)} without a face -> {out / NO_FACE_NAME}", flush=True)
        # Photos without a face are an answer (an empty table); photos that could not be read are not.
        if frame.empty and len(no_face) and no_face["reason"].astype(str).str.startswith("unreadable").all():
            raise ValueError(f"none of the {len(paths)} photos in {config.source} could be read (each is listed with "
                             f"its reason in {out / NO_FACE_NAME})")
    _say_notes(frame)
    return frame


def _counts(frame: "pd.DataFrame", no_face: "Optional[pd.DataFrame]", images: int) -> dict[str, int]:
    """What was predicted: images, predicted and unreadable (cropped faces), or photos, faces and
    photos without a face (``--detect``)."""
    if no_face is None:
        unreadable = int(frame["error"].notna().sum())
        return {"images": images, "predicted": images - unreadable, "unreadable": unreadable}
    return {"photos": images, "faces": len(frame), "without_face": len(no_face)}


def _write_record(out: Path, config: PredictConfig, settings: InferenceSettings, precision: str, seconds: float,
                  counts: dict[str, int]) -> Path:
    """``OUT/predict.json``: how the table beside it was made, so a reader of the CSV alone can tell
    an answer that depends on the set predicted with it (``adapt_bn``) or on post-processing
    (``thresholds``, ``logit_adjust``) from the model's own."""
    from dataclasses import asdict

    from facefair import __version__
    from facefair.runtime import write_text_atomic

    def resolved(value: Optional[str]) -> Optional[str]:
        return str(Path(value).resolve()) if value else None

    record = {
        "facefair": __version__,
        "written": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "model": resolved(config.checkpoint),
        "source": resolved(config.source),
        "image_root": resolved(config.image_root),
        "detect": config.detect,
        "settings": asdict(settings),
        "precision": precision,
        # The answers of an adapted run depend on which faces were predicted together.
        "adapted_on": (counts["faces"] if config.detect else counts["predicted"]) if settings.adapt_bn else None,
        "thresholds": resolved(config.thresholds),
        "group_column": config.group_column,
        "logit_adjust": resolved(config.logit_adjust),
        "counts": counts,
        "seconds": round(seconds, 2),
    }
    path = out / RECORD_NAME
    write_text_atomic(path, json.dumps(record, indent=1) + "\n")
    return path


def _say_notes(frame: "pd.DataFrame") -> None:
    """Count the rows predicted with a note (faces far smaller than the training chips) and name a few."""
    if "note" not in frame or not frame["note"].notna().any():
        return
    noted = frame[frame["note"].notna()]
    predicted = int(frame["error"].isna().sum()) if "error" in frame else len(frame)
    print(f"warning: {len(noted)} of {predicted} faces predicted are far smaller than the model's training chips; their "
          f"predictions are unreliable (see the note column)", file=sys.stderr, flush=True)
    for _, row in noted.head(5).iterrows():
        print(f"  {row['path']}: {row['note']}", file=sys.stderr, flush=True)


def config_from_args(args) -> PredictConfig:
    return PredictConfig(**{f.name: getattr(args, f.name) for f in fields(PredictConfig) if hasattr(args, f.name)})


def register(subparsers) -> None:

    from facefair.align.cli import add_detect_flags
    from facefair.flags import (add_adapt_bn_flag, add_bf16_flag, add_chip_flags, add_device_flag, add_layout_flags,
                                add_trust_flag, add_tta_flag)

    d = PredictConfig("", "")
    parser = subparsers.add_parser(
        "predict", help="predict on cropped faces, or (--detect) on every face in raw photos",
        description="Predict with a trained model: a folder of images, a CSV with an image column, or one image. "
                    "The images are cropped faces unless --detect names a face detector; then each face in each "
                    "photo is aligned FairFace's way and predicted (one row per face). Writes "
                    f"OUT/{PREDICTIONS_NAME}, OUT/{RECORD_NAME} (the model, source, settings and counts) and, with "
                    f"--detect, OUT/{NO_FACE_NAME}.")
    parser.add_argument("checkpoint", help="a run folder (or its best.pt), or an exported model folder")
    parser.add_argument("source", help="folder of images, CSV with an image column, or one image")
    parser.add_argument("--out", default=d.out, help=f"output folder ({PREDICTIONS_NAME}, {RECORD_NAME}, {NO_FACE_NAME})")
    parser.add_argument("--image-root", help="folder a CSV source's image paths are relative to (default: the CSV's)")
    parser.add_argument("--batch-size", type=int, default=d.batch_size, help="faces per forward pass")
    add_device_flag(parser, d.device)
    add_tta_flag(parser)
    add_bf16_flag(parser, d.bf16)
    add_adapt_bn_flag(parser)
    parser.add_argument("--thresholds", help="group-specific decision thresholds (thresholds.json from "
                                             "`facefair mitigate thresholds`) applied to its binary task")
    parser.add_argument("--group-column", help="column that gives each face's group for --thresholds (default: the "
                                               "fitted column if it was a prediction, else the model's prediction "
                                               "of the attribute, e.g. race_pred)")
    parser.add_argument("--logit-adjust", metavar="FILE",
                        help="class-prior adjustment of one task (adjustment.json from `facefair mitigate "
                             "logit-adjust`); the model's decision is kept in T_pred_raw")
    parser.add_argument("--decode-workers", type=int, default=None,
                        help="cropped faces: image-decoding processes (default: one per core with a GPU, "
                             "none on a CPU, where torch already uses every core)")
    parser.add_argument("--overwrite", action="store_true", help=f"replace an existing OUT/{PREDICTIONS_NAME}")
    parser.add_argument("--no-progress", dest="progress", action="store_false", help="no progress bar")
    parser.add_argument("--no-framing-check", dest="framing_check", action="store_false",
                        help="cropped faces: skip measuring (with a face detector, on a sample) whether they are "
                             f"framed like the training chips; a mismatch is a warning and OUT/{FRAMING_NAME}")
    add_trust_flag(parser)
    add_layout_flags(parser)
    photos = parser.add_argument_group("raw photos (--detect)")
    add_detect_flags(photos, default=None, workers=False)
    photos.add_argument("--detect-workers", type=int, default=d.detect_workers,
                        help="detector processes (photos are spread over them; MTCNN on a GPU: 1)")
    add_chip_flags(photos, d)
    photos.add_argument("--save-chips", metavar="DIR", help="also write the aligned chips here")
    parser.set_defaults(func=_predict)


def _predict(args) -> int:
    from facefair.align.cli import run_guarded

    def run(a) -> int:
        run_predict(config_from_args(a))
        return 0
    return run_guarded(run)(args)
