"""Runs compared on the same test rows: paired differences, exact tests, Holm, seeds, Pareto.

Usage, given finished runs that share a test split::

    table = compare_runs({"baseline": ["runs/b/s0", "runs/b/s1"], "fineface": ["runs/f/s0"]},
                         AuditConfig(n_boot=1000, tasks=("gender",)), reference="baseline")
    write_comparison(table, "cmp/")       # compare.csv, compare.json, compare.html

One row per (method, task, attribute, metric); see ``docs/audit.md`` for every column and
``audit/paired.py`` for how seeds and resamples are combined.
"""

from __future__ import annotations

import glob
import json
import os
from pathlib import Path
from typing import Mapping, Optional, Sequence

import numpy as np
import pandas as pd

from facefair.audit import bootstrap as B
from facefair.audit import paired as P
from facefair.audit.config import OVERALL, AuditConfig
from facefair.audit.groups import attribute_values, detect_tasks, load_predictions, normalize_labels
from facefair.audit.summary import attribute_label, task_label
from facefair.run import PREDICTIONS

COLUMNS = ["method", "reference", "task", "attribute", "metric", "kind", "higher_is_better", "n_runs", "n_rows",
           "value", "seed_std", "seed_min", "seed_max", "reference_value", "difference", "ci_low", "ci_high",
           "test", "discordant", "p_value", "p_holm", "significant", "direction", "within_seed_noise", "pareto",
           "verdict"]
#: The (accuracy, fairness) axes of the Pareto column, per task kind: the first fairness gap present.
PARETO_AXES = {"classification": ("accuracy", ("equalized_odds_difference", "degree_of_bias")),
               "regression": ("mae", ("degree_of_bias",))}
ALPHA = 0.05
YEARS = {"mae", "worst_group_mae", "mae_difference"}  # shown in years; the rest in points (x100)


def run_name(path: str | Path) -> str:
    path = Path(path)
    if path.is_dir():
        return path.resolve().name
    return path.resolve().parent.name if path.name == PREDICTIONS else path.stem


def unique_names(names: list[str]) -> list[str]:
    """Names made unique (two folders both called ``test``) by numbering the repeats: ``test``, ``test-2``."""
    seen: dict[str, int] = {}
    out = []
    for name in names:
        seen[name] = seen.get(name, 0) + 1
        out.append(name if seen[name] == 1 else f"{name}-{seen[name]}")
    return out


def _expand(item: str | Path) -> list[Path]:
    text = str(item)
    if any(c in text for c in "*?["):
        found = sorted(glob.glob(text))
        if not found:
            raise FileNotFoundError(f"{text}: the pattern matches no run folder or CSV")
        return [Path(f) for f in found]
    return [Path(text)]


def parse_compare_items(items: Sequence[str], names: Optional[Sequence[str]] = None) -> dict[str, list[Path]]:
    """``NAME=RUN[,RUN...]`` (several seeds of one method; globs allowed) or a bare ``RUN`` (one run
    named by its folder, or by ``names`` in order; a bare glob gives one method per match)."""
    parsed: list[tuple[Optional[str], list[Path]]] = []
    for item in items:
        text = str(item)
        if "=" in text:
            name, _, paths = text.partition("=")
            if not name.strip() or not paths.strip():
                raise ValueError(f"--compare expects NAME=RUN[,RUN...] or RUN, got {text!r}")
            parsed.append((name.strip(), [p for part in paths.split(",") if part.strip()
                                          for p in _expand(part.strip())]))
        else:
            parsed += [(None, [p]) for p in _expand(text)]
    bare = [runs[0] for name, runs in parsed if name is None]
    if names and len(names) != len(bare):
        raise ValueError(f"--names gives {len(names)} names for {len(bare)} runs given without NAME=")
    bare_names = iter(list(names) if names else unique_names([run_name(p) for p in bare]))
    entries: dict[str, list[Path]] = {}
    for name, runs in parsed:
        name = name if name is not None else next(bare_names)
        if name in entries:
            raise ValueError(f"method {name!r} is named twice in --compare")
        entries[name] = runs
    return entries


