"""Readers that turn datasets, as users have them on disk, into one label table.

Every reader returns a :class:`LabelTable`: a DataFrame with one row per image and the columns
``path`` (absolute), ``dataset``, ``age`` (years, NaN if unknown), ``age_group``, ``gender``,
``race`` (canonical strings, None if unknown), plus the race scheme and the problems met on the
way (malformed names, unknown labels, missing files), each naming the file or row.
"""

from __future__ import annotations

import csv
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Optional

import pandas as pd

from facefair import labels as L

LABEL_COLUMNS = ("age", "age_group", "gender", "race")
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".gif", ".tif", ".tiff")


@dataclass
class Problem:
    where: str  # file or "file:row"
    message: str

    def __str__(self) -> str:
        return f"{self.where}: {self.message}"


@dataclass
class LabelTable:
    frame: pd.DataFrame
    race_scheme: Optional[str]
    problems: list[Problem] = field(default_factory=list)
    #: label folders only: the attribute of each folder level ("-": no label), as read or detected
    layout: Optional[list[str]] = None

    def summary(self, examples: int = 3) -> str:
        lines = [f"{len(self.frame)} images"]
        for column in LABEL_COLUMNS:
            if column in self.frame:
                lines.append(f"  {column}: {int(self.frame[column].notna().sum())} labelled")
        if self.problems:
            lines.append(f"  {len(self.problems)} problems, e.g.:")
            lines.extend(f"    {p}" for p in self.problems[:examples])
        return "\n".join(lines)


def _finish(rows: list[dict], dataset: str, problems: list[Problem], race_scheme: Optional[str] = None) -> LabelTable:
    """The table from parsed rows.  ``race_scheme`` is the dataset's own (UTKFace is race5 even in
    a subset without "Others"); only a generic CSV has its scheme inferred from the values."""
    frame = pd.DataFrame(rows, columns=["path", *LABEL_COLUMNS])
    frame["age"] = pd.to_numeric(frame["age"], errors="coerce").astype(float)
    # Exact ages imply the group; a stated group wins where both exist.
    derived = frame["age"].map(lambda a: L.age_to_group(a) if pd.notna(a) else None)
    frame["age_group"] = frame["age_group"].where(frame["age_group"].notna(), derived)
    for column in ("age_group", "gender", "race"):
        frame[column] = frame[column].astype(object).where(frame[column].notna(), None)
    frame.insert(1, "dataset", dataset)
    if race_scheme is None and frame["race"].notna().any():
        race_scheme = L.race_scheme_of(frame["race"])
        # A mixed vocabulary ("asian" beside "hispanic") is read in the finest scheme it fits.
        frame["race"] = frame["race"].map(lambda r: L.race_in_scheme(r, race_scheme) if isinstance(r, str) else None)
    return LabelTable(frame.reset_index(drop=True), race_scheme, problems)


# --------------------------------------------------------------------------- UTKFace
_UTK_NAME = re.compile(r"^(?P<fields>[^.]*?)(?:\.jpg)?\.chip\.jpg$|^(?P<plain>[^.]+)\.(?:jpg|jpeg|png)$", re.I)


def parse_utkface_name(name: str) -> tuple[dict, Optional[str]]:
    """Labels from ``AGE_GENDER_RACE_DATETIME.jpg.chip.jpg``; the second value names what was wrong."""
    match = _UTK_NAME.match(name)
    stem = (match.group("fields") or match.group("plain")) if match else name.split(".")[0]
    # A name like "..._20170116232725357jpg.chip.jpg" lost its dot: strip the glued "jpg".
    stem = re.sub(r"jpg$", "", stem, flags=re.I)
    fields = stem.split("_")
    out: dict = {"age": None, "gender": None, "race": None}
    if len(fields) == 4:
        age, gender, race, _stamp = fields
    elif len(fields) == 3:
        # One field is missing; a 17-digit datetime tells which two remain before it.
        age, gender, race = fields[0], fields[1], None
        if not re.fullmatch(r"\d{14,}", fields[2]):
            race = fields[2]
    else:
        return out, f"cannot parse {len(fields)} underscore fields"
    out["age"] = L.parse_age_years(age)
    out["gender"] = L.UTK_GENDER_CODES.get(gender)
    out["race"] = L.UTK_RACE_CODES.get(race) if race is not None else None
    missing = [k for k, v in out.items() if v is None]
    return out, (f"no valid {', '.join(missing)} in name" if missing else None)


