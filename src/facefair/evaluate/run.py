"""``facefair evaluate``: a finished run's best.pt on one of its splits, or on another dataset.

Another dataset's images are either cropped faces, checked against the training chips' framing
(a warning names the mismatch and suggests ``--detect``), or, with ``--detect BACKEND``, photos
whose largest face is detected and aligned with the training chips' padding first; photos with no
face are counted and listed in OUT/no_face.csv, never silently scored.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING, Optional, Sequence

from facefair.evaluate.metrics import all_task_metrics
from facefair.evaluate.report import evaluate_split, print_headline, write_evaluation
from facefair.table import predictions_frame
from facefair.inference.settings import DEFAULTS, InferenceSettings
from facefair.labels import RACE_SCHEMES, map_race, shared_scheme
from facefair.run import Run
from facefair.data.prepare import load_table, prepare_data, whole_table_split

if TYPE_CHECKING:
    import pandas as pd

    from facefair.align.detectors import DetectorConfig


def evaluate_run(run_dir: str, *, split: str = "test", out_dir: Optional[str] = None, data: Optional[str] = None,
                 kind: str = "auto", image_root: Optional[str] = None, device: str = DEFAULTS.device,
                 tta: bool = DEFAULTS.tta, batch_size: int = DEFAULTS.batch_size, bf16: Optional[bool] = DEFAULTS.bf16,
                 trust_checkpoint: bool = False, detect: "Optional[str | DetectorConfig]" = None,
                 padding: Optional[float] = DEFAULTS.padding, framing_check: bool = True, layout: Optional[str] = None,
                 label_map: Sequence[str] = (), settings: Optional[InferenceSettings] = None) -> dict:
    """Evaluate RUN's model on one of its splits, or on another dataset (``data``: read with
    ``layout``/``label_map`` like every reader), writing OUT/report.json and OUT/predictions.csv.

    Another dataset's race labels are compared with the model's on the scheme both share: FairFace
    race7 labels are read as race5 for a UTKFace model; a race5 dataset ("asian") against a race7
    model has the model's decisions read in race5 (East and Southeast Asian -> Asian).

    The model runs through :mod:`facefair.inference` with the defaults every command shares;
    ``settings`` replaces ``device``, ``tta``, ``batch_size``, ``bf16`` and ``padding`` at once
    (its ``max_side``/``chip_size`` apply to ``detect``)."""
    from facefair.inference.engine import model_device
    from facefair.inference.sources import load_model

    run = Run(run_dir)
    config = run.config()
    if data is None and config.data.data and not Path(config.data.data).exists():
        raise FileNotFoundError(
            f"the run's dataset {config.data.data} ({run.config_path}) is not found from here, from {run.folder} "
            f"or the folders above it: run evaluate from the folder training ran in, or pass --data PATH to "
            f"evaluate on the dataset where it is now (every image, not only the run's {split} split)")
    if settings is None:
        settings = DEFAULTS.with_options(device=device, tta=tta, batch_size=batch_size, bf16=bf16, padding=padding)
    model = load_model(run.model_source(), settings, trust_checkpoint=trust_checkpoint)
    torch_device = model_device(model)
    size = model.config.resolved_size()
    out = Path(out_dir) if out_dir else run.eval_dir(dataset_name(data) if data is not None else split,
                                                     adapt_bn=settings.adapt_bn)
    if detect is not None and data is None:
        raise ValueError("--detect applies to --data (raw photos of another dataset); a run's own splits are its chips")
    extra: dict = {}
    if data is not None:
        race = next((t for t in model.tasks if t.name == "race"), None)
        model_scheme = next((s for s, c in RACE_SCHEMES.items() if race and c == race.classes), None)
        config.data.data, config.data.kind, config.data.image_root, config.data.extra_csvs = data, kind, image_root, []
        # The run's own layout and label map described its training data, not this one.
        config.data.layout, config.data.label_map, config.data.race_scheme = layout, list(label_map), None
        if detect is None:
            chosen, table, skipped = whole_table_split(config.data, model.tasks, size, settings.batch_size)
            extra["framing"] = _check_framing(chosen.frame["path"].tolist(), model, framing_check)
        else:
            predictions, table, extra["detect"] = _detected_predictions(config.data, model, detect, settings, out)
            errors, skipped = [], []
        problems, split = table.problems, "all"
        compared_on = shared_scheme(table.race_scheme, model_scheme) if model_scheme else None
        if compared_on and table.race_scheme and table.race_scheme != compared_on:
            def to_shared(race):
                return map_race(race, table.race_scheme, compared_on)
            if detect is None:
                chosen.frame["race"] = chosen.frame["race"].map(to_shared)
            else:  # the truth columns the table was built with
                for column in ("race", "race_true"):
                    if column in predictions:
                        predictions[column] = predictions[column].map(to_shared)
        extra["race_scheme"] = {"data": table.race_scheme, "model": model_scheme, "compared_on": compared_on}
        extra["layout"] = table.layout
        print(f"{data}: {len(table.frame)} images" + (f", label folders read as {'/'.join(table.layout)}"
                                                      if table.layout else "")
              + (f", race labels {table.race_scheme} (model {model_scheme}; compared on {compared_on})"
                 if table.race_scheme and compared_on else "")
              + (f"; {len(problems)} data problems (listed in report.json)" if problems else ""), flush=True)
        for problem in problems[:3]:  # an unknown label folder says which spelling and which fix
            print(f"  {problem}", file=sys.stderr, flush=True)
    else:
        config.data.splits_file = str(run.splits_path)
        prepared = prepare_data(config.data, [t.name for t in model.tasks], size, settings.batch_size,
                                seed=config.train.seed, splits_wanted=(split,))
        chosen, problems, skipped = prepared.splits[split], prepared.problems, prepared.skipped_images
    if detect is None:
        # The inference defaults' precision, as in predict and serve (not the training config's).
        predictions, metrics, errors = evaluate_split(model, chosen, torch_device, tta=settings.tta,
                                                      amp=config.train.amp, bf16=settings.bf16,
                                                      descriptor_cache=config.data.cache_dir, adapt_bn=settings.adapt_bn)
    schemes = extra.get("race_scheme") or {}
    if schemes.get("compared_on") and schemes["compared_on"] != schemes["model"]:
        from facefair.table import collapse_race_scheme
        predictions = collapse_race_scheme(predictions, schemes["model"], schemes["compared_on"])
        metrics = all_task_metrics(predictions)
    elif detect is not None:
        metrics = all_task_metrics(predictions)
    report = write_evaluation(out, predictions, metrics, {**extra,
        "run": str(run.folder), "split": split, "data": config.data.data, "tta": settings.tta,
        "adapt_bn": settings.adapt_bn,
        "skipped_images": {"count": len(skipped) + len(errors), "items": skipped + errors},
        "data_problems": {"count": len(problems), "items": [str(p) for p in problems]}})
    print_headline(split, metrics)
    if settings.adapt_bn:
        # With --detect the set adapted on is every face found, not only the largest one scored per photo.
        adapted_on = extra["detect"]["faces_found"] if "detect" in extra else len(predictions)
        print(f"--adapt-bn: BatchNorm statistics re-estimated on these {adapted_on} faces before predicting them",
              flush=True)
    print(f"report: {Run(out).report_path}", flush=True)
    return report


def dataset_name(data: str) -> str:
    """A dataset's short name (its folder or CSV name), used for RUN/eval-NAME and in reports."""
    path = Path(data)
    return (path.stem if path.is_file() else path.name) or "data"


