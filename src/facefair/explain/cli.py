"""``facefair explain``: Grad-CAM and LIME grids for one image or a sample of a run's test
faces, plus galleries of the most confident errors per group, in one self-contained HTML page.

    facefair explain runs/utkface-cpu --sample 8 --out runs/utkface-cpu/explain
    facefair explain runs/utkface-cpu/best.pt --image face.jpg --methods gradcam lime
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Sequence

import numpy as np
import pandas as pd

from facefair.run import Run
from facefair.table import read_predictions

METHODS = ("gradcam", "lime")


@dataclass
class ExplainConfig:
    source: str                               # a run folder (best.pt + predictions.csv) or a checkpoint
    out: Optional[str] = None                 # default: RUN/explain
    images: Sequence[str] = ()                # explain these files instead of a sample
    predictions: Optional[str] = None         # sample from / gallery of this predictions CSV
    sample: int = 6
    per_group: int = 4                        # gallery: errors shown per group
    group_attribute: str = "race"
    methods: Sequence[str] = METHODS
    tasks: Sequence[str] = ()                 # default: all of the model's tasks
    lime_samples: int = 200
    gallery: bool = True
    seed: int = 0
    device: str = "cpu"
    layer: Optional[str] = None               # Grad-CAM layer name (default: found automatically)
    trust_checkpoint: bool = False            # unpickle an old .pt beyond tensors (--trust-checkpoint)


def _resolve(config: ExplainConfig) -> tuple[Path, Optional[Path], Path]:
    source = Path(config.source)
    if source.is_dir():
        checkpoint = source  # load_model reads the folder's config.json + model.safetensors (or best.pt)
        predictions = Path(config.predictions) if config.predictions else Run(source).predictions_path
        out = Path(config.out) if config.out else source / "explain"
    else:
        checkpoint = source
        predictions = Path(config.predictions) if config.predictions else None
        out = Path(config.out) if config.out else source.parent / "explain"
    if not checkpoint.exists():
        raise FileNotFoundError(f"{checkpoint} not found: give a run folder or a model file")
    if config.predictions and not predictions.is_file():
        raise FileNotFoundError(f"--predictions {predictions} not found")
    if predictions is not None and not predictions.exists():
        predictions = None  # a run without its test predictions: --image still works
    return checkpoint, predictions, out


def _sample_rows(predictions: pd.DataFrame, n: int, group: str, seed: int) -> pd.DataFrame:
    """Up to ``n`` rows spread over the groups of ``group`` (round robin over a seeded shuffle),
    so a small sample is not all of the majority group."""
    shuffled = predictions.sample(frac=1.0, random_state=seed)
    if group not in shuffled or shuffled[group].isna().all():
        return shuffled.head(n)
    rank = shuffled.groupby(group, sort=True).cumcount()
    return shuffled.assign(_rank=rank).sort_values(["_rank", group], kind="stable").head(n).drop(columns="_rank")


def run_explain(config: ExplainConfig) -> dict:
    from facefair import pages as P

    unknown = [m for m in config.methods if m not in METHODS]
    if unknown:
        raise ValueError(f"unknown methods {unknown}: {', '.join(METHODS)}")
    missing = [str(p) for p in config.images if not Path(p).is_file()]
    if missing:
        raise FileNotFoundError(f"--image {missing[0]} not found" + (f" (and {len(missing) - 1} more)"
                                                                     if len(missing) > 1 else ""))
    checkpoint, predictions_path, out = _resolve(config)
    predictions = read_predictions(predictions_path) if predictions_path is not None else None
    # Predictions given with --predictions may come from any model (a baseline, a third party):
    # the page names the table and never attributes its errors to our checkpoint.
    foreign = config.predictions is not None
    out.mkdir(parents=True, exist_ok=True)
    sections, written, intro = [], {}, ""
    rows = pd.DataFrame({"path": []})
    if config.methods:
        rows, intro = _explain_faces(config, checkpoint, predictions, predictions_path, foreign, out, sections,
                                     written)
    elif predictions is None:
        raise ValueError("nothing to show: with no --methods, give a run folder with predictions.csv or --predictions")
    if config.gallery and predictions is not None and config.group_attribute in predictions:
        from facefair.explain.gallery import confident_errors_gallery
        gallery = P.Section(f"Most confident errors per {config.group_attribute} in {predictions_path.name}")
        gallery.text(f"Read from {predictions_path}" + (": the predictions of whichever model wrote that table, "
                                                        f"not necessarily {checkpoint}." if foreign else "."))
        tasks = list(config.tasks) or [c[: -len("_pred")] for c in predictions if c.endswith("_pred")]
        for task in tasks:
            if f"{task}_pred" in predictions and f"{task}_true" in predictions:
                gallery.raw(confident_errors_gallery(predictions, task, per_group=config.per_group,
                                                     group_attribute=config.group_attribute,
                                                     png_path=out / f"gallery_{task}.png"))
                written[f"gallery_{task}_png"] = str(out / f"gallery_{task}.png")
        sections.append(gallery)
    title = f"Explanations: {checkpoint}" if config.methods else f"Confident errors: {predictions_path}"
    if config.methods and foreign:
        title += f" (galleries: {predictions_path})"
    written["html"] = str(P.write_sections(out / "explain.html", title, sections, intro or None))
    (out / "explained_images.csv").write_text(rows.to_csv(index=False))
    return written


def _explain_faces(config: ExplainConfig, checkpoint: Path, predictions, predictions_path, foreign: bool, out: Path,
                   sections: list, written: dict):
    """Grad-CAM and LIME of our model on ``--image`` files or a sample of the predictions' faces."""
    from facefair.data.images import BadImage, decode
    from facefair import pages as P
    from facefair.models.multitask import load_model
    from facefair.runtime import select_device

    if config.images:
        rows = pd.DataFrame({"path": [str(p) for p in config.images]})
    elif predictions is not None:
        rows = _sample_rows(predictions, config.sample, config.group_attribute, config.seed)
    else:
        raise ValueError("nothing to explain: give --image files, or a run folder with predictions.csv")
    device = select_device(config.device)
    model = load_model(checkpoint, device, trust_checkpoint=config.trust_checkpoint).to(device)
    size = model.config.resolved_size()
    tasks = list(config.tasks) or [t.name for t in model.tasks]
    unknown = [t for t in tasks if t not in {s.name for s in model.tasks}]
    if unknown:
        raise ValueError(f"--tasks {unknown}: the model's tasks are {[t.name for t in model.tasks]}")
    paths = rows["path"].tolist()
    try:
        model_input = np.stack([decode(p, size) for p in paths])  # what the model sees, as it saw it
    except BadImage as error:
        raise ValueError(str(error)) from None
    truths = {t: rows[f"{t}_true"].tolist() for t in tasks if f"{t}_true" in rows}
    captions = [Path(p).name[:28] + (f"\n{rows.iloc[i].get('race', '')} {rows.iloc[i].get('gender', '')}"
                                     if "race" in rows else "") for i, p in enumerate(paths)]
    where = "" if config.images else f" Faces sampled from {predictions_path}."
    if "gradcam" in config.methods:
        from facefair.explain.gradcam import gradcam, plot_gradcam_grid
        cams = gradcam(model, model_input, tasks=tasks, layer=config.layer, device=device)
        written["gradcam_png"] = str(plot_gradcam_grid(model_input, cams, out / "gradcam.png", truths=truths,
                                                       captions=captions))
        sections.append(P.Section(f"Grad-CAM per task head of {checkpoint}").text(
            f"Layer {cams.layer} (feature map {cams.info['feature_map'][0]}x{cams.info['feature_map'][1]} at "
            f"{size}px input), explaining the predicted class (red: evidence for it); exact age is signed "
            f"(red pushes the predicted years up, blue down).{where}"
        ).raw(_img(out / "gradcam.png", "Grad-CAM grid")))
    if "lime" in config.methods:
        from facefair.explain.lime_explain import LimeConfig, explain_images, plot_lime_grid
        lime_tasks = [t.name for t in model.tasks if t.kind == "classification" and t.name in tasks]
        if lime_tasks:
            results = explain_images(model, model_input, lime_tasks, LimeConfig(num_samples=config.lime_samples,
                                                                         seed=config.seed), device)
            written["lime_png"] = str(plot_lime_grid(results, out / "lime.png", truths=truths, captions=captions))
            sections.append(P.Section(f"LIME superpixels for {checkpoint}").text(
                f"{config.lime_samples} perturbed copies per image and task; the local linear fit's R^2 ranged "
                f"{min(r.score for row in results for r in row.values()):.2f}-"
                f"{max(r.score for row in results for r in row.values()):.2f}.{where}"
            ).raw(_img(out / "lime.png", "LIME grid")))
    return rows, f"{len(paths)} faces; model input {size}px."


