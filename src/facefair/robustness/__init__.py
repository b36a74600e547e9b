"""Robustness audit: a run's test faces under image corruptions and re-framing, per group.

Usage, given a finished run::

    from facefair.robustness import RobustnessConfig, run_robustness
    result = run_robustness("runs/utkface-cpu", "runs/utkface-cpu/robustness", RobustnessConfig(limit=1000))
    result.table        # tidy: task, corruption, severity, attribute, group, metric, value, ci_low, ci_high, n

``robustness_table(paths, audit_config)`` does the auditing half on any model's predictions CSVs.
Heavy dependencies (torch, the detectors, imagecorruptions) load only when a run starts.
"""

from facefair.robustness.config import CLEAN, COLUMNS, RobustnessConfig
from facefair.robustness.reframe import ReframeConfig

__all__ = ["CLEAN", "COLUMNS", "RobustnessConfig", "ReframeConfig", "run_robustness", "robustness_table"]


def __getattr__(name):
    # Lazy: `facefair --help` must not import the audit stack, and importing the config stays cheap.
    if name == "run_robustness":
        from facefair.robustness.runner import run_robustness
        return run_robustness
    if name == "robustness_table":
        from facefair.robustness.results import robustness_table
        return robustness_table
    raise AttributeError(name)
