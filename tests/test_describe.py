"""``facefair describe`` on real UTKFace faces: the tables add up, the page is self-contained."""

from __future__ import annotations

import argparse
import json

import numpy as np
import pandas as pd
import pytest
from PIL import Image, ImageFilter

from facefair.data.readers import read_utkface
from facefair.describe import stats as S
from facefair.describe.cli import DescribeConfig, describe_dataset, register


@pytest.fixture(scope="module")
def described(utk_sample, tmp_path_factory):
    out = tmp_path_factory.mktemp("describe")
    result = describe_dataset(DescribeConfig(data=str(utk_sample), out=str(out), sample=40))
    return read_utkface(utk_sample).frame, out, result


def test_label_counts_match_the_table(described):
    frame, out, result = described
    counts = pd.read_csv(out / "label_counts.csv")
    assert result["images"] == len(frame)
    for attribute in ("gender", "race", "age_group"):
        part = counts[counts["attribute"] == attribute]
        assert part["count"].sum() == len(frame)  # missing labels are counted too
        expected = frame[attribute].value_counts().to_dict()
        assert dict(zip(part["value"], part["count"])) == {**expected, **(
            {S.MISSING: int(frame[attribute].isna().sum())} if frame[attribute].isna().any() else {})}
    ages = counts[counts["attribute"] == "age_group"]["value"].tolist()
    assert ages == [g for g in S.L.AGE_GROUPS if g in ages]  # age order, not alphabetical


def test_joint_table_adds_up(described):
    frame, out, result = described
    joint = pd.read_csv(out / "joint_race_gender_age_group.csv")
    complete = frame.dropna(subset=["race", "gender", "age_group"])
    assert joint["count"].sum() == len(complete) == result["all_three_labels"]
    cell = joint[(joint["race"] == "Asian") & (joint["gender"] == "Female") & (joint["age_group"] == "20-29")]
    manual = ((complete["race"] == "Asian") & (complete["gender"] == "Female") & (complete["age_group"] == "20-29"))
    assert int(cell["count"].iloc[0]) == int(manual.sum())
    # every combination is listed, the empty ones as zeros
    assert len(joint) == complete["race"].nunique() * complete["gender"].nunique() * complete["age_group"].nunique()


def test_imbalance_summary_by_hand(described):
    frame, out, _ = described
    summary = pd.read_csv(out / "imbalance_summary.csv").set_index("attribute")
    counts = frame["age_group"].value_counts()
    assert summary.loc["age_group", "max_min_ratio"] == pytest.approx(counts.max() / counts.min())
    shares = counts / counts.sum()
    assert summary.loc["age_group", "effective_classes"] == pytest.approx(np.exp(-(shares * np.log(shares)).sum()))
    per_class = pd.read_csv(out / "imbalance_per_class.csv")
    weights = per_class[per_class["attribute"] == "race"]["class_balanced_weight"]
    assert weights.mean() == pytest.approx(1.0)


def test_effective_number():
    assert S.effective_number(1, 0.99) == pytest.approx(1.0)
    assert S.effective_number(0, 0.99) == 0
    assert S.effective_number(10**6, 0.99) == pytest.approx(100.0)  # saturates at 1 / (1 - beta)
    frame = pd.DataFrame({"gender": ["Male"] * 3 + ["Female"] * 3, "race": [None] * 6})
    summary, _ = S.imbalance_summary(frame, ("gender", "race"))
    assert summary["attribute"].tolist() == ["gender"]  # an attribute with no labels is left out
    assert summary.loc[0, "effective_classes"] == pytest.approx(2.0)


def test_image_stats_on_real_faces(described):
    _, out, _ = described
    stats = pd.read_csv(out / "image_stats_sample.csv")
    assert len(stats) == 40 and stats["error"].isna().all()
    assert (stats["width"] == 200).all() and (stats["height"] == 200).all()
    assert stats["brightness"].between(0, 255).all() and (stats["contrast"] > 0).all()


