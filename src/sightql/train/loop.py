"""The epoch loop: progress bar, AMP on CUDA, DDP under torchrun, early stopping, checkpoints, Ctrl-C."""

from __future__ import annotations

import math
import os
import sys
import time
from dataclasses import dataclass, field
from typing import Any, Callable

from sightql.train import checkpoints
from sightql.train.evaluate import predict
from sightql.train.progress_file import ProgressFile


@dataclass
class EpochResult:
    epoch: int
    train_loss: float
    train_acc: float
    val_loss: float
    val_acc: float
    lr: float
    seconds: float
    images_per_s: float

    def row(self) -> dict[str, float | int]:
        return dict(self.__dict__)


@dataclass
class LoopState:
    """What a checkpoint restores: the next epoch to run and the best result so far."""

    start_epoch: int = 1
    best_epoch: int | None = None
    best_val_acc: float = -1.0
    best_val_loss: float = math.inf
    epochs_without_gain: int = 0
    history: list[EpochResult] = field(default_factory=list)


def distributed_env() -> tuple[int, int, int] | None:
    """(rank, local rank, world size) when launched by torchrun with more than one process."""
    if int(os.environ.get("WORLD_SIZE", "1")) <= 1 or "RANK" not in os.environ:
        return None
    return int(os.environ["RANK"]), int(os.environ.get("LOCAL_RANK", "0")), int(os.environ["WORLD_SIZE"])


def init_distributed(device: str) -> tuple[str, int]:
    """Join the torchrun process group (NCCL on GPUs, Gloo on CPU); returns (device, rank)."""
    import torch
    import torch.distributed as dist

    env = distributed_env()
    if env is None:
        return device, 0
    rank, local_rank, _world = env
    if not dist.is_initialized():
        dist.init_process_group(backend="nccl" if device.startswith("cuda") else "gloo")
    if device.startswith("cuda"):
        torch.cuda.set_device(local_rank)
        device = f"cuda:{local_rank}"
    return device, rank


def wrap_distributed(model: Any, device: str) -> Any:
    import torch.distributed as dist

    if not (dist.is_available() and dist.is_initialized()):
        return model
    from torch.nn.parallel import DistributedDataParallel

    ids = [int(device.split(":")[1])] if device.startswith("cuda:") else None
    return DistributedDataParallel(model, device_ids=ids)


def _keep_frozen_norms_in_eval(model: Any) -> None:
    """A frozen block's BatchNorm keeps its pretrained running statistics."""
    import torch

    for module in model.modules():
        if isinstance(module, torch.nn.modules.batchnorm._BatchNorm):
            if not any(p.requires_grad for p in module.parameters(recurse=False)):
                module.eval()


class Progress:
    """A rich progress bar per epoch showing loss and accuracy; silent when disabled."""

    def __init__(self, enabled: bool, file: ProgressFile | None = None):
        self.enabled = enabled
        self.file = file  # also kept current in a JSON file for other processes, when given
        self._bar: Any = None

    def start(self, epoch: int, epochs: int, steps: int) -> None:
        if self.file is not None:
            self.file.epoch_started(epoch, epochs, steps)
        if not self.enabled:
            return
        from rich.progress import BarColumn, MofNCompleteColumn, Progress as RichProgress, TextColumn, TimeElapsedColumn

        self._bar = RichProgress(
            TextColumn(f"epoch {epoch}/{epochs}"), BarColumn(), MofNCompleteColumn(),
            TextColumn("{task.fields[stats]}"), TimeElapsedColumn(), transient=False,
        )
        self._bar.start()
        self._task = self._bar.add_task("train", total=steps, stats="")

    def step(self, loss: float, acc: float) -> None:
        if self.file is not None:
            self.file.step(loss, acc)
        if self._bar is not None:
            self._bar.update(self._task, advance=1, stats=f"loss {loss:.4f} acc {acc:.3f}")

    def end(self, result: EpochResult | None) -> None:
        if self.file is not None and result is not None:
            self.file.epoch_finished(result.row())
        if self._bar is None:
            return
        if result is not None:
            self._bar.update(
                self._task,
                stats=f"loss {result.train_loss:.4f} acc {result.train_acc:.3f} | val loss {result.val_loss:.4f} "
                f"val acc {result.val_acc:.3f} | {result.images_per_s:.1f} img/s",
            )
        self._bar.stop()
        self._bar = None

    def say(self, text: str) -> None:
        if self.enabled:
            print(text, file=sys.stderr)


