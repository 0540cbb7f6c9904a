"""The two torch datasets over a snapshot of rows, and the seeded split that keeps copies on one side.

Both hold :class:`sightql.torch.rows.Rows` (keys, names, labels, content hashes and a reader that needs no
warehouse) and :class:`sightql.torch.items.Items` (the transforms): they pickle, and any process, a
DataLoader worker forked or spawned included, reads its rows itself.

* :class:`ImageDataset` (map-style): ``ds[i]``; a DataLoader asks for a batch at once
  (``__getitems__``), which in the main process (``num_workers=0``) decodes in the engine's thread pool
  and in a worker decodes in that worker. Shuffling is the DataLoader's (``shuffle=True``); under
  torchrun, torch's ``DistributedSampler`` shards it.
* :class:`ImageIterableDataset`: each epoch's order is a permutation seeded by ``(seed, epoch)``; each
  DataLoader worker takes every ``num_workers``-th row of it (``get_worker_info()``), so an epoch
  yields each row exactly once however many workers read it.

A bad image (bytes that do not decode, a file gone or changed since the dataset was made) raises
:class:`~sightql.errors.ImageError` or :class:`~sightql.errors.StageError` with one sentence naming the
row and its source; a DataLoader re-raises it, same type and sentence, in the main process. A map-style
dataset always does: ``ds[i]`` and the batch asked for must hold row ``i``. The iterable dataset, made
with ``on_error='skip'``, leaves such a row out instead, with a warning naming it, and adds its name to
``skipped`` in the process that read it (a worker's warnings go to that worker's stderr): the epoch
yields every other row, once.
"""

from __future__ import annotations

import copy
import warnings
from typing import Any, Iterator, Literal, Sequence

import numpy as np
from torch.utils.data import Dataset, IterableDataset, get_worker_info

from sightql.engine import parallel_map
from sightql.errors import ConfigError, ImageError, StageError
from sightql.models.card import ModelCard
from sightql.torch.items import Items
from sightql.torch.rows import Rows
from sightql.train.sources import Example
from sightql.train.splits import split_by_content

OnError = Literal["raise", "skip"]
ON_ERRORS = ("raise", "skip")
_SKIPPED = object()  # what _load gives for a row left out


class RowsDataset:
    """What both datasets share: the rows, the classes, the transforms and the error policy."""

    def __init__(self, rows: Rows, items: Items, card: ModelCard, classes: Sequence[str] | None):
        self.rows = rows
        self.items = items
        self.card = card  # the model card whose input spec made the tensors
        self.classes: list[str] | None = list(classes) if classes is not None else None
        self.class_to_idx = {c: i for i, c in enumerate(self.classes)} if self.classes is not None else None
        self.epoch = 0
        self.skipped: list[str] = []  # rows left out by this process (an iterable dataset's on_error='skip')
        self.targets = self._targets()

    def _targets(self) -> list[int] | None:
        if self.class_to_idx is None:
            return None
        unknown = sorted(set(self.rows.labels) - set(self.class_to_idx))
        if unknown:
            raise ConfigError(f"label(s) {', '.join(map(repr, unknown[:5]))} of {self.rows.description} are not in "
                              f"classes={self.classes}; add them to classes= or leave classes= out")
        return [self.class_to_idx[label] for label in self.rows.labels]

    @property
    def names(self) -> list[str]:
        """Each row's name (its relative path, or 'row N'), in the dataset's order."""
        return list(self.rows.names)

    @property
    def source(self) -> str:
        return self.rows.description

    def __len__(self) -> int:
        return len(self.rows)

    def set_epoch(self, epoch: int) -> None:
        """Call before each epoch (as with torch's DistributedSampler): the iterable dataset's order and the
        augmentation (``train=True``) are drawn from ``(seed, epoch)``, so each epoch differs, reproducibly.
        Workers see it when the DataLoader starts them, each epoch (``persistent_workers=False``, torch's default)."""
        self.epoch = int(epoch)

    def derived(self, rows: Rows, items: Items) -> Any:
        """A dataset of the same kind and classes over ``rows`` (a split's side)."""
        twin = copy.copy(self)
        twin.rows, twin.items, twin.skipped = rows, items, []
        twin.targets = twin._targets()
        return twin

    def _load(self, index: int, skip: bool) -> Any:
        """Row ``index`` as ``(tensor, class index)``, or the tensor alone without labels; ``_SKIPPED`` when
        ``skip`` and the row cannot be used."""
        rows = self.rows
        try:
            tensor = rows.reader.use(rows.keys[index], lambda data: self.items.make(data, rows.positions[index], self.epoch))
        except (ImageError, StageError) as exc:
            problem = f"image {rows.names[index]} in {rows.description} cannot be used ({exc})"
            if not skip:
                kind = ImageError if isinstance(exc, ImageError) else StageError
                raise kind(f"{problem}; remove or replace it (or leave such rows out: "
                           "sightql.torch.iterable_dataset(..., on_error='skip'))") from None
            warnings.warn(f"{problem}; it is left out (on_error='skip')", stacklevel=3)
            self.skipped.append(rows.names[index])
            return _SKIPPED
        return tensor if self.targets is None else (tensor, self.targets[index])

    def __repr__(self) -> str:
        classes = f", classes={len(self.classes)}" if self.classes is not None else ""
        return f"{type(self).__name__}({self.source!r}, rows={len(self)}{classes})"