def _normalise_entries(entries, names: Optional[Sequence[str]]) -> dict[str, list[Path]]:
    if isinstance(entries, Mapping):
        out = {}
        for name, runs in entries.items():
            runs = list(runs) if isinstance(runs, (list, tuple)) else [runs]
            out[str(name)] = [path for run in runs for path in _expand(run)]
    else:
        out = parse_compare_items([str(e) for e in entries], names)
    if not out or any(not runs for runs in out.values()):
        raise ValueError("compare needs at least one run per method")
    return out


def _aligned(frames: dict[tuple[str, int], tuple[pd.DataFrame, str]]) -> tuple[dict, list[str]]:
    """Every run's rows in the first run's order, matched by image path (or by the path inside each
    run's data folder, ``_moved_folder``); refuses when they differ."""
    notes: list[str] = []
    (first_key, (first, first_source)) = next(iter(frames.items()))
    if all("path" not in f for f, _ in frames.values()):
        lengths = {len(f) for f, _ in frames.values()}
        if len(lengths) != 1:
            raise ValueError("the runs have no path column and different row counts "
                             f"({', '.join(str(n) for n in sorted(lengths))}): their rows cannot be paired")
        notes.append("No run has a path column: rows were paired by position.")
        return {k: f.reset_index(drop=True) for k, (f, _) in frames.items()}, notes
    out = {}
    ref_paths = None
    for key, (frame, source) in frames.items():
        if "path" not in frame:
            raise ValueError(f"{source} has no path column: its rows cannot be paired with the other runs'")
        paths = frame["path"].astype(str)
        dupes = paths[paths.duplicated()]
        if len(dupes):
            raise ValueError(f"{source}: image path {dupes.iloc[0]!r} appears {int((paths == dupes.iloc[0]).sum())} "
                             "times, so rows cannot be paired")
        if ref_paths is None:
            ref_paths = paths
            out[key] = frame.reset_index(drop=True)
            continue
        missing = sorted(set(ref_paths) - set(paths))
        extra = sorted(set(paths) - set(ref_paths))
        ref_keys, keys = ref_paths, paths
        if missing or extra:
            moved = _moved_folder(ref_paths, paths)
            if moved is None:
                raise ValueError(
                    f"{source} and {first_source} were not evaluated on the same test rows: {len(missing)} of the "
                    f"first run's images are missing (e.g. {missing[:1]}), {len(extra)} are extra (e.g. "
                    f"{extra[:1]}). A paired comparison needs the same split: train with the same splits.csv or seed.")
            ref_keys, keys, (ref_base, base) = moved
            notes.append(f"{source} read its images from {base}, {first_source} from {ref_base}: rows were paired "
                         "by their path inside those folders (and their true labels checked to agree).")
        out[key] = frame.set_index(keys.to_numpy()).loc[ref_keys.to_numpy()].reset_index(drop=True)
    return out, notes


def _moved_folder(ref_paths: pd.Series, paths: pd.Series):
    """The same images read from two places (another machine, a copy of the dataset): each run's
    paths relative to the deepest folder holding all of them, when those agree; else None."""
    relative = []
    for series in (ref_paths, paths):
        try:
            base = os.path.commonpath([os.path.dirname(p) or "." for p in series])
        except ValueError:  # absolute and relative paths mixed, or different drives
            return None
        relative.append((series.map(lambda p, b=base: Path(os.path.relpath(p, b)).as_posix()), base))
    (ref_keys, ref_base), (keys, base) = relative
    if ref_keys.duplicated().any() or set(ref_keys) != set(keys):
        return None
    return ref_keys, keys, (ref_base, base)


def _check_truth(tasks, frames: dict, sources: dict, reference_key) -> None:
    for task in tasks:
        for key, frame in frames.items():
            if key == reference_key:
                continue
            column = f"{task.name}_true"
            if column not in frame:
                raise ValueError(f"{sources[key]} has no {column} column")
            if task.kind == "regression":
                other = pd.to_numeric(frame[column], errors="coerce").to_numpy(dtype=float)
                same = np.isclose(other, task.y_true, equal_nan=True)
            else:
                other = normalize_labels(frame[column], task.name)
                same = np.array([a == b for a, b in zip(other, task.y_true)])
            if not same.all():
                where = int(np.flatnonzero(~same)[0])
                raise ValueError(f"{sources[key]}: {column} differs from {sources[reference_key]} on "
                                 f"{int((~same).sum())} rows (first: row {where}); the runs must share true labels")