def read_utkface(folder: str | Path) -> LabelTable:
    folder = Path(folder)
    files = sorted(p for p in folder.rglob("*") if p.suffix.lower() in IMAGE_EXTENSIONS and p.is_file())
    if not files:
        raise FileNotFoundError(f"no images under {folder}")
    rows, problems = [], []
    for path in files:
        parsed, problem = parse_utkface_name(path.name)
        if problem:
            problems.append(Problem(str(path), problem + " (kept for the tasks it does label)"))
        rows.append({"path": str(path.resolve()), "age_group": None, **parsed})
    return _finish(rows, "utkface", problems, race_scheme="race5")


# --------------------------------------------------------------------------- CSV readers
_PATH_COLUMNS = ("file", "image_path", "img", "path", "filename", "image", "img_path", "file_name", "image_name")
_COLUMN_ALIASES = {
    "gender": ("gender", "sex"),
    "race": ("race", "ethnicity", "race_label"),
    "age": ("age_years", "age_exact", "real_age"),
    "age_group": ("age_group", "age_bin", "agegroup", "age_range"),
}


def detect_columns(columns: Iterable[str]) -> dict[str, str]:
    """Map our column names to the CSV's, case-insensitively; an ``age`` column is read as years
    or as groups depending on its values (see :func:`read_label_csv`)."""
    lower = {c.lower().strip(): c for c in columns}
    found = {}
    for candidate in _PATH_COLUMNS:
        if candidate in lower:
            found["path"] = lower[candidate]
            break
    for ours, aliases in _COLUMN_ALIASES.items():
        for alias in aliases:
            if alias in lower:
                found[ours] = lower[alias]
                break
    if "age" in lower and "age" not in found.values():
        found["age_raw"] = lower["age"]
    if "path" not in found:
        raise ValueError(f"no image column among {list(columns)}; expected one of {_PATH_COLUMNS}")
    return found


def _resolver(root: Path, relative: list[str]):
    """Pick, once per CSV, the folder its paths are relative to (users lay FairFace out as
    root/, root/train/, root/val/ or root/images/), by probing the first rows that exist."""
    bases = [root, root / "train", root / "val", root / "images", root / "test"]
    probe = [r for r in relative[:200] if r]
    best, best_hits = root, -1
    for base in bases:
        hits = sum((base / r).exists() or (base / Path(r).name).exists() for r in probe[:50])
        if hits > best_hits:
            best, best_hits = base, hits
    flat = bool(probe) and not (best / probe[0]).exists() and (best / Path(probe[0]).name).exists()

    def resolve(rel: str) -> Path:
        return (best / Path(rel).name) if flat else (best / rel)

    return resolve


def read_csv_table(path: str | Path, nrows: Optional[int] = None,
                   usecols: Optional[Iterable[str]] = None) -> pd.DataFrame:
    """A label or predictions CSV as text columns, as spreadsheets save them: UTF-8 with or without
    a BOM, and comma, semicolon (Excel in many locales), tab or pipe separated (sniffed from the
    header; ``frame.attrs["sep"]`` says which).  ``usecols``: only these columns (absent ones are
    ignored).  A file that is not text (a photo given by mistake) is refused as "not a CSV file"."""
    path = Path(path)
    _refuse_binary(path)
    with open(path, encoding="utf-8-sig", errors="replace") as handle:
        header = handle.readline()
    if not header.strip():
        raise ValueError(f"{path}: empty file (no header line)")
    try:
        sep = csv.Sniffer().sniff(header, delimiters=",;\t|").delimiter
    except csv.Error:  # a single column
        sep = ","
    wanted = None
    if usecols is not None:
        wanted = set(usecols)
        wanted = lambda name, _wanted=wanted: name in _wanted  # noqa: E731 - absent columns are not an error
    try:
        frame = pd.read_csv(path, sep=sep, dtype=str, keep_default_na=False, encoding="utf-8-sig", nrows=nrows,
                            usecols=wanted)
    except (pd.errors.ParserError, UnicodeDecodeError) as error:
        raise ValueError(f"{path}: not a readable CSV ({str(error).strip().splitlines()[0]})") from None
    frame.attrs["sep"] = sep
    return frame


#: How common binary files start: a photo or archive given where a CSV belongs.
_MAGIC = {b"\xff\xd8\xff": "a JPEG image", b"\x89PNG": "a PNG image", b"GIF8": "a GIF image",
          b"%PDF": "a PDF", b"PK\x03\x04": "a zip archive", b"RIFF": "a RIFF (WebP/WAV) file",
          b"II*\x00": "a TIFF image", b"MM\x00*": "a TIFF image"}


