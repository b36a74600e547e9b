"""Model files that load without running code: ``config.json`` + ``model.safetensors``.

This is the Hugging Face layout, so a run folder (its best epoch) or an exported model folder is
loaded by reading JSON and raw tensors; no pickle is involved.  ``config.json`` holds what
rebuilds the network (architecture, model config, tasks with their label vocabularies) plus
the epoch and score it came from.

Older ``.pt`` checkpoints are pickles.  They are read with ``torch.load(weights_only=True)``,
which accepts only tensors and plain containers; one that needs anything else is refused with a
message naming ``--trust-checkpoint``, the only way to unpickle it fully.
"""

from __future__ import annotations

import json
import pickle
from pathlib import Path
from typing import TYPE_CHECKING, Any, Mapping

from facefair.run import LEGACY_BEST, MODEL_CONFIG, WEIGHTS
from facefair.runtime import write_atomic

if TYPE_CHECKING:
    import torch

CONFIG_NAME = MODEL_CONFIG
WEIGHTS_NAME = WEIGHTS
FORMAT = "facefair-model"
FORMAT_VERSION = 1
#: Keys every model file must give (whatever its format) for ``load_model`` to rebuild the network.
REQUIRED_KEYS = ("model", "tasks", "model_state")


class CheckpointError(ValueError):
    """A model or training-state file that cannot (or must not) be loaded; one line naming the file."""


def save_pretrained(state_dict: Mapping[str, "torch.Tensor"], meta: Mapping[str, Any], directory: str | Path) -> Path:
    """Write ``model.safetensors`` then ``config.json`` into ``directory``, each atomically.

    ``meta``: JSON-serialisable description (``model.describe()`` plus e.g. epoch, best_score)."""
    from safetensors.torch import save_file

    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    # Cloning breaks storage sharing (safetensors refuses shared tensors) and leaves the live
    # model's memory format (channels-last) untouched.
    tensors = {k: v.detach().to("cpu").clone().contiguous() for k, v in state_dict.items()}
    write_atomic(directory / WEIGHTS_NAME, lambda tmp: save_file(tensors, str(tmp), metadata={"format": "pt"}))
    config = {"format": FORMAT, "format_version": FORMAT_VERSION, **meta}
    text = json.dumps(config, indent=1, default=_json_default)
    write_atomic(directory / CONFIG_NAME, lambda tmp: tmp.write_text(text + "\n"))
    return directory


def _json_default(value):
    if isinstance(value, tuple):
        return list(value)
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"{type(value).__name__} is not JSON-serialisable")


def is_pretrained_dir(path: str | Path) -> bool:
    path = Path(path)
    return (path / CONFIG_NAME).is_file() and (path / WEIGHTS_NAME).is_file()


def resolve(path: str | Path) -> Path:
    """The folder (``config.json`` + ``model.safetensors``) or legacy ``.pt`` file that ``path`` names.

    Accepted: a run or export folder; its ``config.json`` or ``model.safetensors``; a ``.pt`` file;
    and ``RUN/best.pt`` for a run that has the folder layout (the name older commands use)."""
    path = Path(path)
    if path.is_dir():
        if is_pretrained_dir(path):
            return path
        if (path / LEGACY_BEST).is_file():
            return path / LEGACY_BEST
        raise FileNotFoundError(f"{path}: no model here (expected {CONFIG_NAME} + {WEIGHTS_NAME}, or best.pt)")
    if path.name in (CONFIG_NAME, WEIGHTS_NAME) and path.exists():
        if not is_pretrained_dir(path.parent):
            missing = WEIGHTS_NAME if path.name == CONFIG_NAME else CONFIG_NAME
            raise FileNotFoundError(f"{path}: {missing} is missing beside it")
        return path.parent
    if path.is_file():
        return path
    if path.name == LEGACY_BEST and is_pretrained_dir(path.parent):
        return path.parent
    raise FileNotFoundError(f"{path} not found")


