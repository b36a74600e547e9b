"""Image folders whose folder names are the labels, nested as people lay them out.

``root/[split/]LEVEL1/LEVEL2/.../image.jpg``: every folder level is one attribute
(``female/asian/x.jpg`` is gender then race; ``Black/Male/x.jpg`` race then gender; a single
level of class folders is FineFACE's ImageFolder).  Which attribute a level holds is detected
from its folder names through the label vocabularies (a user's ``--label-map`` first), or given
with a layout such as ``gender/race`` (``-`` for a level that is no label, e.g. a person's id).
A first level of ``train``/``val``/``test`` is kept as the ``split`` column.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Optional, Sequence

from facefair import labels as L

#: Attributes a folder level can hold (``age``: folders of exact ages in years).
LEVEL_ATTRIBUTES = ("gender", "race", "age_group", "age")
SKIP_LEVEL = "-"
SPLIT_NAMES = {"train": "train", "val": "val", "valid": "val", "validation": "val", "test": "test"}
LAYOUT_HINT = ("name each folder level with --layout, e.g. --layout gender/race ('-' for a level that is no label), "
               "and map other spellings with --label-map race:NAME=White (or a YAML file)")


def parse_layout(layout: str | Sequence[str] | None) -> Optional[list[str]]:
    """``"gender/race"`` -> ``["gender", "race"]``; ``-`` (or skip/ignore) marks a level that is no label."""
    if layout is None or layout == "":
        return None
    levels = [p.strip() for p in (layout.replace(",", "/").split("/") if isinstance(layout, str) else layout)]
    out = []
    for level in levels:
        name = level.lower().replace("-", "_") if level not in ("-", "") else SKIP_LEVEL
        name = {"sex": "gender", "ethnicity": "race", "age_bin": "age_group", "agegroup": "age_group",
                "skip": SKIP_LEVEL, "ignore": SKIP_LEVEL, "_": SKIP_LEVEL}.get(name, name)
        if name != SKIP_LEVEL and name not in LEVEL_ATTRIBUTES:
            raise ValueError(f"layout {layout!r}: {level!r} is no attribute; each level is one of "
                             f"{', '.join(LEVEL_ATTRIBUTES)} or '-' (not a label)")
        out.append(name)
    named = [n for n in out if n != SKIP_LEVEL]
    if len(named) != len(set(named)):
        raise ValueError(f"layout {layout!r} names an attribute twice; each level is a different attribute")
    return out


def _level_value(attribute: str, name: str, label_map: L.LabelMap):
    if attribute == "age":
        return L.parse_age_years(name)
    return label_map.normalize(attribute, name)


def _detect_level(names: set[str], label_map: L.LabelMap) -> Optional[str]:
    """The attribute most of a level's folder names read as (at least half of them), else None.
    Bare numbers are left out: ``0``/``1`` read as a gender, a UTKFace race code and an age alike."""
    words = {n for n in names if not n.strip().isdigit()}
    if not words:
        return None
    scores = {a: sum(label_map.normalize(a, n) is not None for n in words) for a in ("gender", "race", "age_group")}
    best = max(scores, key=scores.get)
    return best if scores[best] * 2 >= len(words) and scores[best] > 0 else None


def detect_layout(level_names: list[set[str]], label_map: L.LabelMap, root: Path) -> list[str]:
    layout = [_detect_level(names, label_map) or SKIP_LEVEL for names in level_names]
    named = [a for a in layout if a != SKIP_LEVEL]
    if not named:
        shown = "; ".join(f"level {i + 1}: {', '.join(sorted(names)[:8])}" for i, names in enumerate(level_names))
        raise ValueError(f"{root}: no folder level reads as gender, race or age group ({shown}); {LAYOUT_HINT}")
    twice = sorted(a for a, n in Counter(named).items() if n > 1)
    if twice:
        raise ValueError(f"{root}: several folder levels read as {', '.join(twice)}; {LAYOUT_HINT}")
    return layout


def read_label_folders(root: str | Path, layout: str | Sequence[str] | None = None,
                       label_map: L.LabelMap | None = None, task: Optional[str] = None):
    """A :class:`~facefair.data.readers.LabelTable` from nested label folders (see the module doc).

    Images at another depth than most are reported and skipped; a folder name that its level's
    vocabulary does not read is reported once, naming an image in it and the accepted spellings,
    and its images keep their other labels.
    """
    from facefair.data.readers import IMAGE_EXTENSIONS, Problem, _finish

    root = Path(root)
    label_map = label_map or L.LabelMap()
    files = sorted(p for p in root.rglob("*") if p.suffix.lower() in IMAGE_EXTENSIONS and p.is_file())
    if not files:
        raise FileNotFoundError(f"no images under {root}: give a folder of images (jpg, png, ...) in label folders")
    parts = [p.relative_to(root).parts[:-1] for p in files]
    has_split = all(ps and ps[0].lower() in SPLIT_NAMES for ps in parts)
    levels = [ps[1:] if has_split else ps for ps in parts]
    depth = Counter(len(ps) for ps in levels).most_common(1)[0][0]
    if depth == 0:
        raise ValueError(f"{root}: the images are not in label folders; put them in folders named by their labels "
                         "(e.g. female/asian/x.jpg) or give a label CSV with an image column")
    wanted = parse_layout(layout)
    if wanted is None and task is not None:
        wanted = [SKIP_LEVEL] * (depth - 1) + [parse_layout(task)[0]]
    level_names = [{ps[i] for ps in levels if len(ps) == depth} for i in range(depth)]
    if wanted is None:
        wanted = detect_layout(level_names, label_map, root)
    elif len(wanted) != depth:
        example = next(p for p, ps in zip(files, levels) if len(ps) == depth)
        raise ValueError(f"layout {'/'.join(wanted)} names {len(wanted)} folder levels but the images sit "
                         f"{depth} deep under {root} (e.g. {example.relative_to(root)}); {LAYOUT_HINT}")

    rows, problems, splits = [], [], []
    unknown: dict[tuple[int, str], list[Path]] = {}
    for path, ps, full in zip(files, levels, parts):
        if len(ps) != depth:
            problems.append(Problem(str(path), f"{len(ps)} label folders deep where the others are {depth}; skipped"))
            continue
        row = {"path": str(path.resolve()), "age": None, "age_group": None, "gender": None, "race": None}
        for i, attribute in enumerate(wanted):
            if attribute == SKIP_LEVEL:
                continue
            value = _level_value(attribute, ps[i], label_map)
            if value is None:
                unknown.setdefault((i, ps[i]), []).append(path)
            row[attribute] = value
        rows.append(row)
        splits.append(SPLIT_NAMES[full[0].lower()] if has_split else None)
    for (i, name), paths in unknown.items():
        attribute = wanted[i]
        problems.append(Problem(str(paths[0]), (
            f"folder {name!r} (level {i + 1}, {len(paths)} images) is no {attribute} label; accepted: "
            f"{L.accepted_spellings(attribute)}; map it with --label-map {attribute}:{name}=LABEL; "
            f"those images are kept unlabelled for {attribute}")))
    if not rows:
        raise ValueError(f"{root}: no image is {depth} label folders deep; {LAYOUT_HINT}")
    table = _finish(rows, root.name, problems)
    table.layout = list(wanted)
    if has_split:
        table.frame["split"] = splits
    return table


__all__ = ["read_label_folders", "parse_layout", "detect_layout", "LEVEL_ATTRIBUTES", "LAYOUT_HINT"]
