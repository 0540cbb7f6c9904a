"""The epoch loop: progress bar, AMP on CUDA, DDP under torchrun, warm-up, early stopping, checkpoints, Ctrl-C.

Warm-up (``warmup_epochs``, default 1): over the first fine-tuning epochs each step's rate is the
schedule's times ``warmup_factor``, rising linearly to the full rate; the schedule's own rates are put
back when the epoch ends, so the per-epoch schedule and checkpoints never see the warm-up. Measured, it
did not remove the loss of ground in epoch 1 that it was added for (docs/training.md, "Warm-up").

Early stopping (``patience``) counts epochs in which the validation loss did not fall below its lowest
by more than ``LOSS_MIN_DELTA`` (relative) and the validation accuracy did not reach a new best: a
run whose accuracy still climbs while its loss wobbles (as textile's did in the middle of a cosine
schedule) goes on. ``LoopState.stop_reason`` says why the run ended, and checkpoints keep it.

Under torchrun (``group`` set) each rank trains on its shard of the rows inside DDP's Join
(shards may differ by a row), and the epoch's figures are sums over all ranks: the training
loss and accuracy of every row seen once, and the validation loss and accuracy over the whole
validation split, which the ranks share out and evaluate with rank 0's weights and statistics.
"""

from __future__ import annotations

import contextlib
import math
import sys
import time
from dataclasses import dataclass, field
from typing import Any, Callable

from sightql.train import checkpoints, speed
from sightql.train.evaluate import predict
from sightql.train.progress_file import ProgressFile

LOSS_MIN_DELTA = 1e-3  # a validation loss must fall by more than 0.1% of its lowest to count as better


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
    images_per_rank: list[int] | None = None  # under torchrun: training rows each rank saw this epoch

    def row(self) -> dict[str, float | int]:
        return dict(self.__dict__)


@dataclass
class LoopState:
    """What a checkpoint restores: the next epoch to run and the best result so far."""

    start_epoch: int = 1
    best_epoch: int | None = None
    best_val_acc: float = -1.0
    best_val_loss: float = math.inf
    epochs_without_gain: int = 0  # epochs since the validation loss or accuracy last improved
    history: list[EpochResult] = field(default_factory=list)
    lowest_val_loss: float = math.inf
    stop_reason: str = ""  # set by Loop.run: early stop, or the epoch limit reached


def warmup_factor(epoch: int, step: int, steps: int, warmup_epochs: int) -> float:
    """The share of the scheduled rate at ``step`` (0-based) of ``epoch`` (1-based) while warming up: rising
    linearly from 1 / (warmup steps) to 1 at the last warm-up step (Goyal et al. 2017), 1 after it."""
    done = (epoch - 1) * steps + step + 1
    return min(1.0, done / max(warmup_epochs * steps, 1))