@dataclass
class Loop:
    model: Any
    optimizer: Any
    scheduler: Any | None
    scaler: Any
    loss_fn: Any
    train_loader: Any
    val_loader: Any
    train_dataset: Any
    device: str
    amp: bool
    epochs: int
    seed: int
    patience: int | None
    checkpoint_every: int
    save_checkpoint: Callable[[int, dict[str, Any]], None]
    on_epoch: Callable[[EpochResult], None]
    on_best: Callable[[EpochResult], None]
    progress: Progress
    unfreeze_after: int | None = None
    unfreeze: Callable[[], None] | None = None

    def state_dict(self, state: LoopState, epoch: int) -> dict[str, Any]:
        return {
            "model": checkpoints.model_state(self.model),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict() if self.scheduler is not None else {},
            "scaler": self.scaler.state_dict(),
            "epoch": epoch,
            "best_epoch": -1 if state.best_epoch is None else state.best_epoch,
            "best_val_acc": state.best_val_acc,
            "best_val_loss": state.best_val_loss,
            "epochs_without_gain": state.epochs_without_gain,
            "rng": checkpoints.rng_state(),
        }

    def load_state_dict(self, saved: dict[str, Any]) -> LoopState:
        inner = getattr(self.model, "module", self.model)
        inner.load_state_dict(saved["model"])
        self.optimizer.load_state_dict(saved["optimizer"])
        if self.scheduler is not None and saved["scheduler"]:
            self.scheduler.load_state_dict(saved["scheduler"])
        self.scaler.load_state_dict(saved["scaler"])
        checkpoints.restore_rng(saved["rng"])
        return LoopState(
            start_epoch=int(saved["epoch"]) + 1,
            best_epoch=None if int(saved["best_epoch"]) < 0 else int(saved["best_epoch"]),
            best_val_acc=float(saved["best_val_acc"]),
            best_val_loss=float(saved["best_val_loss"]),
            epochs_without_gain=int(saved["epochs_without_gain"]),
        )

    def _train_one_epoch(self, epoch: int) -> tuple[float, float, int]:
        import torch

        self.model.train()
        _keep_frozen_norms_in_eval(self.model)
        self.train_dataset.set_epoch(epoch)
        sampler = getattr(self.train_loader, "sampler", None)
        if hasattr(sampler, "set_epoch"):
            sampler.set_epoch(epoch)
        elif self.train_loader.generator is not None:
            self.train_loader.generator.manual_seed(self.seed * 100_003 + epoch)  # same order after a resume
        total_loss, correct, seen = 0.0, 0, 0
        use_amp = self.amp and self.device.startswith("cuda")
        for images, labels in self.train_loader:
            images, labels = images.to(self.device, non_blocking=True), labels.to(self.device)
            self.optimizer.zero_grad(set_to_none=True)
            with torch.autocast(device_type="cuda", enabled=use_amp):
                logits = self.model(images)
                loss = self.loss_fn(logits.float(), labels)
            self.scaler.scale(loss).backward()
            self.scaler.step(self.optimizer)
            self.scaler.update()
            total_loss += float(loss.detach()) * len(labels)
            correct += int((logits.argmax(dim=1) == labels).sum())
            seen += len(labels)
            self.progress.step(total_loss / seen, correct / seen)
        return total_loss / max(seen, 1), correct / max(seen, 1), seen

    def run(self, state: LoopState) -> LoopState:
        finished = state.start_epoch - 1
        try:
            for epoch in range(state.start_epoch, self.epochs + 1):
                if self.unfreeze_after is not None and self.unfreeze is not None and epoch == self.unfreeze_after + 1:
                    self.unfreeze()
                self.progress.start(epoch, self.epochs, len(self.train_loader))
                result = None
                try:
                    started = time.perf_counter()
                    lr = float(self.optimizer.param_groups[0]["lr"])
                    train_loss, train_acc, seen = self._train_one_epoch(epoch)
                    train_seconds = time.perf_counter() - started
                    targets, probabilities, val_loss = predict(self.model, self.val_loader, self.device, self.amp)
                    val_acc = float((probabilities.argmax(axis=1) == targets).mean()) if len(targets) else float("nan")
                    seconds = time.perf_counter() - started
                    result = EpochResult(epoch, train_loss, train_acc, val_loss, val_acc, lr, seconds,
                                         seen / train_seconds if train_seconds > 0 else 0.0)
                finally:
                    self.progress.end(result)
                if self.scheduler is not None:
                    self.scheduler.step()
                state.history.append(result)
                self.on_epoch(result)
                finished = epoch
                improved = (val_acc, -val_loss) > (state.best_val_acc, -state.best_val_loss)
                if improved:
                    state.best_epoch, state.best_val_acc, state.best_val_loss = epoch, val_acc, val_loss
                    state.epochs_without_gain = 0
                    self.on_best(result)
                else:
                    state.epochs_without_gain += 1
                last = epoch == self.epochs
                stop = self.patience is not None and state.epochs_without_gain >= self.patience
                if epoch % self.checkpoint_every == 0 or last or stop:
                    self.save_checkpoint(epoch, self.state_dict(state, epoch))
                if stop:
                    self.progress.say(f"early stop: no better validation accuracy for {self.patience} epoch(s)")
                    break
        except KeyboardInterrupt:
            # The weights part-way through the epoch, filed under the last finished epoch: a resume redoes it.
            self.save_checkpoint(finished, self.state_dict(state, finished))
            raise
        return state
