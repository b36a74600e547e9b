"""Typed run configuration: dataclasses, filled from a YAML file and/or command-line flags.

Flags are generated from the dataclass fields (``--batch-size`` for ``batch_size``), so adding
an option is adding a field with a ``help`` in its metadata; nothing is declared twice.
"""

from __future__ import annotations

import argparse
import dataclasses
import difflib
import os
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

import yaml

from facefair.data.augment_config import AugmentConfig
from facefair.models.config import ModelConfig


def _help(text: str, **kwargs) -> Any:
    return field(metadata={"help": text}, **kwargs)


@dataclass
class DataConfig:
    data: Optional[str] = _help("dataset: UTKFace folder, ImageFolder tree, FairFace/any label CSV", default=None)
    kind: str = _help("auto, utkface, fairface, csv or imagefolder", default="auto")
    image_root: Optional[str] = _help("folder the CSV's image paths are relative to", default=None)
    extra_csvs: list[str] = _help("more label CSVs read with the same root (FairFace val)", default_factory=list)
    layout: Optional[str] = _help("label folders: the attribute of each folder level, e.g. gender/race ('-' for a "
                                  "level that is no label); default: detected from the folder names", default=None)
    label_map: list[str] = _help("your own label spellings: YAML files ({race: {RAW: LABEL}}) or "
                                 "ATTRIBUTE:RAW=LABEL, e.g. race:latinx=hispanic", default_factory=list)
    race_scheme: Optional[str] = _help("race7, race5 or race4; default: the data's own", default=None)
    splits_file: Optional[str] = _help("reuse a saved splits.csv (path,split)", default=None)
    split_by: list[str] = _help("label columns the split is stratified on",
                                default_factory=lambda: ["gender", "race", "age_group"])
    val_fraction: float = _help("share of rows for validation", default=0.1)
    test_fraction: float = _help("share of rows for the test split", default=0.2)
    limit: Optional[int] = _help("use a seeded random subset of this many images (smoke runs)", default=None)
    cache_dir: Optional[str] = _help("decoded-image cache folder; empty string reads JPEGs every epoch",
                                     default=".facefair-cache")
    workers: int = _help("decode workers (0: one per core)", default=0)
    exclude: list[str] = _help("files of `facefair clean` (label_issues.csv) or any CSV with a path column: those "
                               "train labels (rows with a task) or train images (rows without) are left out",
                               default_factory=list)
    relabel: list[str] = _help("label_issues.csv files whose suggested_label replaces the train label",
                               default_factory=list)
    downweight: list[str] = _help("label_issues.csv files whose train labels keep training at downweight_factor of "
                                  "the loss weight (softer than exclude)", default_factory=list)
    downweight_factor: float = _help("loss weight of a down-weighted label, in [0, 1]", default=0.3)
    split_groups: Optional[str] = _help("duplicates.csv (path,cluster): a fresh split keeps each cluster in one "
                                        "split", default=None)


