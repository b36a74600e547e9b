"""Grad-CAM (Selvaraju et al. 2017) for every task head of a multi-task model, via captum.

All heads share one backbone, so one target layer serves every task: the last feature map
with spatial extent before global pooling (``bn2`` of a timm MobileNetV2, ``layer4`` of a
ResNet, the last stage of a ConvNeXt).  It is found by running the backbone once and watching
which module last returns a 4-D map, so any convolutional timm backbone works unchanged.
Classification heads are explained for the class the model predicted (its logit): the map is
ReLU'd, so it shows the evidence *for* that class.  Exact age is explained for the predicted
years with a *signed* map: red pushes the age up, blue pushes it down.  (A ReLU'd age map shows
only evidence above the head's offset of 33 years, so it is blank for most young faces.)
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
    maps: dict[str, np.ndarray]            # task -> (N, H, W): [0, 1] (1 = strongest evidence), or [-1, 1] if signed
    predicted: dict[str, list[str]]        # task -> the explained prediction, as text
    confidence: dict[str, np.ndarray]      # task -> probability of the predicted class (NaN for age)
    layer: str
    info: dict = field(default_factory=dict)
    signed: dict[str, bool] = field(default_factory=dict)  # task -> map in [-1, 1] (exact age)


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
    maps, predicted, confidence, signed = {}, {}, {}, {}
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
            raw = cam.attribute(x, relu_attributions=False)  # years: evidence both ways
            predicted[name] = [f"{v:.0f} y" for v in probabilities[name].float().cpu().tolist()]
            confidence[name] = np.full(len(images), np.nan, dtype=np.float32)
        signed[name] = spec.kind != "classification"
        up = LayerAttribution.interpolate(raw.detach().float(), (size, size), interpolate_mode="bilinear")
        maps[name] = _normalise(up[:, 0].cpu().numpy(), signed=signed[name])
    return CamResult(names, maps, predicted, confidence, layer, {"feature_map": list(raw.shape[-2:])}, signed)


def _normalise(maps: np.ndarray, signed: bool = False) -> np.ndarray:
    """Each map to [0, 1] (``signed``: to [-1, 1] by its largest magnitude, 0 staying 0); an all-zero
    map (no evidence) stays zero."""
    if not signed:
        maps = np.clip(maps, 0, None)
    peak = np.abs(maps).reshape(len(maps), -1).max(axis=1).reshape(-1, 1, 1)
    return np.where(peak > 0, maps / np.where(peak > 0, peak, 1), 0).astype(np.float32)


def plot_gradcam_grid(images: np.ndarray, result: CamResult, out_png: str | Path, *,
                      truths: Optional[dict[str, Sequence[str]]] = None, captions: Optional[Sequence[str]] = None,
                      display_size: int = 160, alpha: float = 0.5) -> Path:
    """One row per image: the face, then its Grad-CAM overlay for each task, titled with the
    prediction (and the truth when given); a colour bar under each task's column says what the
    colours mean (signed for exact age)."""
    import textwrap

    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    shown = resize_batch(images, display_size)
    n, cols = len(images), 1 + len(result.tasks)
    titles = [[textwrap.fill(captions[i] if captions else f"image {i + 1}", 24)] for i in range(n)]
    for i in range(n):
        for task in result.tasks:
            title = f"{task}: {result.predicted[task][i]}"
            if not np.isnan(result.confidence[task][i]):
                title += f" ({result.confidence[task][i]:.2f})"
            if not result.signed.get(task) and result.maps[task][i].max() == 0:
                title += "\nno positive evidence"  # an all-blue overlay: say why rather than let it mislead
            if truths and task in truths and truths[task][i] is not None:
                title += f"\ntrue {truths[task][i]}"
            titles[i].append(title)
    # Each row is as tall as its longest title needs, so titles never run into the row above.
    lines = [max(t.count("\n") + 1 for t in row) for row in titles]
    fig, axes = plt.subplots(n, cols, figsize=(2.2 * cols, sum(2.0 + 0.17 * k for k in lines) + 1.2), squeeze=False,
                             gridspec_kw={"height_ratios": [2.0 + 0.17 * k for k in lines]}, layout="constrained")
    bars = {}
    for i in range(n):
        axes[i, 0].imshow(shown[i])
        axes[i, 0].set_title(titles[i][0], fontsize=8)
        for j, task in enumerate(result.tasks, start=1):
            cam = F.interpolate(torch.from_numpy(result.maps[task][i][None, None]), size=(display_size,) * 2,
                                mode="bilinear", align_corners=False)[0, 0].numpy()
            axes[i, j].imshow(shown[i])
            if result.signed.get(task):
                bars[j] = axes[i, j].imshow(cam, cmap="RdBu_r", alpha=alpha + 0.15, vmin=-1, vmax=1)
            else:
                bars[j] = axes[i, j].imshow(cam, cmap="jet", alpha=alpha, vmin=0, vmax=1)
            axes[i, j].set_title(titles[i][j], fontsize=8)
    for ax in axes.ravel():
        ax.axis("off")
    for j, task in enumerate(result.tasks, start=1):
        bar = fig.colorbar(bars[j], ax=axes[:, j], location="bottom", shrink=0.9, aspect=14, pad=0.01)
        bar.ax.tick_params(labelsize=7)
        if result.signed.get(task):
            bar.set_ticks([-1, 0, 1], labels=["younger", "0", "older"])
            bar.set_label(f"{task}: pushes the years down / up", fontsize=7)
        else:
            bar.set_ticks([0, 1], labels=["none", "strongest"])
            bar.set_label(f"{task}: evidence for the prediction", fontsize=7)
    fig.suptitle(f"Grad-CAM on {result.layer}", fontsize=9)
    out_png = Path(out_png)
    out_png.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out_png, dpi=100)
    plt.close(fig)
    return out_png
