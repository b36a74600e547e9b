"""Lever: face-pretrained features (dlib descriptors + logistic regression) against a CNN run,
paired on the same faces of its test split and of another dataset (transfer), over seeds.

Seeds are disjoint, gender x race stratified draws of ``--per-seed`` faces from the run's train
split (descriptors cost about 0.1 s a face on one core, so the full train split is a long run);
the regularisation is chosen on a fixed ``--val`` subset of its val split, never on the test
split or the other dataset.  Comparisons use ``facefair.audit.compare.compare_runs`` (McNemar,
paired bootstrap, Holm); an ensemble (mean probabilities of the CNN and the heads,
``facefair.evaluate.ensemble``) is compared too.

    python benchmarks/face_embedding.py --run RUN --data ../shared/data/utkface/UTKFace \\
        --transfer-data ../shared/data/mebeauty-dev --transfer-eval RUN/eval-mebeauty-dev \\
        --out benchmarks/results/face_embedding.md
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import pandas as pd


def stratified_draws(train: pd.DataFrame, seeds: int, per_seed: int) -> list[pd.DataFrame]:
    """``seeds`` disjoint draws of about ``per_seed`` rows, each with the split's gender x race mix."""
    shuffled = train.sample(frac=1.0, random_state=0)
    stratum = shuffled["gender"].astype(str) + "/" + shuffled["race"].astype(str)
    shuffled = shuffled.assign(_draw=shuffled.groupby(stratum).cumcount() % seeds, _stratum=stratum)
    draws = []
    for k in range(seeds):
        part = shuffled[shuffled["_draw"] == k]
        share = per_seed / len(part)
        draws.append(pd.concat([g.head(max(1, round(share * len(g)))) for _, g in part.groupby("_stratum")])
                     .drop(columns=["_draw", "_stratum"]).reset_index(drop=True))
    return draws


def markdown_table(table: pd.DataFrame) -> list[str]:
    """Overall accuracy and worst-group accuracy of each method against the reference, as markdown."""
    rows = table[(table["method"] != table["reference"]) & (
        (table["attribute"] == "overall") | (table["metric"] == "worst_group_accuracy"))]
    out = ["| method | task | figure | value (seeds: mean [min, max]) | CNN | difference [95% paired CI] | Holm p |",
           "|---|---|---|---|---|---|---|"]
    for r in rows.to_dict("records"):
        figure = r["metric"] if r["attribute"] == "overall" else f"worst group by {r['attribute']}"
        out.append(f"| {r['method']} | {r['task']} | {figure} | {r['value']:.3f} [{r['seed_min']:.3f}, "
                   f"{r['seed_max']:.3f}] | {r['reference_value']:.3f} | {100 * r['difference']:+.1f} "
                   f"[{100 * r['ci_low']:+.1f}, {100 * r['ci_high']:+.1f}] pts | {r['p_holm']:.2g} |")
    return out


def recall_table(tables: dict[str, list[pd.DataFrame]], task: str) -> list[str]:
    """Recall of each class of ``task`` (share of its faces called that class), mean [min, max] over seeds."""
    from sklearn.metrics import recall_score

    classes = sorted(next(iter(tables.values()))[0][f"{task}_true"].dropna().unique())
    out = [f"| method | {' | '.join(classes)} |", "|---|" + "---|" * len(classes)]
    for method, frames in tables.items():
        per_seed = []
        for frame in frames:
            scored = frame.dropna(subset=[f"{task}_true", f"{task}_pred"])
            per_seed.append(recall_score(scored[f"{task}_true"], scored[f"{task}_pred"], labels=classes,
                                         average=None, zero_division=0))
        values = pd.DataFrame(per_seed, columns=classes)
        out.append(f"| {method} | " + " | ".join(
            f"{values[c].mean():.2f}" + (f" [{values[c].min():.2f}, {values[c].max():.2f}]" if len(values) > 1 else "")
            for c in classes) + " |")
    return out


