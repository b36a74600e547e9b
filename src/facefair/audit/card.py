"""``facefair card RUN``: RUN/MODEL_CARD.md in the Hugging Face model-card layout.

Every figure comes from the run's ``report.json`` and its audit (``RUN/audit/audit.json``, made
first when missing) or is counted from the run's own split and labels; the card holds no
hand-written number.  Layout: YAML metadata (``model-index`` with the test results), model
details, uses, training data with its group counts, evaluation overall and per group with CIs,
the audit's largest gaps, limitations, how to reproduce.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Optional

from facefair.run import CARD, Run
from facefair.runtime import write_text_atomic

CARD_NAME = CARD
GROUP_ATTRIBUTES = ("race", "gender", "age_group")
GAP_METRICS = ("accuracy_difference", "worst_group_accuracy", "equalized_odds_difference", "fnr_difference",
               "fpr_difference", "mae_difference")
TASK_NAMES = {"gender": "Gender classification", "race": "Race classification",
              "age_group": "Age-group classification", "age": "Exact-age estimation"}


def _num(value) -> float:
    return float("nan") if value is None else float(value)


def _fmt(value, metric: str) -> str:
    value = _num(value)
    if math.isnan(value):
        return "n/a"
    if math.isinf(value):
        return "∞"
    return f"{value:.2f}" if metric in ("mae", "mean_error", "mae_difference", "worst_group_mae") else f"{value:.3f}"


def _with_ci(record: dict, metric: str) -> str:
    text = _fmt(record.get("value"), metric)
    low, high = _num(record.get("ci_low")), _num(record.get("ci_high"))
    return text if math.isnan(low) or math.isnan(high) else f"{text} [{_fmt(low, metric)}, {_fmt(high, metric)}]"


def ensure_audit(run: Run, n_boot: int = 1000) -> dict:
    """RUN/audit/audit.json, made with the default audit settings when missing."""
    audit = run.audit()
    if audit is None:
        from facefair.audit.config import AuditConfig
        from facefair.audit.core import audit_predictions
        from facefair.audit.groups import load_predictions
        from facefair.audit.output import write_audit
        frame, source = load_predictions(run.folder)
        write_audit(audit_predictions(frame, AuditConfig(n_boot=n_boot), source), run.audit_dir)
        audit = run.audit()
    return audit


def training_group_counts(run: Run, report: dict) -> tuple[dict[str, dict[str, int]], str]:
    """Group counts of the run's training split (its splits.csv joined to the dataset's labels),
    or an empty dict and the reason when the dataset is not on this machine."""
    data = (report.get("config") or {}).get("data") or run.raw_config().get("data") or {}
    if not run.splits_path.exists() or not data.get("data"):
        return {}, "the run has no splits.csv or no dataset path"
    try:
        from facefair.config import DataConfig, RunConfig
        known = {k: v for k, v in data.items() if k in DataConfig.__dataclass_fields__}
        train = run.split_frame("train", RunConfig(data=DataConfig(**known)))
    except (OSError, ValueError, TypeError) as error:
        return {}, f"the training data could not be read here ({str(error).splitlines()[0]})"
    counts = {a: {str(k): int(v) for k, v in train[a].fillna("(unknown)").value_counts().items()}
              for a in GROUP_ATTRIBUTES if a in train}
    return counts, f"{len(train)} training faces"


def _metadata(run: Path, report: dict, audit: dict, dataset: str) -> str:
    lines = ["---", "library_name: timm", "pipeline_tag: image-classification",
             "tags:", "- face-attributes", "- fairness", "- facefair", "datasets:", f"- {dataset}",
             "metrics:", "- accuracy", "- f1", "- mae", "model-index:", f"- name: {run.name}", "  results:"]
    for task, metrics in (audit.get("overall") or {}).items():
        wanted = [m for m in ("accuracy", "macro_f1", "mae") if m in metrics and metrics[m].get("value") is not None]
        if not wanted:
            continue
        lines += ["  - task:", "      type: image-classification" if task != "age" else "      type: image-regression",
                  f"      name: {TASK_NAMES.get(task, task)}", "    dataset:", f"      name: {dataset} (test split)",
                  f"      type: {dataset.lower()}", "    metrics:"]
        for metric in wanted:
            value = metrics[metric]["value"]
            lines += [f"    - type: {'f1' if metric == 'macro_f1' else metric}", f"      value: {value:.4f}",
                      f"      name: {task} {metric}"]
    lines.append("---")
    return "\n".join(lines)


def _group_table(audit: dict, task: str, metric: str) -> list[str]:
    rows = [r for r in audit.get("group_metrics", []) if r["task"] == task and r["metric"] == metric
            and r.get("class") is None and r["attribute"] in GROUP_ATTRIBUTES]
    if not rows:
        return []
    out = [f"| attribute | group | n | {metric} [95% CI] |", "| --- | --- | ---: | --- |"]
    for r in rows:
        mark = " (too few to judge)" if r.get("flagged") else (" (thin cell)" if r.get("thin_cell") else "")
        n = r.get("support") if r.get("support") is not None else r["n"]
        out.append(f"| {r['attribute']} | {r['group']}{mark} | {n} | {_with_ci(r, metric)} |")
    return out


def _gap_table(audit: dict) -> list[str]:
    gaps = [g for g in audit.get("gaps", []) if g.get("class") is None and g["metric"] in GAP_METRICS
            and g.get("value") is not None]
    if not gaps:
        return ["No gap could be judged (no attribute with two groups large enough)."]
    out = ["| task | across | gap | value [95% CI] | verdict (Holm p) | worst group | best group | note |",
           "| --- | --- | --- | --- | --- | --- | --- | --- |"]
    for metric in GAP_METRICS:
        rows = sorted((g for g in gaps if g["metric"] == metric), key=lambda g: -_num(g["value"]))
        for g in rows[:4]:
            note = g.get("note") or ""
            if g.get("complete") is False:
                note = f"incomplete: {note}"
            verdict = g.get("verdict") or "–"
            if g.get("p_holm") is not None:
                verdict += f" ({_num(g['p_holm']):.2g})"
            out.append(f"| {g['task']} | {g['attribute']} | {metric} | {_with_ci(g, metric)} | {verdict} | "
                       f"{g.get('worst_group') or '–'} | {g.get('best_group') or '–'} | {note or '–'} |")
    return out


def _infant_caveat(audit: dict) -> str:
    rows = {r["group"]: r for r in audit.get("group_metrics", []) if r["task"] == "gender"
            and r["attribute"] == "age_group" and r["metric"] == "accuracy" and r.get("class") is None}
    overall = (audit.get("overall") or {}).get("gender", {}).get("accuracy")
    if "0-2" not in rows or overall is None:
        return ("- **Gender of babies and toddlers.** A 0-2-year-old's gender is barely visible in a face and "
                "the labels for them are annotators' guesses; this run's test split has no 0-2 group to measure it.")
    r = rows["0-2"]
    return (f"- **Gender of babies and toddlers.** Gender accuracy on 0-2-year-olds is {_with_ci(r, 'accuracy')} "
            f"(n={r['n']}) against {_with_ci(overall, 'accuracy')} overall. A baby's gender is barely visible in a "
            "face and its label is an annotator's guess: do not read gender predictions for young children.")


def _count(n, noun: str) -> str:
    return f"{n} {noun}" + ("" if n == 1 else "s")


def _inputs_line(framing: Optional[dict]) -> str:
    """How the training chips frame faces (measured at training): what inputs must look like."""
    if not framing or not framing.get("measured"):
        return ("- **Inputs:** face chips like the training images (their framing was not measured for this "
                "run); for raw photos use `facefair predict --detect`.")
    measured = framing["measured"]
    padding = framing.get("padding")
    return (f"- **Inputs:** face chips framed like the training images: the face fills "
            f"{measured['face_size']:.0%} of the width (median of {measured['images']} training images, "
            f"{framing.get('detector', 'dlib-hog')})"
            + (f", as `facefair align --padding {padding:g}` cuts them" if padding is not None else "")
            + ". For raw photos use `facefair predict --detect`, which cuts chips that way; faces framed "
              "otherwise (e.g. FairFace's margin-1.25 photos) give much worse figures, and predict/evaluate "
              "warn about them.")


def _signed(value, metric: str) -> str:
    value = _num(value)
    if math.isnan(value):
        return "n/a"
    return f"{value:+.2f}" if metric == "mae" else f"{value:+.3f}"


def _transfer_figure(row: dict) -> str:
    metric = "mae" if row["metric"] == "mae" else "accuracy"
    here = _with_ci({"value": row["value_out"], "ci_low": row["ci_low_out"], "ci_high": row["ci_high_out"]}, metric)
    return (f"{here} (test split {_fmt(row['value_in'], metric)}; change {_signed(row['change'], metric)} "
            f"[{_signed(row['change_low'], metric)}, {_signed(row['change_high'], metric)}])")


def generalisation_section(run: Path) -> list[str]:
    """The card's Generalisation section, from RUN/transfer/transfer.json (``facefair evaluate RUN
    --data OTHER``): each dataset checked, its size, its overall figures and where the model fails."""
    from facefair.audit.transfer import load_transfer

    parts = ["## Generalisation: faces from other datasets\n"]
    transfer = load_transfer(run)
    if not transfer or not transfer.get("datasets"):
        return parts + ["Not measured: every figure above is on a split of the training data. Run "
                        f"`facefair evaluate {run} --data OTHER_DATASET` (repeat `--data` for several) and write the "
                        "card again to add how the model holds up on faces from elsewhere.\n"]
    reference = transfer.get("reference") or {}
    config = transfer.get("config") or {}
    parts.append(f"Checked with `facefair evaluate {Run(run).folder} --data ...` against {reference.get('faces', '?')} faces of "
                 "the test split. A change is the other dataset minus the test split, with a 95% interval for two "
                 "independent samples (different faces, resampled independently). A group is called collapsed "
                 f"when its accuracy (recall, for a class) drops by more than {config.get('collapse_drop', '?')} "
                 f"or ends below {config.get('collapse_below', '?')}. Full tables: `transfer/transfer.html`.\n")
    parts += ["| dataset | faces | race scheme compared | task | accuracy / MAE [95% CI] (test split; change) |",
              "| --- | ---: | --- | --- | --- |"]
    for dataset in transfer["datasets"]:
        for row in dataset["groups"]:
            if row["attribute"] == "overall":
                parts.append(f"| {dataset['name']} | {dataset['faces']} | {dataset.get('race_scheme') or '–'} | "
                             f"{row['task']} | {_transfer_figure(row)} |")
    parts.append("")
    for dataset in transfer["datasets"]:
        parts.append(f"**Where the model fails on {dataset['name']}** ({dataset['faces']} faces"
                     + (f", `{dataset['source']}`" if dataset.get("source") else "") + "):\n")
        failing = sorted(dataset.get("collapsed") or [], key=lambda r: (r["metric"] != "recall", _num(r["change"])))
        rows = {(r["task"], r["attribute"], r["group"]): r for r in dataset["groups"]}
        lines = []
        for c in failing[:8]:
            row = rows[(c["task"], c["attribute"], c["group"])]
            what = (f"{c['task']} recall of {c['group']}" if c["metric"] == "recall"
                    else f"{c['task']} {c['metric']} among {c['attribute']} = {c['group']}")
            lines.append(f"- {what}: {_transfer_figure(row)}, {c['reason']}.")
        if len(failing) > 8:
            lines.append(f"- ... and {len(failing) - 8} more collapsed groups (see transfer/transfer.html).")
        lines += [f"- {e['text']}." for e in dataset.get("errors") or [] if e["share"] >= 0.2]
        lines += [f"- The worst {w['task']} group by {w['attribute']} is {w['worst_outside']} here "
                  f"({_fmt(w['value_outside'], w['metric'] if w['metric'] == 'mae' else 'accuracy')}) but "
                  f"{w['worst_inside']} on the test split."
                  for w in dataset.get("worst_groups") or [] if not w["same"] and w["attribute"] == w["task"]]
        parts += (lines or ["- No group collapsed."]) + [""]
    return parts


def _face_heads_lines(report: dict) -> list[str]:
    """What the face heads change: which tasks defer to them, and the CNN alone's test figures."""
    heads = report.get("face_heads")
    if not heads:
        return []
    before = (heads.get("cnn_only") or {}).get("headline") or {}
    after = report.get("headline") or {}
    changed = [f"{k.replace('_accuracy', '')} {before[k]:.3f} -> {after[k]:.3f}" for k in sorted(after)
               if k.endswith("_accuracy") and k in before and before[k] != after[k]]
    return [f"- **Face heads:** {heads.get('heads', '')}: classifiers on dlib's face-recognition descriptors "
            f"(`face_heads.safetensors`), fitted on the training split and blended as weight x face head + "
            f"(1 - weight) x CNN; test accuracy, CNN alone -> with them: {', '.join(changed) or 'unchanged'} "
            f"(docs/transfer.md)."]


