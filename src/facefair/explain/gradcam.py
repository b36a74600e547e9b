"""Grad-CAM (Selvaraju et al. 2017) for every task head of a multi-task model, via captum.

All heads share one backbone, so one target layer serves every task: the last feature map
with spatial extent before global pooling (``bn2`` of a timm MobileNetV2, ``layer4`` of a
ResNet, the last stage of a ConvNeXt).  It is found by running the backbone once and watching
which module last returns a 4-D map, so any convolutional timm backbone works unchanged.
Classification heads are explained for the class the model predicted (its logit), exact age
for the predicted years: warm regions are those that push the age up.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from facefair.data.batches import to_float
from facefair.data.images import resize_batch


def find_target_layer(model: nn.Module, size: int, device: torch.device = torch.device("cpu")
                      ) -> tuple[str, nn.Module]:
    """(name, module) of the last module whose output is a feature map bigger than 1x1.
    Hooks fire when a module finishes, so a container (``layer4``) is seen after its children
    and wins; a pooling layer's (N, C, 1, 1) output is skipped by the size test."""
    seen: list[tuple[str, nn.Module, tuple]] = []
    hooks = []
    for name, module in model.named_modules():
        if not name:
            continue

        def hook(mod, _inputs, output, name=name):
            if isinstance(output, torch.Tensor):
                seen.append((name, mod, tuple(output.shape)))
        hooks.append(module.register_forward_hook(hook))
    try:
        with torch.no_grad():
            # channels_last like real batches (to_float): the NCHW path is far slower on CPU.
            model(torch.zeros(1, 3, size, size, device=device).contiguous(memory_format=torch.channels_last))
    finally:
        for handle in hooks:
            handle.remove()
    maps = [(n, m, s) for n, m, s in seen if len(s) == 4]
    if not maps:
        raise ValueError("Grad-CAM needs a convolutional backbone (no module returned a feature map)")
    spatial = [(n, m) for n, m, s in maps if s[2] * s[3] > 1]
    # At tiny inputs the last map can be 1x1; then the last map of any size is all there is.
    return spatial[-1] if spatial else maps[-1][:2]


def _module_by_name(model: nn.Module, name: str) -> nn.Module:
    modules = dict(model.named_modules())
    if name not in modules:
        raise ValueError(f"no layer {name!r} in the model; e.g. {[n for n in modules if n][-5:]}")
    return modules[name]


def _task_output(model: nn.Module, task: str):
    """A forward function returning one task's score: logits (N, C), or years (N,) for age."""
    def forward(x: torch.Tensor) -> torch.Tensor:
        out = model(x)[task]
        if out.dim() == 2 and task == "age":  # ordinal heads return per-threshold logits
            out = model.heads[task].predict(out.float())
        return out
    return forward


@dataclass
class CamResult:
    tasks: list[str]
    maps: dict[str, np.ndarray]            # task -> (N, H, W) in [0, 1], 1 = strongest evidence
    predicted: dict[str, list[str]]        # task -> the explained prediction, as text
    confidence: dict[str, np.ndarray]      # task -> probability of the predicted class (NaN for age)
    layer: str
    info: dict = field(default_factory=dict)


def gradcam(model: nn.Module, images: np.ndarray, *, tasks: Optional[Sequence[str]] = None,
            layer: Optional[str] = None, device: torch.device = torch.device("cpu")) -> CamResult:
    """Grad-CAM maps for uint8 (N, H, W, 3) images already at the model's input size."""
    from captum.attr import LayerAttribution, LayerGradCam  # optional dependency

    model = model.eval().to(device)
    specs = {t.name: t for t in model.tasks}
    names = list(tasks) if tasks else list(specs)
    unknown = [t for t in names if t not in specs]
    if unknown:
        raise ValueError(f"model has no task {unknown}; it has {list(specs)}")
    size = images.shape[1]
    if layer is None:
        layer, module = find_target_layer(model, size, device)
    else:
        module = _module_by_name(model, layer)
    x = to_float(torch.from_numpy(np.ascontiguousarray(images)), device)
    with torch.no_grad():
        outputs = model(x)
        probabilities = model.predict(outputs)
    maps, predicted, confidence = {}, {}, {}
    for name in names:
        spec = specs[name]
        cam = LayerGradCam(_task_output(model, name), module)
        if spec.kind == "classification":
            target = probabilities[name].argmax(dim=1)
            raw = cam.attribute(x, target=target, relu_attributions=True)
            chosen = probabilities[name].gather(1, target[:, None])[:, 0]
            predicted[name] = [spec.classes[i] for i in target.tolist()]
            confidence[name] = chosen.float().cpu().numpy()
        else:
            raw = cam.attribute(x, relu_attributions=True)
            predicted[name] = [f"{v:.0f} y" for v in probabilities[name].float().cpu().tolist()]
            confidence[name] = np.full(len(images), np.nan, dtype=np.float32)
        up = LayerAttribution.interpolate(raw.detach().float(), (size, size), interpolate_mode="bilinear")
        maps[name] = _normalise(up[:, 0].cpu().numpy())
    return CamResult(names, maps, predicted, confidence, layer, {"feature_map": list(raw.shape[-2:])})


def _normalise(maps: np.ndarray) -> np.ndarray:
    """Each map to [0, 1]; an all-zero map (no positive evidence) stays zero."""
    maps = np.clip(maps, 0, None)
    peak = maps.reshape(len(maps), -1).max(axis=1).reshape(-1, 1, 1)
    return np.where(peak > 0, maps / np.where(peak > 0, peak, 1), 0).astype(np.float32)


def plot_gradcam_grid(images: np.ndarray, result: CamResult, out_png: str | Path, *,
                      truths: Optional[dict[str, Sequence[str]]] = None, captions: Optional[Sequence[str]] = None,
                      display_size: int = 160, alpha: float = 0.5) -> Path:
    """One row per image: the face, then its Grad-CAM overlay for each task, titled with the
    prediction (and the truth when given)."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    shown = resize_batch(images, display_size)
    n, cols = len(images), 1 + len(result.tasks)
    fig, axes = plt.subplots(n, cols, figsize=(2.1 * cols, 2.3 * n), squeeze=False)
    for i in range(n):
        axes[i, 0].imshow(shown[i])
        axes[i, 0].set_title(captions[i] if captions else f"image {i + 1}", fontsize=8)
        for j, task in enumerate(result.tasks, start=1):
            cam = F.interpolate(torch.from_numpy(result.maps[task][i][None, None]), size=(display_size,) * 2,
                                mode="bilinear", align_corners=False)[0, 0].numpy()
            axes[i, j].imshow(shown[i])
            axes[i, j].imshow(cam, cmap="jet", alpha=alpha, vmin=0, vmax=1)
            title = f"{task}: {result.predicted[task][i]}"
            if not np.isnan(result.confidence[task][i]):
                title += f" ({result.confidence[task][i]:.2f})"
            if result.maps[task][i].max() == 0:  # all-blue overlay: say why rather than let it mislead
                title += "\nno positive evidence"
            if truths and task in truths and truths[task][i] is not None:
                title += f"\ntrue {truths[task][i]}"
            axes[i, j].set_title(title, fontsize=8)
    for ax in axes.ravel():
        ax.axis("off")
    fig.suptitle(f"Grad-CAM on {result.layer} (red: evidence for the prediction)", fontsize=9)
    fig.tight_layout()
    out_png = Path(out_png)
    out_png.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out_png, dpi=100)
    plt.close(fig)
    return out_png