@dataclass
class TrainConfig:
    out_dir: str = _help("run folder (checkpoints, report, logs)", default="runs/facefair")
    epochs: int = _help("training epochs", default=10)
    batch_size: int = _help("images per step", default=128)
    lr: float = _help("peak learning rate of AdamW", default=1e-3)
    backbone_lr_scale: float = _help("backbone lr = lr x this (pretrained backbones like < 1)", default=1.0)
    weight_decay: float = _help("AdamW weight decay", default=0.05)
    warmup_epochs: float = _help("linear warm-up before the cosine decay", default=1.0)
    label_smoothing: float = _help("cross-entropy label smoothing", default=0.1)
    task_weights: dict[str, float] = _help("loss weight per task, e.g. age=0.5", default_factory=dict)
    face_heads: dict[str, float] = _help(
        "after training, fit face heads (dlib face descriptors) for these tasks and blend them in with these "
        "weights, e.g. race=1 gender=0.5 (docs/transfer.md; empty: the CNN alone)", default_factory=dict)
    ema_decay: float = _help("keep an exponential moving average of the weights (decay per step, e.g. 0.998, "
                             "reached after a warm-up); validation, the saved model and the test report use "
                             "it (0: off)", default=0.0)
    swa_epochs: int = _help("stochastic weight averaging: the cosine ends this many epochs early at "
                            "swa_lr_scale x lr, which is then held, and the weights at the end of each of "
                            "those epochs are averaged (BatchNorm statistics recomputed); validation, the "
                            "saved model and the test report use the average (0: off)", default=0)
    swa_lr_scale: float = _help("with swa_epochs: the held learning rate as a fraction of lr (0.2 is where "
                                "the plain cosine stands three-quarters through)", default=0.2)
    mixstyle: float = _help("MixStyle: with this probability per batch, mix the feature statistics of images after "
                            "the backbone stages at strides 4, 8, 16 (style randomisation; 0: off)", default=0.0)
    class_weights: bool = _help("inverse-frequency class weights in the classification losses", default=False)
    sampler: str = _help("none or balanced (WeightedRandomSampler over --sampler-by groups)", default="none")
    sampler_by: list[str] = _help("columns whose joint groups the balanced sampler equalises",
                                  default_factory=lambda: ["gender"])
    method: str = _help("standard, or a bias-mitigation method (see docs/mitigate.md)", default="standard")
    group_by: list[str] = _help("sensitive attributes whose joint groups mitigation methods act on",
                                default_factory=lambda: ["race", "gender"])
    method_options: dict[str, float | str] = _help("method-specific knobs, e.g. adversary_weight=0.3",
                                                   default_factory=dict)
    amp: bool = _help("mixed precision on CUDA", default=True)
    bf16: bool = _help("bfloat16 autocast on CPU", default=False)
    compile: bool = _help("torch.compile the model", default=False)
    channels_last: bool = _help("channels-last memory layout", default=True)
    tta: bool = _help("average predictions over the image and its mirror at evaluation", default=True)
    seed: int = _help("random seed (splits, init, order, augmentation)", default=0)
    deterministic: bool = _help("deterministic kernels (slower)", default=False)
    resume: bool = _help("continue from OUT_DIR/last.pt", default=False)
    force: bool = _help("with --resume: continue even where the config differs from the saved run's", default=False)
    trust_checkpoint: bool = _help("with --resume: unpickle an old last.pt that holds more than tensors "
                                   "(only for files you trust: a pickle can run code)", default=False)
    device: str = _help("auto, cpu, cuda or cuda:N", default="auto")
    max_bad_steps: int = _help("abort after this many consecutive non-finite losses", default=20)
    tensorboard: bool = _help("write TensorBoard logs under OUT_DIR/tb", default=True)
    progress: bool = _help("progress bars", default=True)
    framing_sample: int = _help("training chips measured with a face detector so that the model files record how "
                                "faces are framed (predict/evaluate --detect cut chips the same way; 0: skip)",
                                default=24)
    results_csv: Optional[str] = _help("benchmark table every run appends to (default OUT_DIR/../benchmark_results.csv)",
                                       default=None)

    def check(self) -> None:
        # Checked with the other settings, so a bad value stops the run before the data is read.
        if not 0 <= self.ema_decay < 1:
            raise ValueError(f"train.ema_decay must be in [0, 1), e.g. 0.998 (0: off), not {self.ema_decay}")
        if not 0 <= self.mixstyle <= 1:
            raise ValueError(f"train.mixstyle is a probability in [0, 1] (0: off), not {self.mixstyle}")
        if not 0 <= self.swa_epochs < self.epochs:
            raise ValueError(f"train.swa_epochs must be in [0, epochs={self.epochs}) (0: off), not {self.swa_epochs}")
        if not 0 < self.swa_lr_scale <= 1:
            raise ValueError(f"train.swa_lr_scale is a fraction of lr in (0, 1], not {self.swa_lr_scale}")
        if self.swa_epochs and self.ema_decay:
            raise ValueError("train.swa_epochs and train.ema_decay each average the weights; choose one")


@dataclass
class RunConfig:
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    augment: AugmentConfig = field(default_factory=AugmentConfig)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, raw: dict) -> "RunConfig":
        """Unknown sections and keys are errors naming them (with the closest valid name), so a
        typo never silently trains with the defaults; values must have the field's type."""
        if not isinstance(raw, dict):
            raise ValueError(f"the config must be a mapping of sections ({', '.join(_SECTIONS)}), "
                             f"not a {type(raw).__name__}")
        config = cls()
        unknown_sections = [name for name in raw if name not in _SECTIONS]
        if unknown_sections:
            raise ValueError("; ".join(_unknown("section", str(name), _SECTIONS) for name in unknown_sections))
        for section, values in raw.items():
            values = {} if values is None else values
            if not isinstance(values, dict):
                raise ValueError(f"section {section}: expected KEY: VALUE lines, got {type(values).__name__}")
            target = getattr(config, section)
            hints = typing.get_type_hints(type(target))
            known = [f.name for f in dataclasses.fields(target)]
            unknown = [key for key in values if key not in known]
            if unknown:
                raise ValueError("; ".join(_unknown(f"{section} option", str(k), known) for k in unknown))
            for key, value in values.items():
                setattr(target, key, _checked(f"{section}.{key}", value, hints[key]))
        config.check()
        return config

    def check(self) -> None:
        """Range checks a section defines (``check``), run once every value is set."""
        for section in _SECTIONS:
            check = getattr(getattr(self, section), "check", None)
            if check is not None:
                check()