def _predictions(task, frame: pd.DataFrame) -> np.ndarray:
    column = f"{task.name}_pred"
    if column not in frame:
        return np.full(len(frame), np.nan if task.kind == "regression" else None, dtype=float if
                       task.kind == "regression" else object)
    if task.kind == "regression":
        return pd.to_numeric(frame[column], errors="coerce").to_numpy(dtype=float)
    return normalize_labels(frame[column], task.name)


def points(metric: str) -> tuple[float, str]:
    return (1.0, " years") if metric in YEARS else (100.0, " points")


def _verdict(row: dict, ci_level: float) -> str:
    scale, unit = points(row["metric"])
    where = "" if row["attribute"] == OVERALL else f" across {attribute_label(row['attribute'])}"
    head = (f"{row['method']} vs {row['reference']}: {task_label(row['task'])} {row['metric'].replace('_', ' ')}"
            f"{where} {scale * row['difference']:+.1f}{unit}")
    if not np.isnan(row["ci_low"]):
        head += f" [{scale * row['ci_low']:.1f}, {scale * row['ci_high']:.1f}]"
    if np.isnan(row["p_value"]):
        return head + ": no test (no resamples)"
    head += f", p={row['p_value']:.2g} (Holm {row['p_holm']:.2g})"
    if not row["significant"]:
        return head + ": not significant"
    text = head + f": significant, {row['direction']}"
    if row["within_seed_noise"]:
        text += " (but smaller than the seed-to-seed spread)"
    return text


