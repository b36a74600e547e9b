"""``facefair evaluate``: a finished run's best.pt on one of its splits, or on another dataset.

Another dataset's images are either cropped faces, checked against the training chips' framing
(a warning names the mismatch and suggests ``--detect``), or, with ``--detect BACKEND``, photos
whose largest face is detected and aligned with the training chips' padding first; photos with no
face are counted and listed in OUT/no_face.csv, never silently scored.
"""

from __future__ import annotations

import dataclasses
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Optional, Sequence

from facefair.evaluate.report import evaluate_split, print_headline, write_evaluation
from facefair.labels import RACE_SCHEMES, map_race, shared_scheme
from facefair.run import Run
from facefair.runtime import select_device
from facefair.data.prepare import SplitData, frame_split, load_table, prepare_data, whole_table_split

if TYPE_CHECKING:
    from facefair.align.detectors import DetectorConfig


def evaluate_run(run_dir: str, *, split: str = "test", out_dir: Optional[str] = None, data: Optional[str] = None,
                 kind: str = "auto", image_root: Optional[str] = None, device: str = "auto", tta: bool = True,
                 batch_size: int = 128, trust_checkpoint: bool = False, detect: "Optional[str | DetectorConfig]" = None,
                 padding: Optional[float] = None, framing_check: bool = True, layout: Optional[str] = None,
                 label_map: Sequence[str] = ()) -> dict:
    """Evaluate RUN's model on one of its splits, or on another dataset (``data``: read with
    ``layout``/``label_map`` like every reader), writing OUT/report.json and OUT/predictions.csv.

    Another dataset's race labels are compared with the model's on the scheme both share: FairFace
    race7 labels are read as race5 for a UTKFace model; a race5 dataset ("asian") against a race7
    model has the model's decisions read in race5 (East and Southeast Asian -> Asian)."""
    run = Run(run_dir)
    config = run.config()
    if data is None and config.data.data and not Path(config.data.data).exists():
        raise FileNotFoundError(
            f"the run's dataset {config.data.data} ({run.config_path}) is not found from here, from {run.folder} "
            f"or the folders above it: run evaluate from the folder training ran in, or pass --data PATH to "
            f"evaluate on the dataset where it is now (every image, not only the run's {split} split)")
    torch_device = select_device(device)
    model = run.load_model(torch_device, trust_checkpoint=trust_checkpoint)
    size = model.config.resolved_size()
    out = Path(out_dir) if out_dir else run.eval_dir(dataset_name(data) if data is not None else split)
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
            chosen, table, skipped = whole_table_split(config.data, model.tasks, size, batch_size)
            extra["framing"] = _check_framing(chosen.frame["path"].tolist(), model, framing_check)
        else:
            chosen, table, skipped, extra["detect"] = _detected_split(config.data, model, size, batch_size, detect,
                                                                      padding, out)
        problems, split = table.problems, "all"
        compared_on = shared_scheme(table.race_scheme, model_scheme) if model_scheme else None
        if compared_on and table.race_scheme and table.race_scheme != compared_on:
            chosen.frame["race"] = chosen.frame["race"].map(lambda r: map_race(r, table.race_scheme, compared_on))
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
        prepared = prepare_data(config.data, [t.name for t in model.tasks], size, batch_size,
                                seed=config.train.seed, splits_wanted=(split,))
        chosen, problems, skipped = prepared.splits[split], prepared.problems, prepared.skipped_images
    predictions, metrics, errors = evaluate_split(model, chosen, torch_device, tta=tta,
                                                  amp=config.train.amp, bf16=config.train.bf16)
    schemes = extra.get("race_scheme") or {}
    if schemes.get("compared_on") and schemes["compared_on"] != schemes["model"]:
        from facefair.evaluate.metrics import all_task_metrics
        from facefair.table import collapse_race_scheme
        predictions = collapse_race_scheme(predictions, schemes["model"], schemes["compared_on"])
        metrics = all_task_metrics(predictions)
    report = write_evaluation(out, predictions, metrics, {**extra,
        "run": str(run.folder), "split": split, "data": config.data.data, "tta": tta,
        "skipped_images": {"count": len(skipped) + len(errors), "items": skipped + errors},
        "data_problems": {"count": len(problems), "items": [str(p) for p in problems]}})
    print_headline(split, metrics)
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


def _detected_split(data_config, model, size: int, batch_size: int, detect, padding: Optional[float],
                    out: Path) -> tuple[SplitData, object, list[str], dict]:
    """The dataset's photos, each replaced by the aligned chip of its largest face (written to
    OUT/chips), with the photo's labels; photos with no face go to OUT/no_face.csv."""
    from facefair.align.detectors import DetectorConfig, resolve_backend
    from facefair.align.framing import chip_padding
    from facefair.align.pipeline import AlignConfig, align_paths

    table = load_table(data_config)
    chosen_padding = padding if padding is not None else chip_padding(getattr(model, "framing", None))
    detector = detect if isinstance(detect, DetectorConfig) else DetectorConfig(backend=detect)
    backend = resolve_backend(detector.backend)
    detector = dataclasses.replace(detector, backend=backend)
    result = align_paths(table.frame["path"].tolist(), out / "chips", detector,
                         AlignConfig(size=max(size, 112), padding=chosen_padding))
    faces = result.manifest.assign(area=(result.manifest.box_x1 - result.manifest.box_x0)
                                   * (result.manifest.box_y1 - result.manifest.box_y0))
    largest = faces.sort_values("area", ascending=False).drop_duplicates("source")
    chip_of = dict(zip(largest["source"], largest["file"].map(lambda name: str(out / "chips" / name))))
    frame = table.frame[table.frame["path"].isin(chip_of)].copy()
    frame["source_photo"] = frame["path"]
    frame["path"] = frame["path"].map(chip_of)
    no_face = result.skipped
    no_face.to_csv(out / "no_face.csv", index=False)
    if frame.empty:
        raise ValueError(f"{backend} found no face in any of the {len(table.frame)} photos of {data_config.data} "
                         f"(see {out / 'no_face.csv'})")
    chosen, skipped = frame_split(frame, data_config, model.tasks, size, batch_size)
    print(f"{backend}: a face in {len(chosen.frame)} of {len(table.frame)} photos (padding {chosen_padding:g}); "
          f"{len(no_face)} without one -> {out / 'no_face.csv'}", flush=True)
    summary = {"backend": backend, "padding": chosen_padding, "photos": len(table.frame), "faces": len(chosen.frame),
               "no_face": {"count": len(no_face), "items": no_face.to_dict("records")[:50]}}
    return chosen, table, skipped, summary