def keep_frozen_norms_in_eval(model: Any) -> None:
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
    group: Any = None  # sightql.train.distributed.Group under torchrun
    warmup_epochs: int = 0  # the rate rises linearly over these first epochs' steps (warmup_factor)
    precision: str = "fp32"  # 'bf16': CPU autocast (speed.choose_precision decided)
    channels_last: bool = False  # inputs in channels-last, as the model (speed.to_channels_last)

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
            "lowest_val_loss": state.lowest_val_loss,
            "stop_reason": state.stop_reason,
            "epoch_limit": self.epochs,
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
        state = LoopState(
            start_epoch=int(saved["epoch"]) + 1,
            best_epoch=None if int(saved["best_epoch"]) < 0 else int(saved["best_epoch"]),
            best_val_acc=float(saved["best_val_acc"]),
            best_val_loss=float(saved["best_val_loss"]),
            epochs_without_gain=int(saved["epochs_without_gain"]),
            lowest_val_loss=float(saved.get("lowest_val_loss", saved["best_val_loss"])),  # older checkpoints lack it
            stop_reason=str(saved.get("stop_reason", "")),
        )
        if state.stop_reason.startswith("early stop"):
            if int(saved.get("epoch_limit", self.epochs)) == self.epochs:
                state.start_epoch = self.epochs + 1  # it had stopped: a resume only evaluates and registers
            else:
                state.epochs_without_gain = 0  # resumed with more epochs: the user asked for them
        return state

    def _train_one_epoch(self, epoch: int) -> tuple[float, float, int, list[int] | None]:
        """(loss, accuracy, rows seen, rows each rank saw or None), over all ranks under torchrun."""
        import torch

        self.model.train()
        keep_frozen_norms_in_eval(self.model)
        self.train_dataset.set_epoch(epoch)
        sampler = getattr(self.train_loader, "sampler", None)
        if hasattr(sampler, "set_epoch"):
            sampler.set_epoch(epoch)
        elif self.train_loader.generator is not None:
            self.train_loader.generator.manual_seed(self.seed * 100_003 + epoch)  # same order after a resume
        total_loss, correct, seen = 0.0, 0, 0
        steps = len(self.train_loader)
        with contextlib.ExitStack() as stack:
            if self.group is not None:
                stack.enter_context(self.group.uneven_batches(self.model))
            warm_up = stack.enter_context(self._warm_up(epoch, steps))
            for step, (images, labels) in enumerate(self.train_loader):
                warm_up(step)
                images, labels = images.to(self.device, non_blocking=True), labels.to(self.device)
                if self.channels_last:
                    images = images.contiguous(memory_format=torch.channels_last)
                self.optimizer.zero_grad(set_to_none=True)
                with speed.autocast(self.device, self.amp, self.precision):
                    logits = self.model(images)
                    loss = self.loss_fn(logits.float(), labels)
                self.scaler.scale(loss).backward()
                self.scaler.step(self.optimizer)
                self.scaler.update()
                total_loss += float(loss.detach()) * len(labels)
                correct += int((logits.argmax(dim=1) == labels).sum())
                seen += len(labels)
                self.progress.step(total_loss / seen, correct / seen)
        per_rank = None
        if self.group is not None:
            per_rank = self.group.gather(seen)
            total_loss, all_correct, _ = self.group.sum([total_loss, correct, 0])
            correct, seen = int(all_correct), sum(per_rank)
        return total_loss / max(seen, 1), correct / max(seen, 1), seen, per_rank

    @contextlib.contextmanager
    def _warm_up(self, epoch: int, steps: int) -> Any:
        """Yields ``at(step)``, which sets each parameter group's rate to the schedule's times ``warmup_factor``
        during the warm-up epochs (and does nothing after them); the schedule's rates are put back when the
        epoch ends or fails."""
        if epoch > self.warmup_epochs:
            yield lambda step: None
            return
        groups = self.optimizer.param_groups
        scheduled = [float(group["lr"]) for group in groups]

        def at(step: int) -> None:
            factor = warmup_factor(epoch, step, steps, self.warmup_epochs)
            for group, rate in zip(groups, scheduled):
                group["lr"] = rate * factor

        try:
            yield at
        finally:
            for group, rate in zip(groups, scheduled):
                group["lr"] = rate

    def _validate(self) -> tuple[float, float]:
        """(loss, accuracy) on the validation rows: all of them here, or this rank's share summed over ranks."""
        model = self.model if self.group is None else self.model.module
        if self.group is not None:
            self.group.sync_buffers(model)
        targets, probabilities, val_loss = predict(model, self.val_loader, self.device, self.amp, self.precision)
        count = len(targets)
        if self.group is None:
            return val_loss, float((probabilities.argmax(axis=1) == targets).mean()) if count else float("nan")
        correct = float((probabilities.argmax(axis=1) == targets).sum()) if count else 0.0
        loss_sum, correct, count = self.group.sum([val_loss * count if count else 0.0, correct, count])
        return (loss_sum / count, correct / count) if count else (float("nan"), float("nan"))

    def _unfreeze(self) -> None:
        assert self.unfreeze is not None
        self.unfreeze()
        if self.group is not None:  # DDP syncs only the parameters that needed gradients when it was made
            self.model._remove_autograd_hooks()
            self.model = self.group.wrap(self.model.module, self.device)

    def _stop_reason(self, stop: bool, last: bool) -> str:
        if stop:
            return (f"early stop: validation loss did not improve for {self.patience} epochs "
                    "(nor validation accuracy)")
        return f"reached the epoch limit ({self.epochs})" if last else ""

    def run(self, state: LoopState) -> LoopState:
        finished = state.start_epoch - 1
        try:
            for epoch in range(state.start_epoch, self.epochs + 1):
                if self.unfreeze_after is not None and self.unfreeze is not None and epoch == self.unfreeze_after + 1:
                    self._unfreeze()
                self.progress.start(epoch, self.epochs, len(self.train_loader))
                result = None
                try:
                    started = time.perf_counter()
                    lr = float(self.optimizer.param_groups[0]["lr"])
                    train_loss, train_acc, seen, per_rank = self._train_one_epoch(epoch)
                    train_seconds = time.perf_counter() - started
                    if self.group is not None:  # the slowest rank sets the pace
                        train_seconds = self.group.maximum(train_seconds)
                    val_loss, val_acc = self._validate()
                    seconds = time.perf_counter() - started
                    result = EpochResult(epoch, train_loss, train_acc, val_loss, val_acc, lr, seconds,
                                         seen / train_seconds if train_seconds > 0 else 0.0, per_rank)
                finally:
                    self.progress.end(result)
                if self.scheduler is not None:
                    self.scheduler.step()
                state.history.append(result)
                self.on_epoch(result)
                finished = epoch
                improved = (val_acc, -val_loss) > (state.best_val_acc, -state.best_val_loss)
                better_acc = val_acc > state.best_val_acc
                if improved:
                    state.best_epoch, state.best_val_acc, state.best_val_loss = epoch, val_acc, val_loss
                    self.on_best(result)
                lower_loss = val_loss < state.lowest_val_loss * (1 - LOSS_MIN_DELTA)
                if lower_loss:
                    state.lowest_val_loss = val_loss
                state.epochs_without_gain = 0 if better_acc or lower_loss else state.epochs_without_gain + 1
                last = epoch == self.epochs
                stop = bool(self.patience) and state.epochs_without_gain >= self.patience  # None or 0: never
                state.stop_reason = self._stop_reason(stop, last)
                if epoch % self.checkpoint_every == 0 or last or stop:
                    self.save_checkpoint(epoch, self.state_dict(state, epoch))
                if stop:
                    self.progress.say(state.stop_reason)
                    break
        except KeyboardInterrupt:
            # The weights part-way through the epoch, filed under the last finished epoch: a resume redoes it.
            self.save_checkpoint(finished, self.state_dict(state, finished))
            raise
        return state
