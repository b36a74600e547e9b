"""LIME (Ribeiro et al. 2016) superpixel explanations of a classification head, with ``lime``.

LIME hides random subsets of superpixels, watches the predicted probability move, and fits a
local linear model: each superpixel's weight says how much it supports (red) or argues against
(blue) the class.  Small model inputs give too few superpixels to read, so LIME works on the
model's own input blown up by a whole factor (nearest neighbour), and each perturbed copy is
averaged back down: the unperturbed face then gives exactly the model's prediction, the same
one Grad-CAM and predictions.csv show.  Cost is ``num_samples`` forward passes per image and
task, so the default (200) is kept small for CPUs.  Exact age has no class probabilities and
is not explained here.
"""

from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Sequence

import numpy as np
import torch

from facefair.data.batches import to_float
from facefair.data.images import resize_batch


@dataclass
class LimeConfig:
    num_samples: int = 200    # perturbed copies per image and task
    segments: int = 40        # SLIC superpixels asked for
    compactness: float = 10.0
    top_features: int = 5     # superpixels outlined in the figure
    display_size: int = 128   # LIME works on the model input blown up to at least this size
    batch_size: int = 50
    seed: int = 0


@dataclass
class LimeResult:
    task: str
    label: str                  # the class explained (the model's prediction)
    probability: float
    segments: np.ndarray        # (S, S) superpixel id per pixel
    weight_map: np.ndarray      # (S, S) the superpixel's weight for ``label``
    top_segments: list[int]     # the most supportive superpixels, strongest first
    score: float                # R^2 of LIME's local linear fit
    image: np.ndarray           # (S, S, 3) uint8, the face that was explained (model input, blown up)


def upscale(image: np.ndarray, factor: int) -> np.ndarray:
    """Nearest-neighbour blow-up by a whole factor: every model pixel becomes a factor x factor block."""
    return np.repeat(np.repeat(image, factor, axis=0), factor, axis=1)


def downscale(images: np.ndarray, factor: int) -> np.ndarray:
    """Block means: the exact inverse of :func:`upscale` on an unperturbed image."""
    if factor == 1:
        return np.clip(np.rint(images), 0, 255).astype(np.uint8)
    n, size = images.shape[0], images.shape[1] // factor
    blocks = images.reshape(n, size, factor, size, factor, 3).astype(np.float32).mean(axis=(2, 4))
    return np.clip(np.rint(blocks), 0, 255).astype(np.uint8)


def classifier_fn(model, task: str, factor: int, device: torch.device):
    """What LIME calls: (n, S, S, 3) images at ``factor`` x the model size -> (n, C) probabilities."""
    @torch.no_grad()
    def predict(images: np.ndarray) -> np.ndarray:
        x = to_float(torch.from_numpy(downscale(np.asarray(images), factor)), device)
        return model.predict(model(x))[task].float().cpu().numpy().astype(np.float64)
    return predict


@contextmanager
def _quiet_lime():
    """lime 0.2 wraps its sampling loop in a tqdm bar it offers no switch for; one bar per image
    and task buries the command's output, so swap it for a pass-through while we run."""
    from lime import lime_image

    original = lime_image.tqdm
    lime_image.tqdm = lambda iterable, *args, **kwargs: iterable
    try:
        yield
    finally:
        lime_image.tqdm = original


