"""ONNX export of a trained multi-task model.

The exported graph is self-contained so a consumer needs no knowledge of our training code:

* **input** ``images``: NCHW, RGB, at the model's size (``input_size`` in the sidecar), batch axis
  dynamic.  ``uint8`` 0..255 by default (what any image decoder gives), or ``float32`` 0..1.
  Resizing is *not* in the graph (it depends on the decoder); resize with bilinear filtering as
  :func:`facefair.data.images.decode` does.
* **normalisation** (/255 for uint8, then ImageNet mean/std) is inside the graph, and so is the
  flip-TTA every other command applies by default (``tta``: the mirrored batch is predicted too
  and the two averaged), so the graph gives the numbers ``facefair evaluate`` reports.
* **outputs**: one per task, named after it: class probabilities ``(N, C)`` for classification
  tasks, years ``(N,)`` for ``age`` — i.e. :meth:`MultiTaskModel.predict` is applied in the graph,
  so a CORAL or a regression age head look the same from outside.

A sidecar JSON (``out.json`` beside ``out.onnx``) records tasks, classes, input size/dtype/layout,
mean and std, so a client can label outputs without reading the checkpoint.
"""

from __future__ import annotations

import json
import logging
import warnings
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Literal, Optional, Sequence

import numpy as np
import torch
from torch import nn

from facefair.data.batches import IMAGENET_MEAN, IMAGENET_STD
from facefair.inference.engine import predict_tensor
from facefair.flags import TTA_DEFAULT
from facefair.models.multitask import MultiTaskModel, load_model

log = logging.getLogger(__name__)

InputDtype = Literal["uint8", "float32"]
SIDECAR_FORMAT = "facefair-onnx/1"


@dataclass
class ExportConfig:
    input_dtype: InputDtype = "uint8"
    opset: int = 17            # widely supported by onnxruntime, TensorRT and onnx.js alike
    dynamic_batch: bool = True
    verify: bool = True        # run the exported file in onnxruntime and compare with PyTorch
    tta: bool = TTA_DEFAULT    # the mirrored face predicted too, averaged, as every other command does
    atol_probs: float = 1e-4
    atol_years: float = 1e-3


@dataclass
class ExportResult:
    onnx_path: Path
    sidecar_path: Path
    sidecar: dict
    max_abs_diff: dict[str, float] = field(default_factory=dict)  # per output, when verified


class PredictWrapper(nn.Module):
    """``images`` (uint8 0..255 or float 0..1, NCHW) -> tuple of per-task predictions, in task order.

    Mean/std are buffers so they are baked into the graph as constants; ``model.predict`` turns
    logits into probabilities and the age head's output into years."""

    def __init__(self, model: MultiTaskModel, input_dtype: InputDtype = "uint8",
                 mean: Sequence[float] = IMAGENET_MEAN, std: Sequence[float] = IMAGENET_STD, tta: bool = TTA_DEFAULT):
        super().__init__()
        self.model, self.input_dtype, self.tta = model.eval(), input_dtype, tta
        self.task_names = [t.name for t in model.tasks]
        # Same arithmetic as facefair.data.batches.to_float, so outputs match the PyTorch pipeline.
        self.register_buffer("mean", torch.tensor(mean, dtype=torch.float32).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(std, dtype=torch.float32).view(1, 3, 1, 1), persistent=False)

    def forward(self, images: torch.Tensor) -> tuple[torch.Tensor, ...]:
        x = images.float()
        if self.input_dtype == "uint8":
            x = x / 255
        x = (x - self.mean) / self.std
        predicted = predict_tensor(self.model, x, self.tta)
        return tuple(predicted[name].float() for name in self.task_names)


def sidecar_for(model: MultiTaskModel, config: ExportConfig, checkpoint: Optional[str | Path] = None) -> dict:
    size = model.config.resolved_size()
    return {
        "format": SIDECAR_FORMAT,
        "checkpoint": str(checkpoint) if checkpoint else None,
        "backbone": model.config.backbone,
        "input": {
            "name": "images",
            "dtype": config.input_dtype,
            "layout": "NCHW",
            "channels": "RGB",
            "shape": ["batch" if config.dynamic_batch else 1, 3, size, size],
            "range": [0, 255] if config.input_dtype == "uint8" else [0.0, 1.0],
            "resize": f"resize the face crop to {size}x{size}, bilinear (PIL), no cropping",
        },
        "input_size": size,
        "normalisation_in_graph": True,
        "tta_in_graph": config.tta,
        "mean": list(IMAGENET_MEAN),
        "std": list(IMAGENET_STD),
        "tasks": [{"name": t.name, "kind": t.kind, "classes": list(t.classes), "output": t.name,
                   "output_meaning": "probabilities" if t.kind == "classification" else "years"}
                  for t in model.tasks],
        "opset": config.opset,
        "torch_version": torch.__version__,
        "export_config": asdict(config),
    }


def sidecar_path_for(onnx_path: str | Path) -> Path:
    return Path(onnx_path).with_suffix(".json")


def read_sidecar(onnx_path: str | Path) -> dict:
    return json.loads(sidecar_path_for(onnx_path).read_text())


def example_input(size: int, batch: int, input_dtype: InputDtype, seed: int = 0) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    if input_dtype == "uint8":
        return torch.randint(0, 256, (batch, 3, size, size), dtype=torch.uint8, generator=generator)
    return torch.rand((batch, 3, size, size), generator=generator)