def main(argv=None) -> int:
    from facefair.audit.compare import compare_runs
    from facefair.audit.config import AuditConfig
    from facefair.audit.groups import load_predictions
    from facefair.baselines.data import DataSelection, load_split_table
    from facefair.baselines.face_embedding import EmbeddingConfig, run_face_embedding
    from facefair.data.readers import read_dataset, restrict_race_scheme
    from facefair.evaluate.ensemble import average_predictions

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--run", required=True, help="CNN run folder (its splits.csv and predictions.csv)")
    parser.add_argument("--transfer-eval", required=True,
                        help="the run's evaluation on the other dataset (folder with predictions.csv)")
    parser.add_argument("--data", required=True, help="the dataset the run trained on")
    parser.add_argument("--transfer-data", required=True, help="the other dataset (what --transfer-eval scored)")
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--per-seed", type=int, default=1000)
    parser.add_argument("--val", type=int, default=600)
    parser.add_argument("--n-boot", type=int, default=1000)
    parser.add_argument("--cache-dir", default=".facefair-cache")
    parser.add_argument("--out", required=True, help="markdown summary to write")
    args = parser.parse_args(argv)

    started = time.perf_counter()
    run = Path(args.run)
    split = load_split_table(DataSelection(data=args.data, splits_file=str(run / "splits.csv")))
    frame = split.frame
    train, val = frame[frame["split"] == "train"], frame[frame["split"] == "val"]
    val = val.sample(n=min(args.val, len(val)), random_state=0).sort_values("path").reset_index(drop=True)
    test = frame[frame["split"] == "test"].reset_index(drop=True)
    cnn_test, _ = load_predictions(run)
    cnn_other, _ = load_predictions(Path(args.transfer_eval))
    # The other dataset's labels as the package reads them, in the CNN table's row order.
    other_root = Path(args.transfer_data)
    other = restrict_race_scheme(read_dataset(other_root), split.table.race_scheme).frame
    other = other.set_index(other["path"].map(lambda p: str(Path(p).resolve())))
    missing = [p for p in cnn_other["path"] if str(Path(p).resolve()) not in other.index]
    if missing:
        raise SystemExit(f"{args.transfer_eval} scored {len(missing)} images that {other_root} does not hold, "
                         f"e.g. {missing[0]}: pass the dataset that evaluation read")
    other = other.loc[[str(Path(p).resolve()) for p in cnn_other["path"]]].reset_index(drop=True)
    config = EmbeddingConfig(tasks=("gender", "race"), max_train=None, max_val=None)
    lines = [f"# Face-pretrained features vs the CNN run `{run.name}`", "",
             f"Train split draws: {args.seeds} disjoint, gender x race stratified, ~{args.per_seed} faces each; "
             f"strength chosen on {len(val)} val faces; scored on the run's {len(test)} test faces and "
             f"{len(other)} faces of `{other_root.name}` (never fitted on).", ""]
    with tempfile.TemporaryDirectory() as tmp:
        entries = {"test": {"cnn": [run], "face": [], "ensemble": []},
                   "other": {"cnn": [Path(args.transfer_eval)], "face": [], "ensemble": []}}
        for k, draw in enumerate(stratified_draws(train, args.seeds, args.per_seed)):
            result = run_face_embedding(draw, val, {"test": test, "other": other}, split.table.race_scheme,
                                        config, args.cache_dir, progress=False, log=lambda m: None)
            for side, cnn in (("test", cnn_test), ("other", cnn_other)):
                face = result.predictions[side]
                folder = Path(tmp) / f"face-{side}-s{k}"
                folder.mkdir()
                face.to_csv(folder / "predictions.csv", index=False)
                entries[side]["face"].append(folder / "predictions.csv")
                both = cnn[["path"] + [c for c in cnn.columns if c.startswith(("gender_", "race_"))]]
                mixed = average_predictions([both.set_index("path").loc[face["path"]].reset_index(), face])
                ens = Path(tmp) / f"ens-{side}-s{k}.csv"
                mixed.to_csv(ens, index=False)
                entries[side]["ensemble"].append(ens)
            lines.append(f"- draw {k}: {result.info['n_train']} faces fitted; chosen heads "
                         f"{ {t: s.get('chosen') for t, s in result.info['selection'].items()} }; "
                         f"face found by HOG on {result.info['face_detected_share']['test']:.1%} (test), "
                         f"{result.info['face_detected_share']['other']:.1%} (other)")
        for side, title in (("test", "the run's test split (in distribution)"), ("other", f"{other_root.name}")):
            table = compare_runs(entries[side], AuditConfig(n_boot=args.n_boot, tasks=("gender", "race")),
                                 reference="cnn")
            frames = {m: [load_predictions(Path(p))[0] for p in paths] for m, paths in entries[side].items()}
            lines += ["", f"## {title}", "", *markdown_table(table), "", "Race recall:", "",
                      *recall_table(frames, "race"), "", "Gender recall:", "", *recall_table(frames, "gender")]
    lines += ["", f"Wall time {time.perf_counter() - started:.0f} s (descriptors cached in {args.cache_dir})."]
    Path(args.out).write_text("\n".join(lines) + "\n", encoding="utf-8")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