def compare_runs(entries, config: Optional[AuditConfig] = None, reference: Optional[str] = None,
                 names: Optional[Sequence[str]] = None) -> pd.DataFrame:
    """Paired comparison of methods on the same test rows.

    ``entries``: ``{name: [run dir or predictions CSV, ...]}`` (several seeds per method), or a list
    of runs (each its own method, named by its folder or ``names``).  ``reference`` (default the
    first method) is what every other method is compared against.  Returns the tidy table of
    ``COLUMNS``; ``table.attrs`` holds the notes and the runs.
    """
    config = config or AuditConfig()
    entries = _normalise_entries(entries, names)
    reference = reference or next(iter(entries))
    if reference not in entries:
        raise ValueError(f"--reference {reference!r} is not one of the compared methods ({', '.join(entries)})")
    loaded = {(name, i): load_predictions(path) for name, runs in entries.items() for i, path in enumerate(runs)}
    sources = {k: source for k, (_, source) in loaded.items()}
    ordered = {(reference, i): loaded[(reference, i)] for i in range(len(entries[reference]))}
    ordered.update({k: v for k, v in loaded.items() if k[0] != reference})
    frames, notes = _aligned(ordered)
    ref_key = (reference, 0)
    base = frames[ref_key]
    tasks = detect_tasks(base, config.tasks, config.positive_classes, notes)
    if not tasks:
        raise ValueError(f"{sources[ref_key]} has no task to compare (T_true and T_pred columns)")
    _check_truth(tasks, frames, sources, ref_key)
    attributes = attribute_values(base, config.attributes, config.intersections, notes)
    weights = P.shared_weights(len(base), config.n_boot, config.seed)

    scores: dict[tuple, list[P.Scored]] = {}  # (method, task, attribute, metric) -> one per seed
    correct: dict[tuple, list[np.ndarray]] = {}
    kinds: dict[str, str] = {}
    for (name, _), frame in frames.items():
        for task in tasks:
            kinds[task.name] = task.kind
            pred = _predictions(task, frame)
            if task.kind == "classification":
                correct.setdefault((name, task.name), []).append(P.correctness(task, pred))
            for attribute, values in [(OVERALL, np.full(len(base), "all", dtype=object))] + list(attributes.items()):
                if task.kind == "classification":
                    parity = task.name not in attribute.split(":")
                    got = P.classification_scores(task, pred, attribute, values, weights, config, parity)
                else:
                    got = P.regression_scores(task, pred, attribute, values, weights, config)
                for metric, scored in got.items():
                    scores.setdefault((name, task.name, attribute, metric), []).append(scored)

    rows, replicates = [], {}
    for (name, task, attribute, metric), per_seed in scores.items():
        points = np.array([s.point for s in per_seed])
        replicates[(name, task, attribute, metric)] = np.mean([s.replicates for s in per_seed], axis=0)
        higher = {**P.OVERALL_METRICS[kinds[task]], **P.BINARY_OVERALL, **P.GAP_METRICS[kinds[task]]}[metric]
        rows.append({"method": name, "reference": reference, "task": task, "attribute": attribute, "metric": metric,
                     "kind": "overall" if attribute == OVERALL else "gap", "higher_is_better": higher,
                     "n_runs": len(per_seed), "n_rows": len(base), "value": float(np.mean(points)),
                     "seed_std": float(np.std(points, ddof=1)) if len(points) > 1 else np.nan,
                     "seed_min": float(points.min()), "seed_max": float(points.max())})
    blank = {c: np.nan for c in COLUMNS}
    blank.update({"test": "", "discordant": "", "direction": "", "verdict": "", "pareto": "",
                  "significant": False, "within_seed_noise": False})
    rows = [{**blank, **r} for r in rows]
    by_key = {(r["method"], r["task"], r["attribute"], r["metric"]): r for r in rows}
    for row in rows:
        key = (row["task"], row["attribute"], row["metric"])
        ref = by_key.get((reference, *key))
        if row["method"] == reference or ref is None:
            continue
        row["reference_value"] = ref["value"]
        row["difference"] = row["value"] - ref["value"]
        diff = replicates[(row["method"], *key)] - replicates[(reference, *key)]
        low, high = B.percentile_interval(diff[:, None], config.ci_level)
        row["ci_low"], row["ci_high"] = float(low[0]), float(high[0])
        single = row["n_runs"] == 1 and ref["n_runs"] == 1
        if row["metric"] in P.MCNEMAR_METRICS and row["attribute"] == OVERALL and single:
            p, b, c = P.mcnemar_p(correct[(reference, row["task"])][0], correct[(row["method"], row["task"])][0])
            row["test"], row["discordant"] = "exact McNemar", f"{b} only {reference}, {c} only {row['method']}"
        else:
            p = P.bootstrap_p(row["difference"], diff) if len(diff) else np.nan
            row["test"] = "" if np.isnan(p) else "paired bootstrap"
        row["p_value"] = p
        spreads = [v for v in (row["seed_std"], ref["seed_std"]) if not np.isnan(v)]
        row["within_seed_noise"] = bool(spreads and abs(row["difference"]) < max(spreads))
    _holm(rows)
    for row in rows:
        if row["method"] == reference:
            row["verdict"] = "reference"
        elif not np.isnan(row["difference"]):
            row["direction"] = "better" if (row["difference"] > 0) == bool(row["higher_is_better"]) else "worse"
            row["verdict"] = _verdict(row, config.ci_level)
    table = pd.DataFrame(rows, columns=COLUMNS)
    _pareto(table, replicates, kinds)
    table.attrs = {"notes": notes, "runs": {k: [str(p) for p in v] for k, v in entries.items()},
                   "reference": reference, "config": config.to_dict()}
    return table


def _holm(rows: list[dict]) -> None:
    """Holm over every tested difference (all methods, metrics and gaps): the family is everything
    the comparison reports, so 'significant' survives looking at all of it."""
    from statsmodels.stats.multitest import multipletests
    tested = [r for r in rows if not np.isnan(r["p_value"])]
    if not tested:
        return
    reject, adjusted, _, _ = multipletests([r["p_value"] for r in tested], alpha=ALPHA, method="holm")
    for r, rej, adj in zip(tested, reject, adjusted):
        r["p_holm"], r["significant"] = float(adj), bool(rej)