def _check_framing(paths: list[str], model, enabled: bool) -> Optional[dict]:
    from facefair.align.framing import framing_report
    report = framing_report(paths, getattr(model, "framing", None)) if enabled else None
    if report is not None and report["warning"]:
        print(f"warning: {report['warning']}", file=sys.stderr, flush=True)
    return report


def _detected_predictions(data_config, model, detect: "str | DetectorConfig", settings: InferenceSettings,
                          out: Path) -> tuple["pd.DataFrame", object, dict]:
    """The dataset's photos through the inference module's photo path (detect, align, predict:
    the same as ``facefair predict --detect``); each photo is scored on its largest face, whose
    chip is written to OUT/chips (the table's ``path``; ``source_photo`` names the photo).
    Photos with no face go to OUT/no_face.csv, never silently scored."""
    import dataclasses

    import numpy as np

    from facefair.align.detectors import resolve_backend
    from facefair.inference.engine import model_device
    from facefair.inference.photos import chip_padding_for, detector_config, predict_photos_detailed

    table = load_table(data_config)
    detector = (detector_config(detect, model_device(model), settings) if isinstance(detect, str)
                else dataclasses.replace(detect, backend=resolve_backend(detect.backend)))
    out.mkdir(parents=True, exist_ok=True)
    faces, no_face = predict_photos_detailed(model, table.frame["path"].tolist(), detector, settings,
                                             chip_dir=out / "chips", progress=False)
    no_face.rename(columns={"path": "source"}).to_csv(out / "no_face.csv", index=False)
    if faces.empty:
        raise ValueError(f"{detector.backend} found no face in any of the {len(table.frame)} photos of "
                         f"{data_config.data} (see {out / 'no_face.csv'})")
    area = (faces["box_x1"] - faces["box_x0"]) * (faces["box_y1"] - faces["box_y0"])
    largest = faces.assign(_area=area).sort_values("_area", ascending=False, kind="stable").drop_duplicates("path")
    largest = largest.set_index("path")
    frame = table.frame[table.frame["path"].isin(largest.index)].reset_index(drop=True)
    chosen = largest.loc[frame["path"]]
    outputs = {t.name: (chosen[[f"{t.name}_prob_{c}" for c in t.classes]].to_numpy(np.float32)
                        if t.kind == "classification" else chosen[f"{t.name}_pred"].to_numpy(np.float32))
               for t in model.tasks}
    frame = frame.assign(source_photo=frame["path"], path=chosen["face_name_align"].to_numpy())
    predictions = predictions_frame(frame, model.tasks, outputs)
    padding = chip_padding_for(model, settings)
    print(f"{detector.backend}: a face in {len(frame)} of {len(table.frame)} photos (padding {padding:g}); "
          f"{len(no_face)} without one -> {out / 'no_face.csv'}", flush=True)
    summary = {"backend": detector.backend, "padding": padding, "photos": len(table.frame), "faces": len(frame),
               "faces_found": len(faces),
               "max_side": settings.max_side, "chip_size": settings.chip_size,
               "no_face": {"count": len(no_face), "items": no_face.rename(columns={"path": "source"})
                           .to_dict("records")[:50]}}
    return predictions, table, summary