def _unknown(what: str, name: str, valid) -> str:
    close = difflib.get_close_matches(name, list(valid), n=1, cutoff=0.6)
    hint = f"did you mean {close[0]!r}?" if close else f"valid: {', '.join(valid)}"
    return f"unknown {what} {name!r} ({hint})"


def _checked(name: str, value, annotation):
    """``value`` if it has the field's type (ints pass for floats; lists for tuples), else a ValueError."""
    kind = _flag_type(annotation)
    optional = type(None) in typing.get_args(annotation)
    if value is None:
        if optional:
            return None
        raise ValueError(f"{name}: a value is required")
    origin = typing.get_origin(kind)
    if origin in (list, tuple):
        if not isinstance(value, (list, tuple)):
            value = [value] if origin is list and isinstance(value, str) else value
        if not isinstance(value, (list, tuple)):
            raise ValueError(f"{name}: expected a list, got {value!r}")
        args = [a for a in typing.get_args(kind) if a is not Ellipsis]
        if origin is tuple and len(args) > 1 and len(value) != len(args):
            raise ValueError(f"{name}: expected {len(args)} values, got {list(value)!r}")
        items = [_checked(name, v, args[min(i, len(args) - 1)]) for i, v in enumerate(value)] if args else list(value)
        return tuple(items) if origin is tuple else items
    if origin is dict:
        if not isinstance(value, dict):
            raise ValueError(f"{name}: expected KEY: VALUE pairs, got {value!r}")
        return dict(value)
    if kind is bool:
        if not isinstance(value, bool):
            raise ValueError(f"{name}: expected true or false, got {value!r}")
        return value
    if kind is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ValueError(f"{name}: expected a whole number, got {value!r}")
        return value
    if kind is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ValueError(f"{name}: expected a number, got {value!r}")
        return float(value)
    if kind is str:
        if not isinstance(value, (str, int, float)) or isinstance(value, bool):
            raise ValueError(f"{name}: expected text, got {value!r}")
        return str(value)
    return value


#: DataConfig fields that name input files or folders (a path, or a list of paths).
DATA_PATH_FIELDS = ("data", "image_root", "extra_csvs", "splits_file", "exclude", "relabel", "downweight",
                    "split_groups")


def _map_data_paths(config: DataConfig, change) -> DataConfig:
    values = {}
    for name in DATA_PATH_FIELDS:
        value = getattr(config, name)
        if isinstance(value, list):
            values[name] = [change(v) for v in value]
        elif value:
            values[name] = change(value)
    return dataclasses.replace(config, **values)


def absolute_data_paths(config: DataConfig) -> DataConfig:
    """``config`` with every input path that exists from here made absolute: a run's saved
    config.yaml then finds its data from any folder (a relative ``../data/UTKFace`` only worked from
    the folder training ran in)."""
    return _map_data_paths(config, lambda p: os.path.abspath(p) if os.path.exists(p) else p)


def locate_data_paths(config: DataConfig, run_dir: str | Path) -> DataConfig:
    """``config`` (read from ``run_dir``'s config.yaml) with each relative input path that is not
    found from the working folder looked up from the run folder and then the folders above it,
    where training usually ran (runs saved before paths were stored absolute)."""
    bases = [Path(run_dir).resolve(), *Path(run_dir).resolve().parents]

    def locate(path: str) -> str:
        if os.path.isabs(path) or os.path.exists(path):
            return path
        return next((str(base / path) for base in bases if (base / path).exists()), path)
    return _map_data_paths(config, locate)


#: Settings that change how a run executes or reports, not what it computes: ``--resume`` may change them.
RESUME_FREE = {"train.resume", "train.force", "train.trust_checkpoint", "train.device", "train.progress",
               "train.framing_sample",
               "train.tensorboard", "train.results_csv", "train.out_dir", "train.max_bad_steps",
               "data.cache_dir", "data.workers"}


def run_differences(saved: dict, current: dict) -> list[str]:
    """``section.key: saved -> current`` for every setting that alters the run, e.g. for ``--resume``."""
    differences = []
    defaults = RunConfig().to_dict()  # what a setting newer than the saved run meant when it was made
    for section in sorted(set(saved) | set(current)):
        old, new = saved.get(section) or {}, current.get(section) or {}
        for key in sorted(set(old) | set(new)):
            name = f"{section}.{key}"
            fallback = (defaults.get(section) or {}).get(key)
            before, after = _comparable(old.get(key, fallback)), _comparable(new.get(key, fallback))
            if name not in RESUME_FREE and before != after:
                differences.append(f"{name}: {before!r} -> {after!r}")
    return differences


def _comparable(value):
    return list(value) if isinstance(value, tuple) else value


