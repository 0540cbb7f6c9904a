"""The probe epoch (epoch 0): a linear probe on the frozen body, so fine-tuning is never worse than one.

Before fine-tuning a new run makes one pass of the frozen body over the training and validation
rows (evaluation mode, no augmentation, the run's own input spec, through the loop's own dataset
and loader) and keeps only what enters the new head: an n x d float32 matrix per split, captured
by a forward hook on the head, so it works for any base whose head is a Linear layer. On those
features it fits the head as a multinomial logistic regression with an L2 penalty (full-batch
L-BFGS on centred, scaled features, deterministic), picks the penalty from a small grid by
validation loss, folds the centring and scaling back into the Linear layer's weight and bias, and
sets the model's head to it. The figures become epoch 0 of the run: logged, a candidate for the
best epoch, checkpointed, so fine-tuning starts from the probe and a worse fine-tune leaves the
probe head registered.
"""

from __future__ import annotations

import contextlib
import time
from dataclasses import dataclass
from typing import Any, Callable, Iterator

from sightql.train.dataset import ImageRowsDataset, make_loader
from sightql.train.loop import EpochResult, Loop, LoopState
from sightql.train.optimiser import class_weights
from sightql.train.options import TrainOptions
from sightql.train.speed import autocast

# L2 penalties tried, strongest first, each fit starting from the previous one's weights, until the
# validation loss has risen twice in a row. The loss is the mean cross-entropy plus penalty / 2 * |W|^2 on
# centred features divided by one common scale (their root-mean-square spread): the penalty then means the
# same for every base, and the features keep their relative sizes (per-feature standardisation, measured on
# textile, gave a worse probe: validation loss 0.71 against 0.46).
PENALTIES = (3.0, 1.0, 0.3, 0.1, 0.03, 0.01, 0.003, 0.001, 0.0003, 0.0001)
MAX_ITERATIONS = 100
SMALL_FIT = 4_000_000  # n x d below which the fit runs on one thread: parallel overhead outweighs tiny products
NOT_BEATEN = "fine-tuning did not beat the probe; the probe head (epoch 0) is registered"


@dataclass
class Features:
    """What enters the head for each row of a split (n x d float32, CPU) and the rows' class indices."""

    values: Any
    targets: Any


def head_inputs(module: Any, head: Any, loader: Any, device: str, amp: bool) -> Features:
    """One pass of ``module`` in evaluation mode over ``loader``, keeping only the input of ``head``."""
    import torch

    captured: list[Any] = []
    targets: list[Any] = []
    hook = head.register_forward_pre_hook(lambda _layer, args: captured.append(args[0].detach().float().cpu()))
    was_training = module.training
    module.eval()
    try:
        with torch.no_grad():  # not inference_mode: the features are later used beside tensors that need gradients
            for images, labels in loader:
                with autocast(device, amp, "fp32"):
                    module(images.to(device, non_blocking=True))
                targets.append(labels)
    finally:
        hook.remove()
        module.train(was_training)
    if not captured:
        return Features(torch.zeros(0, head.in_features), torch.zeros(0, dtype=torch.int64))
    return Features(torch.cat([c.flatten(1) for c in captured]), torch.cat(targets).to(torch.int64))


def _fit(z: Any, y: Any, classes: int, penalty: float, weights: Any, start: tuple[Any, Any] | None) -> tuple[Any, Any]:
    """Softmax regression on centred, scaled ``z``: (W, b) minimising weighted mean CE + penalty / 2 * |W|^2."""
    import torch

    w = (start[0].clone() if start else torch.zeros(classes, z.shape[1])).requires_grad_(True)
    b = (start[1].clone() if start else torch.zeros(classes)).requires_grad_(True)
    solver = torch.optim.LBFGS([w, b], lr=1.0, max_iter=MAX_ITERATIONS, history_size=20,
                               tolerance_grad=1e-6, tolerance_change=1e-10, line_search_fn="strong_wolfe")

    def objective() -> Any:
        solver.zero_grad()
        loss = torch.nn.functional.cross_entropy(z @ w.T + b, y, weight=weights) + 0.5 * penalty * (w * w).sum()
        loss.backward()
        return loss

    solver.step(objective)
    return w.detach(), b.detach()


def _scores(z: Any, y: Any, w: Any, b: Any, weights: Any = None) -> tuple[float, float]:
    """(mean cross-entropy, accuracy) of the head (w, b) on centred, scaled ``z``."""
    import torch

    if len(y) == 0:
        return float("nan"), float("nan")
    logits = z @ w.T + b
    loss = torch.nn.functional.cross_entropy(logits, y, weight=weights)
    return float(loss), float((logits.argmax(dim=1) == y).double().mean())