def test_blur_lowers_sharpness(utk_sample, tmp_path):
    source = sorted(utk_sample.iterdir())[0]
    with Image.open(source) as image:
        image.filter(ImageFilter.GaussianBlur(3)).save(tmp_path / "blurred.jpg", quality=95)
    (tmp_path / "broken.jpg").write_bytes(b"not a jpeg")
    sharp = S.measure_image(source)
    blurred = S.measure_image(tmp_path / "blurred.jpg")
    assert blurred["sharpness"] < sharp["sharpness"] / 3
    assert blurred["brightness"] == pytest.approx(sharp["brightness"], abs=3)
    assert S.measure_image(tmp_path / "broken.jpg")["error"]


def test_page_is_self_contained(described):
    _, out, result = described
    page = (out / "describe.html").read_text()
    assert result["html"] == str(out / "describe.html")
    assert page.count("data:image/png;base64,") >= 4
    assert 'src="http' not in page and "<script" not in page
    assert json.loads((out / "summary.json").read_text())["images"] == result["images"]


def test_describe_command(utk_sample, tmp_path):
    parser = argparse.ArgumentParser()
    register(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(["describe", "--data", str(utk_sample), "--out", str(tmp_path), "--sample", "10"])
    assert args.func(args) == 0
    assert len(pd.read_csv(tmp_path / "image_stats_sample.csv")) == 10


def test_labels_only_fairface_csv_and_its_spreadsheet_mangled_copy(fairface_dir, tmp_path):
    """FairFace's label CSVs come without images here: --labels-only still describes them, and the
    spreadsheet-mangled copy ('9-Mar' for 3-9) gives the same tables."""
    clean = describe_dataset(DescribeConfig(data=str(fairface_dir / "fairface_label_val.csv"),
                                            out=str(tmp_path / "clean"), labels_only=True))
    mangled = describe_dataset(DescribeConfig(data=str(fairface_dir / "excel-mangled" / "fairface_label_val.csv"),
                                              out=str(tmp_path / "mangled"), labels_only=True))
    assert clean["images"] == mangled["images"] == 10954 and clean["race_scheme"] == "race7"
    a = pd.read_csv(tmp_path / "clean" / "label_counts.csv")
    b = pd.read_csv(tmp_path / "mangled" / "label_counts.csv")
    pd.testing.assert_frame_equal(a, b)
    assert not (tmp_path / "clean" / "image_stats_sample.csv").exists()
    with pytest.raises(ValueError, match="--labels-only"):
        describe_dataset(DescribeConfig(data=str(fairface_dir / "fairface_label_val.csv"), out=str(tmp_path / "x")))


def test_counts_print_as_integers():
    from facefair.pages import Section
    stats = pd.DataFrame({"quantity": ["width", "brightness"], "count": [500.0, 500.0], "mean": [200.0, 127.95]})
    page = "".join(Section("s").table(stats).parts)
    assert "<td>500</td>" in page and "500.000" not in page and "127.950" in page


def test_heatmap_text_is_readable_on_dark_and_light_cells():
    from facefair.describe.html import joint_heatmaps, text_colour
    joint = pd.DataFrame({"race": ["White", "White", "Black", "Black"], "age_group": ["0-2", "3-9", "0-2", "3-9"],
                          "gender": ["Male"] * 4, "count": [1000, 700, 40, 0]})
    fig = joint_heatmaps(joint)
    colours = {text.get_text(): text.get_color() for text in fig.axes[0].texts}
    # Dark blue cells (1,000 and 700 of a 1,000 peak) get white text; pale ones black.
    assert colours == {"1,000": "white", "700": "white", "40": "black", "0": "black"}
    assert text_colour((0.0, 0.0, 0.3, 1)) == "white" and text_colour((0.9, 0.95, 1.0, 1)) == "black"


def test_density_axes_are_labelled():
    from facefair.describe.html import quality_histograms
    rng = np.random.default_rng(0)
    stats = pd.DataFrame({"brightness": rng.uniform(50, 200, 40), "contrast": rng.uniform(20, 80, 40),
                          "sharpness": rng.uniform(10, 900, 40), "race": ["White", "Black"] * 20, "error": None})
    for ax in quality_histograms(stats).axes[:3]:
        assert ax.get_ylabel().startswith("density") and ax.get_xlabel()
    for ax in quality_histograms(stats, group=None).axes[:3]:
        assert ax.get_ylabel() == "images"
