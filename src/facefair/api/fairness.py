"""``ff.audit`` -> :class:`Audit` and ``ff.compare`` -> :class:`Comparison`: the fairness audit of a
predictions table and the paired comparison of runs, as ``facefair audit`` and ``facefair audit
--compare`` compute them (this module wraps :mod:`facefair.audit`'s public functions).

No torch anywhere here; pandas, scikit-learn and fairlearn load on first use.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Any, Mapping, Optional, Sequence, Union

if TYPE_CHECKING:
    import pandas as pd
    from fairlearn.metrics import MetricFrame

    from facefair.audit.config import AuditConfig, AuditResult

PathLike = Union[str, "os.PathLike[str]"]

#: The label normaliser of each vocabulary (``female`` -> ``Female``), as the audit reads labels.
_VOCABULARIES = {"gender": "normalize_gender", "race": "normalize_race", "age_group": "normalize_age_group"}


def _normalised(values: "pd.Series", vocabulary: str) -> "pd.Series":
    from facefair import labels

    name = _VOCABULARIES.get(vocabulary)
    if name is None:
        return values
    normalise = getattr(labels, name)
    return values.map(lambda v: None if v is None or v != v else (normalise(v) or v))


def _html_path(path: PathLike, default_name: str) -> Path:
    """``path`` itself, or ``path/default_name`` when it is (or names) a folder."""
    target = Path(path)
    if target.is_dir() or target.suffix.lower() not in (".html", ".htm"):
        target = target / default_name
    target.parent.mkdir(parents=True, exist_ok=True)
    return target


class Audit:
    """The fairness audit of one predictions table; made by :func:`audit`.

    Attributes
    ----------
    result : facefair.audit.AuditResult
        Everything the audit found (what ``facefair audit`` writes to ``audit.json``).
    table : pandas.DataFrame
        The predictions table that was audited.
    """

    def __init__(self, result: "AuditResult", table: "pd.DataFrame"):
        self.result, self.table = result, table

    def __repr__(self) -> str:
        return (f"Audit({self.result.source!r}: {self.result.n_rows} rows, tasks {', '.join(self.tasks)}; "
                f"attributes {', '.join(self.result.attributes)})")

    @property
    def tasks(self) -> list[str]:
        return [t.name for t in self.result.tasks]

    @property
    def by_group(self) -> "pd.DataFrame":
        """One row per task x attribute x group x metric: ``value`` with its bootstrap interval
        (``ci_low``, ``ci_high``), the group's size ``n`` and ``flagged`` (too small to judge)."""
        return self.result.group_metrics

    @property
    def gaps(self) -> "pd.DataFrame":
        """The gaps between groups per task x attribute (accuracy difference, equalized odds ...),
        with intervals and the worst and best group."""
        return self.result.gaps

    @property
    def summary(self) -> str:
        """The audit's findings in a few sentences, as the top of ``audit.html`` says them."""
        return self.result.summary

    @property
    def notes(self) -> list[str]:
        """What the audit left out or could not judge, and why."""
        return list(self.result.notes)

    def value(self, task: str, attribute: str, group: str, metric: str, cls: Optional[str] = None) -> float:
        """One figure of :attr:`by_group`, e.g. ``value("gender", "race", "Black", "accuracy")``.

        Parameters
        ----------
        task, attribute, group, metric : str
            Which row (``attribute`` ``"overall"`` with group ``"all"`` is the whole table).
        cls : str, optional
            The class of a per-class (one-vs-rest) metric.
        """
        return float(self.result.metric(task, attribute, group, metric, cls)["value"])

    def gap(self, task: str, attribute: str, metric: str, cls: Optional[str] = None) -> float:
        """One figure of :attr:`gaps`, e.g. ``gap("gender", "race", "accuracy_difference")``."""
        return float(self.result.gap(task, attribute, metric, cls)["value"])

    def metric_frame(self, task: str, attribute: str = "race") -> "MetricFrame":
        """The task's accuracy (or MAE for ages) by group as a fairlearn ``MetricFrame``, for
        fairlearn's own tools (``.difference()``, ``.ratio()``, ``.group_min()`` ...).

        Parameters
        ----------
        task : str
            ``gender``, ``race``, ``age_group`` (accuracy, count) or ``age`` (mae, count).
        attribute : str
            The sensitive attribute column, or an intersection such as ``"race:gender"``.

        Rows without a true label, a prediction or the attribute are left out, as in the audit.
        """
        import pandas as pd
        from fairlearn.metrics import MetricFrame, count
        from sklearn.metrics import accuracy_score, mean_absolute_error

        frame = self.table
        truth, predicted = f"{task}_true", f"{task}_pred"
        missing = [c for c in (truth, predicted, *attribute.split(":")) if c not in frame]
        if missing:
            raise KeyError(f"the audited table has no {', '.join(missing)} column; tasks: {', '.join(self.tasks)}")
        parts = [_normalised(frame[a], a).astype("string") for a in attribute.split(":")]
        groups = parts[0] if len(parts) == 1 else parts[0].str.cat(parts[1:], sep=":")
        if task == "age":
            y_true = pd.to_numeric(frame[truth], errors="coerce")
            y_pred = pd.to_numeric(frame[predicted], errors="coerce")
            metrics = {"mae": mean_absolute_error, "count": count}
        else:
            y_true, y_pred = _normalised(frame[truth], task), _normalised(frame[predicted], task)
            metrics = {"accuracy": accuracy_score, "count": count}
        keep = y_true.notna() & y_pred.notna() & groups.notna()
        return MetricFrame(metrics=metrics, y_true=y_true[keep].to_numpy(), y_pred=y_pred[keep].to_numpy(),
                           sensitive_features=groups[keep].astype(object).rename(attribute).reset_index(drop=True))

    def to_html(self, path: PathLike) -> Path:
        """Write the audit page (``audit.html``) to ``path`` (a file, or a folder to put it in)."""
        from facefair.audit import render_html
        from facefair.run import AUDIT_HTML

        target = _html_path(path, AUDIT_HTML)
        target.write_text(render_html(self.result), encoding="utf-8")
        return target

    def save(self, out_dir: PathLike) -> dict[str, Path]:
        """Write every output ``facefair audit`` writes (audit.json, the tidy CSVs, audit.html)."""
        from facefair.audit import write_audit
        return write_audit(self.result, out_dir)

    def to_dict(self) -> dict:
        """What ``audit.json`` holds."""
        from facefair.audit import result_to_dict
        return result_to_dict(self.result)


