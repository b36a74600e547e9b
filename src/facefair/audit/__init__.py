"""Fairness audit of face-attribute predictions.

Usage, given a finished run (``facefair.api.Fairness`` is the same on a table in memory)::

    from facefair.audit import AuditConfig, audit_predictions, load_predictions, write_audit
    frame, source = load_predictions("runs/utkface-cpu")            # or any predictions CSV
    result = audit_predictions(frame, AuditConfig(n_boot=1000), source)
    write_audit(result, "runs/utkface-cpu/audit")                   # audit.json, CSVs, audit.html

``compare_runs({"base": [...], "new": [...]})`` compares runs on the same test rows, paired
(``write_comparison`` writes compare.csv/json/html); ``write_model_card(run)`` writes MODEL_CARD.md.
"""

import importlib

#: Public name -> module; imported on first use so ``facefair --help`` does not load pandas,
#: scikit-learn and fairlearn for every command.
_EXPORTS = {
    "compare_runs": "compare", "render_compare_html": "compare_html", "write_comparison": "compare",
    "parse_compare_items": "compare", "AuditConfig": "config", "AuditResult": "config", "TaskInfo": "config",
    "audit_predictions": "core", "load_predictions": "groups", "result_to_dict": "output", "write_audit": "output",
    "render_html": "report_html", "write_model_card": "card", "model_card": "card",
}


def __getattr__(name: str):
    if name in _EXPORTS:
        return getattr(importlib.import_module(f"facefair.audit.{_EXPORTS[name]}"), name)
    raise AttributeError(f"module 'facefair.audit' has no attribute {name!r}")


def audit_file(path, config=None):
    """Load a predictions CSV (or a run folder holding ``predictions.csv``) and audit it."""
    from facefair.audit.core import audit_predictions
    from facefair.audit.groups import load_predictions
    frame, source = load_predictions(path)
    return audit_predictions(frame, config, source)


__all__ = sorted([*_EXPORTS, "audit_file"])