def model_card(run: str | Path, n_boot: int = 1000) -> str:
    """The card's Markdown text (runs the audit first when RUN/audit/audit.json is missing)."""
    run = Run(run)
    run.require(run.report_path)
    report = run.report()
    audit = ensure_audit(run, n_boot)
    config = report.get("config") or {}
    model, train, data = config.get("model") or {}, config.get("train") or {}, config.get("data") or {}
    info = report.get("run") or {}
    dataset = Path(str(data.get("data") or "unknown")).name or "unknown"
    tasks = audit.get("tasks") or []
    counts, counts_source = training_group_counts(run, report)
    level = f"{(audit.get('config') or {}).get('ci_level', 0.95):.0%}"

    parts = [_metadata(run, report, audit, dataset), f"\n# Model card: {run.name}\n",
             "Multi-task face-attribute classifier trained with facefair; this card is generated by "
             "`facefair card` from the run's report.json and its fairness audit (audit/audit.json).\n",
             "## Model details\n",
             f"- **Architecture:** {model.get('backbone', '?')} backbone (timm), one head per task; "
             f"input {model.get('image_size', '?')} px; age head: {model.get('age_head', 'regression')}.",
             "- **Initial weights:** "
             f"{model.get('weights') or ('timm ImageNet' if model.get('pretrained') else 'random')}.",
             "- **Tasks:** " + "; ".join(f"{t['name']} ({', '.join(t['classes']) or 'years'})" for t in tasks) + ".",
             f"- **Training:** method {train.get('method', 'erm')}, {_count(info.get('epochs', train.get('epochs', '?')), 'epoch')}"
             f" (best epoch {info.get('best_epoch', '?')}), batch {train.get('batch_size', '?')}, "
             f"lr {train.get('lr', '?')}, seed {train.get('seed', '?')}, test-time mirroring "
             f"{'on' if train.get('tta', True) else 'off'}; device {info.get('device', '?')}.",
             _inputs_line(info.get("framing")),
             *_face_heads_lines(report),
             "- **Files:** `model.safetensors` + `config.json` (the model, loadable with no pickle), "
             "`config.yaml` (every setting), `splits.csv` (the split).\n",
             "## Uses\n", "### Intended uses\n",
             "- Research on face-attribute recognition and, above all, on how its errors are spread across "
             "demographic groups (auditing, comparing mitigation methods).",
             "- Aggregate statistics over image collections where per-person errors cannot harm anyone.\n",
             "### Out-of-scope uses\n",
             "- Any decision about a person (hiring, policing, access, credit, medical), identification or "
             "surveillance.",
             "- Inferring anyone's gender identity or race: the labels are annotated perceived categories "
             "(binary gender, a handful of coarse race groups), not how people identify.",
             "- Faces unlike the training data (not frontal, occluded, other cameras, children for gender), "
             "without auditing the model on such faces first.\n",
             "## Training data\n",
             f"- **Dataset:** {dataset} (`{data.get('data', '?')}`); split sizes: "
             + ", ".join(f"{k} {v}" for k, v in (info.get("split_sizes") or {}).items()) + ".",
             f"- **Data problems reported while reading:** {(report.get('data_problems') or {}).get('count', 0)}; "
             f"unreadable images skipped: {(report.get('skipped_images') or {}).get('count', 0)} "
             "(listed by name in report.json).\n"]
    if counts:
        parts.append(f"Group counts of the training split ({counts_source}):\n")
        for attribute, values in counts.items():
            parts.append(f"- **{attribute}:** " + ", ".join(f"{k} {v}" for k, v in values.items()))
        parts.append("")
    else:
        parts.append(f"Training-split group counts are not available: {counts_source}.\n")
    parts += ["## Evaluation\n",
              f"Test split: {audit.get('n_rows', '?')} faces. Intervals are {level} bootstrap intervals "
              f"({(audit.get('config') or {}).get('n_boot', '?')} resamples) from the audit.\n",
              "### Overall\n", "| task | metric | value [95% CI] | n |", "| --- | --- | --- | ---: |"]
    for task, metrics in (audit.get("overall") or {}).items():
        for metric in ("accuracy", "macro_f1", "roc_auc", "ece", "mae", "mean_error"):
            if metric in metrics and metrics[metric].get("value") is not None:
                parts.append(f"| {task} | {metric} | {_with_ci(metrics[metric], metric)} | {metrics[metric]['n']} |")
    parts.append("")
    parts.append("### Per group\n")
    for t in tasks:
        metric = "accuracy" if t["kind"] == "classification" else "mae"
        table = _group_table(audit, t["name"], metric)
        if table:
            parts += [f"**{TASK_NAMES.get(t['name'], t['name'])}** ({metric}):\n", *table, ""]
        if t["name"] == "gender" and t.get("positive_class") == "Female":
            for rate, words in (("fnr", "women predicted male"), ("fpr", "men predicted female")):
                table = _group_table(audit, "gender", rate)
                if table:
                    parts += [f"Gender {rate.upper()} ({words}); n is the number of "
                              f"{'women' if rate == 'fnr' else 'men'} in the group:\n", *table, ""]
    parts += ["## Fairness: the audit's largest gaps\n", audit.get("summary", ""), "", *_gap_table(audit), "",
              "Groups too small to judge are left out of every gap; error-rate cells resting on too few faces "
              "are named and the gap marked incomplete (see audit/audit.html for every gap and group).\n",
              *generalisation_section(run),
              "## Limitations\n",
              "- **Label noise.** The labels are annotated (UTKFace's age, gender and race were estimated and then "
              "checked by people); some are wrong, which caps the measurable accuracy and blurs group gaps. "
              "`facefair clean` lists likely label errors.",
              _infant_caveat(audit)]
    flagged = sorted({f"{r['task']} / {r['attribute']} = {r['group']} (n={r['n']})" for r in audit.get(
        "group_metrics", []) if r.get("flagged") and r["attribute"] in GROUP_ATTRIBUTES})
    if flagged:
        parts.append("- **Groups too small to judge** (figures shown but unreliable): " + "; ".join(flagged) + ".")
    parts += ["- **Coarse groups.** Race groups such as UTKFace's 'Others' pool very different people; a "
              "small gap between coarse groups can hide a large one inside them.",
              "- **Same-distribution test split.** The figures are for faces like the training ones (cropped, "
              "aligned, mostly frontal); on other photos the errors and the gaps can differ.\n",
              "## How to reproduce\n", "```bash",
              f"facefair train --config {run.config_path}", f"facefair audit {run.folder}", f"facefair card {run.folder}",
              "```", ""]
    return "\n".join(parts)


