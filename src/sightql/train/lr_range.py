"""``lr='auto'``: a short learning-rate range test (Smith 2015; fastai's ``lr_find``), then everything put back.

The sweep trains the run's own model on shuffled training batches while the head's learning rate
grows exponentially from ``SWEEP_START`` to ``SWEEP_END`` (the body keeps its ``backbone_lr_factor``
share), records an exponentially smoothed loss, and stops when that loss passes ``DIVERGENCE`` times
its lowest or stops being finite. Its cost is bounded: at most ``MAX_STEPS`` steps and one epoch of
images. The rate is ``BELOW_DIVERGENCE`` times below the one at which the loss diverged (the sweep's
last rate when it never did), clamped to ``SAFE_BAND``: the test is a guard that lowers the rate for
a model and data set that cannot bear the band's ceiling. A data set too small for ``MIN_STEPS``
batches of at least 2 images gets ``FALLBACK_LR``, and says so.

Why the divergence and not the shape of the falling loss (fastai's "valley", or a tenth of the rate at
the lowest loss): the sweep starts from the probe's head, fitted on the frozen body's evaluation-mode
features, and trains in training mode, where BatchNorm's batch statistics change those features; the
loss starts high and bounces (textile: 1.6 to 3.5 at rates up to 1e-3), and a sweep of one epoch has
about 6 steps a decade. On the benchmark's three textile splits the valley sat at 0.0115, 0.0015 and
0.0015 and the lowest smoothed loss at 0.131, 0.131 and 0.017, while the divergence came at 0.44, 0.44
and 1.0 (docs/training.md). The run given 1.5e-3 stayed near the probe; 3e-3 beat it by 19-21 points.

The weights, BatchNorm running statistics, ``requires_grad`` flags, train/eval mode and the torch RNG
are restored afterwards, so the run starts from exactly the head it had (the probe's, when there is one).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import Any, Sequence

from sightql.images.decode import ImageLimits
from sightql.images.spec import InputSpec
from sightql.train import checkpoints, optimiser
from sightql.train.bases import apply_freeze
from sightql.train.dataset import ImageRowsDataset, make_loader
from sightql.train.loop import keep_frozen_norms_in_eval
from sightql.train.options import TrainOptions
from sightql.train.speed import autocast

SWEEP_START, SWEEP_END = 1e-6, 1.0
MAX_STEPS = 50
MIN_STEPS = 12
SMOOTHING = 0.8  # exponential moving average of the loss, bias-corrected; a short sweep needs a short memory
DIVERGENCE = 4.0
SAFE_BAND = (1e-4, 3e-3)
BELOW_DIVERGENCE = 100  # the rate picked is the one at which the loss diverged, divided by this
FALLBACK_LR = 1e-3


@dataclass(frozen=True)
class Sweep:
    """One range test: the learning rates tried, the raw and smoothed losses, the batch size used."""

    lrs: list[float]
    losses: list[float]
    smoothed: list[float]
    batch_size: int
    diverged_at: float | None = None  # the rate at which the sweep stopped on a diverging loss; None: it never did


def sweep_plan(train_images: int, batch_size: int) -> tuple[int, int] | None:
    """(batch size, steps) for the sweep: full batches of the run's size, or smaller ones so a small data
    set still gives ``MIN_STEPS``; None when even batches of 2 cannot."""
    batch = min(batch_size, train_images // MIN_STEPS)
    if batch < 2:
        return None
    return batch, min(MAX_STEPS, train_images // batch)


def run_sweep(base: Any, options: TrainOptions, labels: list[str], train_rows: Sequence[Any], reader: Any,
              spec: InputSpec, limits: ImageLimits, device: str, batch_size: int, steps: int, cache: Any = None) -> Sweep:
    """Train ``steps`` batches at exponentially growing rates and record the loss; the caller restores the model."""
    import torch

    class_index = {label: i for i, label in enumerate(labels)}
    dataset = ImageRowsDataset(train_rows, reader, class_index, spec, limits, options.augment, options.seed,
                               options.decode_threads, cache)
    dataset.set_epoch(0)  # training epochs are 1..N: the sweep's augmentation draws are its own
    loader = make_loader(dataset, batch_size, True, options.seed)
    model = base.module.to(device)
    apply_freeze(base, options.freeze)
    model.train()
    keep_frozen_norms_in_eval(model)
    optimizer = optimiser.optimizer(base, replace(options, lr=SWEEP_START))
    shares = [group["lr"] / SWEEP_START for group in optimizer.param_groups]  # the head/body ratio, kept
    loss_fn = optimiser.loss_function(options, labels, [e.label for e in train_rows], device)
    use_amp = options.amp and device.startswith("cuda")
    scaler = torch.amp.GradScaler("cuda", enabled=use_amp)
    growth = (SWEEP_END / SWEEP_START) ** (1 / max(steps - 1, 1))
    lrs: list[float] = []
    losses: list[float] = []
    smoothed: list[float] = []
    average = 0.0
    diverged_at = None
    for step, (images, targets) in enumerate(loader):
        if step >= steps:
            break
        lr = SWEEP_START * growth**step
        for group, share in zip(optimizer.param_groups, shares):
            group["lr"] = lr * share
        images, targets = images.to(device), targets.to(device)
        optimizer.zero_grad(set_to_none=True)
        with autocast(device, options.amp, "fp32"):
            loss = loss_fn(model(images).float(), targets)
        value = float(loss.detach())
        if not math.isfinite(value):
            diverged_at = lr
            break
        average = SMOOTHING * average + (1 - SMOOTHING) * value
        lrs.append(lr)
        losses.append(value)
        smoothed.append(average / (1 - SMOOTHING ** (step + 1)))
        if smoothed[-1] > DIVERGENCE * min(smoothed):
            diverged_at = lr
            break
        scaler.scale(loss).backward()
        scaler.step(optimizer)
        scaler.update()
    return Sweep(lrs, losses, smoothed, batch_size, diverged_at)


def pick(sweep: Sweep) -> tuple[float, str]:
    """The rate from a sweep, clamped to ``SAFE_BAND``, and a sentence saying how it was found."""
    low, high = SAFE_BAND
    if len(sweep.smoothed) < 3:
        return FALLBACK_LR, (f"the range test diverged after {len(sweep.smoothed)} step(s); the default "
                             f"{FALLBACK_LR:g}")
    edge = sweep.diverged_at if sweep.diverged_at is not None else sweep.lrs[-1]
    seen = "diverged at" if sweep.diverged_at is not None else "did not diverge up to"
    found = edge / BELOW_DIVERGENCE
    lr = min(high, max(low, found))
    clamped = "" if lr == found else f", clamped to the safe band {low:g}..{high:g}"
    return lr, (f"range test: {len(sweep.lrs)} steps of {sweep.batch_size} images from {SWEEP_START:g}, the loss "
                f"{seen} {edge:.2g}, 1/{BELOW_DIVERGENCE} of it {found:.2g}{clamped}; the body learns at "
                f"{lr:.2g} x backbone_lr_factor")


def choose_learning_rate(base: Any, options: TrainOptions, labels: list[str], train_rows: Sequence[Any],
                         reader: Any, spec: InputSpec, limits: ImageLimits, device: str,
                         cache: Any = None) -> tuple[float, str]:
    """The head's learning rate for this run and why; the model and RNG are left exactly as they were.
    ``cache``: the run's decoded-image cache (the sweep reads through it)."""
    import torch

    plan = sweep_plan(len(train_rows), options.batch_size)
    if plan is None:
        return FALLBACK_LR, (f"{len(train_rows)} training images are too few for a range test of {MIN_STEPS} "
                             f"batches; the default {FALLBACK_LR:g}")
    module = base.module
    weights = checkpoints.model_state(module)
    trainable = [p.requires_grad for p in module.parameters()]
    modes = [m.training for m in module.modules()]
    rng = checkpoints.rng_state()
    try:
        sweep = run_sweep(base, options, labels, train_rows, reader, spec, limits, device, *plan, cache=cache)
    finally:
        with torch.no_grad():
            module.load_state_dict(weights)
        for parameter, flag in zip(module.parameters(), trainable):
            parameter.requires_grad = flag
        for layer, mode in zip(module.modules(), modes):
            layer.training = mode
        checkpoints.restore_rng(rng)
    return pick(sweep)
