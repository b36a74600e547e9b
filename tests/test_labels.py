import math

import pytest

from facefair import labels as L


@pytest.mark.parametrize("raw,expected", [
    ("m", "Male"), ("F", "Female"), ("male", "Male"), ("Female", "Female"), (" WOMAN ", "Female"),
    ("0", "Male"), ("1", "Female"), ("", None), ("nan", None), ("x", None), (float("nan"), None),
])
def test_gender(raw, expected):
    assert L.normalize_gender(raw) == expected


@pytest.mark.parametrize("raw,expected", [
    ("70+", "70+"), ("more than 70", "70+"), ("More Than 70", "70+"), ("70 +", "70+"),
    ("9-Mar", "3-9"), ("Mar-09", "3-9"), ("19-Oct", "10-19"), ("Oct-19", "10-19"), ("3-9", "3-9"),
    ("10 - 19", "10-19"), ("0-2", "0-2"), ("45", "40-49"), ("2", "0-2"), ("70", "70+"),
    ("5-12", None), ("old", None), ("", None),
])
def test_age_group(raw, expected):
    assert L.normalize_age_group(raw) == expected


def test_age_to_group_boundaries():
    assert [L.age_to_group(a) for a in (0, 2, 3, 9, 10, 19, 20, 69, 70, 116)] == [
        "0-2", "0-2", "3-9", "3-9", "10-19", "10-19", "20-29", "60-69", "70+", "70+"]
    assert L.age_to_group(float("nan")) is None


@pytest.mark.parametrize("raw,expected", [
    ("East Asian", "East Asian"), ("east_asian", "East Asian"), ("Latino_Hispanic", "Latino_Hispanic"),
    ("Middle Eastern", "Middle Eastern"), ("0", "White"), ("4", "Others"), ("Asian", "Asian"), ("Martian", None),
])
def test_race(raw, expected):
    assert L.normalize_race(raw) == expected


def test_race_schemes_and_mappings():
    assert L.race_scheme_of(["White", "Asian", "Others"]) == "race5"
    assert L.race_scheme_of(["White", "Latino_Hispanic"]) == "race7"
    assert L.race_scheme_of(["White", "Asian"]) == "race4"
    assert L.map_race("Southeast Asian", "race7", "race5") == "Asian"
    assert L.map_race("Middle Eastern", "race7", "race5") == "Others"
    assert L.map_race("Middle Eastern", "race7", "race4") is None  # no faithful race4 class
    assert L.map_race("Others", "race5", "race4") is None
    with pytest.raises(ValueError):
        L.map_race("White", "race4", "race7")


def test_parse_age_years():
    assert L.parse_age_years("26") == 26.0
    assert L.parse_age_years("200") is None
    assert L.parse_age_years("abc") is None
    assert math.isclose(L.parse_age_years(" 3.5 "), 3.5)


def test_age_to_group_uses_completed_years():
    """2.4 years old is two years old: 0-2, not 3-9 (likewise 9.5 -> 3-9, 69.9 -> 60-69)."""
    assert [L.age_to_group(a) for a in (2.4, 2.99, 9.5, 19.7, 69.9, 116.0)] == [
        "0-2", "0-2", "3-9", "10-19", "60-69", "70+"]
    assert L.normalize_age_group("2.4") == "0-2"


@pytest.mark.parametrize("raw", ["?", " ? ", "", "N/A", "null", None, float("nan")])
def test_one_missing_rule_for_every_label(raw):
    assert L.is_missing(raw)
    assert L.normalize_race(raw) is None and L.normalize_gender(raw) is None


def test_attributes_are_defined_once():
    from facefair.audit import config as audit_config
    from facefair.describe import stats
    from facefair import table
    assert audit_config.ATTRIBUTES is L.ATTRIBUTES
    assert table.ATTRIBUTES is L.ATTRIBUTES and stats.ATTRIBUTES is L.ATTRIBUTES