def _refuse_binary(path: Path) -> None:
    with open(path, "rb") as handle:
        head = handle.read(4096)
    kind = next((what for magic, what in _MAGIC.items() if what and head.startswith(magic)), None)
    if kind is None and b"\x00" in head:
        kind = "a binary file"
    if kind:
        raise ValueError(f"{path}: not a CSV file (it looks like {kind}); give a CSV table")


def read_label_csv(csv_path: str | Path, image_root: str | Path | None = None, *, dataset: str | None = None,
                   require_images: bool = True, race_scheme: Optional[str] = None,
                   label_map: Optional[L.LabelMap] = None) -> LabelTable:
    """Any label CSV (FairFace's included); columns are auto-detected and labels normalised (through
    ``label_map`` first, then the built-in vocabularies)."""
    csv_path = Path(csv_path)
    label_map = label_map or L.LabelMap()
    raw = read_csv_table(csv_path)
    if raw.empty:
        raise ValueError(f"{csv_path}: no rows")
    try:
        columns = detect_columns(raw.columns)
    except ValueError as error:
        raise ValueError(f"{csv_path}: {error}") from None
    root = Path(image_root) if image_root is not None else csv_path.parent
    relative = raw[columns["path"]].astype(str).str.strip().tolist()
    resolve = _resolver(root, relative)
    rows, problems, first_row = [], [], {}
    for i, rel in enumerate(relative):
        where = f"{csv_path.name}:{i + 2}"  # +2: header line and 1-based rows, as an editor shows them
        if not rel:
            problems.append(Problem(where, "empty image path; row skipped"))
            continue
        if rel in first_row:  # the same image twice would be trained on twice, or split across train and test
            problems.append(Problem(where, f"duplicate of row {first_row[rel]} ({rel}); row skipped"))
            continue
        first_row[rel] = i + 2
        path = Path(rel) if Path(rel).is_absolute() else resolve(rel)
        if require_images and not path.exists():
            problems.append(Problem(where, f"image not found: {path}; row skipped"))
            continue
        row = {"path": str(path), "age": None, "age_group": None, "gender": None, "race": None}
        for ours in ("gender", "race", "age_group", "age"):
            if ours in columns:
                value = raw.at[i, columns[ours]]
                row[ours] = L.parse_age_years(value) if ours == "age" else label_map.normalize(ours, value)
                if row[ours] is None and not L.is_missing(value):
                    hint = "" if ours == "age" else (f" (accepted: {L.accepted_spellings(ours)}; or map it with "
                                                     f"--label-map {ours}:{value.strip()}=LABEL)")
                    problems.append(Problem(where, f"unknown {ours} label {value!r}; left unlabelled{hint}"))
        if race_scheme and row["race"] is not None and row["race"] not in L.RACE_SCHEMES[race_scheme]:
            problems.append(Problem(where, f"race {row['race']!r} is no {race_scheme} class; left unlabelled"))
            row["race"] = None
        if "age_raw" in columns:
            value = raw.at[i, columns["age_raw"]].strip()
            if re.fullmatch(r"\d+(\.\d+)?", value):
                row["age"] = L.parse_age_years(value)
            else:
                row["age_group"] = L.normalize_age_group(value)
                if row["age_group"] is None and not L.is_missing(value):
                    problems.append(Problem(where, f"unknown age label {value!r}; left unlabelled"))
        rows.append(row)
    return _finish(rows, dataset or csv_path.stem, problems, race_scheme)


def read_fairface(label_csvs: Iterable[str | Path], image_root: str | Path, *, require_images: bool = True) -> LabelTable:
    """FairFace: its train/val label CSVs plus the folder holding train/ and val/."""
    tables = [read_label_csv(c, image_root, dataset="fairface", require_images=require_images, race_scheme="race7")
              for c in label_csvs]
    return concat_tables(tables)


# --------------------------------------------------------------------------- ImageFolder
def read_imagefolder(root: str | Path, task: Optional[str] = None, *, layout=None,
                     label_map: Optional[L.LabelMap] = None) -> LabelTable:
    """Label folders, nested as people lay them out (``gender/race/x.jpg``, ``race/gender/...``,
    FineFACE's ``[split/]CLASS/x.jpg``): see :mod:`facefair.data.folders`.  ``layout`` names each
    folder level (``"gender/race"``); without it the levels are detected from their folder names.
    ``task`` (older callers) names the last level alone."""
    from facefair.data.folders import read_label_folders
    return read_label_folders(root, layout=layout, label_map=label_map, task=task)


