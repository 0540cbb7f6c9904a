"""``dataset()`` and ``iterable_dataset()``: check the arguments, resolve the model's card, snapshot the rows.

The warehouse is used only here, while the dataset is made: the model reference is resolved to its
card (``'tex@prod'`` names the version the alias points at now; a moved alias later does not change
the dataset), and the rows are read (:mod:`sightql.torch.snapshot`). Given a warehouse folder instead
of a session, the warehouse is opened read-only for that and closed again before the dataset is returned.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence

from sightql.errors import ConfigError
from sightql.registry.specs import card_of
from sightql.session import Session, connect
from sightql.torch.datasets import ON_ERRORS, ImageDataset, ImageIterableDataset, OnError
from sightql.torch.items import Items
from sightql.torch.snapshot import take_snapshot
from sightql.train.options import AUGMENTS

DEFAULT_LABEL = "label"
STAGE_LABEL = "folder"


@contextlib.contextmanager
def opened(session: Session | str | os.PathLike[str]) -> Iterator[Session]:
    """The session given, or the warehouse at a folder opened read-only for the time it takes."""
    if isinstance(session, (str, os.PathLike)):
        with connect(Path(session), read_only=True) as own:
            yield own
    elif isinstance(session, Session):
        yield session
    else:
        raise ConfigError(f"pass a session (sightql.connect(...)) or a warehouse folder, not {type(session).__name__}")


def _label_of(source: str, label: str | None) -> str | None:
    """The label argument for the rows' reader: a stage's labels are its folder names."""
    if source.startswith("@") and label == DEFAULT_LABEL:
        return STAGE_LABEL
    return label


def _checked(transform: Callable[[Any], Any] | None, train: bool, augment: str, on_error: str, seed: int) -> None:
    if on_error not in ON_ERRORS:
        raise ConfigError(f"on_error={on_error!r} is not valid; use 'raise' or 'skip'")
    if augment not in AUGMENTS:
        raise ConfigError(f"augment={augment!r} is not known; use one of {', '.join(AUGMENTS)}")
    if not isinstance(seed, int) or isinstance(seed, bool) or seed < 0:
        raise ConfigError(f"seed={seed!r} must be a whole number, 0 or more")
    if transform is not None and not callable(transform):
        raise ConfigError(f"transform= must be a callable taking a PIL image, not {type(transform).__name__}")
    if transform is not None and train:
        raise ConfigError("transform= replaces the model card's transforms, augmentation included; "
                          "leave train= out and augment in your transform")


def build(kind: type, session: Session | str | os.PathLike[str], source: str, *, image: str, label: str | None,
          model: str, transform: Callable[[Any], Any] | None, train: bool, augment: str,
          classes: Sequence[str] | None, seed: int, snapshot_dir: str | os.PathLike[str] | None,
          **extra: Any) -> Any:
    """A dataset of ``kind`` (:class:`ImageDataset` or :class:`ImageIterableDataset`, given ``extra``) over ``source``."""
    _checked(transform, train, augment, extra.get("on_error", "raise"), seed)
    if not isinstance(source, str) or not source:
        raise ConfigError(f"source must be a table name or '@stage/prefix', not {source!r}")
    with opened(session) as open_session:
        card = card_of(open_session.registry.spec(model))
        if card.modality != "image":
            raise ConfigError(f"{model!r} reads text, not images; name an image model (default 'imagenet')")
        rows = take_snapshot(open_session.warehouse, open_session.stages, source, image, _label_of(source, label),
                             Path(snapshot_dir) if snapshot_dir is not None else None)
        limits = open_session.warehouse.limits
    items = Items(card.input, limits, train=train, augment=augment, transform=transform, seed=seed)
    chosen = None if label is None else (list(classes) if classes is not None else sorted(set(rows.labels)))
    return kind(rows, items, card, chosen, **extra)


def dataset(
    session: Session | str | os.PathLike[str], source: str, *, image: str = "image", label: str | None = DEFAULT_LABEL,
    model: str = "imagenet", transform: Callable[[Any], Any] | None = None, train: bool = False,
    augment: str = "light", classes: Sequence[str] | None = None, seed: int = 0,
    snapshot_dir: str | os.PathLike[str] | None = None,
) -> ImageDataset:
    """A map-style torch Dataset over a table or ``'@stage/prefix'``: ``ds[i] -> (tensor, class index)``.

    ``session``: an open session, or a warehouse folder (opened read-only while the dataset is made).
    ``image``/``label``: a table's image column (BLOB or FILE values) and label column; a stage's labels are
    its folder names; ``label=None`` yields the tensor alone. ``model``: whose card's transforms make the
    tensors (exactly what ``classify`` feeds that model); ``train=True`` adds the trainer's ``augment``
    (``'light'``, ``'standard'`` or ``'none'``); ``transform=``: a callable on the decoded PIL image instead
    of the card's transforms. ``classes``: the label order (default: sorted). ``seed`` draws the augmentation.
    A bad image raises one sentence naming its row (:func:`iterable_dataset` can skip such rows instead).
    ``snapshot_dir``: where a BLOB table's bytes are copied (default ``<warehouse>/snapshots``).
    docs/training.md, "Your own training loop", has examples.
    """
    return build(ImageDataset, session, source, image=image, label=label, model=model, transform=transform,
                 train=train, augment=augment, classes=classes, seed=seed, snapshot_dir=snapshot_dir)


def iterable_dataset(
    session: Session | str | os.PathLike[str], source: str, *, image: str = "image", label: str | None = DEFAULT_LABEL,
    model: str = "imagenet", transform: Callable[[Any], Any] | None = None, train: bool = False,
    augment: str = "light", classes: Sequence[str] | None = None, on_error: OnError = "raise", shuffle: bool = True,
    seed: int = 0, snapshot_dir: str | os.PathLike[str] | None = None,
) -> ImageIterableDataset:
    """An iterable torch Dataset over the same rows as :func:`dataset` (same arguments), yielding each row once
    an epoch: in an order drawn from ``(seed, epoch)`` when ``shuffle`` (call ``ds.set_epoch(n)`` each
    epoch), split between the DataLoader's workers so that none is yielded twice. ``on_error='skip'`` leaves a
    bad image out with a warning naming it (``'raise'``, the default: one sentence naming the row)."""
    return build(ImageIterableDataset, session, source, image=image, label=label, model=model,
                 transform=transform, train=train, augment=augment, classes=classes, on_error=on_error,
                 seed=seed, snapshot_dir=snapshot_dir, shuffle=shuffle)
