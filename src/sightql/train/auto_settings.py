"""Settings chosen from the data when the user leaves them unset, and why.

``image_size``, ``resize``, ``epochs`` and ``patience`` left None, and ``lr='auto'``, are resolved on
the process holding the warehouse (rank 0 under torchrun) before the run's plan is shared, so every
rank trains with the same numbers. The resolved values replace the unset ones in the run's params
(a ``--resume`` reads them back and chooses nothing again) and ``params["extra"]["chosen"]`` says,
per setting, the value and why: ``{"image_size": {"value": 128, "why": "..."}}``.

The rules, and the data they were tuned on, are in docs/training.md ("Settings chosen from the data").
"""

from __future__ import annotations

import json
import math
import random
import statistics
import sys
from dataclasses import dataclass, replace
from typing import Any, Sequence

from sightql.errors import ImageError
from sightql.images.decode import ImageLimits, probe_image
from sightql.images.spec import InputSpec
from sightql.train.options import TrainOptions
from sightql.train.runs import RunStore

SAMPLE_IMAGES = 200  # training images whose headers are read to choose the size and resize mode
SAMPLE_CHUNK = 16  # images read at once while sampling
MIN_IMAGE_SIZE = 128  # a pretrained body's features of tiny images are much better upscaled (docs/training.md)
UPSCALE = 4  # small images are upscaled to about this many times their shorter side
PAD_ASPECT = 2.0  # beyond this median long/short ratio, squashing distorts too much: letterbox instead
STEP_BUDGET = 600  # optimiser steps a run aims at when epochs is unset
EPOCH_BOUNDS = (3, 30)
MIN_PATIENCE = 3


@dataclass(frozen=True)
class SizeSample:
    """The shorter side and aspect ratio (long / short) of a seeded sample of training images."""

    shorter_sides: list[int]
    aspect_ratios: list[float]

    @property
    def median_shorter(self) -> float:
        return float(statistics.median(self.shorter_sides))

    @property
    def median_aspect(self) -> float:
        return float(statistics.median(self.aspect_ratios))


def sample_sizes(rows: Sequence[Any], reader: Any, limits: ImageLimits, seed: int,
                 count: int = SAMPLE_IMAGES) -> SizeSample | None:
    """Header sizes (after EXIF orientation) of at most ``count`` training rows drawn with ``seed``, their
    bytes read through the run's own ``reader``; None when none could be read (training then says why)."""
    picked = random.Random(seed).sample(list(rows), min(count, len(rows)))
    shorter: list[int] = []
    aspect: list[float] = []
    for start in range(0, len(picked), SAMPLE_CHUNK):
        for data in reader.read([row.key for row in picked[start : start + SAMPLE_CHUNK]]):
            try:
                header = probe_image(data, limits)
            except ImageError:
                continue  # the training pass names the unreadable image in one sentence
            short, long = sorted((header.width, header.height))
            if short > 0:
                shorter.append(short)
                aspect.append(long / short)
    return SizeSample(shorter, aspect) if shorter else None


def choose_image_size(median_shorter: float, base_size: int) -> tuple[int, str]:
    """The base's size when the images are at least that big; else about ``UPSCALE`` times their shorter side (a
    multiple of 32, at least ``MIN_IMAGE_SIZE``), never beyond the base's size: a body pretrained at its own
    size describes tiny images far better upscaled (Animal-MNIST's 28 px, frozen-body probe: 0.944 at 64 px,
    0.970 at 128, 0.978 at 160), and each step up costs the square of the size in compute."""
    if median_shorter >= base_size:
        return base_size, f"median shorter side {median_shorter:g} px >= the base's {base_size} px"
    size = max(MIN_IMAGE_SIZE, math.ceil(UPSCALE * median_shorter / 32) * 32)
    size = min(size, base_size)
    return size, (f"median shorter side {median_shorter:g} px < the base's {base_size} px: about {UPSCALE}x it, a "
                  f"multiple of 32, at least {MIN_IMAGE_SIZE}, at most {base_size}")


