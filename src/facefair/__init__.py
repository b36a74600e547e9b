"""facefair: multi-task face attribute classifiers (gender, race, age) and their fairness audit.

The command line is ``facefair --help``; from Python, in the spirit of fairlearn and timm::

    import facefair as ff
    model = ff.load("runs/utkface")                   # a run or exported model folder
    faces = model.predict("photos/", detect="mtcnn")  # the predictions table (a DataFrame)
    result = ff.audit("runs/utkface")                 # or any predictions table / CSV
    result.by_group, result.gaps, result.summary
    result.metric_frame("gender", "race")             # a fairlearn MetricFrame
    result.to_html("audit.html")
    run = ff.train("configs/utkface-cpu.yaml", epochs=1, out_dir="runs/try")
    ff.compare({"plain": "runs/a", "dro": ["runs/b-s0", "runs/b-s1"]}).significant
    ff.list_backbones(), ff.list_methods()

Everything is loaded on first use: ``import facefair`` imports neither torch nor pandas
(docs/api.md).
"""

from __future__ import annotations

import importlib
import sys
import types
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

#: Public name -> the module that defines it, imported the first time the name is used.
_EXPORTS = {
    "load": "facefair.api.models", "Model": "facefair.api.models", "train": "facefair.api.models",
    "list_backbones": "facefair.api.models", "list_methods": "facefair.api.models",
    "audit": "facefair.api.fairness", "Audit": "facefair.api.fairness",
    "compare": "facefair.api.fairness", "Comparison": "facefair.api.fairness",
    "InferenceSettings": "facefair.inference.settings", "DEFAULTS": "facefair.inference.settings",
}

__all__ = ["DEFAULTS", "Audit", "Comparison", "InferenceSettings", "Model", "__version__", "audit", "compare",
           "list_backbones", "list_methods", "load", "train"]

if TYPE_CHECKING:  # for type checkers and IDEs; at run time __getattr__ loads these on first use
    from facefair.api.fairness import Audit, Comparison, audit, compare
    from facefair.api.models import Model, list_backbones, list_methods, load, train
    from facefair.inference.settings import DEFAULTS, InferenceSettings


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'facefair' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    if name not in ("audit", "train"):  # those two stay behind _Package's properties
        globals()[name] = value  # later lookups skip this function
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_EXPORTS))


def _function(name: str) -> property:
    """``facefair.audit`` / ``facefair.train``: the API function, although a subpackage of the same
    name exists.  Importing the subpackage makes Python set the package attribute to it, which would
    turn ``ff.audit(...)`` into "module is not callable" after its first call; this property keeps the
    function there.  The subpackages are reached as always: ``from facefair.audit import AuditConfig``,
    ``import facefair.train.loop``, ``importlib.import_module("facefair.audit.core")``."""

    def get(package: types.ModuleType) -> Any:
        replaced = package.__dict__.get(f"_replaced_{name}")
        return replaced if replaced is not None else __getattr__(name)

    def set_(package: types.ModuleType, value: Any) -> None:
        if isinstance(value, types.ModuleType) and value.__name__ == f"{__name__}.{name}":
            return  # the import system announcing the subpackage: it stays in sys.modules
        package.__dict__[f"_replaced_{name}"] = value  # a test's stand-in, say

    def delete(package: types.ModuleType) -> None:
        package.__dict__.pop(f"_replaced_{name}", None)

    return property(get, set_, delete, doc=f"facefair.{name}, the API function (see help(facefair.{name}))")


class _Package(types.ModuleType):
    audit = _function("audit")
    train = _function("train")


sys.modules[__name__].__class__ = _Package