class ImageDataset(RowsDataset, Dataset):
    """Map-style: ``ds[i] -> (tensor, class index)`` (the tensor alone without labels)."""

    def __getitem__(self, index: int) -> Any:
        return self._load(index, skip=False)

    def __getitems__(self, indices: Sequence[int]) -> list[Any]:
        """A DataLoader's batch, decoded at once."""
        if get_worker_info() is None and len(indices) > 1:  # the main process: decode in the engine's pool
            return parallel_map(lambda i: self._load(i, skip=False), list(indices))
        return [self._load(i, skip=False) for i in indices]  # a worker: the parent's pool is not in a fork


class ImageIterableDataset(RowsDataset, IterableDataset):
    """Iterable: each epoch in a ``(seed, epoch)``-seeded order (``shuffle=True``), sharded across workers."""

    def __init__(self, rows: Rows, items: Items, card: ModelCard, classes: Sequence[str] | None,
                 on_error: OnError = "raise", shuffle: bool = True):
        super().__init__(rows, items, card, classes)
        self.on_error = on_error
        self.shuffle = shuffle

    def order(self) -> list[int]:
        """This epoch's order of the rows, before sharding across workers."""
        if not self.shuffle:
            return list(range(len(self)))
        return np.random.default_rng([self.items.seed, self.epoch]).permutation(len(self)).tolist()

    def __iter__(self) -> Iterator[Any]:
        order = self.order()
        worker = get_worker_info()
        if worker is not None:
            order = order[worker.id :: worker.num_workers]
        for index in order:
            item = self._load(index, skip=self.on_error == "skip")
            if item is not _SKIPPED:
                yield item


def split(dataset: RowsDataset, val_fraction: float = 0.2, seed: int = 0) -> tuple[Any, Any]:
    """``(train, val)``: the rows split by content, stratified by label, reproducible by ``seed``.

    Rows with the same bytes (same sha256) land on the same side, so no image, nor an exact copy of one
    under another name, is both trained on and validated on (:func:`sightql.train.splits.split_by_content`,
    the trainer's own split). Each label sends ``round(n * val_fraction)`` of its distinct images (at least
    one) to validation. Both sides keep the dataset's kind and classes; the validation side never augments.
    """
    if not isinstance(dataset, RowsDataset):
        raise ConfigError(f"split() takes a dataset made by sightql.torch.dataset() or iterable_dataset(), "
                          f"not {type(dataset).__name__}")
    if not 0 < val_fraction < 1:
        raise ConfigError(f"val_fraction={val_fraction!r} must be between 0 and 1 (0.2 holds out a fifth)")
    rows = dataset.rows
    hashes = rows.content_hashes()
    examples = [Example(i, label, digest, name) for i, (label, digest, name)
                in enumerate(zip(rows.labels, hashes, rows.names))]
    sides = split_by_content(examples, val_fraction, seed)
    if not sides.val:
        raise ConfigError(f"no image of {rows.description} is left for validation; give each label at least 2 "
                          "distinct images")
    train_rows = rows.subset([int(e.key) for e in sides.train])
    val_rows = rows.subset([int(e.key) for e in sides.val])
    return dataset.derived(train_rows, dataset.items), dataset.derived(val_rows, dataset.items.for_evaluation())
