"""The epochs themselves, the same on every rank: model, loaders, optimiser, the loop, a resume."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from sightql.train import checkpoints, optimiser, speed
from sightql.train.bases import apply_freeze
from sightql.train.dataset import ImageRowsDataset, make_loader
from sightql.train.distributed import Group
from sightql.train.image_cache import DecodedImageCache, image_cache
from sightql.train.loop import Loop, LoopState, Progress
from sightql.train.options import TrainOptions
from sightql.train.probe import start_from_probe
from sightql.train.writer import RunWriter


def fit(options: TrainOptions, labels: list[str], base: Any, spec: Any, device: str, train_rows: list[Any],
        val_rows: list[Any], reader: Any, limits: Any, group: Group | None, writer: RunWriter | None,
        show_progress: bool, resume_from: tuple[int, Path, str] | None, probe: Any = None,
        cache: DecodedImageCache | None = None) -> Any:
    """The epochs, the same on every rank: returns the final LoopState; ``writer`` is None on ranks other than 0.
    ``probe``: a new run's epoch 0 (:mod:`sightql.train.probe`), its head already in ``base``; ``cache``: the
    decoded images the passes before the epochs kept (rank 0), else a new cache of ``image_cache_mb``.

    Made fast on a CPU as :mod:`sightql.train.speed` measured: glibc malloc kept from mmapping each step,
    channels-last, bfloat16 where the CPU has it, decoded images cached and the next batch prefetched."""
    with speed.fast_cpu(base.module.to(device), device):
        return _fit(options, labels, base, spec, device, train_rows, val_rows, reader, limits, group, writer,
                    show_progress, resume_from, probe, cache)


def _fit(options: TrainOptions, labels: list[str], base: Any, spec: Any, device: str, train_rows: list[Any],
         val_rows: list[Any], reader: Any, limits: Any, group: Group | None, writer: RunWriter | None,
         show_progress: bool, resume_from: tuple[int, Path, str] | None, probe: Any,
         cache: DecodedImageCache | None) -> Any:
    import torch

    class_index = {label: i for i, label in enumerate(labels)}
    unfrozen = resume_from is not None and options.unfreeze_after is not None and resume_from[0] >= options.unfreeze_after
    apply_freeze(base, "none" if unfrozen else options.freeze)  # settled before DDP sees which weights train
    model = base.module  # on ``device``, channels-last on a CPU (fit's speed.fast_cpu)
    if group is not None:
        model = group.wrap(model, device)

    threads = options.decode_threads
    cache = cache if cache is not None else image_cache(options.image_cache_mb)
    train_set = ImageRowsDataset(train_rows, reader, class_index, spec, limits, options.augment, options.seed, threads, cache)
    val_set = ImageRowsDataset(val_rows, reader, class_index, spec, limits, "none", options.seed, threads, cache)
    shard = None if group is None else (group.rank, group.world_size)
    train_loader = make_loader(train_set, options.batch_size, True, options.seed, shard)
    val_loader = make_loader(val_set, options.batch_size, False, options.seed, shard)

    optimizer = optimiser.optimizer(base, options)
    scaler = torch.amp.GradScaler("cuda", enabled=options.amp and device.startswith("cuda"))

    def ignore(*_: Any) -> None:
        return None

    loop = Loop(
        model=model, optimizer=optimizer, scheduler=optimiser.scheduler(optimizer, options.schedule, options.epochs),
        scaler=scaler, loss_fn=optimiser.loss_function(options, labels, [e.label for e in train_rows], device),
        train_loader=train_loader, val_loader=val_loader, train_dataset=train_set, device=device, amp=options.amp,
        epochs=options.epochs, seed=options.seed, patience=options.patience, checkpoint_every=options.checkpoint_every,
        save_checkpoint=writer.checkpoint if writer else ignore, on_epoch=writer.epoch if writer else ignore,
        on_best=(lambda result: writer.best(result, base.module)) if writer else ignore,
        progress=Progress(show_progress and writer is not None, writer.reporter if writer else None),
        unfreeze_after=options.unfreeze_after, unfreeze=lambda: apply_freeze(base, "none"), group=group,
        precision=speed.choose_precision(options.precision, device), channels_last=device.startswith("cpu"),
        warmup_epochs=options.warmup_epochs,
    )
    state = LoopState()
    if resume_from is not None:
        epoch, path, sha = resume_from
        state = loop.load_state_dict(checkpoints.load_checkpoint(path, sha))
        if writer is not None:
            writer.resumed(epoch)
            loop.progress.say(f"resuming {writer.run_id} at epoch {state.start_epoch}")
    elif probe is not None:
        state = start_from_probe(loop, probe)
    return loop.run(state)
