"""Label vocabularies and the normalisers that map messy real-world spellings onto them.

Every reader funnels its raw strings through here, so a dataset that says ``f``, ``FEMALE``
or ``1`` (UTKFace) ends up with the same canonical value.  Values that cannot be read are
returned as ``None`` and the caller decides whether that is an error (counted and reported)
or simply a missing label for that task.
"""

from __future__ import annotations

import math
import re
from typing import Optional

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
    "black": "Black", "african american": "Black", "african-american": "Black",
    "latino_hispanic": "Latino_Hispanic", "latino hispanic": "Latino_Hispanic", "latino": "Latino_Hispanic",
    "hispanic": "Latino_Hispanic", "latino/hispanic": "Latino_Hispanic",
    "east asian": "East Asian", "east_asian": "East Asian",
    "southeast asian": "Southeast Asian", "southeast_asian": "Southeast Asian", "south east asian": "Southeast Asian",
    "indian": "Indian", "south asian": "Indian",
    "middle eastern": "Middle Eastern", "middle_eastern": "Middle Eastern",
    "asian": "Asian", "others": "Others", "other": "Others",
}


#: The sensitive attributes a row can carry (true labels): one definition for readers, the
#: predictions table, the audit and the dataset description.
ATTRIBUTES = ("race", "gender", "age_group")

#: Oldest exact age accepted (UTKFace goes to 116): the age parser and the CORAL head share it.
MAX_AGE_YEARS = 130

#: Spellings of "no label" in real tables (``?`` is FairFace-style spreadsheets' unknown).
MISSING_TOKENS = frozenset({"", "nan", "none", "null", "na", "n/a", "?"})


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
    return _RACE_ALIASES.get(re.sub(r"\s+", " ", text.lower()))


def race_scheme_of(values) -> str:
    """The smallest scheme that contains every (canonical) race value seen."""
    seen = {v for v in values if v is not None and not (isinstance(v, float) and math.isnan(v))}
    for scheme in ("race4", "race5", "race7"):
        if seen <= set(RACE_SCHEMES[scheme]):
            return scheme
    unknown = sorted(seen - set(RACE_SCHEMES["race7"]) - set(RACE_SCHEMES["race5"]))
    raise ValueError(f"race labels {unknown} belong to no known scheme ({', '.join(RACE_SCHEMES)})")


def map_race(value: Optional[str], source: str, target: str) -> Optional[str]:
    if value is None or source == target:
        return value
    mapping = RACE_MAPPINGS.get((source, target))
    if mapping is None:
        raise ValueError(f"no mapping from {source} to {target}; known: {sorted(RACE_MAPPINGS)}")
    return mapping.get(value)


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