def write_model_card(run: str | Path, out: Optional[str | Path] = None, n_boot: int = 1000,
                     overwrite: bool = False) -> Path:
    """Write the card as ``OUT/MODEL_CARD.md`` (``out``: a folder, as every command's ``--out``;
    default the run folder) and return its path.  An existing card is kept unless ``overwrite``:
    cards are often edited by hand after they are generated."""
    folder = Path(out) if out is not None else Run(run).folder
    if folder.exists() and not folder.is_dir():
        raise ValueError(f"--out {folder} is a file; --out names a folder (the card is written as "
                         f"FOLDER/{CARD_NAME})")
    if out is not None and folder.suffix.lower() == ".md" and not folder.exists():
        raise ValueError(f"--out {folder} looks like a file name; --out names a folder (the card is written as "
                         f"FOLDER/{CARD_NAME}): give --out {folder.parent}")
    path = folder / CARD_NAME
    if path.exists() and not overwrite:
        raise ValueError(f"{path} exists (and may hold hand edits): add --overwrite to replace it, or give "
                         f"another --out folder")
    text = model_card(run, n_boot)  # before any folder is made: a run that cannot be carded leaves nothing
    folder.mkdir(parents=True, exist_ok=True)
    write_text_atomic(path, text)
    return path


def _card_command(args) -> int:
    path = write_model_card(args.run, args.out, args.n_boot, overwrite=args.overwrite)
    print(json.dumps({"written": str(path)}))
    return 0


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "card", help="write RUN/MODEL_CARD.md (Hugging Face layout) from report.json and the audit",
        description="Model card of a finished run, in the Hugging Face layout: metadata, model details, uses, "
                    "training data with group counts, metrics overall and per group with CIs, the audit's largest "
                    "gaps, limitations. Every figure comes from RUN/report.json and RUN/audit/audit.json (the audit "
                    "is run first when missing).")
    parser.add_argument("run", help="finished training run folder")
    parser.add_argument("--out", help=f"output folder: the card is OUT/{CARD_NAME} (default: the run folder)")
    parser.add_argument("--overwrite", action="store_true", help=f"replace an existing {CARD_NAME}")
    from facefair.audit.config import AuditConfig
    parser.add_argument("--n-boot", type=int, default=AuditConfig().n_boot,
                        help="bootstrap resamples if the audit must be run")
    parser.set_defaults(func=_card_command)