def explain_image(model, image: np.ndarray, task: str, config: LimeConfig = LimeConfig(),
                  device: torch.device = torch.device("cpu")) -> LimeResult:
    """LIME for one uint8 (H, W, 3) face and one classification task.  Give the face at the
    model's input size (as decoded for it) for the prediction to match the model's exactly;
    other sizes are resized first."""
    from lime import lime_image  # optional dependency
    from skimage.segmentation import slic

    spec = next((t for t in model.tasks if t.name == task), None)
    if spec is None or spec.kind != "classification":
        raise ValueError(f"LIME explains classification tasks; {task!r} is "
                         f"{'not a task of this model' if spec is None else 'a regression'}")
    model = model.eval().to(device)
    size = model.config.resolved_size()
    factor = max(1, -(-config.display_size // size))  # ceil: at least display_size pixels
    face = upscale(resize_batch(image[None], size)[0], factor)
    predict = classifier_fn(model, task, factor, device)

    def segment(img: np.ndarray) -> np.ndarray:
        return slic(img, n_segments=config.segments, compactness=config.compactness, start_label=0)

    explainer = lime_image.LimeImageExplainer(random_state=config.seed)
    # hide_color=None fills a hidden superpixel with its own mean colour: less out-of-distribution
    # for a face model than black holes.
    with _quiet_lime():
        explanation = explainer.explain_instance(face, predict, top_labels=1, hide_color=None,
                                                 num_samples=config.num_samples, batch_size=config.batch_size,
                                                 segmentation_fn=segment, random_seed=config.seed)
    label = explanation.top_labels[0]
    weights = dict(explanation.local_exp[label])
    weight_map = np.zeros(explanation.segments.shape, dtype=np.float32)
    for segment_id, weight in weights.items():
        weight_map[explanation.segments == segment_id] = weight
    ranked = [s for s, w in sorted(weights.items(), key=lambda kv: -kv[1]) if w > 0][: config.top_features]
    probability = float(predict(face[None])[0, label])
    return LimeResult(task, spec.classes[label], probability, explanation.segments, weight_map, ranked,
                      float(explanation.score), face)


def explain_images(model, images: np.ndarray, tasks: Optional[Sequence[str]] = None,
                   config: LimeConfig = LimeConfig(), device: torch.device = torch.device("cpu")
                   ) -> list[dict[str, LimeResult]]:
    """One {task: LimeResult} per image, for every classification task (or ``tasks``)."""
    names = list(tasks) if tasks else [t.name for t in model.tasks if t.kind == "classification"]
    return [{task: explain_image(model, image, task, config, device) for task in names} for image in images]


def plot_lime_grid(results: list[dict[str, LimeResult]], out_png: str | Path, *,
                   truths: Optional[dict[str, Sequence[str]]] = None, captions: Optional[Sequence[str]] = None
                   ) -> Path:
    """One row per image: the face, then per task the superpixel weights (red supports the
    predicted class, blue argues against it) with the strongest supporters outlined."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from skimage.segmentation import mark_boundaries

    if not results:
        raise ValueError("no LIME results to plot")
    tasks = list(results[0])
    n, cols = len(results), 1 + len(tasks)
    fig, axes = plt.subplots(n, cols, figsize=(2.1 * cols, 2.3 * n), squeeze=False)
    for i, row in enumerate(results):
        first = row[tasks[0]]
        axes[i, 0].imshow(first.image)
        axes[i, 0].set_title(captions[i] if captions else f"image {i + 1}", fontsize=8)
        for j, task in enumerate(tasks, start=1):
            result = row[task]
            top = np.isin(result.segments, result.top_segments)
            outlined = mark_boundaries(result.image, top.astype(int), color=(1, 1, 0), mode="thick")
            limit = float(np.abs(result.weight_map).max()) or 1.0
            axes[i, j].imshow(outlined)
            axes[i, j].imshow(result.weight_map, cmap="bwr", vmin=-limit, vmax=limit, alpha=0.45)
            title = f"{task}: {result.label} ({result.probability:.2f})"
            if truths and task in truths and truths[task][i] is not None:
                title += f"\ntrue {truths[task][i]}"
            axes[i, j].set_title(title, fontsize=8)
    for ax in axes.ravel():
        ax.axis("off")
    fig.suptitle("LIME superpixels (red: supports the prediction, blue: against; yellow: top 5)", fontsize=9)
    fig.tight_layout()
    out_png = Path(out_png)
    out_png.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out_png, dpi=100)
    plt.close(fig)
    return out_png
