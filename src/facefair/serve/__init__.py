"""``facefair serve``: a small HTTP API (FastAPI) and web page that predict face attributes.

:func:`facefair.serve.app.create_app` builds the app; the names are re-exported lazily so that
``facefair --help`` (which imports :mod:`facefair.serve.cli`) needs neither FastAPI nor torch.
"""

from __future__ import annotations

__all__ = ["ServeConfig", "create_app"]


def __getattr__(name: str):
    if name == "ServeConfig":
        from facefair.serve.config import ServeConfig
        return ServeConfig
    if name == "create_app":
        from facefair.serve.app import create_app
        return create_app
    raise AttributeError(f"module 'facefair.serve' has no attribute {name!r}")
