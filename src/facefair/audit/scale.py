"""Checks of the audit at scale and under the null (``benchmarks/audit_scale.py`` runs them).

- ``measure_cli`` / ``measure_library``: wall time and peak memory of one audit, run in a fresh
  child process so the peak is that audit's own (``resource.getrusage`` of the child).
- ``calibration``: many audits of tables where every group has the same error process
  (``synthetic.null_table``); counts the audits that claim a gap, by the new verdicts and by the
  old summary's rule (the largest gap per task, "real" when the two groups' marginal intervals
  do not overlap), which ``old_rule_claims`` recomputes from the same audit's intervals.
- ``recovery``: tables with a planted accuracy gap; counts the audits whose verdict finds it
  (significant, worst group the planted one) and those that claim anything in another task.
"""

from __future__ import annotations

import json
import math
import subprocess
import sys
import time
from pathlib import Path
from typing import Optional

import numpy as np

from facefair.audit.config import AuditConfig
from facefair.audit.synthetic import Planted, null_table, write_csv
from facefair.audit.verdicts import SIGNIFICANT

ALL_INTERSECTIONS = ("race:gender", "race:age_group", "gender:age_group")


def _rss_mb() -> float:
    import resource
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / 1024 if sys.platform != "darwin" else peak / 2 ** 20


def _cpu_s() -> float:
    """CPU seconds of this process (user + system): on a machine shared with other jobs, closer to
    what the work costs than the wall clock (pyarrow's reader uses several threads, so it can
    also exceed the wall clock)."""
    import resource
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def _child(code: str) -> dict:
    """Run ``code`` in a fresh interpreter; it prints one JSON line last."""
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"measurement failed:\n{done.stderr[-2000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def write_table(path: Path, n_rows: int, seed: int = 0, planted: Optional[Planted] = None) -> Path:
    if not path.exists():
        write_csv(null_table(n_rows, seed, planted), path)
    return path


def measure_cli(csv: Path, out: Path, n_boot: int = 1000, intersections=ALL_INTERSECTIONS) -> dict:
    """``facefair audit CSV`` end to end (read, audit, every output file incl. audit.html)."""
    argv = ["audit", str(csv), "--out", str(out), "--n-boot", str(n_boot), "--gallery", "0",
            "--intersections", *intersections]
    code = ("import io, json, time, contextlib, sys\n"
            "from facefair.cli import main\n"
            "from facefair.audit.scale import _rss_mb, _cpu_s\n"
            "t, c = time.perf_counter(), _cpu_s()\n"
            "with contextlib.redirect_stdout(io.StringIO()):\n"
            f"    rc = main({argv!r})\n"
            "print(json.dumps({'seconds': time.perf_counter() - t, 'cpu_seconds': _cpu_s() - c, "
            "'peak_rss_mb': _rss_mb(), 'rc': rc}))\n")
    return _child(code)


def measure_library(n_rows: int, n_boot: int = 1000, intersections=ALL_INTERSECTIONS, seed: int = 0) -> dict:
    """``audit_predictions`` on an in-memory table of ``n_rows`` (generated in the child first:
    ``table_rss_mb`` is the process before the audit, table included)."""
    parts = [tuple(i.split(":")) for i in intersections]
    code = ("import json, time\n"
            "from facefair.audit import AuditConfig, audit_predictions\n"
            "from facefair.audit.synthetic import null_table\n"
            "from facefair.audit.scale import _rss_mb, _current_mb, _cpu_s\n"
            f"frame = null_table({n_rows}, {seed})\n"
            "before = _current_mb()\n"
            "t, c = time.perf_counter(), _cpu_s()\n"
            f"result = audit_predictions(frame, AuditConfig(n_boot={n_boot}, intersections={parts!r}))\n"
            "print(json.dumps({'seconds': time.perf_counter() - t, 'cpu_seconds': _cpu_s() - c, "
            "'peak_rss_mb': _rss_mb(), 'table_rss_mb': before, 'tests': result.family_size}))\n")
    return _child(code)


def _current_mb() -> float:
    try:
        pages = int(Path("/proc/self/statm").read_text().split()[1])
        import resource
        return pages * resource.getpagesize() / 2 ** 20
    except (OSError, ValueError, IndexError):
        return math.nan


