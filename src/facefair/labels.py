"""Label vocabularies and the normalisers that map messy real-world spellings onto them.

Every reader funnels its raw strings through here, so a dataset that says ``f``, ``FEMALE``
or ``1`` (UTKFace) ends up with the same canonical value.  Values that cannot be read are
returned as ``None`` and the caller decides whether that is an error (counted and reported)
or simply a missing label for that task.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable, Optional

GENDERS = ("Male", "Female")

#: FairFace's nine age groups, in order (the order matters for ordinal metrics).
AGE_GROUPS = ("0-2", "3-9", "10-19", "20-29", "30-39", "40-49", "50-59", "60-69", "70+")

#: Race vocabularies.  ``race7`` is FairFace, ``race5`` is UTKFace, ``race4`` is FairFace's
#: reduced scheme (White, Black, Asian, Indian).
RACE_SCHEMES: dict[str, tuple[str, ...]] = {
    "race7": ("White", "Black", "Latino_Hispanic", "East Asian", "Southeast Asian", "Indian", "Middle Eastern"),
    "race5": ("White", "Black", "Asian", "Indian", "Others"),
    "race4": ("White", "Black", "Asian", "Indian"),
}

#: How a label of one scheme reads in another.  Where no faithful mapping exists the target is
#: ``None`` (the label becomes missing for that task) rather than a guess: Latino_Hispanic and
#: Middle Eastern have no race4 class, and UTKFace's "Others" is not one FairFace race.
RACE_MAPPINGS: dict[tuple[str, str], dict[str, Optional[str]]] = {
    ("race7", "race5"): {
        "White": "White", "Black": "Black", "East Asian": "Asian", "Southeast Asian": "Asian",
        "Indian": "Indian", "Latino_Hispanic": "Others", "Middle Eastern": "Others",
    },
    ("race7", "race4"): {
        "White": "White", "Black": "Black", "East Asian": "Asian", "Southeast Asian": "Asian",
        "Indian": "Indian", "Latino_Hispanic": None, "Middle Eastern": None,
    },
    ("race5", "race4"): {"White": "White", "Black": "Black", "Asian": "Asian", "Indian": "Indian", "Others": None},
}

UTK_RACE_CODES = {"0": "White", "1": "Black", "2": "Asian", "3": "Indian", "4": "Others"}
UTK_GENDER_CODES = {"0": "Male", "1": "Female"}

_GENDER_ALIASES = {
    "m": "Male", "male": "Male", "man": "Male", "men": "Male",
    "f": "Female", "female": "Female", "woman": "Female", "women": "Female", "w": "Female",
}

# Spreadsheets turn "3-9" into a date ("9-Mar", "3-Sep") and "10-19" into "19-Oct"/"Oct-19".
_MONTHS = {m: i for i, m in enumerate(
    ("jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec"), start=1)}

_RACE_ALIASES = {
    "white": "White", "caucasian": "White",
    "black": "Black", "african american": "Black", "african": "Black", "afro american": "Black",
    "latino hispanic": "Latino_Hispanic", "latino": "Latino_Hispanic", "hispanic": "Latino_Hispanic",
    "latino/hispanic": "Latino_Hispanic", "hispanic/latino": "Latino_Hispanic", "latina": "Latino_Hispanic",
    "latinx": "Latino_Hispanic", "hispanic latino": "Latino_Hispanic",
    "east asian": "East Asian", "southeast asian": "Southeast Asian", "south east asian": "Southeast Asian",
    "indian": "Indian", "south asian": "Indian",
    "middle eastern": "Middle Eastern", "mideastern": "Middle Eastern", "mid eastern": "Middle Eastern",
    "middleeastern": "Middle Eastern", "middle east": "Middle Eastern",
    # "Asian" alone is UTKFace's race-5 class: it cannot be split into East and Southeast Asian.
    "asian": "Asian", "others": "Others", "other": "Others",
}


def _race_key(text: str) -> str:
    """Spelling-insensitive key: case, underscores, hyphens and repeated blanks do not matter."""
    return re.sub(r"[\s_\-]+", " ", text.strip().lower())


#: The sensitive attributes a row can carry (true labels): one definition for readers, the
#: predictions table, the audit and the dataset description.
ATTRIBUTES = ("race", "gender", "age_group")

#: Oldest exact age accepted (UTKFace goes to 116): the age parser and the CORAL head share it.
MAX_AGE_YEARS = 130

#: Spellings of "no label" in real tables (``?`` is FairFace-style spreadsheets' unknown), compared
#: stripped and lower-cased: the one vocabulary of the dataset readers, the predictions table and
#: the audit.  No class of any task is spelled like one of these.
MISSING_TOKENS = frozenset({"", "nan", "none", "null", "na", "n/a", "#n/a", "?", "-", "unknown", "unk", "missing"})


def is_missing(value: object) -> bool:
    """The one test for a missing label, used by every reader and by the audit."""
    if value is None:
        return True
    if isinstance(value, float) and math.isnan(value):
        return True
    return isinstance(value, str) and value.strip().lower() in MISSING_TOKENS


_is_missing = is_missing  # the name other modules used before it was public


def normalize_gender(value: object) -> Optional[str]:
    if _is_missing(value):
        return None
    text = str(value).strip()
    if text in UTK_GENDER_CODES:
        return UTK_GENDER_CODES[text]
    return _GENDER_ALIASES.get(text.lower())


def normalize_race(value: object) -> Optional[str]:
    """Canonical race name in whichever scheme the spelling belongs to (UTK codes included)."""
    if _is_missing(value):
        return None
    text = str(value).strip()
    if text in UTK_RACE_CODES:
        return UTK_RACE_CODES[text]
    return _RACE_ALIASES.get(_race_key(text)) or _RACE_ALIASES.get(text.lower())


def race_in_scheme(value: str, target: str) -> Optional[str]:
    """``value`` (canonical, of any scheme) as a class of ``target``, or None where no faithful
    mapping exists (race-5 "Asian" has no race-7 class; race-7 "Middle Eastern" no race-4 one)."""
    if value in RACE_SCHEMES[target]:
        return value
    for (source, to), mapping in RACE_MAPPINGS.items():
        if to == target and value in RACE_SCHEMES[source] and mapping.get(value) is not None:
            return mapping[value]
    return None


def race_scheme_of(values) -> str:
    """The smallest scheme that contains every (canonical) race value seen; for a mixed vocabulary
    (another dataset's "asian" next to "hispanic" and "mideastern"), the finest scheme every value
    maps into faithfully (there race5, with Latino_Hispanic and Middle Eastern as Others)."""
    seen = {v for v in values if v is not None and not (isinstance(v, float) and math.isnan(v))}
    for scheme in ("race4", "race5", "race7"):
        if seen <= set(RACE_SCHEMES[scheme]):
            return scheme
    for scheme in ("race7", "race5", "race4"):
        if all(race_in_scheme(v, scheme) is not None for v in seen):
            return scheme
    unknown = sorted(seen - set(RACE_SCHEMES["race7"]) - set(RACE_SCHEMES["race5"]))
    raise ValueError(f"race labels {unknown or sorted(seen)} belong to no known scheme ({', '.join(RACE_SCHEMES)}); "
                     "map them onto one with --label-map race:NAME=LABEL (or a YAML file)")


def shared_scheme(*schemes: Optional[str]) -> Optional[str]:
    """The finest scheme every given scheme maps into (race7 and race5 share race5; race4 labels are
    race5 labels as they stand): two datasets, or a model and a dataset, are compared on it."""
    known = [s for s in schemes if s]
    if not known:
        return None
    for target in ("race7", "race5", "race4"):
        if all(s == target or (s, target) in RACE_MAPPINGS or set(RACE_SCHEMES[s]) <= set(RACE_SCHEMES[target])
               for s in known):
            return target
    return "race4"


def map_race(value: Optional[str], source: str, target: str) -> Optional[str]:
    if value is None or source == target:
        return value
    if value not in RACE_SCHEMES.get(source, ()):
        # A mixed vocabulary read as ``source`` (race5 "Asian" next to race7 "Middle Eastern").
        return race_in_scheme(value, target)
    mapping = RACE_MAPPINGS.get((source, target))
    if mapping is None:
        if set(RACE_SCHEMES[source]) <= set(RACE_SCHEMES[target]):
            return value  # race4 labels are race5 labels as they stand
        raise ValueError(f"no mapping from {source} to {target}: {source} labels cannot be told apart into "
                         f"{target} classes; compare on {shared_scheme(source, target)} (known mappings: "
                         f"{', '.join(f'{a}->{b}' for a, b in RACE_MAPPINGS)})")
    return mapping.get(value)


def accepted_spellings(attribute: str) -> str:
    """The spellings a reader accepts for ``attribute``, for error messages."""
    if attribute == "gender":
        return ", ".join(sorted(_GENDER_ALIASES))
    if attribute == "race":
        return ", ".join(sorted(_RACE_ALIASES)) + " (any case; '_' or '-' for a blank)"
    if attribute == "age_group":
        return ", ".join(AGE_GROUPS) + ", '70+'/'more than 70', or an age in years"
    return "(any)"


def _demangle_excel_range(text: str) -> Optional[str]:
    """Undo a spreadsheet's date conversion of an age range: '9-Mar' -> '3-9', 'Oct-19' -> '10-19'."""
    parts = re.split(r"[-/ ]", text)
    if len(parts) != 2:
        return None
    a, b = parts[0].lower()[:3], parts[1].lower()[:3]
    if a in _MONTHS and b.isdigit():
        return f"{_MONTHS[a]}-{int(b)}"
    if b in _MONTHS and a.isdigit():
        return f"{_MONTHS[b]}-{int(a)}"
    return None


def age_to_group(years: float) -> Optional[str]:
    """FairFace group of an exact age in years (UTKFace -> FairFace mapping).

    Groups are of completed years, as people state their age: 2.4 years old is "2", so ``0-2``;
    only 3.0 and above is ``3-9``.
    """
    if years is None or (isinstance(years, float) and math.isnan(years)) or years < 0:
        return None
    bounds = ((3, "0-2"), (10, "3-9"), (20, "10-19"), (30, "20-29"), (40, "30-39"),
              (50, "40-49"), (60, "50-59"), (70, "60-69"))
    for below, group in bounds:
        if years < below:
            return group
    return "70+"


def normalize_age_group(value: object) -> Optional[str]:
    """Canonical FairFace age group from '70+', 'more than 70', '9-Mar', '10 - 19', or an exact age."""
    if _is_missing(value):
        return None
    text = str(value).strip()
    lowered = text.lower()
    if re.fullmatch(r"(more than|over|above|>=?)\s*70|70\s*\+|70\s*(and|or)\s*(over|above|more)", lowered):
        return "70+"
    compact = re.sub(r"\s+", "", lowered)
    if re.fullmatch(r"\d+-\d+", compact):
        return compact if compact in AGE_GROUPS else None
    demangled = _demangle_excel_range(text)
    if demangled is not None:
        return demangled if demangled in AGE_GROUPS else None
    if re.fullmatch(r"\d+(\.\d+)?", compact):
        return age_to_group(float(compact))
    return None


def parse_age_years(value: object) -> Optional[float]:
    if _is_missing(value):
        return None
    try:
        years = float(str(value).strip())
    except ValueError:
        return None
    return years if 0 <= years <= MAX_AGE_YEARS else None


#: The normaliser of each attribute a reader can label from a raw string.
NORMALIZERS: dict[str, Callable[[object], Optional[str]]] = {
    "gender": normalize_gender, "race": normalize_race, "age_group": normalize_age_group,
}


def _map_key(text: object) -> str:
    return re.sub(r"[\s_\-]+", " ", str(text).strip().lower())


@dataclass
class LabelMap:
    """A user's own spellings, read before the built-in vocabularies: ``{attribute: {raw: label}}``.

    Given as a YAML (or JSON) file of that shape, e.g. ``race: {afro-caribbean: Black, han: East
    Asian}``, or inline as ``ATTRIBUTE:RAW=LABEL`` (``race:han=East Asian``).  Raw spellings match
    regardless of case, blanks, ``_`` and ``-``; every label must be one the built-in vocabulary
    reads (``Latino_Hispanic``, ``hispanic``, ``f`` ...), so a typo in the map is caught here.
    """

    entries: dict[str, dict[str, str]] = field(default_factory=dict)

    @classmethod
    def parse(cls, specs: Iterable[str] | None) -> "LabelMap":
        out = cls()
        for spec in specs or ():
            spec = str(spec)
            if ":" in spec and "=" in spec and not Path(spec).is_file():
                attribute, _, pair = spec.partition(":")
                raw, _, label = pair.partition("=")
                out.add(attribute.strip(), raw, label, where=f"--label-map {spec!r}")
                continue
            path = Path(spec)
            if not path.is_file():
                raise FileNotFoundError(f"--label-map {spec}: no such file; give a YAML file "
                                        "({race: {RAW: LABEL}}) or ATTRIBUTE:RAW=LABEL, e.g. race:latinx=hispanic")
            import yaml
            try:
                raw_map = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
            except yaml.YAMLError as error:
                raise ValueError(f"{path}: not readable YAML ({str(error).splitlines()[0]}); write "
                                 "'race:' then one 'RAW: LABEL' line per spelling") from None
            if not isinstance(raw_map, dict) or not all(isinstance(v, dict) for v in raw_map.values()):
                raise ValueError(f"{path}: a label map is attribute -> {{raw spelling: label}}, e.g. "
                                 "'race: {afro-caribbean: Black}'")
            for attribute, pairs in raw_map.items():
                for raw, label in pairs.items():
                    out.add(str(attribute), raw, label, where=str(path))
        return out

    def add(self, attribute: str, raw: object, label: object, where: str) -> None:
        if attribute not in NORMALIZERS:
            raise ValueError(f"{where}: {attribute!r} is no attribute a label map can name; use "
                             f"{', '.join(NORMALIZERS)}")
        canonical = NORMALIZERS[attribute](label)
        if canonical is None:
            raise ValueError(f"{where}: {label!r} is no {attribute} label; accepted: {accepted_spellings(attribute)}")
        self.entries.setdefault(attribute, {})[_map_key(raw)] = canonical

    def normalize(self, attribute: str, value: object) -> Optional[str]:
        """``value`` through the map first, then through the built-in vocabulary."""
        if is_missing(value):
            return None
        mapped = self.entries.get(attribute, {}).get(_map_key(value))
        return mapped if mapped is not None else NORMALIZERS[attribute](value)

    def __bool__(self) -> bool:
        return bool(self.entries)
