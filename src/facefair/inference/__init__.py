"""One inference module: images, folders, CSVs or raw photos (``detect=``) in, the predictions
table out.  ``facefair predict``, ``evaluate``, ``serve``, ``robustness`` and the Python API all
run their models through it, with one set of defaults (:data:`DEFAULTS`).

- :mod:`facefair.inference.settings`: :class:`InferenceSettings` and :data:`DEFAULTS` (no torch).
- :mod:`facefair.inference.engine`: batches, files or arrays -> probabilities and years (TTA, precision).
- :mod:`facefair.inference.photos`: photo -> detect -> chip (``facefair.align``) -> predict.
- :mod:`facefair.inference.sources`: a folder, CSV or image -> the predictions table.

Importing this package loads no torch; the submodules that run models do.
"""

from facefair.inference.settings import DEFAULTS, InferenceSettings

__all__ = ["DEFAULTS", "InferenceSettings"]
