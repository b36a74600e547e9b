"""benchmarks/bf16_paired.py: the paired fp32-vs-bf16 check behind the inference precision default."""

import sys
from pathlib import Path

import pandas as pd
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
from bf16_paired import main, paired_rows  # noqa: E402


def _table(pred: list[str], ages: list[float]) -> pd.DataFrame:
    n = len(pred)
    return pd.DataFrame({"path": [f"f{i}.jpg" for i in range(n)], "gender_true": ["Male", "Female"] * (n // 2),
                         "gender_pred": pred, "age_true": [30.0] * n, "age_pred": ages})


def test_changed_labels_accuracies_and_mcnemar(tmp_path, capsys):
    truth = ["Male", "Female"] * 10
    fp32 = _table(truth, [30.0] * 20)
    flipped = ["Female", "Female"] + truth[2:]  # one face lost, none gained
    bf16 = _table(flipped, [31.0] * 20)
    gender, age = paired_rows(fp32, bf16)
    assert (gender["changed_labels"], gender["only_fp32_right"], gender["only_bf16_right"]) == (1, 1, 0)
    assert gender["accuracy_fp32"] == 1.0 and gender["accuracy_bf16"] == pytest.approx(0.95)
    assert gender["mcnemar_p"] == pytest.approx(1.0)  # one discordant face is no evidence
    assert age["mean_abs_change_years"] == pytest.approx(1.0) and age["mae_bf16"] == pytest.approx(1.0)
    fp32.to_csv(tmp_path / "a.csv", index=False)
    bf16.to_csv(tmp_path / "b.csv", index=False)
    assert main([str(tmp_path / "a.csv"), str(tmp_path / "b.csv"), "--json", str(tmp_path / "o.json")]) == 0
    assert "mcnemar_p" in capsys.readouterr().out and (tmp_path / "o.json").is_file()
    with pytest.raises(ValueError, match="same faces"):
        paired_rows(fp32, bf16.iloc[::-1].reset_index(drop=True))
