"""The run folder: the one module that knows its file names and how each file is read and written.

A training run writes ``config.yaml`` (the settings), ``splits.csv`` (path -> train/val/test),
``config.json`` + ``model.safetensors`` (the best epoch), ``last.pt`` (resumable state),
``predictions.csv`` and ``report.json`` (its test split), later ``eval-<split>/``, ``audit/`` and
``MODEL_CARD.md``.  Folders that hold only some of these (``eval-val``, ``thresholded``, an export,
a ``predict --out`` folder) are read through the same :class:`Run`.

No torch at import: the model, the dataset and the predictions table are loaded by the methods
that need them, through the modules that own those formats (``models.serialization``,
``data.prepare``, :mod:`facefair.table`).

>>> run = Run("runs/utkface")
>>> run.predictions_path.name
'predictions.csv'
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any, Optional, Sequence

from facefair.runtime import write_text_atomic

if TYPE_CHECKING:
    import pandas as pd
    import torch

    from facefair.config import RunConfig

#: File names inside a run folder (the only place they are spelled).
CONFIG = "config.yaml"
SPLITS = "splits.csv"
PREDICTIONS = "predictions.csv"
REPORT = "report.json"
MODEL_CONFIG = "config.json"
WEIGHTS = "model.safetensors"
LAST = "last.pt"
LEGACY_BEST = "best.pt"
#: Face heads the model defers to for some tasks (facefair.models.face_heads), beside its weights.
FACE_HEADS = "face_heads.safetensors"
CARD = "MODEL_CARD.md"
AUDIT_DIR = "audit"
AUDIT_JSON = "audit.json"
AUDIT_HTML = "audit.html"
TRANSFER_DIR = "transfer"
#: Suffix of the folders that `evaluate --adapt-bn` writes (test-time BatchNorm adaptation).
ADAPTED_SUFFIX = "-adapt-bn"
#: The audit's tidy tables, beside audit.json and audit.html.
AUDIT_TABLES = ("group_metrics.csv", "gaps.csv", "calibration.csv", "confusion_matrices.csv")


class Run:
    """A run folder (or any folder laid out like one): its paths, and readers/writers of its files.

    Parameters
    ----------
    folder : str or Path
        The folder; nothing is read until a method asks for it.

    Examples
    --------
    >>> Run("runs/x").eval_dir("val").as_posix()
    'runs/x/eval-val'
    """

    def __init__(self, folder: str | Path):
        self.folder = Path(folder)

    def __repr__(self) -> str:
        return f"Run({str(self.folder)!r})"

    def __fspath__(self) -> str:
        return str(self.folder)

    @property
    def name(self) -> str:
        return self.folder.name

    # -- paths ---------------------------------------------------------------------------------
    @property
    def config_path(self) -> Path:
        return self.folder / CONFIG

    @property
    def splits_path(self) -> Path:
        return self.folder / SPLITS

    @property
    def predictions_path(self) -> Path:
        return self.folder / PREDICTIONS

    @property
    def report_path(self) -> Path:
        return self.folder / REPORT

    @property
    def model_config_path(self) -> Path:
        return self.folder / MODEL_CONFIG

    @property
    def weights_path(self) -> Path:
        return self.folder / WEIGHTS

    @property
    def face_heads_path(self) -> Path:
        return self.folder / FACE_HEADS

    @property
    def last_path(self) -> Path:
        return self.folder / LAST

    @property
    def legacy_best_path(self) -> Path:
        """``best.pt``: the pickled best epoch of runs made before ``model.safetensors``."""
        return self.folder / LEGACY_BEST

    @property
    def card_path(self) -> Path:
        return self.folder / CARD

    @property
    def audit_dir(self) -> Path:
        return self.folder / AUDIT_DIR

    @property
    def audit_json_path(self) -> Path:
        return self.audit_dir / AUDIT_JSON

    @property
    def transfer_dir(self) -> Path:
        """Where ``facefair evaluate RUN --data ...`` compares other datasets with the test split."""
        return self.folder / TRANSFER_DIR

    @property
    def adapted_transfer_dir(self) -> Path:
        """:attr:`transfer_dir` of ``evaluate --adapt-bn``, beside the model's own."""
        return self.folder / (TRANSFER_DIR + ADAPTED_SUFFIX)

    def eval_dir(self, split: str, *, adapt_bn: bool = False) -> Path:
        """Where ``facefair evaluate`` puts one split's (or another dataset's) predictions and report;
        with ``adapt_bn`` (``evaluate --adapt-bn``) a folder beside it, so adapted figures never
        replace the model's own."""
        return self.folder / f"eval-{split}{ADAPTED_SUFFIX if adapt_bn else ''}"

    def own_files(self) -> list[Path]:
        """Every file that training, evaluation, the audit and the card write into the run itself:
        commands that write elsewhere (``predict --out``) must not replace these."""
        names = (CONFIG, SPLITS, PREDICTIONS, REPORT, MODEL_CONFIG, WEIGHTS, FACE_HEADS, LAST, LEGACY_BEST, CARD)
        return [self.folder / n for n in names] + [self.audit_dir / n for n in (AUDIT_JSON, AUDIT_HTML,
                                                                               *AUDIT_TABLES)]

    @staticmethod
    def audit_files(out: str | Path) -> dict[str, Path]:
        """The files an audit writes into ``out``, by name: audit.json, the tidy CSVs, audit.html."""
        out = Path(out)
        return {name: out / name for name in (AUDIT_JSON, *AUDIT_TABLES, AUDIT_HTML)}

    # -- what kind of folder -------------------------------------------------------------------
    def is_training_run(self) -> bool:
        return self.config_path.is_file()

    def has_model(self) -> bool:
        return (self.model_config_path.is_file() and self.weights_path.is_file()) or self.legacy_best_path.is_file()

    def require(self, *paths: Path) -> None:
        """Raise FileNotFoundError naming the first of ``paths`` (default: config.yaml) that is missing."""
        for path in paths or (self.config_path,):
            if not path.is_file():
                raise FileNotFoundError(f"{path} not found: is {self.folder} a finished training run?")

    # -- config --------------------------------------------------------------------------------
    def config(self) -> "RunConfig":
        """The run's settings (``config.yaml``), checked like a config file given to ``train``.

        Input paths a run saved relative to the folder training ran in (before they were stored
        absolute) are looked up from here, then from the run folder and the folders above it."""
        from facefair.config import load_yaml_config, locate_data_paths
        self.require()
        config = load_yaml_config(self.config_path)
        config.data = locate_data_paths(config.data, self.folder)
        return config

    def raw_config(self) -> dict:
        """``config.yaml`` as a plain dict (no check; {} when absent)."""
        import yaml
        if not self.config_path.is_file():
            return {}
        return yaml.safe_load(self.config_path.read_text()) or {}

    def write_config(self, config: "RunConfig") -> Path:
        """``config.yaml``, its input paths made absolute so the run finds its data from any folder."""
        import dataclasses

        import yaml

        from facefair.config import absolute_data_paths
        self.folder.mkdir(parents=True, exist_ok=True)
        saved = dataclasses.replace(config, data=absolute_data_paths(config.data))
        write_text_atomic(self.config_path, yaml.safe_dump(saved.to_dict(), sort_keys=False))
        return self.config_path

    # -- split ---------------------------------------------------------------------------------
    def split_frame(self, split: Optional[str] = None, config: "Optional[RunConfig]" = None) -> "pd.DataFrame":
        """The run's dataset rows (path + labels) with the ``split`` that ``splits.csv`` gives each
        (only ``split``'s rows when given): the one way evaluate, robustness and the card read it.

        Rows of the dataset that splits.csv does not list get no split; paths match as training
        saved them, then by file name when the data moved (``data.splits.match_paths``)."""
        from facefair.data.prepare import load_table
        from facefair.data.splits import data_root, read_saved_splits

        self.require(self.splits_path)
        config = config or self.config()
        table = load_table(config.data).frame
        saved = read_saved_splits(self.splits_path, table["path"], data_root(config.data.data,
                                                                             config.data.image_root))
        if saved["split"].isna().all():
            raise ValueError(f"{self.splits_path}: none of its paths is in the run's dataset "
                             f"({config.data.data}); was the data moved? (--data names it)")
        frame = table.assign(split=saved["split"].to_numpy())
        return frame if split is None else self._only(frame, split)

    def split_frames(self, splits: Sequence[str], config: "Optional[RunConfig]" = None) -> "dict[str, pd.DataFrame]":
        """Several splits' rows (as :meth:`split_frame` gives each) from one listing of the dataset."""
        frame = self.split_frame(config=config)
        return {split: self._only(frame, split) for split in splits}

    def _only(self, frame: "pd.DataFrame", split: str) -> "pd.DataFrame":
        frame = frame[frame["split"] == split].reset_index(drop=True)
        if frame.empty:
            raise ValueError(f"{self.splits_path} has no {split!r} row")
        return frame

    # -- model ---------------------------------------------------------------------------------
    def model_source(self) -> Path:
        """What ``models.serialization`` loads: the folder (config.json + model.safetensors) or an
        older run's best.pt."""
        if self.legacy_best_path.is_file() and not self.weights_path.is_file():
            return self.legacy_best_path
        return self.folder

    def load_model(self, device: "str | torch.device" = "cpu", *, trust_checkpoint: bool = False):
        """The run's best model on ``device`` (eval mode is the caller's choice)."""
        from facefair.models.multitask import load_model
        return load_model(self.model_source(), device, trust_checkpoint=trust_checkpoint).to(device)

    # -- predictions and report ----------------------------------------------------------------
    def predictions(self, **kwargs: Any) -> "pd.DataFrame":
        """The run's predictions table, read by :func:`facefair.table.read_predictions`."""
        from facefair.table import read_predictions
        return read_predictions(self.predictions_path, **kwargs)

    def write_predictions(self, frame: "pd.DataFrame") -> Path:
        from facefair.table import write_predictions
        self.folder.mkdir(parents=True, exist_ok=True)
        return write_predictions(frame, self.predictions_path)

    def report(self) -> dict:
        """``report.json`` ({} when the folder has none)."""
        if not self.report_path.is_file():
            return {}
        return json.loads(self.report_path.read_text(encoding="utf-8"))

    def write_report(self, report: dict) -> Path:
        self.folder.mkdir(parents=True, exist_ok=True)
        write_text_atomic(self.report_path, json.dumps(report, indent=1))
        return self.report_path

    def audit(self) -> Optional[dict]:
        """``audit/audit.json`` (None when the run has not been audited)."""
        if not self.audit_json_path.is_file():
            return None
        return json.loads(self.audit_json_path.read_text(encoding="utf-8"))


__all__ = ["Run", "CONFIG", "SPLITS", "PREDICTIONS", "REPORT", "MODEL_CONFIG", "WEIGHTS", "FACE_HEADS", "LAST",
           "LEGACY_BEST",
           "CARD", "TRANSFER_DIR", "AUDIT_DIR", "AUDIT_JSON", "AUDIT_HTML", "AUDIT_TABLES"]
