"""Export a trained multi-task model to ONNX, with preprocessing and ``model.predict`` inside the graph.

Public API lives in :mod:`facefair.export.onnx_export`; the names are re-exported lazily so that
``facefair --help`` (which imports :mod:`facefair.export.cli`) does not pay for importing torch.
"""

from __future__ import annotations

__all__ = ["ExportConfig", "ExportResult", "PredictWrapper", "export_onnx", "verify_onnx", "read_sidecar"]


def __getattr__(name: str):
    if name in __all__:
        from facefair.export import onnx_export
        return getattr(onnx_export, name)
    raise AttributeError(f"module 'facefair.export' has no attribute {name!r}")
