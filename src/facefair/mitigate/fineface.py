"""FineFACE (Manzoor & Rattani 2024): fair attribute classification as fine-grained classification,
with the cross-layer mutual attention learning recipe it builds on (CMAL-Net, Liu et al. 2023).
Needs no demographic labels.

Model (architecture ``fineface``): a timm backbone's last three stage feature maps each feed an
*expert* — conv block (1x1 then 3x3 conv, BN, ReLU) -> global max-pool -> classifier — and a
*concat head* classifies the three pooled vectors concatenated.  Multi-task design: each expert
and the concat head has one shared embedding (BN -> Linear -> BN -> ELU, width/2) and one facefair
head per task on it (the same head types as the standard model, so every task and ``age_head``
works).  An expert's class-activation map comes from the linearised classifier of the
``cam_task`` task (gender by default) for its predicted class: the map, upsampled and min-max
normalised, is thresholded at ``crop_threshold``; the box around it, padded by ``crop_padding`` of
the image, is cropped and resized back to the input size (batched ``grid_sample``).

Training (``--method fineface``), five optimiser steps per batch:
  1. the deepest expert on the raw image;
  2. the middle expert on the deepest or shallowest expert's crop, or the raw image (1/3 each);
  3. the shallowest expert on the deepest or middle expert's crop, or the raw image;
  4. all experts + the concat head (loss x2) on the crop of the combined (summed) maps;
  5. the concat head (loss x2) on the raw image.
Inference: the mean of the three experts' and the concat head's probabilities over the raw image
and its combined-map crop (CMAL sums the eight logits; we average probabilities, which ECE and
the group thresholds read; for exact age it is the mean of years).  A sub-step whose loss is not
finite is not stepped on; the batch counts as skipped only when none of the five was taken.
"""

from __future__ import annotations

import logging
from dataclasses import asdict
from typing import Mapping, Optional, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from facefair.runtime import autocast_context
from facefair.models.backbones import create_backbone
from facefair.models.heads import ClassificationHead, CoralHead, build_heads
from facefair.models.registry import register_architecture
from facefair.models.multitask import ModelConfig
from facefair.tasks import TaskSpec
from facefair.train.methods import TrainingMethod, method_options, register_method

log = logging.getLogger("facefair")

DEFAULTS = {"expert_width": 512, "cam_task": None, "crop_threshold": 0.5, "crop_padding": 0.1}
#: optimiser steps one training batch takes
STEPS_PER_BATCH = 5


# ---------------------------------------------------------------------------- backbone
def stage_backbone(name: str, *, pretrained: bool = False, weights=None) -> nn.Module:
    """A timm ``features_only`` backbone (its stage feature maps), with local weights when given."""
    return create_backbone(name, pretrained=pretrained, weights=weights, features_only=True)


