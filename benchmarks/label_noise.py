"""Synthetic check of `facefair clean --labels`: flip 10% of the gender labels of 2,000 real UTKFace
faces at random, score them, and report precision and recall at the top-k cut (k = number
flipped; the issue's goal: recall >= 0.7) and of cleanlab's own flagged set.

    .venv/bin/python benchmarks/label_noise.py                      # ImageNet features (the default scorer)
    .venv/bin/python benchmarks/label_noise.py --features dlib-face # dlib's face descriptors, same draws
    .venv/bin/python benchmarks/label_noise.py --model runs/mitigation/baseline/s0/best.pt \\
        --split runs/mitigation/baseline/s0/splits.csv              # a trained model's features, on its test faces

With --model the faces are drawn from the model's test split only, so the feature extractor never
saw their labels (scoring faces a model was trained on would hide the flips it memorised).
Each seed draws other faces and other flips.  Results: benchmarks/results/label_noise.json / .md.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent


def one_seed(frame, features, seed: int, n: int, rate: float, config) -> dict:
    from facefair.quality.labels import check_task

    rng = np.random.default_rng(seed)
    picked = np.sort(rng.choice(len(frame), n, replace=False))
    given = frame["gender"].iloc[picked].reset_index(drop=True).copy()
    flipped = np.sort(rng.choice(n, int(round(rate * n)), replace=False))
    given[flipped] = given[flipped].map({"Male": "Female", "Female": "Male"})
    paths = frame["path"].iloc[picked].tolist()
    scored = check_task(paths, given, features[picked], config, "gender")
    truth = {paths[i] for i in flipped}
    k = len(flipped)
    top = set(scored["path"].head(k))
    flagged = set(scored.loc[scored["is_label_issue"], "path"])
    ages = frame["age"].iloc[picked].to_numpy()
    adult = {paths[i] for i in range(n) if 18 <= ages[i] <= 60}
    adult_truth = truth & adult
    adult_rank = scored[scored["path"].isin(adult)].head(len(adult_truth))
    return {"seed": seed, "n": n, "flipped": k,
            "top_k_precision": len(top & truth) / k, "top_k_recall": len(top & truth) / k,
            "flagged": len(flagged), "flagged_precision": len(flagged & truth) / max(1, len(flagged)),
            "flagged_recall": len(flagged & truth) / k,
            "adults_18_60_top_k_recall": len(set(adult_rank["path"]) & adult_truth) / max(1, len(adult_truth))}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", default=str(ROOT.parent / "shared" / "data" / "utkface" / "UTKFace"))
    parser.add_argument("--n", type=int, default=2000)
    parser.add_argument("--rate", type=float, default=0.1)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--model", help="a trained checkpoint whose backbone gives the features")
    parser.add_argument("--split", help="with --model: its splits.csv; faces come from its test split")
    parser.add_argument("--mirror", action="store_true", help="mirror-averaged features")
    parser.add_argument("--features", choices=("imagenet", "dlib-face"), default="imagenet",
                        help="dlib-face: dlib's face descriptors (clean --label-features dlib-face), computed only "
                             "for the faces the seeds draw; the draws and flips are the same as with imagenet")
    parser.add_argument("--results", default=str(HERE / "results" / "label_noise"))
    args = parser.parse_args(argv)

    from facefair.data.readers import read_dataset
    from facefair.data.splits import data_root, read_saved_splits
    from facefair.quality.features import FeatureConfig, embed
    from facefair.quality.labels import LabelCheckConfig

    frame = read_dataset(args.data).frame
    frame = frame[frame["gender"].notna()].reset_index(drop=True)
    if args.model:
        if not args.split:
            raise SystemExit("--model needs --split (its splits.csv): only its test faces are scored")
        split = read_saved_splits(args.split, frame["path"], data_root(args.data))["split"]
        frame = frame[(split == "test").to_numpy()].reset_index(drop=True)
    started = time.perf_counter()
    # Features of every candidate face once (cached on disk), then each seed draws its faces.
    if args.features == "dlib-face":
        # ~0.1 s a face: embed only the faces some seed draws (one_seed's own draw), in place.
        drawn = sorted({int(i) for s in args.seeds
                        for i in np.random.default_rng(s).choice(len(frame), min(args.n, len(frame)), replace=False)})
        embedded = embed(frame["path"].iloc[drawn].tolist(), FeatureConfig(extractor="dlib-face"), progress=True)
        if len(embedded.rows) != len(drawn):
            raise SystemExit(f"{len(drawn) - len(embedded.rows)} drawn faces could not be read")
        features = np.zeros((len(frame), embedded.features.shape[1]), np.float32)
        features[drawn] = embedded.features
    else:
        embedded = embed(frame["path"].tolist(), FeatureConfig(model=args.model, mirror=args.mirror), progress=True)
        frame = frame.iloc[embedded.rows].reset_index(drop=True)
        features = embedded.features
    config = LabelCheckConfig(tasks=("gender",))
    runs = [one_seed(frame, features, s, min(args.n, len(frame)), args.rate, config) for s in args.seeds]
    summary = {
        "scorer": embedded.source, "feature_size": embedded.size, "mirror": args.mirror, "candidates": len(frame),
        "config": {"folds": config.folds, "c": config.c}, "runs": runs,
        "mean": {key: float(np.mean([r[key] for r in runs])) for key in runs[0] if key not in ("seed", "n", "flipped")},
        "seconds": round(time.perf_counter() - started, 1)}
    out = Path(args.results + ("-model" if args.model else "") + ("-dlib-face" if args.features == "dlib-face" else ""))
    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_suffix(".json").write_text(json.dumps(summary, indent=1))
    print(json.dumps(summary, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
