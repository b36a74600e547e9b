"""Training and inference throughput against the hardware limit, in one run.

Training, img/s:
  (a) the bare train step on tensors already in memory (forward, backward, AdamW): the limit;
  (b) the full training loop reading the decoded cache (gather, augmentation, losses, clipping);
  (c) the full training loop decoding JPEG files with DataLoader workers.
Inference, img/s: facefair's batched predict over files vs a batch-1 loop over files the way
FairFace's predict.py does it (PIL load, torchvision transforms, one image per forward).

    .venv/bin/python benchmarks/throughput.py --data ../shared/data/utkface/UTKFace --size 112 --bf16
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import tempfile
import time
from pathlib import Path

import torch

from facefair.config import DataConfig, RunConfig, TrainConfig
from facefair.models.multitask import ModelConfig, MultiTaskModel
from facefair.inference import InferenceSettings
from facefair.inference.engine import predict_files
from facefair.train.loop import Trainer


def bare_step_rate(model: MultiTaskModel, trainer: Trainer, batch_size: int, size: int, steps: int) -> float:
    """Same model, optimiser, loss and precision as the loop, on one batch that never leaves memory."""
    device = trainer.device
    x = torch.randn(batch_size, 3, size, size, device=device).contiguous(memory_format=torch.channels_last)
    train = trainer.data.splits["train"]
    targets = {k: torch.from_numpy(v[:batch_size]).to(device) for k, v in train.targets.items()}
    from facefair.runtime import autocast_context
    t = trainer.config.train

    def step():
        with autocast_context(device, t.amp, t.bf16):
            outputs = model(x)
        loss, _ = trainer.loss_fn(outputs, targets)
        trainer.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        trainer.optimizer.step()

    model.train()
    for _ in range(3):
        step()
    _sync(device)
    start = time.perf_counter()
    for _ in range(steps):
        step()
    _sync(device)
    return steps * batch_size / (time.perf_counter() - start)


def loop_rate(trainer: Trainer) -> float:
    trainer.train_epoch(0)  # warm-up (and the first pass through the page cache / workers)
    _sync(trainer.device)
    start = time.perf_counter()
    stats = trainer.train_epoch(1)
    _sync(trainer.device)
    return stats["train_images"] / (time.perf_counter() - start)


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def fairface_style_rate(model: MultiTaskModel, paths: list[str], size: int, device: torch.device) -> float:
    """FairFace predict.py's loop: load one image, torchvision transforms, forward one image."""
    import numpy as np
    from PIL import Image
    from torchvision import transforms
    transform = transforms.Compose([transforms.Resize((size, size)), transforms.ToTensor(),
                                    transforms.Normalize([0.485, 0.456, 0.406], [0.229, 0.224, 0.225])])
    model.eval()
    start = time.perf_counter()
    with torch.no_grad():
        for path in paths:
            image = transform(Image.open(path).convert("RGB")).unsqueeze(0).to(device)
            outputs = model(image)
            _ = {k: np.asarray(v.softmax(-1).cpu()) if v.ndim == 2 else v.cpu() for k, v in outputs.items()}
    return len(paths) / (time.perf_counter() - start)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", default="../shared/data/utkface/UTKFace")
    parser.add_argument("--backbone", default="mobilenetv2")
    parser.add_argument("--weights", default="local:mobilenet_v2")
    parser.add_argument("--size", type=int, default=112)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--images", type=int, default=3000, help="subset used for the loop measurements")
    parser.add_argument("--predict-images", type=int, default=1000)
    parser.add_argument("--bare-steps", type=int, default=24, help="timed steps of the bare train step (a)")
    parser.add_argument("--bf16", action="store_true")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--cache-dir", default=".facefair-cache")
    parser.add_argument("--out", default="benchmarks/results/throughput.json")
    args = parser.parse_args(argv)

    weights = None if args.weights in ("", "none") else args.weights
    with tempfile.TemporaryDirectory() as tmp:
        def trainer_for(cache_dir: str) -> Trainer:
            return Trainer(RunConfig(
                data=DataConfig(data=args.data, limit=args.images, cache_dir=cache_dir, val_fraction=0.05,
                                test_fraction=0.05),
                model=ModelConfig(backbone=args.backbone, image_size=args.size, weights=weights),
                train=TrainConfig(out_dir=f"{tmp}/run", epochs=2, batch_size=args.batch_size, bf16=args.bf16,
                                  progress=False, tensorboard=False, device=args.device)))

        cached = trainer_for(args.cache_dir)
        device = cached.device
        bare = bare_step_rate(cached.model, cached, args.batch_size, args.size, steps=args.bare_steps)
        from_cache = loop_rate(cached)
        files = trainer_for("")
        from_files = loop_rate(files)
        paths = cached.data.splits["train"].frame["path"].tolist()[: args.predict_images]
        model = cached.model.eval()
        rates = {}
        for precision, bf16 in (("fp32", False), ("bf16", True)):
            start = time.perf_counter()
            # One pass per face, as these figures were always measured; `facefair predict`'s default
            # flip-TTA runs two (about half these rates).
            predict_files(model, paths, InferenceSettings(batch_size=args.batch_size, bf16=bf16, tta=False),
                          progress=False)
            rates[precision] = len(paths) / (time.perf_counter() - start)
        single = fairface_style_rate(model, paths[: max(50, len(paths) // 5)], args.size, device)

    result = {
        "device": str(device) if device.type == "cpu" else torch.cuda.get_device_name(device),
        "cpu_count": os.cpu_count(), "machine": platform.processor() or platform.machine(),
        "backbone": args.backbone, "image_size": args.size, "batch_size": args.batch_size, "bf16": args.bf16,
        "train_img_per_s": {"a_bare_step": round(bare, 1), "b_loop_from_cache": round(from_cache, 1),
                            "c_loop_from_jpeg": round(from_files, 1)},
        "ratios": {"b_over_a": round(from_cache / bare, 3), "c_over_a": round(from_files / bare, 3)},
        "predict_img_per_s": {"batched_fp32": round(rates["fp32"], 1), "batched_bf16": round(rates["bf16"], 1),
                              "batch1_fairface_style_fp32": round(single, 1)},
        "predict_speedup": {"fp32": round(rates["fp32"] / single, 2), "bf16": round(rates["bf16"] / single, 2)},
    }
    print(f"train  (a) bare step      {bare:8.1f} img/s")
    print(f"train  (b) loop, cache    {from_cache:8.1f} img/s   (b)/(a) = {from_cache / bare:.3f}")
    print(f"train  (c) loop, JPEG     {from_files:8.1f} img/s   (c)/(a) = {from_files / bare:.3f}")
    print(f"predict batch-1 (FairFace){single:8.1f} img/s   (fp32, one image per forward)")
    for precision, rate in rates.items():
        print(f"predict batched, {precision}    {rate:8.1f} img/s   speed-up = {rate / single:.2f}x")
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=1))
    print(f"written {args.out}")


if __name__ == "__main__":
    main()