def _audit_config(config: Optional["AuditConfig"], options: Mapping[str, Any]) -> "AuditConfig":
    import dataclasses

    from facefair.audit import AuditConfig

    chosen = {k: v for k, v in options.items() if v is not None}
    known = {f.name for f in dataclasses.fields(AuditConfig)}
    unknown = sorted(set(chosen) - known)
    if unknown:
        raise TypeError(f"unknown audit setting(s) {', '.join(unknown)}; known: {', '.join(sorted(known))}")
    if isinstance(chosen.get("intersections"), (list, tuple)):
        chosen["intersections"] = [tuple(i.split(":")) if isinstance(i, str) else tuple(i)
                                   for i in chosen["intersections"]]
    return dataclasses.replace(config, **chosen) if config is not None else AuditConfig(**chosen)


def audit(frame_or_csv: Union["pd.DataFrame", PathLike], *, tasks: Optional[Sequence[str]] = None,
          attributes: Optional[Sequence[str]] = None, intersections: Optional[Sequence[str]] = None,
          n_boot: Optional[int] = None, seed: Optional[int] = None, ci_level: Optional[float] = None,
          min_group_size: Optional[int] = None, config: Optional["AuditConfig"] = None, **options: Any) -> Audit:
    """Audit a predictions table for fairness, as ``facefair audit`` does.

    Parameters
    ----------
    frame_or_csv : DataFrame or path
        A predictions table (``T_true``/``T_pred`` per task, ``T_prob_<class>`` optional, the
        attributes ``race``/``gender``/``age_group``), its CSV, or a run folder holding one.
    tasks : sequence of str, optional
        Tasks to audit (default: every task the table has).
    attributes : sequence of str, optional
        Sensitive attributes (default: race, gender, age_group where present).
    intersections : sequence of str, optional
        Intersections as ``"race:gender"`` (default: race x gender).
    n_boot : int, optional
        Bootstrap resamples for the intervals (default 1000; 0: point estimates only).
    seed, ci_level, min_group_size : optional
        The bootstrap seed (0), interval level (0.95), and the group size below which a group is
        shown but not judged (30).
    config : facefair.audit.AuditConfig, optional
        A whole configuration; the keywords above change fields of it.
    **options
        Any other :class:`facefair.audit.AuditConfig` field (``n_bins``, ``positive_classes``).

    Returns
    -------
    Audit

    Examples
    --------
    >>> import pandas as pd
    >>> import facefair as ff
    >>> table = pd.DataFrame({"race": ["White"] * 40 + ["Black"] * 40,
    ...                       "gender_true": ["Male", "Female"] * 40,
    ...                       "gender_pred": ["Male", "Female"] * 30 + ["Female", "Male"] * 10})
    >>> result = ff.audit(table, n_boot=0)
    >>> result.value("gender", "race", "White", "accuracy"), result.value("gender", "race", "Black", "accuracy")
    (1.0, 0.5)
    >>> round(result.gap("gender", "race", "accuracy_difference"), 2)
    0.5
    """
    import pandas as pd

    from facefair.audit import audit_predictions, load_predictions

    chosen = _audit_config(config, {"tasks": tasks, "attributes": attributes, "intersections": intersections,
                                    "n_boot": n_boot, "seed": seed, "ci_level": ci_level,
                                    "min_group_size": min_group_size, **options})
    if isinstance(frame_or_csv, pd.DataFrame):
        table, source = frame_or_csv, "<DataFrame>"
    else:
        table, source = load_predictions(frame_or_csv)
    return Audit(audit_predictions(table.copy(), chosen, source), table)