_SECTIONS = {"data": DataConfig, "model": ModelConfig, "train": TrainConfig, "augment": AugmentConfig}
_MODEL_HELP = {
    "backbone": "resnet18/34/50, convnext_tiny, efficientnetv2_s, vit_b_16, mobilenetv2, ... or any timm name",
    "image_size": "input size in pixels (0: the backbone's default)",
    "pretrained": "download timm ImageNet weights (needs internet)",
    "weights": "local backbone checkpoint (.pth), e.g. torchvision's mobilenet_v2-b0353104.pth",
    "age_head": "regression or coral (ordinal)",
    "dropout": "dropout before each head",
    "tasks": "tasks to train: gender race age_group age",
}


def _flag_type(annotation):
    origin = typing.get_origin(annotation)
    args = [a for a in typing.get_args(annotation) if a is not type(None)]
    if origin is typing.Union and args:
        return _flag_type(args[0])
    return annotation


#: Other spellings of a config flag: every command's output folder is ``--out`` (train's run folder
#: too); ``--out-dir``, the config key's own name, keeps working.
_FLAG_ALIASES = {"train.out_dir": ("--out",)}


def add_config_flags(parser: argparse.ArgumentParser, sections=("data", "model", "train", "augment")) -> None:
    """One flag per config field; defaults are None so only flags given on the command line override YAML.
    Augmentation flags carry the section's name (``--augment-flip``): bare ``--scale`` would say nothing."""
    parser.add_argument("--config", help="YAML file with data:/model:/train:/augment: sections")
    for section in sections:
        group = parser.add_argument_group(section)
        hints = typing.get_type_hints(_SECTIONS[section])
        defaults = _SECTIONS[section]()
        prefix = "augment-" if section == "augment" else ""
        for f in dataclasses.fields(_SECTIONS[section]):
            flag = "--" + prefix + f.name.replace("_", "-")
            kind = _flag_type(hints[f.name])
            default = getattr(defaults, f.name)
            help_text = f.metadata.get("help") or _MODEL_HELP.get(f.name, "")
            if kind is bool:  # a --x/--no-x pair: name the spelling that is on, not True/False
                help_text += f" (default: --{'' if default else 'no-'}{prefix}{f.name.replace('_', '-')})"
            elif default not in (None, "", [], {}):
                shown = " ".join(map(str, default)) if isinstance(default, (list, tuple)) else default
                help_text += f" (default: {shown})"
            flags = (*_FLAG_ALIASES.get(f"{section}.{f.name}", ()), flag)
            common = {"dest": f"{section}.{f.name}", "default": None, "help": help_text}
            if kind is bool:
                group.add_argument(*flags, action=argparse.BooleanOptionalAction, **common)
            elif typing.get_origin(kind) is list:
                group.add_argument(*flags, nargs="*", metavar=f.name.upper(), **common)
            elif typing.get_origin(kind) is tuple:
                args = typing.get_args(kind)
                group.add_argument(*flags, nargs=len(args), type=args[0], metavar=f.name.upper(), **common)
            elif typing.get_origin(kind) is dict:
                group.add_argument(*flags, nargs="*", metavar="KEY=VALUE", **common)
            else:
                group.add_argument(*flags, type=kind, metavar=f.name.upper(), **common)


def _number_or_text(text: str):
    try:
        return float(text)
    except ValueError:
        return text


def parse_pairs(flag: str, items: list[str]) -> dict:
    """``["age=0.5", "race=2"]`` -> ``{"age": 0.5, "race": 2.0}``; anything else is one clear line."""
    pairs = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key.strip() or not value.strip():
            raise ValueError(f"{flag}: {item!r} is not KEY=VALUE (for example {flag} age=0.5)")
        pairs[key.strip()] = _number_or_text(value.strip())
    return pairs


def load_yaml_config(path: str | Path) -> RunConfig:
    """A YAML config file as a RunConfig; every problem is one line naming the file."""
    path = Path(path)
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise FileNotFoundError(f"config file {path} not found") from None
    except UnicodeDecodeError:
        raise ValueError(f"{path}: not a text file") from None
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        where = f" line {mark.line + 1}" if mark is not None else ""
        problem = getattr(error, "problem", None) or str(error).splitlines()[0]
        raise ValueError(f"{path}:{where}: not valid YAML ({problem})") from None
    try:
        return RunConfig.from_dict(raw or {})
    except ValueError as error:
        raise ValueError(f"{path}: {error}") from None


def config_from_args(args: argparse.Namespace) -> RunConfig:
    config = load_yaml_config(args.config) if getattr(args, "config", None) else RunConfig()
    for dest, value in vars(args).items():
        if "." not in dest or value is None:
            continue
        section, name = dest.split(".", 1)
        current = getattr(getattr(config, section), name)
        if isinstance(current, dict):
            value = parse_pairs("--" + name.replace("_", "-"), value)
        elif isinstance(current, tuple):
            value = tuple(value)
        setattr(getattr(config, section), name, value)
    config.check()
    return config