def _pareto(table: pd.DataFrame, replicates: dict, kinds: dict) -> None:
    """Per (task, attribute): a method is dominated when another is significantly better on one axis
    and not significantly worse on the other. "Significantly" is Holm-adjusted p < ALPHA over every
    pairwise axis test of the comparison (all pairs of methods, both axes, every task and
    attribute), as the table's verdicts are: with six methods an uncorrected interval would call
    some pair different by chance in most comparisons."""
    from itertools import combinations

    from statsmodels.stats.multitest import multipletests
    table["pareto"] = ""
    methods = list(dict.fromkeys(table.method))
    value = {(r.method, r.task, r.attribute, r.metric): r.value for r in table.itertuples()}
    # tests: (task, attribute, a, b, metric) -> (a - b, p), a before b in `methods`; the accuracy/MAE
    # axis is tested once per task (attribute OVERALL), however many attributes share it
    judged, tests = [], {}
    for (task, attribute), part in table[table.kind == "gap"].groupby(["task", "attribute"], sort=False):
        perf, fair_choices = PARETO_AXES[kinds[task]]
        fair = next((m for m in fair_choices if (part.metric == m).sum() == len(methods)), None)
        if fair is None or not all((m, task, OVERALL, perf) in replicates for m in methods):
            continue
        judged.append((task, attribute, perf, fair))
        for a, b in combinations(methods, 2):
            for metric, attr in ((perf, OVERALL), (fair, attribute)):
                diff = replicates[(a, task, attr, metric)] - replicates[(b, task, attr, metric)]
                observed = value[(a, task, attr, metric)] - value[(b, task, attr, metric)]
                tests[(task, attr, a, b, metric)] = (observed, P.bootstrap_p(observed, diff) if len(diff)
                                                          else float("nan"))
    tested = [k for k, (_, p) in tests.items() if np.isfinite(p)]
    reject = multipletests([tests[k][1] for k in tested], alpha=ALPHA, method="holm")[0] if tested else []
    significant = {k for k, rejected in zip(tested, reject) if rejected}
    for task, attribute, perf, fair in judged:
        higher = {perf: kinds[task] == "classification", fair: False}

        def sign(a: str, b: str, metric: str, attr: str) -> int:
            """+1 if a is significantly better than b on metric, -1 if significantly worse, else 0."""
            key, flip = (task, attr, a, b, metric), 1
            if key not in tests:
                key, flip = (task, attr, b, a, metric), -1
            if key not in significant:
                return 0
            a_higher = tests[key][0] * flip > 0
            return 1 if a_higher == higher[metric] else -1
        for a in methods:
            dominators = []
            for b in methods:
                if a == b:
                    continue
                s_perf, s_fair = sign(b, a, perf, OVERALL), sign(b, a, fair, attribute)
                if (s_perf > 0 and s_fair >= 0) or (s_fair > 0 and s_perf >= 0):
                    dominators.append(b)
            label = f"dominated by {', '.join(dominators)}" if dominators else "Pareto-optimal"
            table.loc[(table.method == a) & (table.task == task) & (table.attribute == attribute), "pareto"] = \
                f"{label} ({perf} vs {fair})"


def write_comparison(table: pd.DataFrame, out_dir: str | Path, config: Optional[AuditConfig] = None
                     ) -> dict[str, Path]:
    from facefair.audit.output import _clean, _records
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = {name: out / name for name in ("compare.csv", "compare.json", "compare.html")}
    table.to_csv(paths["compare.csv"], index=False)
    payload = {"reference": table.attrs.get("reference"), "runs": table.attrs.get("runs", {}),
               "config": table.attrs.get("config"), "notes": table.attrs.get("notes", []),
               "rows": _records(table)}
    paths["compare.json"].write_text(json.dumps(_clean(payload), indent=1, allow_nan=False), encoding="utf-8")
    from facefair.audit.compare_html import render_compare_html
    paths["compare.html"].write_text(render_compare_html(table, config or AuditConfig()), encoding="utf-8")
    return paths


__all__ = ["compare_runs", "parse_compare_items", "write_comparison", "COLUMNS", "points"]