def torch_load(path: str | Path, map_location: Any = "cpu", *, trust: bool = False) -> Any:
    """``torch.load`` that never unpickles arbitrary objects unless ``trust`` says the user vouched
    for the file; every failure is a :class:`CheckpointError` naming it."""
    import torch

    path = Path(path)
    if path.is_file() and path.stat().st_size == 0:
        raise CheckpointError(f"{path}: empty file (an interrupted copy?)")
    try:
        return torch.load(path, map_location=map_location, weights_only=not trust)
    except FileNotFoundError:
        raise
    except pickle.UnpicklingError as error:
        text = str(error)
        unsafe = _unsafe_detail(text)
        if unsafe:
            raise CheckpointError(
                f"{path}: refused to load: it is a pickle holding more than tensors ({unsafe}), and "
                f"unpickling it could run code. Pass --trust-checkpoint only if you trust where it came "
                f"from") from None
        raise CheckpointError(f"{path}: not a readable checkpoint ({_weights_only_detail(text)}); if it is a "
                              f"pickle from a source you trust, --trust-checkpoint loads it") from None
    except (RuntimeError, EOFError, OSError, ValueError, AttributeError, ImportError, KeyError, IndexError) as error:
        raise CheckpointError(f"{path}: not a readable checkpoint, or truncated ({_first_line(str(error))})") from None


def _first_line(text: str) -> str:
    return next((line.strip() for line in text.splitlines() if line.strip()), "no detail")


def _unsafe_detail(text: str) -> str:
    """The global a weights-only load met (``GLOBAL io.open ...``), or '' when it failed otherwise."""
    for line in text.splitlines():
        if "Unsupported global" in line or "Unsupported class" in line:
            return line.split("error:", 1)[-1].strip().split(" was not", 1)[0]
    return ""


def _weights_only_detail(text: str) -> str:
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    for i, line in enumerate(lines):
        if "WeightsUnpickler error" in line:
            rest = line.split("error:", 1)[-1].strip()
            return rest or (lines[i + 1] if i + 1 < len(lines) else "unknown")
    return _first_line(text)


def read_checkpoint(path: str | Path, map_location: Any = "cpu", *, trust: bool = False) -> dict:
    """Everything a model file holds, as one dict: ``architecture``, ``model``, ``tasks``,
    ``model_state`` (and ``epoch``/``best_score``/... when saved)."""
    resolved = resolve(path)
    if resolved.is_dir():
        checkpoint = _read_pretrained(resolved, map_location)
    else:
        checkpoint = torch_load(resolved, map_location, trust=trust)
        if not isinstance(checkpoint, dict):
            raise CheckpointError(f"{resolved}: not a facefair checkpoint (holds a {type(checkpoint).__name__})")
    missing = [k for k in REQUIRED_KEYS if k not in checkpoint]
    if missing:
        where = resolved / CONFIG_NAME if resolved.is_dir() else resolved
        raise CheckpointError(f"{where}: not a facefair model file (missing {', '.join(missing)})")
    return checkpoint


def _read_pretrained(directory: Path, map_location: Any) -> dict:
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    config_path = directory / CONFIG_NAME
    try:
        config = json.loads(config_path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise CheckpointError(f"{config_path}: not valid JSON ({error})") from None
    if not isinstance(config, dict) or config.get("format") != FORMAT:
        raise CheckpointError(f"{config_path}: not a facefair model config (no \"format\": \"{FORMAT}\")")
    if int(config.get("format_version", 0)) > FORMAT_VERSION:
        raise CheckpointError(f"{config_path}: format version {config['format_version']} is newer than this "
                              f"facefair reads ({FORMAT_VERSION}); upgrade facefair")
    weights = directory / WEIGHTS_NAME
    device = str(map_location) if not isinstance(map_location, str) else map_location
    try:
        state = load_file(str(weights), device=device)
    except (SafetensorError, OSError, RuntimeError, ValueError) as error:
        raise CheckpointError(f"{weights}: unreadable or truncated safetensors file ({_first_line(str(error))})") from None
    return {**config, "model_state": state}
