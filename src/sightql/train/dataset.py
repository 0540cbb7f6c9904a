"""A torch Dataset over table rows or stage files, preprocessed exactly as inference does.

Each row goes through :func:`sightql.images.preprocess.create_transform` built from the model
card's ``InputSpec``: the same factory that makes inference's transform, so training and serving
never differ. ``is_training=True`` adds augmentation on the decoded image, before the shared
resize/crop/normalise.

Loading design: a DuckDB connection must not cross processes, so the DataLoader runs with
``num_workers=0`` and the dataset's ``__getitems__`` reads one batch's bytes in a few small
queries on the main process, then decodes the batch in the batch engine's worker pool (Pillow
releases the GIL while decoding and resizing), at most ``threads`` images at once. The loader reads and
queues the next batch while the model runs this one (:class:`PrefetchingLoader`), so memory stays at two
batches of bytes, plus the decoded images kept between epochs within ``image_cache_mb``
(:mod:`sightql.train.image_cache`).
A table of FILE values reads only the batch's FILE values by rowid; each file's bytes are read in the
pool task that decodes them, within the process's read budget, so memory stays at ``threads`` files.
A file gone or changed since planning is left out of its batch with a warning (the run goes on); a
batch none of whose files can be read fails the run with one sentence (the stage itself is gone).
"""

from __future__ import annotations

import math
import os
import warnings
from typing import Any, Callable, Sequence

import numpy as np

from sightql.engine import map_ahead
from sightql.errors import ImageError, SightQLError, StageError
from sightql.images.decode import ImageLimits
from sightql.images.preprocess import create_transform
from sightql.images.spec import InputSpec
from sightql.stages.files import FileRef
from sightql.train.image_cache import DecodedImageCache
from sightql.train.sources import ByteReader, Example, FileTableReader


class ImageRowsDataset:
    """``dataset[i] -> (CHW float tensor, class index)``; ``__getitems__`` reads and decodes a batch at once."""

    def __init__(
        self,
        examples: Sequence[Example],
        reader: ByteReader,
        class_index: dict[str, int],
        spec: InputSpec,
        limits: ImageLimits,
        augment: str = "none",
        seed: int = 0,
        threads: int = 0,
        cache: DecodedImageCache | None = None,
    ):
        self.examples = list(examples)
        self.cache = cache  # decoded images kept between epochs (see sightql.train.image_cache)
        self.reader = reader
        self.targets = [class_index[e.label] for e in self.examples]
        self.transform = create_transform(spec, limits, is_training=augment != "none", augment=augment)
        self.augment = augment
        self.seed = seed
        self.epoch = 0
        self.threads = threads or min(8, os.cpu_count() or 1)

    def __len__(self) -> int:
        return len(self.examples)

    def set_epoch(self, epoch: int) -> None:
        """Augmentations are seeded by (seed, epoch, index): reproducible, different every epoch."""
        self.epoch = epoch

    def _prepare(self, index: int, data: bytes | None, cached: Any = None) -> np.ndarray:
        """The row's array from its bytes, or from its decoded image kept in the cache (``cached``)."""
        rng = np.random.default_rng([self.seed, self.epoch, index]) if self.augment != "none" else None
        try:
            image = cached
            if image is None:
                image = self.transform.decode(data)
                if self.cache is not None:
                    self.cache.put(self.examples[index].key, image)
            return self.transform.finish(image, rng)
        except ImageError as exc:
            example = self.examples[index]
            raise SightQLError(
                f"image {example.name} in {self.reader.description} cannot be used ({exc}); remove or replace it and train again"
            ) from None

    def _prepare_file(self, index: int, ref: FileRef | None) -> np.ndarray | None:
        """The row's array, its file read within the read budget; None (with a warning) when the file is
        gone or changed since planning. An image that does not decode fails the run, as a BLOB's does."""
        assert isinstance(self.reader, FileTableReader)
        try:
            return self.reader.reads.use(ref, lambda data: self._prepare(index, data))
        except StageError as exc:
            warnings.warn(f"{self.examples[index].name} is left out of this batch: {exc}", stacklevel=2)
            return None

    def submit(self, indices: Sequence[int]) -> Callable[[], list[tuple[Any, int]]]:
        """Read the batch's bytes (only of rows the cache lacks) and start decoding it in the pool now;
        the returned function waits for the batch (raising a row's error then), so the next batch can
        decode while the model runs this one (:class:`PrefetchingLoader`)."""
        cached = [self.cache.get(self.examples[i].key) for i in indices] if self.cache is not None else [None] * len(indices)
        missing = [i for i, image in zip(indices, cached) if image is None]
        keys = [self.examples[i].key for i in missing]
        if isinstance(self.reader, FileTableReader):
            refs = dict(zip(missing, self.reader.refs(keys) if keys else []))
            tasks = [(i, image, None) if image is not None else (i, None, refs[i]) for i, image in zip(indices, cached)]
            pending = map_ahead(lambda task: self._prepare_task(*task), tasks, self.threads)
        else:
            blobs = dict(zip(missing, self.reader.read(keys) if keys else []))
            tasks = [(i, image, blobs.get(i)) for i, image in zip(indices, cached)]
            pending = map_ahead(lambda task: self._prepare(task[0], task[2], task[1]), tasks, self.threads)
        return lambda: self._batch(indices, pending())

    def _prepare_task(self, index: int, image: Any, ref: FileRef | None) -> np.ndarray | None:
        return self._prepare(index, None, image) if image is not None else self._prepare_file(index, ref)

    def _batch(self, indices: Sequence[int], arrays: list[np.ndarray | None]) -> list[tuple[Any, int]]:
        import torch

        if indices and all(a is None for a in arrays):
            raise SightQLError(
                f"no file of a batch of {self.reader.description} could be read (first: "
                f"{self.examples[indices[0]].name}); check its stage, then train again"
            )
        return [(torch.from_numpy(a), self.targets[i]) for i, a in zip(indices, arrays) if a is not None]

    def __getitems__(self, indices: Sequence[int]) -> list[tuple[Any, int]]:
        return self.submit(indices)()

    def __getitem__(self, index: int) -> tuple[Any, int]:
        return self.__getitems__([index])[0]


