"""The training run: data -> model -> epochs with validation -> best.pt -> test report.

Everything that decides the result (split, data order, augmentation, init) derives from the seed
and the epoch number, and last.pt holds every piece of state, so ``--resume`` after a kill ends
where an uninterrupted run would have.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import os
import random
import time
from pathlib import Path
from typing import Optional


import numpy as np
import torch
from tqdm.auto import tqdm

from facefair.config import RunConfig, run_differences
from facefair.data.batches import IMAGENET_MEAN, IMAGENET_STD, augment
from facefair.evaluate.metrics import selection_score
from facefair.evaluate.report import (append_benchmark_row, evaluate_split, headline, print_headline,
                                      score_outputs, split_outputs, write_evaluation)
from facefair.run import Run
from facefair.runtime import autocast_context
from facefair.models.serialization import read_checkpoint, save_pretrained
from facefair.train.checkpoint import load_checkpoint, rng_state, save_atomic, set_rng_state
from facefair.data.prepare import PreparedData, SplitData, prepare_data
from facefair.train.losses import MultiTaskLoss, inverse_frequency_weights, label_weights
from facefair.train.distributed import Distributed
from facefair.train.methods import TrainingMethod, create_method
from facefair.train.optim import param_groups, warmup_cosine
from facefair.train.sampling import balanced_weights, epoch_batches

log = logging.getLogger("facefair")


class TrainingDiverged(RuntimeError):
    pass


def seed_everything(seed: int, deterministic: bool) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    if deterministic:
        torch.use_deterministic_algorithms(True, warn_only=True)
        torch.backends.cudnn.deterministic = True
        torch.backends.cudnn.benchmark = False
    elif torch.cuda.is_available():
        torch.backends.cudnn.benchmark = True


class Trainer:
    def __init__(self, config: RunConfig):
        config.check()  # a config built in Python has not been through from_dict / the flags
        self.config = config
        self.out_dir = Path(config.train.out_dir)
        self.dist = Distributed.from_env(config.train.device)
        self.device = self.dist.device(config.train.device)
        if self.dist.is_main:
            self.out_dir.mkdir(parents=True, exist_ok=True)
        seed_everything(config.train.seed, config.train.deterministic)
        if self.device.type == "cpu":
            torch.set_num_threads(max(1, (os.cpu_count() or 1) // self.dist.world_size))
        self.batch_size = self.dist.per_rank_batch(config.train.batch_size)
        # Rank 0 builds the cache and writes splits.csv first; the others then read both.
        for turn in ("main", "others"):
            if (turn == "main") == self.dist.is_main:
                self.data: PreparedData = prepare_data(
                    config.data, config.model.tasks, config.model.resolved_size(), self.batch_size,
                    seed=config.train.seed, out_dir=self.out_dir, pin_memory=self.device.type == "cuda",
                    progress=config.train.progress and self.dist.is_main, write=self.dist.is_main)
            self.dist.barrier()
        self.tasks = self.data.tasks
        if config.train.face_heads:  # refused now, not after the epochs
            from facefair.train.face_heads import check_before_training
            check_before_training(config.train.face_heads, self.tasks)
        self.framing = self._measure_framing() if self.dist.is_main else None
        self.method = create_method(config)
        if self.dist.enabled and type(self.method).train_step is not TrainingMethod.train_step:
            raise ValueError(f"method {self.method.name!r} takes its own optimiser steps; train it in one process")
        self.model = self.method.build_model(config.model, self.tasks).to(self.device)
        self.model = self.dist.sync_batchnorm(self.model, self.device)
        if config.train.channels_last:
            self.model = self.model.to(memory_format=torch.channels_last)
        if config.train.mixstyle:  # training-time hooks on the backbone's stages; saved models lack them
            from facefair.train.mixstyle import add_mixstyle
            add_mixstyle(getattr(self.model, "backbone", self.model), config.train.mixstyle)
        self.ema, self.ema_steps = None, 0
        if config.train.ema_decay:
            from timm.utils import ModelEmaV3
            # Warmed up (decay grows with the step count up to ema_decay), so the random first
            # weights wash out within the short schedules this package trains.
            self.ema = ModelEmaV3(self.model, decay=config.train.ema_decay, use_warmup=True)
        if config.train.sampler not in ("none", "balanced"):
            raise ValueError(f"unknown sampler {config.train.sampler!r}: none or balanced")
        self.sample_weights = (balanced_weights(self.data.splits["train"].frame, config.train.sampler_by)
                               if config.train.sampler == "balanced" else None)
        self.swa = None
        if config.train.swa_epochs:
            from facefair.train.swa import WeightAverage
            self.swa = WeightAverage(self.model, config.train.epochs - config.train.swa_epochs, self.device,
                                     autocast_context(self.device, config.train.amp, config.train.bf16),
                                     seed=config.train.seed, distributed=self.dist, per_rank_batch=self.batch_size,
                                     sample_weights=self.sample_weights)
        self.forward = self.model
        if self.dist.enabled:
            from torch.nn.parallel import DistributedDataParallel
            self.forward = DistributedDataParallel(
                self.model, device_ids=[self.device.index] if self.device.type == "cuda" else None)
        if config.train.compile:
            self.forward = torch.compile(self.forward)
        train = self.data.splits["train"]
        self.loss_fn = MultiTaskLoss(self.tasks, self.model.heads, task_weights=config.train.task_weights,
                                     class_weights=self._class_weights(train) if config.train.class_weights else None,
                                     label_smoothing=config.train.label_smoothing,
                                     global_sum=self.dist.sum_tensor if self.dist.enabled else None,
                                     world_size=self.dist.world_size).to(self.device)
        self.label_weights = label_weights(train.frame, self.tasks, self.device)  # --downweight
        t = config.train
        self.steps_per_epoch = max(1, len(train.frame) // t.batch_size)
        self.optimizer = torch.optim.AdamW(param_groups(self.model, t.lr, t.backbone_lr_scale, t.weight_decay))
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(self.optimizer, warmup_cosine(
            int(t.warmup_epochs * self.steps_per_epoch), (t.epochs - t.swa_epochs) * self.steps_per_epoch,
            final=t.swa_lr_scale if t.swa_epochs else 0.0))
        self.scaler = torch.amp.GradScaler("cuda", enabled=self.device.type == "cuda" and t.amp)
        self.start_epoch, self.best_score, self.history = 0, -math.inf, []
        self.skipped_images = list(self.data.skipped_images)
        self.bad_steps_total = 0
        self.method.setup(self)
        self.writer = None
        if t.tensorboard and self.dist.is_main:
            from torch.utils.tensorboard import SummaryWriter
            self.writer = SummaryWriter(str(self.out_dir / "tb"))

    def _measure_framing(self) -> Optional[dict]:
        """How the training chips frame their faces, stored in the model files (see
        facefair.align.framing); a missing detector costs the record, never the run."""
        sample = self.config.train.framing_sample
        if sample <= 0:
            return None
        from facefair.align.framing import measure_chip_framing
        try:
            framing = measure_chip_framing(self.data.splits["train"].frame["path"].tolist(), sample=sample,
                                           seed=self.config.train.seed)
        except (ValueError, OSError) as error:
            log.warning("training chips' framing not measured (%s): predict/evaluate --detect will use padding "
                        "0.25 and cannot check the framing of cropped faces", error)
            return None
        measured = framing["measured"]
        log.info("training chips: faces fill %.0f%% of the width (%d sampled); matching align padding %s",
                 100 * measured["face_size"], measured["images"], framing["padding"])
        return framing

    def _class_weights(self, train: SplitData) -> dict[str, torch.Tensor]:
        return {t.name: inverse_frequency_weights(train.targets[t.name], t.num_classes)
                for t in self.tasks if t.kind == "classification"}

    # ------------------------------------------------------------------ state
    def state(self, epoch: int) -> dict:
        return {"epoch": epoch, "model_state": self.model.state_dict(), **self.model.describe(),
                "optimizer": self.optimizer.state_dict(), "scheduler": self.scheduler.state_dict(),
                "scaler": self.scaler.state_dict(), "best_score": self.best_score, "history": self.history,
                "skipped_images": self.skipped_images, "config": self.config.to_dict(), "rng": rng_state(),
                "method_state": self.method.state_dict(),
                **({"ema_state": self.ema.module.state_dict(), "ema_steps": self.ema_steps} if self.ema else {}),
                **({"swa_state": self.swa.state_dict()} if self.swa else {})}

    def resume(self) -> None:
        path = Run(self.out_dir).last_path
        if not path.exists():
            log.warning("--resume: no %s yet; starting from scratch", path)
            return
        t = self.config.train
        state = load_checkpoint(path, self.device, trust=t.trust_checkpoint)
        differences = run_differences(state.get("config") or {}, self.config.to_dict())
        if differences and not t.force:
            raise ValueError(f"--resume: {path} was trained with other settings ({'; '.join(differences)}); "
                             f"resuming would not finish that run. Pass --force to continue anyway, or "
                             f"train into another --out-dir")
        if differences:
            log.warning("--resume --force: continuing %s with changed settings: %s", path, "; ".join(differences))
        self.model.load_state_dict(state["model_state"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        self.scaler.load_state_dict(state["scaler"])
        self.best_score, self.history = state["best_score"], state["history"]
        self.skipped_images = state.get("skipped_images", self.skipped_images)
        self.method.load_state_dict(state.get("method_state") or {})
        # --force may add an average the saved run lacks: it starts now, from the resumed weights.
        if self.ema is not None:
            self.ema.module.load_state_dict(state.get("ema_state", state["model_state"]))
            self.ema_steps = state.get("ema_steps", 0)
        if self.swa is not None and "swa_state" in state:
            self.swa.load_state_dict(state["swa_state"])
        set_rng_state(state)
        self.start_epoch = state["epoch"] + 1
        print(f"resumed from {path} after epoch {state['epoch'] + 1}", flush=True)

    # ------------------------------------------------------------------ epochs
    def train_epoch(self, epoch: int) -> dict[str, float]:
        t = self.config.train
        train = self.data.splits["train"]
        self.model.train()
        generator = torch.Generator().manual_seed(t.seed * 100_003 + epoch + 7_919 * self.dist.rank)
        targets = {k: torch.from_numpy(v) for k, v in train.targets.items()}
        sums: dict[str, float] = {}
        steps, seen, consecutive_bad = 0, 0, 0
        bar = tqdm(total=self.steps_per_epoch, desc=f"epoch {epoch + 1}/{t.epochs}",
                   disable=not (t.progress and self.dist.is_main), dynamic_ncols=True, leave=False)
        for images, positions, errors in epoch_batches(train, epoch, seed=t.seed, weights=self.sample_weights,
                                                       distributed=self.dist, per_rank_batch=self.batch_size):
            self._note_skipped(errors)
            if len(positions) == 0:
                continue
            x = augment(images, self.device, generator, self.config.augment)
            if steps == 0 and self.writer is not None:
                self._log_batch_images(x, epoch + 1)
            batch_targets = {k: v[positions].to(self.device, non_blocking=True) for k, v in targets.items()}
            loss, parts, stepped = self.method.train_step(self, x, batch_targets, positions)
            if not stepped:
                consecutive_bad += 1
                self.bad_steps_total += 1
                log.warning("non-finite loss at epoch %d step %d (batch starts with %s); step skipped",
                            epoch + 1, steps + 1, train.frame["path"].iloc[positions[0]])
                if consecutive_bad >= t.max_bad_steps:
                    raise TrainingDiverged(f"{consecutive_bad} non-finite losses in a row at epoch {epoch + 1}; "
                                           f"lower --lr or check the data. last.pt/best.pt are from the last good epoch.")
                self.scheduler.step()
                continue
            consecutive_bad = 0
            self.scheduler.step()
            steps += 1
            seen += len(positions)
            sums["loss"] = sums.get("loss", 0.0) + float(loss.detach())
            for k, v in parts.items():
                sums[k] = sums.get(k, 0.0) + v
            bar.set_postfix({k: f"{v / steps:.3f}" for k, v in sums.items()}, refresh=False)
            bar.update()
        bar.close()
        totals = self.dist.sum({**sums, "_steps": steps, "_seen": seen})
        steps, seen = totals.pop("_steps"), totals.pop("_seen")
        means = {f"train_{k}": v / max(1, steps) for k, v in totals.items()}
        means["train_images"] = int(seen)
        return means

    def optimizer_step(self, loss: torch.Tensor) -> bool:
        """Backward and AdamW step (gradient scaling on CUDA, clipping); a non-finite loss is not
        stepped on, so one bad batch cannot poison the weights.  Methods with several steps per
        batch call this once per step."""
        self.optimizer.zero_grad(set_to_none=True)
        if not self.dist.all_finite(loss):
            return False
        self.scaler.scale(loss).backward()
        self.scaler.unscale_(self.optimizer)
        torch.nn.utils.clip_grad_norm_(self.model.parameters(), 5.0)
        self.scaler.step(self.optimizer)
        self.scaler.update()
        if self.ema is not None:
            self.ema_steps += 1
            self.ema.update(self.model, step=self.ema_steps)
        return True

    @property
    def scored_model(self) -> torch.nn.Module:
        """The weights validation scores and the run keeps: the moving average where there is one,
        the SWA average once it has begun."""
        if self.swa is not None and self.swa.started:
            return self.swa.module
        return self.ema.module if self.ema is not None else self.model

    def _note_skipped(self, errors: list[str]) -> None:
        for error in errors:
            if error not in self.skipped_images:
                log.warning("skipped image %s", error)
                self.skipped_images.append(error)

    def fit(self) -> dict:
        t = self.config.train
        if t.resume:
            self.resume()
        started = time.perf_counter()
        if self.dist.is_main:
            Run(self.out_dir).write_config(self.config)
        for epoch in range(self.start_epoch, t.epochs):
            epoch_start = time.perf_counter()
            train_stats = self.train_epoch(epoch)
            train_seconds = time.perf_counter() - epoch_start
            if self.swa is not None and self.swa.average(self.model, epoch, self.data.splits["train"], self.config.augment):
                log.info("epoch %d: weights averaged into the SWA model (%d epochs in the average)", epoch + 1, self.swa.count)
            _, val_metrics, errors = evaluate_split(self.scored_model, self.data.splits["val"], self.device,
                                                    tta=False, amp=t.amp, bf16=t.bf16, distributed=self.dist)
            self._note_skipped(errors)
            score = selection_score(val_metrics)
            record = {"epoch": epoch + 1, **train_stats, "train_img_per_s": train_stats["train_images"] / train_seconds,
                      **{f"val_{k}": v for k, v in headline(val_metrics).items()}, "val_score": score,
                      "lr": self.scheduler.get_last_lr()[0], "seconds": time.perf_counter() - epoch_start}
            self.history.append(record)
            self._log_scalars(record, epoch + 1)
            improved = score > self.best_score
            if improved:
                self.best_score = score
            if self.dist.is_main:
                state = self.state(epoch)
                save_atomic(state, Run(self.out_dir).last_path)
                if improved:  # the best epoch's model: config.json + model.safetensors, loadable with no pickle
                    save_pretrained(self.scored_model.state_dict(), {**self.model.describe(), "epoch": epoch,
                                                           "best_score": self.best_score, "config": state["config"],
                                                           "framing": self.framing},
                                    self.out_dir)
            self.dist.barrier()
            if not self.dist.is_main:
                continue
            print(f"epoch {epoch + 1}/{t.epochs}  loss={train_stats.get('train_loss', float('nan')):.4f}  "
                  f"{train_stats['train_images'] / train_seconds:.0f} img/s  val_score={score:.4f}"
                  f"{'  (best)' if improved else ''}", flush=True)
            print_headline("  val", val_metrics)
        try:
            return self.finish(time.perf_counter() - started)
        finally:
            self.dist.close()

    def _log_batch_images(self, x: torch.Tensor, step: int, count: int = 16) -> None:
        """What the network is shown after augmentation: the first check when accuracy disappoints."""
        mean = torch.tensor(IMAGENET_MEAN, device=x.device).view(1, 3, 1, 1)
        std = torch.tensor(IMAGENET_STD, device=x.device).view(1, 3, 1, 1)
        self.writer.add_images("train/augmented_batch", (x[:count].float() * std + mean).clamp(0, 1).cpu(), step)

    def _log_scalars(self, record: dict, step: int) -> None:
        if self.writer is None:
            return
        for key, value in record.items():
            if isinstance(value, (int, float)) and key != "epoch":
                self.writer.add_scalar(key.replace("_", "/", 1), value, step)
        self.writer.flush()

    def finish(self, wall_seconds: float) -> dict:
        """Test-split evaluation of best.pt, the report, and the benchmark row."""
        t = self.config.train
        best = read_checkpoint(self.out_dir, self.device)
        self.model.load_state_dict(best["model_state"])
        test = self.data.splits["test"]
        # One pass of the CNN over the test split serves both the CNN-only report and the heads' blend.
        outputs, errors = split_outputs(self.model, test, self.device, tta=t.tta, amp=t.amp, bf16=t.bf16,
                                        distributed=self.dist)
        face_heads = None
        if t.face_heads:
            from facefair.train.face_heads import fit_at_end_of_training
            face_heads = fit_at_end_of_training(self, outputs)
        predictions, metrics = score_outputs(self.model, test.frame, outputs, self.config.data.cache_dir)
        self._note_skipped(errors)
        if not self.dist.is_main:
            return {"metrics": metrics, "headline": headline(metrics)}
        method_report = self.method.report()
        extra = {
            "run": {"out_dir": str(self.out_dir), "best_epoch": best["epoch"] + 1, "epochs": t.epochs,
                    "wall_seconds_this_session": round(wall_seconds, 1), "device": str(self.device),
                    "split_sizes": {k: len(v.frame) for k, v in self.data.splits.items()},
                    "race_scheme": self.data.race_scheme, "cache": self.data.cache_dir,
                    "non_finite_steps": self.bad_steps_total, "processes": self.dist.world_size,
                    "framing": self.framing, **({"method": method_report} if method_report else {})},
            **({"face_heads": face_heads} if face_heads else {}),
            "config": self.config.to_dict(),
            "history": self.history,
            "data_problems": {"count": len(self.data.problems), "items": [str(p) for p in self.data.problems]},
            "skipped_images": {"count": len(self.skipped_images), "items": self.skipped_images},
        }
        report = write_evaluation(self.out_dir, predictions, metrics, extra)
        print_headline("test", metrics)
        results_csv = Path(t.results_csv) if t.results_csv else self.out_dir.parent / "benchmark_results.csv"
        m = self.config.model
        append_benchmark_row(results_csv, {
            "run": str(self.out_dir), "backbone": m.backbone, "image_size": m.resolved_size(),
            "tasks": "+".join(x.name for x in self.tasks), "seed": t.seed, "epochs": t.epochs,
            "batch_size": t.batch_size, "lr": t.lr, "weight_decay": t.weight_decay, "label_smoothing": t.label_smoothing,
            "class_weights": t.class_weights, "sampler": t.sampler, "method": t.method, "age_head": m.age_head,
            "data": self.config.data.data, "n_train": len(self.data.splits["train"].frame),
            "best_epoch": best["epoch"] + 1, **headline(metrics), "wall_seconds": round(wall_seconds, 1),
            "device": str(self.device)})
        if self.writer is not None:
            self.writer.close()
        return report


def train(config: RunConfig) -> dict:
    return Trainer(config).fit()


def replace(config: RunConfig, **sections) -> RunConfig:
    """A copy of ``config`` with some fields of some sections changed: replace(c, train={'epochs': 2})."""
    return dataclasses.replace(config, **{name: dataclasses.replace(getattr(config, name), **values)
                                          for name, values in sections.items()})