# --------------------------------------------------------------------------- combining
def concat_tables(tables: list[LabelTable], race_scheme: Optional[str] = None) -> LabelTable:
    """Merge tables (e.g. UTKFace + FairFace), mapping race to one scheme; tasks a source lacks stay missing."""
    schemes = [t.race_scheme for t in tables if t.race_scheme]
    if race_scheme is None and schemes:
        # The coarsest scheme every source maps into.
        race_scheme = min(schemes, key=lambda s: len(L.RACE_SCHEMES[s]))
    frames = []
    for table in tables:
        frame = table.frame.copy()
        if race_scheme and table.race_scheme and table.race_scheme != race_scheme:
            frame["race"] = frame["race"].map(lambda r: L.map_race(r, table.race_scheme, race_scheme))
        frames.append(frame)
    merged = pd.concat(frames, ignore_index=True)
    merged["age"] = merged["age"].astype(float)
    return LabelTable(merged, race_scheme, [p for t in tables for p in t.problems])


def read_dataset(source: str | Path, *, kind: str = "auto", image_root: str | Path | None = None,
                 extra_csvs: Iterable[str | Path] = (), layout=None, label_map=None) -> LabelTable:
    """The one entry point every command reads a dataset through: a UTKFace folder, label folders
    (nested, ``--layout`` to name their levels), FairFace CSVs or any label CSV.  ``label_map``
    (a :class:`~facefair.labels.LabelMap`, or the specs it parses: YAML files, ``race:RAW=LABEL``)
    reads spellings the built-in vocabularies do not."""
    source = Path(source)
    if not source.exists():
        raise FileNotFoundError(f"dataset not found: {source}; give a folder of images or a label CSV")
    if not isinstance(label_map, L.LabelMap):
        label_map = L.LabelMap.parse(label_map)
    if layout and kind == "auto" and source.is_dir():
        kind = "imagefolder"  # a layout names label folders, whatever the file names look like
    if kind == "auto":
        if source.is_file():
            header = read_csv_table(source, nrows=0).columns.str.lower()
            # FairFace's own label files also carry service_test; any other CSV with these
            # columns keeps its own race names (and has its scheme inferred).
            kind = "fairface" if {"file", "age", "gender", "race", "service_test"} <= set(header) else "csv"
        elif any(source.rglob("*.chip.jpg")):
            # UTKFace names carry labels; faces sorted into label folders (male/asian/...) are read
            # by their folders, which is what whoever sorted them meant.
            try:
                return read_imagefolder(source, label_map=label_map)
            except ValueError:
                kind = "utkface"
        else:
            kind = "imagefolder"
    if kind == "utkface":
        return read_utkface(source)
    if kind == "imagefolder":
        return read_imagefolder(source, layout=layout, label_map=label_map)
    if layout:
        raise ValueError(f"--layout names label folders; {source} is read as {kind}: drop --layout or pass "
                         "--kind imagefolder")
    if kind in ("fairface", "csv"):
        scheme = "race7" if kind == "fairface" else None
        tables = [read_label_csv(c, image_root, dataset=kind if kind == "fairface" else None, race_scheme=scheme,
                                 label_map=label_map) for c in (source, *extra_csvs)]
        return concat_tables(tables)
    raise ValueError(f"unknown dataset kind {kind!r}: use auto, utkface, fairface, csv or imagefolder")


def restrict_race_scheme(table: LabelTable, scheme: Optional[str]) -> LabelTable:
    if not scheme or scheme == table.race_scheme or table.race_scheme is None:
        return table
    frame = table.frame.copy()
    frame["race"] = frame["race"].map(lambda r: L.map_race(r, table.race_scheme, scheme))
    return LabelTable(frame, scheme, table.problems, table.layout)


def label_counts(frame: pd.DataFrame) -> dict[str, dict[str, int]]:
    return {c: frame[c].value_counts(dropna=True).to_dict() for c in ("gender", "race", "age_group") if c in frame}


__all__ = [
    "LabelTable", "Problem", "read_utkface", "read_label_csv", "read_fairface", "read_imagefolder",
    "read_dataset", "concat_tables", "restrict_race_scheme", "parse_utkface_name", "detect_columns", "label_counts",
]
