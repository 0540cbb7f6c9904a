"""A torch Dataset over table rows or stage files, preprocessed exactly as inference does.

Each row goes through :func:`sightql.images.preprocess.create_transform` built from the model
card's ``InputSpec``: the same factory that makes inference's transform, so training and serving
never differ. ``is_training=True`` adds augmentation on the decoded image, before the shared
resize/crop/normalise.

Loading design: a DuckDB connection must not cross processes, so the DataLoader runs with
``num_workers=0`` and the dataset's ``__getitems__`` reads one batch's bytes in a few small
queries on the main process, then decodes the batch in the batch engine's worker pool (Pillow
releases the GIL while decoding and resizing), at most ``threads`` images at once. Memory stays at one batch of bytes.
A table of FILE values reads only the batch's FILE values by rowid; each file's bytes are read in the
pool task that decodes them, within the process's read budget, so memory stays at ``threads`` files.
A file gone or changed since planning is left out of its batch with a warning (the run goes on); a
batch none of whose files can be read fails the run with one sentence (the stage itself is gone).
"""

from __future__ import annotations

import math
import os
import warnings
from typing import Any, Sequence

import numpy as np

from sightql.engine import parallel_map
from sightql.errors import ImageError, SightQLError, StageError
from sightql.images.decode import ImageLimits
from sightql.images.preprocess import create_transform
from sightql.images.spec import InputSpec
from sightql.stages.files import FileRef
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
    ):
        self.examples = list(examples)
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

    def _prepare(self, index: int, data: bytes) -> np.ndarray:
        rng = np.random.default_rng([self.seed, self.epoch, index]) if self.augment != "none" else None
        try:
            return self.transform(data, rng)
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

    def __getitems__(self, indices: Sequence[int]) -> list[tuple[Any, int]]:
        import torch

        keys = [self.examples[i].key for i in indices]
        if isinstance(self.reader, FileTableReader):
            refs = self.reader.refs(keys)
            arrays = parallel_map(lambda pair: self._prepare_file(*pair), list(zip(indices, refs)), self.threads)
            if indices and all(a is None for a in arrays):
                raise SightQLError(
                    f"no file of a batch of {self.reader.description} could be read (first: "
                    f"{self.examples[indices[0]].name}); check its stage, then train again"
                )
        else:
            blobs = self.reader.read(keys)
            arrays = parallel_map(lambda pair: self._prepare(*pair), list(zip(indices, blobs)), self.threads)
        return [(torch.from_numpy(a), self.targets[i]) for i, a in zip(indices, arrays) if a is not None]

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


def make_loader(dataset: ImageRowsDataset, batch_size: int, shuffle: bool, seed: int, shard: tuple[int, int] | None = None) -> Any:
    """A DataLoader with ``num_workers=0`` (see the module note); with ``shard=(rank, world_size)``
    under torchrun, this rank's share of the rows (:func:`shard_sampler`)."""
    import torch
    from torch.utils.data import DataLoader, Dataset

    class _TorchView(Dataset):  # torch's Dataset base, delegating to the batch reader
        def __len__(self) -> int:
            return len(dataset)

        def __getitem__(self, index: int) -> Any:
            return dataset[index]

        def __getitems__(self, indices: Sequence[int]) -> Any:
            return dataset.__getitems__(indices)

    view = _TorchView()
    sampler = None
    if shard is not None:
        sampler = shard_sampler(view, shard[0], shard[1], shuffle, seed)
    generator = torch.Generator().manual_seed(seed)
    return DataLoader(
        view, batch_size=batch_size, shuffle=shuffle if sampler is None else False, sampler=sampler,
        num_workers=0, generator=generator, drop_last=False,
    )


def steps_per_epoch(size: int, batch_size: int) -> int:
    return math.ceil(size / batch_size)
