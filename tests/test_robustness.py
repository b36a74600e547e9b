"""Robustness audit: corruptions, the tidy table built on the audit's definitions, paired drops,
the CLI, and one end-to-end run on a tiny model trained on real faces."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from facefair.audit import AuditConfig, audit_predictions, load_predictions
from facefair.robustness.config import COLUMNS, RobustnessConfig
from facefair.robustness.corruptions import CORRUPTIONS, apply_corruption


def _face_like(size: int = 96) -> np.ndarray:
    """Texture at several scales, so blur, noise and JPEG all have something to change."""
    rng = np.random.default_rng(0)
    y, x = np.mgrid[0:size, 0:size] / size
    base = 0.5 + 0.25 * np.sin(12 * x) * np.cos(9 * y)
    image = np.stack([base, base * 0.9 + 0.05, base * 0.8 + 0.1], -1) + rng.normal(0, 0.05, (size, size, 3))
    return (np.clip(image, 0, 1) * 255).astype(np.uint8)


@pytest.mark.parametrize("name", CORRUPTIONS)
def test_every_corruption_changes_the_image_more_at_higher_severity(name):
    image = _face_like()
    mild, harsh = apply_corruption(name, image, 1, seed=3), apply_corruption(name, image, 5, seed=3)
    for out in (mild, harsh):
        assert out.shape == image.shape and out.dtype == np.uint8
    change = [np.abs(o.astype(float) - image).mean() for o in (mild, harsh)]
    assert change[1] > 0.5, name
    assert change[1] > change[0], (name, change)


def test_corruptions_are_seeded_per_image_and_leave_numpys_global_state_alone():
    image = _face_like()
    np.random.seed(123)
    before = np.random.get_state()[1].copy()
    a = apply_corruption("gaussian_noise", image, 3, seed=7)
    assert (np.random.get_state()[1] == before).all()
    assert (a == apply_corruption("gaussian_noise", image, 3, seed=7)).all()
    assert not (a == apply_corruption("gaussian_noise", image, 3, seed=8)).all()
    occluded = apply_corruption("occlusion", image, 3, seed=1)
    assert ((occluded == (124, 116, 104)).all(-1)).mean() == pytest.approx(0.4 ** 2, abs=0.02)


def test_unknown_names_and_severities_are_errors():
    with pytest.raises(ValueError, match="unknown corruption"):
        RobustnessConfig(corruptions=("gaussian_blur", "fogg"))
    with pytest.raises(ValueError, match="severities"):
        RobustnessConfig(severities=(0, 6))
    with pytest.raises(ValueError, match="severity"):
        apply_corruption("darkness", _face_like(), 6)


def _predictions(n_per_cell: int = 40, wrong: dict | None = None, seed: int = 0) -> pd.DataFrame:
    """A predictions table (the audit's contract): gender right everywhere except the share of
    rows given per race in ``wrong``; age off by 2 years, by 6 for races in ``wrong``."""
    rng = np.random.default_rng(seed)
    rows = []
    for race in ("White", "Black", "Asian"):
        for gender in ("Male", "Female"):
            for i in range(n_per_cell):
                rows.append({"path": f"{race}_{gender}_{i}.jpg", "race": race, "gender": gender,
                             "age_group": "20-29", "gender_true": gender, "age_true": 25.0})
    frame = pd.DataFrame(rows)
    other = {"Male": "Female", "Female": "Male"}
    pred, age = frame["gender_true"].copy(), np.full(len(frame), 27.0)
    for race, share in (wrong or {}).items():
        idx = np.flatnonzero(frame["race"] == race)
        flip = rng.choice(idx, size=int(round(share * len(idx))), replace=False)
        pred.iloc[flip] = pred.iloc[flip].map(other)
        age[idx] = 31.0
    frame["gender_pred"] = pred
    frame["gender_prob_Female"] = (pred == "Female").astype(float)
    frame["gender_prob_Male"] = 1 - frame["gender_prob_Female"]
    frame["age_pred"] = age
    return frame


def _write_conditions(folder, clean: pd.DataFrame, corrupted: pd.DataFrame):
    folder.mkdir(parents=True, exist_ok=True)
    clean.to_csv(folder / "clean.csv", index=False)
    corrupted.assign(corruption="gaussian_blur", severity=3).to_csv(folder / "gaussian_blur-3.csv", index=False)
    return [folder / "clean.csv", folder / "gaussian_blur-3.csv"]


def test_table_uses_the_audits_figures_and_paired_drops(tmp_path):
    from facefair.robustness.results import robustness_table
    clean = _predictions(wrong={"Black": 0.1})
    corrupted = _predictions(wrong={"Black": 0.1, "Asian": 0.3})   # Asian falls fastest, Black was worst
    paths = _write_conditions(tmp_path / "predictions", clean, corrupted)
    config = AuditConfig(n_boot=200, intersections=(("race", "gender"),))
    table = robustness_table(paths, config)
    assert list(table.columns) == COLUMNS

    def one(**where):
        rows = table
        for key, value in where.items():
            rows = rows[rows[key] == value]
        assert len(rows) == 1, where
        return rows.iloc[0]

    # The same figure `facefair audit` gives for the same CSV, interval included.
    frame, source = load_predictions(paths[1])
    audited = audit_predictions(frame, config, source).metric("gender", "race", "Asian", "accuracy")
    row = one(task="gender", corruption="gaussian_blur", attribute="race", group="Asian", metric="accuracy")
    assert (row.value, row.ci_low, row.ci_high, row.n) == pytest.approx(
        (audited.value, audited.ci_low, audited.ci_high, audited.n))
    assert row.value == pytest.approx(0.7)
    # Paired drop: exactly 0.3 for Asian, 0 elsewhere (the same faces are wrong in both conditions).
    drop = one(task="gender", corruption="gaussian_blur", attribute="race", group="Asian", metric="accuracy_drop")
    assert drop.value == pytest.approx(0.3) and drop.ci_low < 0.3 < drop.ci_high
    black = one(task="gender", corruption="gaussian_blur", attribute="race", group="Black", metric="accuracy_drop")
    assert (black.value, black.ci_low, black.ci_high) == pytest.approx((0, 0, 0))
    assert one(task="age", corruption="gaussian_blur", attribute="race", group="Asian",
               metric="mae_increase").value == pytest.approx(4.0)
    # The worst group on clean faces (Black) is not the one that falls fastest (Asian).
    assert one(task="gender", corruption="gaussian_blur", attribute="race", metric="largest_drop").group == "Asian"
    fastest = one(task="gender", corruption="gaussian_blur", attribute="race", metric="worst_group_falls_fastest")
    assert (fastest.group, fastest.value) == ("Black", 0.0)
    worst = one(task="gender", corruption="gaussian_blur", attribute="race", metric="worst_group_accuracy")
    assert worst.group == "Asian" and worst.value == pytest.approx(0.7)
    assert one(task="gender", corruption="clean", attribute="race", metric="degree_of_bias").value > 0


def test_drops_need_the_same_faces_in_the_same_order(tmp_path):
    from facefair.robustness.results import robustness_table
    clean = _predictions()
    paths = _write_conditions(tmp_path / "p", clean, clean.iloc[::-1])
    with pytest.raises(ValueError, match="same order"):
        robustness_table(paths, AuditConfig(n_boot=0))


def test_cli_audits_any_models_predictions_folder(tmp_path, capsys):
    from facefair.cli import main
    _write_conditions(tmp_path / "predictions", _predictions(), _predictions(wrong={"White": 0.5}))
    assert main(["robustness", "--from-predictions", str(tmp_path / "predictions"), "--n-boot", "50",
                 "--out", str(tmp_path / "out")]) == 0
    table = pd.read_csv(tmp_path / "out" / "robustness.csv")
    assert set(table.corruption) == {"clean", "gaussian_blur"}
    html = (tmp_path / "out" / "robustness.html").read_text()
    assert "data:image/png;base64" in html and "White" in html
    assert "re-framing" not in html.split("id='coverage'")[0]   # no re-framing was run: the summary says none
    assert main(["robustness", "somewhere", "--corruptions", "fogg"]) == 2
    assert "unknown corruption(s) fogg" in capsys.readouterr().err


def test_a_reframing_only_audit_speaks_of_no_corruption_severity(tmp_path):
    """Only re-framing was run: the page must not summarise 'at severity 3' or offer 'every severity'."""
    from facefair.robustness.runner import audit_folder
    folder = tmp_path / "predictions"
    folder.mkdir()
    _predictions().to_csv(folder / "clean.csv", index=False)
    _predictions(wrong={"White": 0.5}).assign(corruption="reframe-mtcnn", severity=1.25).to_csv(
        folder / "reframe-mtcnn-1.25.csv", index=False)
    audit_folder(folder, tmp_path / "out", RobustnessConfig(n_boot=50))
    html = (tmp_path / "out" / "robustness.html").read_text()
    assert "Hurts most under re-framing: reframe-mtcnn (padding 1.25)" in html
    assert "severity 3" not in html and "every severity" not in html
    assert "(every re-framing)</h3>" in html


def test_end_to_end_on_a_model_trained_on_real_faces(tiny_run, tmp_path):
    """Every condition has its predictions CSV; the table's clean accuracy is the audit's on it;
    re-framing reports how many faces the detector found, per group."""
    from facefair.robustness import ReframeConfig, run_robustness
    config = RobustnessConfig(corruptions=("occlusion", "reframe"), severities=(5,), n_boot=20, work_size=96,
                              tasks=("gender",), min_group_size=5,
                              reframe=ReframeConfig(detectors=("dlib-hog",), paddings=(1.25,)))
    result = run_robustness(tiny_run, tmp_path / "rob", config, progress=False)
    names = {"clean", "occlusion-5", "reframe-dlib-hog-1.25"}
    assert set(result.predictions) == names
    assert {p.name for p in (tmp_path / "rob" / "predictions").iterdir()} == {f"{n}.csv" for n in names}
    table = pd.read_csv(tmp_path / "rob" / "robustness.csv")
    splits = pd.read_csv(tiny_run / "splits.csv")
    assert len(result.faces) == (splits.split == "test").sum()
    frame, source = load_predictions(result.predictions["clean"])
    clean = audit_predictions(frame, AuditConfig(n_boot=0, min_group_size=5, tasks=("gender",)), source)
    row = table[(table.corruption == "clean") & (table.task == "gender") & (table.attribute == "overall")
                & (table.metric == "accuracy")]
    assert row.value.iloc[0] == pytest.approx(clean.metric("gender", "overall", "all", "accuracy").value)
    coverage = table[(table.metric == "coverage") & (table.attribute == "overall")]
    assert set(coverage.corruption) == {"reframe-dlib-hog"} and (coverage.value > 0.3).all()
    assert set(table[table.metric == "accuracy_drop"].corruption) == {"occlusion", "reframe-dlib-hog"}
    assert (tmp_path / "rob" / "robustness.html").stat().st_size > 10_000


def test_framing_check_warns_when_faces_fill_less_of_the_image_than_training_chips(utk_sample, tmp_path):
    """FairFace's margin-1.25 photos against UTKFace-like chips: the same faces, shrunk into a
    wider frame, must be told apart from chips framed like the training ones."""
    from PIL import Image

    from facefair.align.framing import framing_warning, measure_framing
    chips = sorted(str(p) for p in utk_sample.iterdir())[::12][:16]
    wide = []
    for path in chips:
        with Image.open(path) as image:
            canvas = Image.new("RGB", (2 * image.width, 2 * image.height), (120, 120, 120))
            canvas.paste(image, (image.width // 2, image.height // 2))
            canvas.save(tmp_path / Path(path).name)
            wide.append(str(tmp_path / Path(path).name))
    training = measure_framing(chips[::2], sample=8)
    assert training.found > 0.5
    assert framing_warning(measure_framing(chips[1::2], sample=8), training) is None
    at_hand = measure_framing(wide, sample=8)
    assert at_hand.face_size == pytest.approx(training.face_size / 2, rel=0.25)
    warning = framing_warning(at_hand, training)
    assert warning is not None and "--detect" in warning and "framed unlike" in warning


def test_reframing_reads_faces_detected_before_from_its_cache(utk_sample, tmp_path, monkeypatch):
    """A second audit of the same faces (another model) re-aligns from the cached detections
    without running the detector, to the same chips; a damaged cache file is detected again."""
    from facefair.robustness import reframe as R
    from facefair.robustness.runner import decode_faces
    paths = sorted(str(p) for p in utk_sample.iterdir())[:6]
    images, ok, _ = decode_faces(paths, 96)
    config = R.ReframeConfig(detectors=("dlib-hog",), paddings=(0.25, 1.25), cache_dir=str(tmp_path / "cache"))
    first, found = R.reframe_images(images, "dlib-hog", config.paddings, config, paths=paths)
    assert found.sum() >= 3
    cache_file, = (tmp_path / "cache").iterdir()

    def no_detector(*_args, **_kwargs):
        raise AssertionError("the detector ran although every face was cached")
    monkeypatch.setattr("facefair.inference.photos.build_detector", no_detector)
    again, found_again = R.reframe_images(images, "dlib-hog", config.paddings, config, paths=paths)
    assert (found_again == found).all()
    for padding in config.paddings:
        assert np.array_equal(again[padding], first[padding])
    for damaged in ("{not json", "[1, 2]"):
        cache_file.write_text(damaged)
        with pytest.raises(AssertionError, match="the detector ran"):
            R.reframe_images(images, "dlib-hog", config.paddings, config, paths=paths)
    # a file gone since decoding has no key: detected (here: refused), never a crash on the cache
    assert R.DetectionCache.key(str(tmp_path / "gone.jpg")) is None


def test_curve_legend_fits_the_figure_however_long_the_group_names(tmp_path):
    """Ten race x gender groups over three panels: the legend ran off both sides of the figure
    when its columns were a fixed two per panel."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg  # noqa: F401  (the figure draws with Agg)

    from facefair.robustness.html import curves_plot
    groups = [f"{race}:{gender}" for race in ("White", "Black", "Asian", "Indian", "Others")
              for gender in ("Male", "Female")]
    rows = []
    for corruption, severities in (("clean", [0]), ("gaussian_noise", [3]), ("jpeg_compression", [3]),
                                   ("reframe-dlib-hog", [0.25, 1.25])):
        for severity in severities:
            for i, group in enumerate(groups):
                rows.append({"task": "gender", "attribute": "race:gender", "metric": "accuracy",
                             "corruption": corruption, "severity": severity, "group": group,
                             "value": 0.9 - 0.01 * i, "ci_low": 0.85 - 0.01 * i, "ci_high": 0.95 - 0.01 * i,
                             "flagged": i % 2 == 1})
    fig = curves_plot(pd.DataFrame(rows), "gender", "race:gender")
    renderer = fig.canvas.get_renderer()
    legend = fig.legends[0].get_window_extent(renderer)
    assert 0 <= legend.x0 and legend.x1 <= fig.bbox.width and legend.y1 <= fig.bbox.height
    assert len(fig.legends[0].get_texts()) == len(groups)
    panels = [ax.get_tightbbox(renderer) for ax in fig.axes if ax.get_visible()]   # titles included
    assert all(legend.y0 >= panel.y1 for panel in panels)   # above the panels, not over them


def test_summary_names_as_hurting_only_conditions_that_make_the_figure_worse(tmp_path):
    """Gender improves under the one condition run, age gets worse: the summary listed every
    condition under 'Hurts most', an improvement included."""
    from facefair.robustness.runner import audit_folder
    folder = tmp_path / "predictions"
    _write_conditions(folder, _predictions(wrong={"White": 0.5}),
                      _predictions().assign(age_pred=40.0))
    audit_folder(folder, tmp_path / "out", RobustnessConfig(n_boot=50))
    html = (tmp_path / "out" / "robustness.html").read_text()
    gender = html.split("<b>Gender</b>")[1].split("<b>")[0]
    age = html.split("<b>Exact age</b>")[1].split("<b>")[0]
    assert "Nothing run at severity 3 makes it worse." in gender and "Hurts most" not in gender
    assert "Hurts most at severity 3: gaussian_blur 3 (+" in age
