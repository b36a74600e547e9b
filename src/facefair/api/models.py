"""``ff.load`` -> :class:`Model` (``.predict``), ``ff.train``, ``ff.list_backbones``, ``ff.list_methods``.

Nothing heavy at import: torch loads when a model is loaded or trained.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any, Mapping, Optional, Sequence, Union

if TYPE_CHECKING:
    import pandas as pd

    from facefair.config import RunConfig
    from facefair.inference.settings import InferenceSettings

PathLike = Union[str, "os.PathLike[str]"]


# -- models ---------------------------------------------------------------------------------------
class Model:
    """A trained model, ready to predict; made by :func:`load`.

    Attributes
    ----------
    module : torch.nn.Module
        The network itself (any registered architecture), in eval mode on ``settings.device``.
    settings : InferenceSettings
        How it runs: device, batch size, TTA, precision, photo handling.  The defaults are
        ``facefair predict``'s and ``facefair serve``'s (:data:`facefair.inference.DEFAULTS`).
    source : str
        The folder or file it was loaded from.
    """

    def __init__(self, module: Any, settings: "InferenceSettings", source: str):
        self.module, self.settings, self.source = module, settings, source

    def __repr__(self) -> str:
        return f"Model({self.source!r}, backbone={self.backbone!r}, tasks={self.tasks!r})"

    @property
    def tasks(self) -> list[str]:
        """The tasks it predicts, e.g. ``['gender', 'race', 'age_group', 'age']``."""
        return [t.name for t in self.module.tasks]

    @property
    def classes(self) -> dict[str, list[str]]:
        """Each classification task's classes, in the order of its ``T_prob_<class>`` columns."""
        return {t.name: list(t.classes) for t in self.module.tasks if t.kind == "classification"}

    @property
    def backbone(self) -> str:
        return str(self.module.config.backbone)

    def predict(self, source: Union[PathLike, Sequence[PathLike]], detect: Optional[str] = None, *,
                image_root: Optional[PathLike] = None, progress: bool = False, **settings: Any) -> "pd.DataFrame":
        """Predict cropped faces, or (``detect``) every face in raw photos.

        Parameters
        ----------
        source : path or sequence of paths
            A folder of images (searched recursively), a CSV with an image column, one image, or a
            list of image paths.
        detect : str, optional
            A face detector (``"auto"``, ``"dlib"``, ``"dlib-hog"``, ``"mtcnn"``): the images are
            raw photos, and each face found is aligned FairFace's way and predicted (one row per
            face).  None: each image is one already-cropped face.
        image_root : path, optional
            Folder a CSV source's relative paths are under (default: the CSV's folder).
        progress : bool
            Show a progress bar.
        **settings
            Any :class:`~facefair.inference.InferenceSettings` field for this call only
            (``tta=False``, ``max_side=1280``, ``batch_size=16`` ...); an unknown name is an error.

        Returns
        -------
        pandas.DataFrame
            The predictions table: ``path``, per classification task ``T_pred`` and
            ``T_prob_<class>``, ``age_pred`` in years; an ``error`` column for unreadable
            images; with ``detect`` also ``face_index``, the box and landmarks.  Photos without a
            face are listed in ``frame.attrs["no_face"]``.

        Examples
        --------
        >>> model = ff.load("runs/utkface")                                   # doctest: +SKIP
        >>> model.predict("photos/", detect="mtcnn")[["path", "gender_pred"]]  # doctest: +SKIP
        """
        from facefair.inference.sources import list_images, predict_paths

        chosen = self.settings.with_options(**settings)
        if isinstance(source, (str, os.PathLike)):
            paths = list_images(source, image_root)
        else:
            paths = [str(p) for p in source]
        if not paths:
            raise ValueError(f"no images found in {source}")
        module = self.module
        if chosen.device != self.settings.device:
            from facefair.runtime import select_device
            module = module.to(select_device(chosen.device))
        predicted = predict_paths(module, paths, chosen, detect=detect, progress=progress)
        frame = predicted.frame
        if predicted.no_face is not None:
            frame.attrs["no_face"] = predicted.no_face
        return frame


