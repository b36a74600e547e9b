"""``facefair evaluate``: a finished run's best.pt on one of its splits, or on another dataset."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

from facefair.config import load_yaml_config
from facefair.evaluate.report import evaluate_split, print_headline, write_evaluation
from facefair.labels import RACE_SCHEMES
from facefair.models.multitask import load_model
from facefair.runtime import select_device
from facefair.data.prepare import prepare_data, whole_table_split


def evaluate_run(run_dir: str, *, split: str = "test", out_dir: Optional[str] = None, data: Optional[str] = None,
                 kind: str = "auto", image_root: Optional[str] = None, device: str = "auto", tta: bool = True,
                 batch_size: int = 128, trust_checkpoint: bool = False) -> dict:
    run = Path(run_dir)
    if not (run / "config.yaml").exists():
        raise FileNotFoundError(f"{run / 'config.yaml'} not found: is {run} a finished training run?")
    config = load_yaml_config(run / "config.yaml")
    torch_device = select_device(device)
    model = load_model(run, torch_device, trust_checkpoint=trust_checkpoint).to(torch_device)
    size = model.config.resolved_size()
    if data is not None:
        # Labels of another dataset are mapped into the model's race scheme (FairFace race7 -> UTK race5).
        race = next((t for t in model.tasks if t.name == "race"), None)
        config.data.data, config.data.kind, config.data.image_root, config.data.extra_csvs = data, kind, image_root, []
        config.data.race_scheme = next((s for s, c in RACE_SCHEMES.items() if race and c == race.classes), None)
        chosen, table, skipped = whole_table_split(config.data, model.tasks, size, batch_size)
        problems, split = table.problems, "all"
    else:
        config.data.splits_file = str(run / "splits.csv")
        prepared = prepare_data(config.data, [t.name for t in model.tasks], size, batch_size,
                                seed=config.train.seed, splits_wanted=(split,))
        chosen, problems, skipped = prepared.splits[split], prepared.problems, prepared.skipped_images
    predictions, metrics, errors = evaluate_split(model, chosen, torch_device, tta=tta,
                                                  amp=config.train.amp, bf16=config.train.bf16)
    out = Path(out_dir) if out_dir else run / f"eval-{split}"
    report = write_evaluation(out, predictions, metrics, {
        "run": str(run), "split": split, "data": config.data.data, "tta": tta,
        "skipped_images": {"count": len(skipped) + len(errors), "items": skipped + errors},
        "data_problems": {"count": len(problems), "items": [str(p) for p in problems]}})
    print_headline(split, metrics)
    print(f"report: {out / 'report.json'}", flush=True)
    return report