def _img(path: Path, alt: str) -> str:
    from facefair import pages
    return pages.img(pages.data_uri(path.read_bytes()), alt)


def _explain(args) -> int:
    written = run_explain(ExplainConfig(
        source=args.source, out=args.out, images=args.image or (), predictions=args.predictions, sample=args.sample,
        per_group=args.per_group, group_attribute=args.group_attribute, methods=args.methods, tasks=args.tasks or (),
        lime_samples=args.lime_samples, gallery=args.gallery, seed=args.seed, device=args.device, layer=args.layer,
        trust_checkpoint=args.trust_checkpoint))
    print(json.dumps(written, indent=1), flush=True)
    return 0


def register(subparsers) -> None:
    from facefair.flags import add_device_flag, add_trust_flag

    parser = subparsers.add_parser(
        "explain", help="Grad-CAM / LIME explanations and confident-error galleries (PNG + HTML)",
        description="Explain a trained model: Grad-CAM per task head and LIME superpixels for one image or a "
                    "sample of a run's test faces, and the most confident errors per group.")
    parser.add_argument("source", help="run folder (best.pt, predictions.csv) or a checkpoint file")
    parser.add_argument("--image", nargs="+", help="explain these image files instead of a sample")
    parser.add_argument("--predictions", help="predictions CSV to sample from / build galleries of")
    parser.add_argument("--sample", type=int, default=6, help="test faces to explain (spread over groups)")
    parser.add_argument("--methods", nargs="*", default=list(METHODS), choices=METHODS,
                        help="explanations to compute; --methods with no value: the galleries only")
    parser.add_argument("--tasks", nargs="+", help="task heads to explain (default: all)")
    parser.add_argument("--lime-samples", type=int, default=200, help="LIME perturbations per image and task")
    parser.add_argument("--per-group", type=int, default=4, help="gallery: errors shown per group")
    parser.add_argument("--group-attribute", default="race", help="gallery and sampling groups")
    parser.add_argument("--no-gallery", dest="gallery", action="store_false")
    parser.add_argument("--layer", help="Grad-CAM layer name (default: the last feature map)")
    parser.add_argument("--seed", type=int, default=0)
    add_device_flag(parser, "cpu")
    parser.add_argument("--out", help="output folder (default RUN/explain)")
    add_trust_flag(parser)
    parser.set_defaults(func=_explain)