def export_onnx(model_or_checkpoint: MultiTaskModel | str | Path, onnx_path: str | Path,
                config: Optional[ExportConfig] = None, *, verify_images: Optional[np.ndarray] = None,
                trust_checkpoint: bool = False) -> ExportResult:
    """Write ``onnx_path`` and its sidecar JSON; returns where they are and, with ``config.verify``,
    the largest onnxruntime-vs-PyTorch difference per output (raises if over tolerance).

    ``verify_images``: optional uint8 NHWC faces at the model size to verify on (random pixels otherwise)."""
    config = config or ExportConfig()
    checkpoint = None
    if isinstance(model_or_checkpoint, (str, Path)):
        checkpoint = model_or_checkpoint
        model = load_model(checkpoint, "cpu", trust_checkpoint=trust_checkpoint)
    else:
        model = model_or_checkpoint
    model = model.cpu().eval()
    if getattr(model, "face_heads", None) is not None:
        # The graph would hold only the CNN: the exported model would answer differently from the
        # run it came from (dlib's descriptor is not an ONNX graph).
        raise ValueError(f"this model defers {', '.join(model.face_heads.heads)} to face heads (dlib face "
                         f"descriptors, face_heads.safetensors), which ONNX cannot hold; serve it with "
                         f"`facefair serve`, or export a copy of the run without face_heads.safetensors "
                         f"(the CNN alone answers differently)")
    wrapper = PredictWrapper(model, config.input_dtype, tta=config.tta).eval()
    size = model.config.resolved_size()
    onnx_path = Path(onnx_path)
    if onnx_path.suffix.lower() == ".json":
        raise ValueError(f"{onnx_path}: the ONNX file needs another suffix (its sidecar is the .json)")
    onnx_path.parent.mkdir(parents=True, exist_ok=True)
    names = wrapper.task_names
    dynamic_axes = None
    if config.dynamic_batch:
        dynamic_axes = {"images": {0: "batch"}, **{n: {0: "batch"} for n in names}}
    # Batch 2 while tracing a dynamic graph: a batch of 1 can let shape-specialised ops bake it in.
    example = example_input(size, 2 if config.dynamic_batch else 1, config.input_dtype)
    with torch.no_grad(), warnings.catch_warnings():
        # The legacy TorchScript exporter: no onnxscript dependency, and our graph (convs, pooling,
        # linear, softmax/sigmoid) is plain enough that the dynamo exporter gains nothing.  Its
        # deprecation notice is for us, not for users, so it is silenced.
        warnings.simplefilter("ignore", DeprecationWarning)
        torch.onnx.export(wrapper, (example,), str(onnx_path), dynamo=False, input_names=["images"],
                          output_names=names, dynamic_axes=dynamic_axes, opset_version=config.opset,
                          do_constant_folding=True)
    sidecar = sidecar_for(model, config, checkpoint)
    sidecar_path = sidecar_path_for(onnx_path)
    sidecar_path.write_text(json.dumps(sidecar, indent=1) + "\n")
    result = ExportResult(onnx_path, sidecar_path, sidecar)
    if config.verify:
        images = _nchw(verify_images, config.input_dtype) if verify_images is not None else \
            example_input(size, 3 if config.dynamic_batch else 1, config.input_dtype, seed=1)
        result.max_abs_diff = verify_onnx(onnx_path, wrapper, images, atol_probs=config.atol_probs,
                                          atol_years=config.atol_years)
    return result


def _nchw(images_nhwc_uint8: np.ndarray, input_dtype: InputDtype) -> torch.Tensor:
    x = torch.from_numpy(np.ascontiguousarray(images_nhwc_uint8)).permute(0, 3, 1, 2).contiguous()
    return x if input_dtype == "uint8" else x.float() / 255


def run_onnx(onnx_path: str | Path, images: np.ndarray | torch.Tensor, session=None) -> dict[str, np.ndarray]:
    """Run the exported model in onnxruntime (CPU): task name -> output array."""
    import onnxruntime as ort  # optional dependency, only needed here
    if session is None:
        session = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    feed = images.numpy() if isinstance(images, torch.Tensor) else images
    names = [o.name for o in session.get_outputs()]
    return dict(zip(names, session.run(names, {session.get_inputs()[0].name: feed})))


def verify_onnx(onnx_path: str | Path, wrapper: PredictWrapper, images: torch.Tensor, *,
                atol_probs: float = 1e-4, atol_years: float = 1e-3) -> dict[str, float]:
    """Check the file is valid ONNX and that onnxruntime matches PyTorch on ``images`` (same
    dtype/layout as the export input); raises ``ValueError`` naming the task over tolerance."""
    import onnx
    onnx.checker.check_model(str(onnx_path))
    with torch.no_grad():
        expected = dict(zip(wrapper.task_names, (t.numpy() for t in wrapper(images))))
    got = run_onnx(onnx_path, images)
    kinds = {t.name: t.kind for t in wrapper.model.tasks}
    diffs: dict[str, float] = {}
    for name, want in expected.items():
        if got[name].shape != want.shape:
            raise ValueError(f"ONNX output {name!r} has shape {got[name].shape}, PyTorch {want.shape}")
        diffs[name] = float(np.abs(got[name] - want).max())
        tolerance = atol_years if kinds[name] == "regression" else atol_probs
        if not diffs[name] <= tolerance:  # also catches NaN
            raise ValueError(f"ONNX output {name!r} differs from PyTorch by {diffs[name]:.3g} (> {tolerance})")
    log.info("onnxruntime matches PyTorch: %s", ", ".join(f"{k} {v:.2g}" for k, v in diffs.items()))
    return diffs
