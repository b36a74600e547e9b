"""benchmarks/run_archive.py: seeds trained in different sessions are pooled paired only if an
archived run comes back exactly as it was left, without its weights."""

import gzip
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
from run_archive import archive_run, restore_run  # noqa: E402

KEPT = {
    "predictions.csv": "path,gender_true,gender_pred\na.jpg,Male,Female\n",
    "report.json": '{"test": {"gender_accuracy": 0.5}}',
    "config.yaml": "train:\n  epochs: 11\n",
    "eval-val/predictions.csv": "path,gender_true,gender_pred\nb.jpg,Female,Female\n",
    "robustness/predictions/clean.csv": "path,gender_pred\na.jpg,Male\n",
}
SKIPPED = {
    "model.safetensors": "weights", "last.pt": "state", "model.onnx": "graph",
    "robustness/robustness.html": "<html>plots</html>", "tb/events.out": "logs",
    "subsets/children.csv": "path\na.jpg\n", "logit-adjusted-race/predictions.csv": "path\na.jpg\n",
    "thresholded/predictions.csv": "path\na.jpg\n",
}


def make_run(root: Path) -> Path:
    for name, text in {**KEPT, **SKIPPED}.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(text)
    return root


def files(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in root.rglob("*") if p.is_file()}


def test_archive_keeps_what_an_analysis_reads_gzipped_and_nothing_else(tmp_path):
    run = make_run(tmp_path / "run")
    archive_run(run, tmp_path / "archive")
    archived = files(tmp_path / "archive")
    expected = {n + ".gz" if n.endswith(".csv") else n for n in KEPT}
    assert set(archived) == expected
    assert gzip.decompress(archived["predictions.csv.gz"]).decode() == KEPT["predictions.csv"]


def test_archiving_an_unchanged_run_again_writes_the_same_bytes(tmp_path, monkeypatch):
    run = make_run(tmp_path / "run")
    archive_run(run, tmp_path / "first")
    # a later clock (gzip stamps the time of writing unless told not to) must not change a byte
    monkeypatch.setattr(gzip.time, "time", lambda: 2_000_000_000.0)
    archive_run(run, tmp_path / "second")
    assert files(tmp_path / "first") == files(tmp_path / "second")


def test_restore_gives_back_the_kept_files_exactly_and_leaves_existing_ones(tmp_path):
    run = make_run(tmp_path / "run")
    archive_run(run, tmp_path / "archive")
    assert restore_run(tmp_path / "archive", tmp_path / "back") == len(KEPT)
    assert files(tmp_path / "back") == {n: t.encode() for n, t in KEPT.items()}

    (tmp_path / "back" / "report.json").write_text("a later run's report")
    assert restore_run(tmp_path / "archive", tmp_path / "back") == 0
    assert (tmp_path / "back" / "report.json").read_text() == "a later run's report"