def load(run_or_model_dir: PathLike, *, trust_checkpoint: bool = False, **settings: Any) -> Model:
    """Load a trained model: a training run's folder, an exported model folder, or a ``.pt`` file.

    Parameters
    ----------
    run_or_model_dir : path
        ``runs/NAME`` (``config.json`` + ``model.safetensors``), ``facefair export``'s folder, or
        an old run's ``best.pt``.
    trust_checkpoint : bool
        Also unpickle an old ``.pt`` that holds Python objects beyond tensors (a pickle can run
        code: only for files from a source you trust).  Run and export folders never need it.
    **settings
        :class:`~facefair.inference.InferenceSettings` fields that differ from the defaults
        (``device="cuda"``, ``tta=False``, ``bf16=False`` ...).

    Returns
    -------
    Model

    Examples
    --------
    >>> model = ff.load("runs/utkface", device="cpu")    # doctest: +SKIP
    >>> model.tasks                                      # doctest: +SKIP
    ['gender', 'race', 'age_group', 'age']
    """
    from facefair.inference.settings import DEFAULTS
    from facefair.inference.sources import load_model

    chosen = DEFAULTS.with_options(**settings)
    return Model(load_model(run_or_model_dir, chosen, trust_checkpoint=trust_checkpoint), chosen,
                 str(run_or_model_dir))


# -- training -------------------------------------------------------------------------------------
def _run_config(config_or_path: Union[PathLike, Mapping[str, Any], "RunConfig"],
                overrides: Mapping[str, Any]) -> "RunConfig":
    """A RunConfig from a YAML path, a mapping of sections or a RunConfig, with ``overrides``
    applied: a section name with a mapping (``train={"epochs": 2}``) or a field name that only
    one section has (``epochs=2``, ``backbone="resnet18"``); anything else is an error."""
    import copy
    import dataclasses

    from facefair.config import RunConfig, load_yaml_config

    if isinstance(config_or_path, RunConfig):
        config = copy.deepcopy(config_or_path)
    elif isinstance(config_or_path, Mapping):
        config = RunConfig.from_dict(dict(config_or_path))
    else:
        config = load_yaml_config(config_or_path)
    sections = {f.name: getattr(config, f.name) for f in dataclasses.fields(config)}
    owners: dict[str, list[str]] = {}
    for section, values in sections.items():
        for f in dataclasses.fields(values):
            owners.setdefault(f.name, []).append(section)
    raw = config.to_dict()
    for name, value in overrides.items():
        if name in sections and isinstance(value, Mapping):
            raw[name].update(value)
        elif len(owners.get(name, [])) == 1:
            raw[owners[name][0]][name] = value
        elif name in owners:
            raise TypeError(f"{name!r} is a setting of several sections ({', '.join(owners[name])}): "
                            f"say which, e.g. {owners[name][0]}={{{name!r}: ...}}")
        else:
            raise TypeError(f"unknown setting {name!r}: give a section ({', '.join(sections)}) as a dict, or one "
                            f"of its fields (see `facefair train --help`)")
    return RunConfig.from_dict(raw)


def train(config_or_path: Union[PathLike, Mapping[str, Any], "RunConfig"], **overrides: Any):
    """Train a model as ``facefair train`` does, and return its run folder.

    Parameters
    ----------
    config_or_path : path, mapping or RunConfig
        A YAML config (``configs/utkface-cpu.yaml``), a mapping of sections (``{"data": {...},
        "model": {...}, "train": {...}}``) or a :class:`facefair.config.RunConfig`.
    **overrides
        Settings over the config: a field that only one section has (``epochs=2``,
        ``backbone="resnet18"``, ``out_dir="runs/x"``), or a whole section as a dict
        (``train={"epochs": 2, "seed": 1}``).  Unknown names are errors, as in a config file.

    Returns
    -------
    facefair.run.Run
        The finished run (``run.folder`` holds the model, its splits, predictions and report);
        ``ff.load(run.folder)`` loads its model, ``ff.audit(run.folder)`` audits it.

    Examples
    --------
    >>> run = ff.train("configs/utkface-cpu.yaml", epochs=1, out_dir="runs/try")   # doctest: +SKIP
    """
    from facefair.run import Run
    from facefair.train.loop import train as train_run

    config = _run_config(config_or_path, overrides)
    train_run(config)
    return Run(config.train.out_dir)


def list_backbones(pattern: Optional[str] = None) -> list[str]:
    """Backbone names ``model.backbone`` accepts (any timm model name works too).

    Parameters
    ----------
    pattern : str, optional
        A shell-style filter, e.g. ``"mobilenet*"``.
    """
    import fnmatch

    from facefair.models.backbones import BACKBONES
    return sorted(n for n in BACKBONES if pattern is None or fnmatch.fnmatch(n, pattern))


def list_methods() -> list[str]:
    """Training methods ``train.method`` accepts: ``standard`` and the bias-mitigation methods."""
    from facefair.train.methods import METHODS
    return sorted({"standard", *METHODS.names()})