class Comparison:
    """Runs compared on the same faces, paired; made by :func:`compare`.

    Attributes
    ----------
    table : pandas.DataFrame
        One row per method x task x metric (overall and gaps): each method's value, its
        difference from the reference with a paired interval, McNemar/bootstrap p-values with
        Holm's correction and ``significant``, as ``compare.csv``.
    """

    def __init__(self, table: "pd.DataFrame", config: "AuditConfig"):
        self.table, self.config = table, config

    def __repr__(self) -> str:
        methods = ", ".join(self.runs) or "none"
        return f"Comparison(reference={self.reference!r}, methods: {methods}; {len(self.table)} rows)"

    @property
    def reference(self) -> Optional[str]:
        return self.table.attrs.get("reference")

    @property
    def runs(self) -> dict[str, list[str]]:
        """Method name -> the runs (seeds) it pooled."""
        return dict(self.table.attrs.get("runs", {}))

    @property
    def notes(self) -> list[str]:
        return list(self.table.attrs.get("notes", []))

    @property
    def significant(self) -> "pd.DataFrame":
        """The rows whose difference from the reference survives Holm's correction."""
        return self.table[self.table["significant"].astype(bool)]

    def to_html(self, path: PathLike) -> Path:
        """Write the comparison page (``compare.html``) to ``path`` (a file, or a folder)."""
        from facefair.audit import render_compare_html

        target = _html_path(path, "compare.html")
        target.write_text(render_compare_html(self.table, self.config), encoding="utf-8")
        return target

    def save(self, out_dir: PathLike) -> dict[str, Path]:
        """Write compare.csv, compare.json and compare.html, as ``facefair audit --compare`` does."""
        from facefair.audit import write_comparison
        return write_comparison(self.table, out_dir, self.config)


def compare(runs: Union[Mapping[str, Union[PathLike, Sequence[PathLike]]], Sequence[PathLike]], *,
            reference: Optional[str] = None, n_boot: Optional[int] = None, seed: Optional[int] = None,
            ci_level: Optional[float] = None, tasks: Optional[Sequence[str]] = None,
            config: Optional["AuditConfig"] = None) -> Comparison:
    """Compare runs evaluated on the same test faces, paired, as ``facefair audit --compare`` does.

    Parameters
    ----------
    runs : mapping or sequence
        ``{"plain": "runs/a", "dro": ["runs/b-s0", "runs/b-s1"]}``: method name -> a run folder or
        predictions CSV, or a list of them (seeds, pooled); or a plain list of runs, each its own
        method named by its folder.
    reference : str, optional
        The method every other is compared with (default: the first).
    n_boot, seed, ci_level, tasks, config
        As for :func:`audit`.

    Returns
    -------
    Comparison

    Examples
    --------
    >>> ff.compare({"plain": "runs/plain", "dro": ["runs/dro-s0", "runs/dro-s1"]}).significant  # doctest: +SKIP
    """
    from facefair.audit import compare_runs

    chosen = _audit_config(config, {"n_boot": n_boot, "seed": seed, "ci_level": ci_level, "tasks": tasks})
    if isinstance(runs, Mapping):
        entries: Any = {name: [str(r)] if isinstance(r, (str, os.PathLike)) else [str(p) for p in r]
                        for name, r in runs.items()}
    else:
        entries = [str(r) for r in runs]
    return Comparison(compare_runs(entries, chosen, reference), chosen)