def fit_head(train: Features, val: Features, classes: int, weights: list[float] | None = None
             ) -> tuple[Any, Any, float]:
    """The head's (weight, bias) on raw features, and the penalty chosen by validation loss."""
    import torch

    mean = train.values.mean(dim=0)
    scale = float(train.values.var(dim=0, unbiased=False).mean().sqrt()) or 1.0
    z_train, z_val = (train.values - mean) / scale, (val.values - mean) / scale
    loss_weights = torch.tensor(weights, dtype=torch.float32) if weights else None
    best: tuple[float, float, Any, Any] | None = None
    start, last_loss, rises = None, float("inf"), 0
    with _threads(1 if z_train.numel() < SMALL_FIT else torch.get_num_threads()):
        for penalty in PENALTIES:
            start = _fit(z_train, train.targets, classes, penalty, loss_weights, start)
            val_loss = _scores(z_val, val.targets, *start)[0]
            if best is None or val_loss < best[0]:  # NaN (no validation row) keeps the first
                best = (val_loss, penalty, *start)
            rises = rises + 1 if val_loss > last_loss else 0
            last_loss = val_loss
            if rises == 2:
                break
    assert best is not None
    _, penalty, w, b = best
    weight = w / scale  # logits = ((x - mean) / scale) W^T + b = x (W / scale)^T + (b - (W / scale) mean)
    return weight, b - weight @ mean, penalty


@contextlib.contextmanager
def _threads(count: int) -> Iterator[None]:
    """torch's intra-op threads set to ``count`` for the block, then put back."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(count)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def probe_epoch(base: Any, spec: Any, train_rows: list[Any], val_rows: list[Any], reader: Any, labels: list[str],
                limits: Any, options: TrainOptions, device: str, say: Callable[[str], None],
                cache: Any = None) -> EpochResult:
    """Fit ``base``'s head on the frozen body's features and set it; returns the run's epoch 0.
    ``cache``: the run's decoded-image cache, filled by this pass for the epochs."""
    import torch

    started = time.perf_counter()
    class_index = {label: i for i, label in enumerate(labels)}
    module = base.module.to(device)
    features = []
    for rows in (train_rows, val_rows):
        dataset = ImageRowsDataset(rows, reader, class_index, spec, limits, "none", options.seed, options.decode_threads,
                                   cache)
        loader = make_loader(dataset, options.batch_size, False, options.seed)
        features.append(head_inputs(module, base.head, loader, device, options.amp))
    train, val = features
    pass_seconds = time.perf_counter() - started
    weights = class_weights(options.class_weights, labels, [e.label for e in train_rows])
    weight, bias, penalty = fit_head(train, val, len(labels), weights)
    with torch.no_grad():
        base.head.weight.copy_(weight.to(base.head.weight))
        base.head.bias.copy_(bias.to(base.head.bias))
    loss_weights = torch.tensor(weights, dtype=torch.float32) if weights else None  # the loop's training loss
    train_loss, train_acc = _scores(train.values, train.targets, weight, bias, loss_weights)  # the folded head
    val_loss, val_acc = _scores(val.values, val.targets, weight, bias)
    seen = len(train.targets) + len(val.targets)
    result = EpochResult(0, train_loss, train_acc, val_loss, val_acc, 0.0, time.perf_counter() - started,
                         seen / pass_seconds if pass_seconds > 0 else 0.0)
    say(f"epoch 0 (probe, L2 penalty {penalty:g}): train acc {train_acc:.3f} | val loss {val_loss:.4f} "
        f"val acc {val_acc:.3f} | {result.images_per_s:.1f} img/s over {seen} image(s)")
    return result


def start_from_probe(loop: Loop, probe: EpochResult) -> LoopState:
    """The loop's state after epoch 0, the same on every rank; on rank 0 the epoch is logged, kept as the
    best so far (its weights saved) and checkpointed, so a run stopped during epoch 1 resumes at epoch 1."""
    state = LoopState(best_epoch=0, best_val_acc=probe.val_acc, best_val_loss=probe.val_loss,
                      lowest_val_loss=probe.val_loss, history=[probe])
    loop.progress.end(probe)  # the progress file's history gets epoch 0 too
    loop.on_epoch(probe)
    loop.on_best(probe)
    loop.save_checkpoint(0, loop.state_dict(state, 0))
    return state


def probe_from_plan(row: dict[str, Any] | None) -> EpochResult | None:
    """Epoch 0 as rank 0's plan carries it (``EpochResult.row()``), for the other ranks' loop state."""
    return None if row is None else EpochResult(**row)


def summary(best_epoch: int | None, probe: EpochResult | dict[str, Any] | None, stop_reason: str,
            registered: bool) -> str:
    """Why the run ended, and when the probe stayed best, that its head is the model."""
    parts = [stop_reason] if stop_reason else []
    if probe is not None and best_epoch == 0:
        parts.append(NOT_BEATEN if registered else NOT_BEATEN.replace("is registered", "is the run's best epoch"))
    return "; ".join(parts)