def shard_sampler(view: Any, rank: int, world_size: int, shuffle: bool, seed: int) -> Any:
    """torch's DistributedSampler (seeded shuffle, ``set_epoch``) without its padding: rank ``r`` gets
    positions ``r, r + world_size, ...`` of the epoch's order, so each row is seen exactly once per epoch
    and shards differ by at most one row (DDP's Join evens out the last step)."""
    from torch.utils.data.distributed import DistributedSampler

    class _ShardSampler(DistributedSampler):
        def __iter__(self) -> Any:
            if self.shuffle:
                import torch

                generator = torch.Generator().manual_seed(self.seed + self.epoch)
                order = torch.randperm(len(self.dataset), generator=generator).tolist()  # type: ignore[arg-type]
            else:
                order = list(range(len(self.dataset)))  # type: ignore[arg-type]
            return iter(order[self.rank :: self.num_replicas])

        def __len__(self) -> int:
            return len(range(self.rank, len(self.dataset), self.num_replicas))  # type: ignore[arg-type]

    return _ShardSampler(view, num_replicas=world_size, rank=rank, shuffle=shuffle, seed=seed)


class PrefetchingLoader:
    """A DataLoader whose next batch is read and decoding while the caller uses the current one: one
    batch ahead, no more. The DataLoader still draws the order (its generator, sampler and ``set_epoch``
    work as before), so the batches and their order are the same as without prefetching; a row's error
    is raised, with its sentence, when its batch is taken."""

    def __init__(self, loader: Any):
        self.loader = loader  # its dataset's __getitems__ returns ImageRowsDataset.submit's waiter
        self.generator = loader.generator
        self.sampler = loader.sampler

    def __len__(self) -> int:
        return len(self.loader)

    def __iter__(self) -> Any:
        from torch.utils.data import default_collate

        batches = iter(self.loader)
        pending = next(batches, None)
        while pending is not None:
            following = next(batches, None)  # reads the next batch's bytes and queues its decoding now
            yield default_collate(pending())
            pending = following


def make_loader(dataset: ImageRowsDataset, batch_size: int, shuffle: bool, seed: int, shard: tuple[int, int] | None = None,
                prefetch: bool = True) -> Any:
    """A DataLoader with ``num_workers=0`` (see the module note); with ``shard=(rank, world_size)``
    under torchrun, this rank's share of the rows (:func:`shard_sampler`); with ``prefetch``, a
    :class:`PrefetchingLoader` over it."""
    import torch
    from torch.utils.data import DataLoader, Dataset

    class _TorchView(Dataset):  # torch's Dataset base, delegating to the batch reader
        def __len__(self) -> int:
            return len(dataset)

        def __getitem__(self, index: int) -> Any:
            return dataset[index]

        def __getitems__(self, indices: Sequence[int]) -> Any:
            return dataset.submit(indices) if prefetch else dataset.__getitems__(indices)

    view = _TorchView()
    sampler = None
    if shard is not None:
        sampler = shard_sampler(view, shard[0], shard[1], shuffle, seed)
    generator = torch.Generator().manual_seed(seed)
    loader = DataLoader(
        view, batch_size=batch_size, shuffle=shuffle if sampler is None else False, sampler=sampler,
        num_workers=0, generator=generator, drop_last=False, collate_fn=_waiter if prefetch else None,
    )
    return PrefetchingLoader(loader) if prefetch else loader


def _waiter(pending: Any) -> Any:
    """The DataLoader's collate under prefetching: the batch's waiter, collated once it is done."""
    return pending


def steps_per_epoch(size: int, batch_size: int) -> int:
    return math.ceil(size / batch_size)
