"""facefair's Python API, re-exported by the package itself (``import facefair as ff``).

- :mod:`facefair.api.models`: ``load`` -> :class:`Model` (``.predict``), ``train``,
  ``list_backbones``, ``list_methods``.
- :mod:`facefair.api.fairness`: ``audit`` -> :class:`Audit`, ``compare`` -> :class:`Comparison`.

Importing it loads neither torch nor pandas; each function imports what it needs when called.

Examples
--------
Audit a small predictions table (no model, no training) and check a figure:

>>> import pandas as pd
>>> import facefair as ff
>>> table = pd.DataFrame({
...     "race": ["White"] * 40 + ["Black"] * 40,
...     "gender_true": ["Male", "Female"] * 40,
...     "gender_pred": ["Male", "Female"] * 30 + ["Female", "Male"] * 10})
>>> result = ff.audit(table, n_boot=0)
>>> result.value("gender", "race", "Black", "accuracy")
0.5
>>> result.metric_frame("gender", "race").by_group["accuracy"].to_dict()
{'Black': 0.5, 'White': 1.0}
"""

from facefair.api.fairness import Audit, Comparison, audit, compare
from facefair.api.models import Model, list_backbones, list_methods, load, train

__all__ = ["Audit", "Comparison", "Model", "audit", "compare", "list_backbones", "list_methods", "load", "train"]
