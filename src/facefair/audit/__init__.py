"""Fairness audit of face-attribute predictions.

>>> from facefair.audit import AuditConfig, audit_predictions, load_predictions, write_audit
>>> frame, source = load_predictions("runs/utkface-cpu")            # or any predictions CSV
>>> result = audit_predictions(frame, AuditConfig(n_boot=1000), source)
>>> write_audit(result, "runs/utkface-cpu/audit")                   # audit.json, CSVs, audit.html

``compare_runs([...])`` puts several runs side by side (``write_comparison`` writes them).
"""

from facefair.audit.compare import compare_runs, render_compare_html, write_comparison
from facefair.audit.config import AuditConfig, AuditResult, TaskInfo
from facefair.audit.core import audit_predictions
from facefair.audit.groups import load_predictions
from facefair.audit.output import result_to_dict, write_audit
from facefair.audit.report_html import render_html


def audit_file(path, config: AuditConfig | None = None) -> AuditResult:
    """Load a predictions CSV (or a run folder holding ``predictions.csv``) and audit it."""
    frame, source = load_predictions(path)
    return audit_predictions(frame, config, source)


__all__ = ["AuditConfig", "AuditResult", "TaskInfo", "audit_predictions", "audit_file", "load_predictions",
           "write_audit", "result_to_dict", "render_html", "compare_runs", "write_comparison",
           "render_compare_html"]