def _overlap(a, b) -> Optional[bool]:
    bounds = (a.ci_low, a.ci_high, b.ci_low, b.ci_high)
    if any(isinstance(v, float) and math.isnan(v) for v in bounds):
        return None
    return not (a.ci_high < b.ci_low or b.ci_high < a.ci_low)


def old_rule_claims(result) -> list[str]:
    """The gaps the old summary called real: per task the largest complete accuracy (exact age:
    MAE) gap, and gender's larger FNR/FPR gap, each "real" when its two groups' marginal
    intervals do not overlap."""
    gaps, claims = result.gaps, []

    def largest(task: str, metric: str, exclude_own: bool = False):
        rows = gaps[(gaps.task == task) & (gaps.metric == metric) & gaps["class"].isna() & gaps.value.notna()
                    & gaps.worst_group.notna() & gaps.best_group.notna() & gaps.complete.astype(bool)]
        if exclude_own:
            rows = rows[rows.attribute.map(lambda a: task not in a.split(":")).astype(bool)]
        return None if rows.empty else rows.loc[rows.value.idxmax()]

    def check(task: str, gap, basis: str) -> None:
        worst = result.metric(task, gap.attribute, gap.worst_group.split(", ")[0], basis)
        best = result.metric(task, gap.attribute, gap.best_group.split(", ")[0], basis)
        if _overlap(worst, best) is False:
            claims.append(f"{task} {basis} across {gap.attribute}")

    for info in result.tasks:
        metric, basis = ("accuracy_difference", "accuracy") if info.kind == "classification" else \
            ("mae_difference", "mae")
        gap = largest(info.name, metric)
        if gap is not None:
            check(info.name, gap, basis)
    if any(t.name == "gender" and t.positive_class == "Female" for t in result.tasks):
        candidates = [g for g in (largest("gender", m, True) for m in ("fnr_difference", "fpr_difference"))
                      if g is not None]
        if candidates:
            gap = max(candidates, key=lambda g: g.value)
            check("gender", gap, gap.metric.split("_")[0])
    return claims


def calibration(n_audits: int, n_rows: int, n_boot: int = 200, seed: int = 1000, progress: bool = True) -> dict:
    """Null audits: how many claim any gap, by the verdicts (after) and by the old rule (before)."""
    from tqdm.auto import tqdm

    from facefair.audit.core import audit_predictions
    after = before = 0
    tests = []
    for i in tqdm(range(n_audits), desc="null audits", disable=not progress, leave=False):
        result = audit_predictions(null_table(n_rows, seed + i), AuditConfig(n_boot=n_boot))
        after += bool((result.gaps.verdict == SIGNIFICANT).any())
        before += bool(old_rule_claims(result))
        tests.append(result.family_size)
    return {"audits": n_audits, "rows": n_rows, "n_boot": n_boot, "claims_after": after, "claims_before": before,
            "tests_per_audit": int(np.median(tests))}


def recovery(n_rows: int, drop: float, n_tables: int, seed: int = 2000, n_boot: int = 0, race: str = "Black",
             task: str = "gender", progress: bool = True) -> dict:
    """Planted-gap tables: how often the gap is found (across race), and how often another task
    (where nothing was planted) claims a gap."""
    from tqdm.auto import tqdm

    from facefair.audit.core import audit_predictions
    found = elsewhere = 0
    p_holm = []
    for i in tqdm(range(n_tables), desc=f"planted {drop:g} at {n_rows}", disable=not progress, leave=False):
        result = audit_predictions(null_table(n_rows, seed + i, Planted(task, race, drop)), AuditConfig(n_boot=n_boot))
        gap = result.gap(task, "race", "accuracy_difference")
        found += bool(gap.verdict == SIGNIFICANT and gap.worst_group == race)
        p_holm.append(float(gap.p_holm))
        gaps = result.gaps
        elsewhere += bool(((gaps.task != task) & (gaps.verdict == SIGNIFICANT)).any())
    return {"rows": n_rows, "drop": drop, "tables": n_tables, "found": found, "other_task_claims": elsewhere,
            "median_p_holm": float(np.median(p_holm)), "max_p_holm": float(np.max(p_holm))}


def timed(fn, *args, **kwargs) -> tuple[object, float]:
    t = time.perf_counter()
    out = fn(*args, **kwargs)
    return out, time.perf_counter() - t


__all__ = ["measure_cli", "measure_library", "calibration", "recovery", "old_rule_claims", "write_table",
           "ALL_INTERSECTIONS"]
