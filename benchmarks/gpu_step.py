"""Training-step throughput of facefair's multi-task model: the bare step vs AMP, channels-last and
torch.compile, per backbone, on tensors already on the device (the hardware limit, no data loading).

    python benchmarks/gpu_step.py --backbones resnet50 convnext_tiny --size 224 --batch-size 128
    python benchmarks/gpu_step.py --smoke          # CPU, 32 px, a few steps: checks the script runs

Each variant is one model + AdamW + facefair's MultiTaskLoss (all four tasks) on random images and
random labels; a variant that fails (torch.compile without a compiler, out of memory) is recorded
with its error instead of ending the run.  Called by benchmarks/gpu.sh.
"""

from __future__ import annotations

import argparse
import json
import platform
import time
import traceback
from pathlib import Path

VARIANTS = {  # name: (amp, channels_last, compile)
    "bare_fp32": (False, False, False),
    "amp": (True, False, False),
    "amp_channels_last": (True, True, False),
    "amp_channels_last_compile": (True, True, True),
}


def _sync(device) -> None:
    import torch
    if device.type == "cuda":
        torch.cuda.synchronize()


def step_rate(backbone: str, size: int, batch_size: int, steps: int, warmup: int, device, amp: bool,
              channels_last: bool, compile_model: bool) -> dict:
    import torch

    from facefair.labels import RACE_SCHEMES
    from facefair.models.multitask import ModelConfig, MultiTaskModel
    from facefair.runtime import autocast_context
    from facefair.tasks import make_tasks
    from facefair.train.losses import MultiTaskLoss

    torch.manual_seed(0)
    tasks = make_tasks(["gender", "race", "age_group", "age"], "race5" if "race5" in RACE_SCHEMES else None)
    model = MultiTaskModel(ModelConfig(backbone=backbone, image_size=size, pretrained=False), tasks).to(device)
    loss_fn = MultiTaskLoss(tasks, model.heads).to(device)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)
    x = torch.randn(batch_size, 3, size, size, device=device)
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
        x = x.contiguous(memory_format=torch.channels_last)
    targets = {t.name: (torch.randint(0, t.num_classes, (batch_size,), device=device) if t.kind == "classification"
                        else torch.rand(batch_size, device=device) * 80 + 1) for t in tasks}
    forward = torch.compile(model) if compile_model else model
    scaler = torch.amp.GradScaler(device.type, enabled=amp and device.type == "cuda")

    def step():
        with autocast_context(device, amp, bf16=amp):
            outputs = forward(x)
        loss, _ = loss_fn(outputs, targets)
        optimizer.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()
        scaler.step(optimizer)
        scaler.update()

    model.train()
    started = time.perf_counter()
    for _ in range(warmup):  # includes compilation for the compiled variant
        step()
    _sync(device)
    warm_s = time.perf_counter() - started
    started = time.perf_counter()
    for _ in range(steps):
        step()
    _sync(device)
    seconds = time.perf_counter() - started
    out = {"img_per_s": round(steps * batch_size / seconds, 1), "warmup_s": round(warm_s, 2), "steps": steps}
    if device.type == "cuda":
        out["max_memory_gib"] = round(torch.cuda.max_memory_allocated(device) / 2**30, 2)
        torch.cuda.reset_peak_memory_stats(device)
    return out


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--backbones", nargs="+", default=["resnet50", "convnext_tiny"])
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=list(VARIANTS))
    parser.add_argument("--device", default="auto")
    parser.add_argument("--smoke", action="store_true", help="CPU, 32 px, batch 4, 2 steps, no torch.compile")
    parser.add_argument("--out", default="benchmarks/results/gpu-throughput.json")
    args = parser.parse_args(argv)
    if args.smoke:
        args.size, args.batch_size, args.steps, args.warmup, args.device = 32, 4, 1, 1, "cpu"
        args.variants = [v for v in args.variants if not VARIANTS[v][2]]

    import torch

    from facefair.runtime import select_device
    device = select_device(args.device)
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
    results: dict[str, dict] = {}
    for backbone in args.backbones:
        results[backbone] = {}
        for variant in args.variants:
            amp, channels_last, compile_model = VARIANTS[variant]
            try:
                figures = step_rate(backbone, args.size, args.batch_size, args.steps, args.warmup, device, amp,
                                    channels_last, compile_model)
            except Exception as error:  # noqa: BLE001 - one failing variant must not lose the others' figures
                figures = {"error": f"{type(error).__name__}: {str(error).splitlines()[0] if str(error) else ''}",
                           "trace": traceback.format_exc(limit=3)[-600:]}
            results[backbone][variant] = figures
            print(f"{backbone:14s} {variant:28s} {figures.get('img_per_s', figures.get('error'))}", flush=True)
            if device.type == "cuda":
                torch.cuda.empty_cache()
        bare = results[backbone].get("bare_fp32", {}).get("img_per_s")
        if bare:
            results[backbone]["speedup_vs_bare"] = {v: round(f["img_per_s"] / bare, 2)
                                                    for v, f in results[backbone].items() if "img_per_s" in f}
    report = {
        "what": "bare train step (forward, backward, AdamW) of the 4-task model on random tensors, img/s",
        "device": torch.cuda.get_device_name(device) if device.type == "cuda" else f"cpu ({platform.processor()})",
        "torch": torch.__version__, "size": args.size, "batch_size": args.batch_size, "smoke": args.smoke,
        "results": results,
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(report, indent=1))
    print(f"written {args.out}")


if __name__ == "__main__":
    main()