def choose_resize(median_aspect: float) -> tuple[str, str]:
    """Never a centre crop: evidence may sit at the border. Squash unless the images are strongly elongated."""
    if median_aspect > PAD_ASPECT:
        return "pad", f"median aspect ratio {median_aspect:.2f}:1 > {PAD_ASPECT:g}:1: letterbox, aspect kept"
    return "squash", f"median aspect ratio {median_aspect:.2f}:1 <= {PAD_ASPECT:g}:1: the whole image, no centre crop"


def choose_epochs(train_images: int, batch_size: int, world_size: int = 1) -> tuple[int, str]:
    """About ``STEP_BUDGET`` optimiser steps, within ``EPOCH_BOUNDS``: small data sets get more epochs."""
    steps = max(1, math.ceil(train_images / (batch_size * world_size)))
    low, high = EPOCH_BOUNDS
    epochs = min(high, max(low, math.ceil(STEP_BUDGET / steps)))
    return epochs, (f"an upper bound: about {STEP_BUDGET} optimiser steps at {steps} a step per epoch "
                    f"({train_images} training images), within {low}..{high}")


def choose_patience(epochs: int) -> tuple[int, str]:
    """A third of the epoch bound, never under ``MIN_PATIENCE``: a plateau mid-schedule must not end the run."""
    patience = max(MIN_PATIENCE, math.ceil(epochs / 3))
    return patience, (f"a third of the {epochs}-epoch bound, at least {MIN_PATIENCE}: stop after {patience} "
                      "epochs without a lower validation loss or a better validation accuracy")


def choose_settings(options: TrainOptions, train_rows: Sequence[Any], reader: Any, limits: ImageLimits,
                    base_input: InputSpec, world_size: int = 1) -> tuple[TrainOptions, dict[str, dict[str, Any]]]:
    """``options`` with its unset image size, resize mode, epochs and patience chosen from the training rows,
    and what was chosen and why (settings the user gave are kept and not listed)."""
    chosen: dict[str, dict[str, Any]] = {}
    if options.image_size is None or options.resize is None:
        sample = sample_sizes(train_rows, reader, limits, options.seed)
        if sample is not None:
            seen = f" ({len(sample.shorter_sides)} training images sampled)"
            if options.image_size is None:
                size, why = choose_image_size(sample.median_shorter, min(base_input.height, base_input.width))
                chosen["image_size"] = {"value": size, "why": why + seen}
            if options.resize is None:
                mode, why = choose_resize(sample.median_aspect)
                chosen["resize"] = {"value": mode, "why": why + seen}
    if options.epochs is None:
        epochs, why = choose_epochs(len(train_rows), options.batch_size, world_size)
        chosen["epochs"] = {"value": epochs, "why": why}
    if options.patience is None:
        patience, why = choose_patience(options.epochs or chosen["epochs"]["value"])
        chosen["patience"] = {"value": patience, "why": why}
    return replace(options, **{name: choice["value"] for name, choice in chosen.items()}), chosen


def settle_learning_rate(store: RunStore, run_id: str, options: TrainOptions, base: Any, labels: list[str],
                         train_rows: Sequence[Any], reader: Any, spec: InputSpec, limits: ImageLimits, device: str,
                         show_progress: bool, cache: Any = None) -> TrainOptions:
    """``options`` with ``lr='auto'`` replaced by a short range test's pick (:mod:`sightql.train.lr_range`),
    recorded in the run's params; the base's weights, BatchNorm statistics and RNG are as they were.
    Any other ``lr`` is returned as it is."""
    if options.lr != "auto":
        return options
    from sightql.train.lr_range import choose_learning_rate

    lr, why = choose_learning_rate(base, options, labels, train_rows, reader, spec, limits, device, cache)
    options = replace(options, lr=lr)
    params = json.loads(store.get(run_id)["params"])
    params["lr"] = lr
    params.setdefault("extra", {}).setdefault("chosen", {})["lr"] = {"value": lr, "why": why}
    store.update_params(run_id, params)
    if show_progress:
        say_chosen({"lr": {"value": lr, "why": why}})
    return options


def describe(chosen: dict[str, dict[str, Any]]) -> list[str]:
    """One line per chosen setting: ``chosen from the data: epochs 14 (why)``."""
    return [f"chosen from the data: {name} {choice['value']} ({choice['why']})" for name, choice in chosen.items()]


def say_chosen(chosen: dict[str, dict[str, Any]]) -> None:
    for line in describe(chosen):
        print(line, file=sys.stderr)