# ---------------------------------------------------------------------------- heads
def _conv_bn_relu(cin: int, cout: int, kernel: int) -> list[nn.Module]:
    return [nn.Conv2d(cin, cout, kernel, padding=kernel // 2, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True)]


def _embedding(in_features: int, hidden: int) -> nn.Sequential:
    return nn.Sequential(nn.BatchNorm1d(in_features), nn.Linear(in_features, hidden), nn.BatchNorm1d(hidden),
                         nn.ELU(inplace=True))


def _last_linear(head: nn.Module) -> torch.Tensor:
    return head.weight.weight if isinstance(head, CoralHead) else head.net[1].weight


def _bn_scale(bn: nn.BatchNorm1d) -> torch.Tensor:
    return bn.weight / torch.sqrt(bn.running_var + bn.eps)


class Expert(nn.Module):
    """conv block -> global max-pool -> embedding -> one head per task."""

    def __init__(self, in_channels: int, width: int, tasks: Sequence[TaskSpec], config: ModelConfig):
        super().__init__()
        self.block = nn.Sequential(*_conv_bn_relu(in_channels, width // 2, 1), *_conv_bn_relu(width // 2, width, 3))
        self.embed = _embedding(width, width // 2)
        self.heads = build_heads(width // 2, tasks, config.dropout, config.age_head)

    def classify(self, pooled: torch.Tensor) -> dict[str, torch.Tensor]:
        embedded = self.embed(pooled)
        return {name: head(embedded) for name, head in self.heads.items()}

    @torch.no_grad()
    def cam(self, feature_map: torch.Tensor, task: TaskSpec, output: torch.Tensor) -> torch.Tensor:
        """Class-activation map (B, h, w) of the predicted class through the linearised classifier
        (BN scales and the two linear layers; CMAL's map_generate, batched)."""
        embed_bn, linear, hidden_bn = self.embed[0], self.embed[1], self.embed[2]
        last = _last_linear(self.heads[task.name]).float()
        rows = last[output.argmax(dim=1)] if task.kind == "classification" else last[:1].expand(len(output), -1)
        vector = (rows * _bn_scale(hidden_bn)) @ linear.weight.float() * _bn_scale(embed_bn)
        return torch.einsum("bc,bchw->bhw", vector, feature_map.float())


# ---------------------------------------------------------------------------- attention crops
def _normalise(maps: torch.Tensor) -> torch.Tensor:
    low = maps.amin(dim=(1, 2), keepdim=True)
    high = maps.amax(dim=(1, 2), keepdim=True)
    return (maps - low) / (high - low + 1e-6)


def attention_boxes(maps: Sequence[torch.Tensor], size: tuple[int, int], threshold: float = 0.5,
                    padding: float = 0.1) -> torch.Tensor:
    """(B, 4) boxes x0, y0, x1, y1 in pixels (edges, within [0, W] x [0, H]) around the pixels where
    the normalised sum of the normalised, upsampled ``maps`` reaches ``threshold``, padded by
    ``padding`` x the image size; a map without such pixels (constant) gives the whole image."""
    height, width = size
    combined = sum(_normalise(F.interpolate(m[:, None].float(), size=(height, width), mode="bilinear",
                                            align_corners=True)[:, 0]) for m in maps)
    mask = _normalise(combined) >= threshold
    rows, cols = mask.any(dim=2), mask.any(dim=1)
    found = rows.any(dim=1)

    def span(hits: torch.Tensor, extent: int) -> tuple[torch.Tensor, torch.Tensor]:
        first = hits.float().argmax(dim=1).float()
        last = extent - 1 - hits.flip(1).float().argmax(dim=1).float()
        pad = padding * extent
        low, high = (first - pad).clamp(min=0), (last + 1 + pad).clamp(max=extent)
        return torch.where(found, low, torch.zeros_like(low)), torch.where(found, high, torch.full_like(high, extent))

    y0, y1 = span(rows, height)
    x0, x1 = span(cols, width)
    return torch.stack([x0, y0, x1, y1], dim=1)


def crop_resize(images: torch.Tensor, boxes: torch.Tensor) -> torch.Tensor:
    """Each image's box cut out and resized (bilinear) back to the image's size, in one batched warp."""
    n, c, height, width = images.shape
    boxes = boxes.to(images.device, torch.float32)
    x0, y0, x1, y1 = boxes.unbind(dim=1)
    # The sampling grid F.affine_grid would build for the box, written out with plain arithmetic so
    # the graph also exports to ONNX (opset 17 has no AffineGrid): output pixel centres in
    # normalised coordinates, scaled and shifted into the box.
    centres_x = (torch.arange(width, device=images.device, dtype=torch.float32) * 2 + 1) / width - 1
    centres_y = (torch.arange(height, device=images.device, dtype=torch.float32) * 2 + 1) / height - 1
    grid_x = ((x1 - x0) / width)[:, None] * centres_x + ((x0 + x1) / width - 1)[:, None]
    grid_y = ((y1 - y0) / height)[:, None] * centres_y + ((y0 + y1) / height - 1)[:, None]
    grid = torch.stack([grid_x[:, None, :].expand(n, height, width), grid_y[:, :, None].expand(n, height, width)],
                       dim=-1)
    crops = F.grid_sample(images.float(), grid, mode="bilinear", padding_mode="border", align_corners=False)
    return crops.to(images.dtype).contiguous(memory_format=torch.channels_last)


# ---------------------------------------------------------------------------- model
def pool_outputs(head: nn.Module, outputs: Sequence[torch.Tensor]) -> torch.Tensor:
    """Several heads' outputs as one output of ``head``'s kind whose ``head.predict`` is the mean of
    their predictions: softmax(log mean p) = mean p; for CORAL, sigmoid(logit mean P(age > k)) =
    mean P(age > k), so the years are the mean of the heads' years; regression years averaged.
    Averaged probabilities, not averaged logits: ECE and the group thresholds read them, and the
    mean of calibrated probabilities stays calibrated where a mean of logits need not."""
    stacked = torch.stack([o.float() for o in outputs])
    if isinstance(head, CoralHead):
        p = torch.sigmoid(stacked).mean(dim=0).clamp(1e-7, 1 - 1e-7)
        return torch.log(p) - torch.log1p(-p)
    if isinstance(head, ClassificationHead):
        return torch.log(stacked.softmax(dim=-1).mean(dim=0).clamp_min(1e-12))
    return stacked.mean(dim=0)


class ExpertsPass:
    """What one pass of the model computed: per expert its outputs (or None), its conv-block map."""

    def __init__(self, outputs, maps, concat):
        self.outputs: list[Optional[dict[str, torch.Tensor]]] = outputs
        self.maps: list[Optional[torch.Tensor]] = maps
        self.concat: Optional[dict[str, torch.Tensor]] = concat


class FineFaceModel(nn.Module):
    def __init__(self, config: ModelConfig, tasks: Sequence[TaskSpec], *, expert_width: int = 512,
                 cam_task: Optional[str] = None, crop_threshold: float = 0.5, crop_padding: float = 0.1,
                 load_weights: bool = True):
        super().__init__()
        self.config, self.tasks = config, list(tasks)
        self.backbone = stage_backbone(config.backbone, pretrained=config.pretrained and load_weights,
                                       weights=config.weights if load_weights else None)
        channels = self.backbone.feature_info.channels()
        if len(channels) < 3:
            raise ValueError(f"FineFACE needs three backbone stages; {config.backbone} exposes {len(channels)}")
        self.expert_width, self.crop_threshold, self.crop_padding = int(expert_width), crop_threshold, crop_padding
        self.experts = nn.ModuleList(Expert(c, self.expert_width, self.tasks, config) for c in channels[-3:])
        self.concat_embed = _embedding(3 * self.expert_width, self.expert_width // 2)
        self.heads = build_heads(self.expert_width // 2, self.tasks, config.dropout, config.age_head)  # the concat head
        names = [t.name for t in self.tasks]
        if cam_task is None:
            cam_task = "gender" if "gender" in names else next(
                (t.name for t in self.tasks if t.kind == "classification"), names[0])
        if cam_task not in names:
            raise ValueError(f"cam_task {cam_task!r} is not one of the model's tasks {names}")
        self.cam_task = cam_task

    def run(self, images: torch.Tensor, experts: Sequence[int] = (0, 1, 2), concat: bool = False,
            detached: Sequence[int] = ()) -> ExpertsPass:
        """The backbone once, then the chosen experts (0 = shallowest) and optionally the concat
        head; ``detached`` experts run too but without an autograd graph (their maps and outputs
        are only read, e.g. for attention crops)."""
        stages = self.backbone(images)[-3:]
        if concat and detached:
            raise ValueError("the concat head back-propagates into every expert: no detached experts with it")
        needed = sorted(set(experts) | set(detached) | ({0, 1, 2} if concat else set()))
        outputs, maps, pooled = [None] * 3, [None] * 3, [None] * 3
        for i in needed:
            with torch.set_grad_enabled(torch.is_grad_enabled() and i not in detached):
                maps[i] = self.experts[i].block(stages[i])
                pooled[i] = maps[i].amax(dim=(2, 3))
                if i in experts or i in detached:
                    outputs[i] = self.experts[i].classify(pooled[i])
        concat_out = None
        if concat:
            embedded = self.concat_embed(torch.cat(pooled, dim=1))
            concat_out = {name: head(embedded) for name, head in self.heads.items()}
        return ExpertsPass(outputs, maps, concat_out)

    @torch.no_grad()
    def attention_maps(self, done: ExpertsPass) -> list[torch.Tensor]:
        task = next(t for t in self.tasks if t.name == self.cam_task)
        return [expert.cam(done.maps[i], task, done.outputs[i][task.name]) for i, expert in enumerate(self.experts)]

    @torch.no_grad()
    def attention_crop(self, images: torch.Tensor, maps: Sequence[torch.Tensor]) -> torch.Tensor:
        boxes = attention_boxes(maps, images.shape[-2:], self.crop_threshold, self.crop_padding)
        return crop_resize(images, boxes)

    def forward(self, images: torch.Tensor) -> dict[str, torch.Tensor]:
        """The 3 experts' and the concat head's outputs over the image and its attention crop,
        pooled so that :meth:`predict` gives the mean of the eight heads' probabilities (years)."""
        raw = self.run(images, concat=True)
        crop = self.attention_crop(images, self.attention_maps(raw))
        att = self.run(crop, concat=True)
        heads = [*raw.outputs, raw.concat, *att.outputs, att.concat]
        return {t.name: pool_outputs(self.heads[t.name], [h[t.name] for h in heads]) for t in self.tasks}

    @torch.no_grad()
    def predict(self, outputs: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        return {name: self.heads[name].predict(out.float()) for name, out in outputs.items()}

    def describe(self) -> dict:
        return {"architecture": "fineface", "model": asdict(self.config), "tasks": [t.to_dict() for t in self.tasks],
                "fineface": {"expert_width": self.expert_width, "cam_task": self.cam_task,
                             "crop_threshold": self.crop_threshold, "crop_padding": self.crop_padding}}


@register_architecture("fineface")
def from_checkpoint(config: ModelConfig, tasks: Sequence[TaskSpec], checkpoint: Mapping) -> FineFaceModel:
    return FineFaceModel(config, tasks, load_weights=False, **checkpoint["fineface"])


# ---------------------------------------------------------------------------- method
@register_method("fineface")
class FineFaceMethod(TrainingMethod):
    def __init__(self, config):
        super().__init__(config)
        self.options = method_options(config, DEFAULTS, "fineface")

    def build_model(self, model_config: ModelConfig, tasks: Sequence[TaskSpec]) -> FineFaceModel:
        cam_task = self.options["cam_task"]
        if isinstance(cam_task, (int, float)):  # --method-options values are numbers: an index into --tasks
            cam_task = tasks[int(cam_task)].name
        return FineFaceModel(model_config, tasks, expert_width=int(self.options["expert_width"]), cam_task=cam_task,
                             crop_threshold=float(self.options["crop_threshold"]),
                             crop_padding=float(self.options["crop_padding"]))

    def _choice(self, trainer, step: int, candidates: Sequence[torch.Tensor]) -> torch.Tensor:
        """One of ``candidates`` uniformly, seeded by (seed, global step, sub-step) so resume replays it."""
        generator = torch.Generator().manual_seed(trainer.config.train.seed * 1_000_003
                                                  + trainer.scheduler.last_epoch * 7 + step)
        return candidates[int(torch.randint(len(candidates), (1,), generator=generator))]

    def train_step(self, trainer, x, targets, positions):
        """The five sub-steps.  One whose loss is not finite is not stepped on (the others still
        are), so the batch counts as skipped only when no sub-step updated the weights."""
        t = trainer.config.train
        model, loss_fn = trainer.model, trainer.loss_fn
        weight = self.row_weights(trainer, positions)
        losses: dict[str, float] = {}
        failed: list[str] = []

        def amp():
            return autocast_context(trainer.device, t.amp, t.bf16)

        def step(name: str, loss: torch.Tensor) -> None:
            if trainer.optimizer_step(loss):
                losses[name] = float(loss.detach())
            else:
                failed.append(name)

        # 1. the deepest expert on the raw image; the shallower experts' maps and outputs are only
        #    read (for the attention crops), so they are computed without an autograd graph
        with amp():
            first = model.run(x, experts=(2,), detached=(0, 1))
        step("expert3", loss_fn(first.outputs[2], targets, weight)[0])
        maps = model.attention_maps(first)
        crops = [model.attention_crop(x, [m]) for m in maps]
        combined = model.attention_crop(x, maps)
        # 2-3. the shallower experts on another expert's crop or the raw image
        for expert, sources in ((1, (crops[2], crops[0], x)), (0, (crops[2], crops[1], x))):
            with amp():
                done = model.run(self._choice(trainer, expert, sources), experts=(expert,))
            step(f"expert{expert + 1}", loss_fn(done.outputs[expert], targets, weight)[0])
        # 4. all experts and the concat head on the combined-map crop
        with amp():
            done = model.run(combined, concat=True)
        loss = sum(loss_fn(done.outputs[i], targets, weight)[0] for i in range(3))
        step("attention", loss + 2 * loss_fn(done.concat, targets, weight)[0])
        # 5. the concat head on the raw image
        with amp():
            done = model.run(x, experts=(), concat=True)
        loss, parts = loss_fn(done.concat, targets, weight)
        step("concat", 2 * loss)
        if not losses:
            return loss, {}, False
        if failed:
            log.warning("FineFACE: non-finite loss in sub-step(s) %s; the batch's other %d sub-steps were taken",
                        ", ".join(failed), len(losses))
        total = torch.tensor(sum(losses.values()))
        return total, {**parts, **{f"loss_{k}": v for k, v in losses.items()}}, True
