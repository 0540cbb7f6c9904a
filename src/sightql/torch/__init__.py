"""PyTorch datasets over SightQL tables and stages, for your own training loop.

>>> import sightql, sightql.torch
>>> s = sightql.connect("wh")
>>> ds = sightql.torch.dataset(s, "clothing", image="image", label="label", model="imagenet")
>>> train, val = sightql.torch.split(ds, val_fraction=0.2, seed=0)
>>> loader = torch.utils.data.DataLoader(train, batch_size=32, shuffle=True, num_workers=2)

:func:`dataset` (map-style) and :func:`iterable_dataset` read a table (an image column of BLOBs or FILE
values, a label column) or ``'@stage/prefix'`` (labels from the folder names) and yield
``(tensor, class index)`` made by the model card's transforms, exactly as ``classify`` feeds that
model, or by your own ``transform=``. The rows are read from the warehouse once, when the dataset is
made; the dataset holds no connection, pickles, and its DataLoader workers never open the warehouse.
:func:`split` holds out a seeded share of the rows, exact copies always on one side.
docs/training.md ("Your own training loop") has the whole story.
"""

from sightql.torch.build import dataset, iterable_dataset
from sightql.torch.datasets import ImageDataset, ImageIterableDataset, split

__all__ = ["ImageDataset", "ImageIterableDataset", "dataset", "iterable_dataset", "split"]
