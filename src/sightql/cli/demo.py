"""The demo: real sample photos -> a table and a stage -> classify() in SQL."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Callable

from sightql.cli.common import print_table
from sightql.errors import MissingDependencyError
from sightql.session import connect

SKIMAGE_PHOTOS = ("astronaut", "chelsea", "coffee", "rocket", "camera", "hubble_deep_field")
SKLEARN_PHOTOS = ("china.jpg", "flower.jpg")

TABLE_QUERY = """
SELECT relative_path AS file, c.label AS top_label, round(c.score, 3) AS score, c.error
FROM (SELECT relative_path, classify('imagenet', image) AS c FROM photos)
ORDER BY file
"""
STAGE_QUERY = """
SELECT relative_path AS file, c.label AS top_label, round(c.score, 3) AS score, c.error
FROM (SELECT relative_path, classify('imagenet', stage_file('@photos', relative_path)) AS c
      FROM directory('@photos'))
ORDER BY file
"""


def write_sample_photos(folder: Path) -> list[Path]:
    """Save the photos that scikit-image and scikit-learn ship as files (JPEG, greyscale PNG)."""
    try:
        import skimage.data
        from sklearn.datasets import load_sample_image
    except ImportError:
        raise MissingDependencyError("scikit-image and scikit-learn", "demo") from None
    from PIL import Image

    folder.mkdir(parents=True, exist_ok=True)
    written = []
    for name in SKIMAGE_PHOTOS:
        array = getattr(skimage.data, name)()
        suffix = "png" if array.ndim == 2 else "jpg"
        path = folder / f"{name}.{suffix}"
        Image.fromarray(array).save(path)
        written.append(path)
    for name in SKLEARN_PHOTOS:
        path = folder / name
        Image.fromarray(load_sample_image(name)).save(path)
        written.append(path)
    note = folder / "notes.txt"
    note.write_text("not an image: the loader reports and skips it\n")
    written.append(note)
    return written


def run_demo(warehouse: Path, echo: Callable[[str], None] = print) -> None:
    started = time.perf_counter()
    photos = Path(warehouse) / "sample-photos"
    write_sample_photos(photos)
    with connect(warehouse) as session:
        echo(f"warehouse: {session.home}")
        echo(str(session.load_images("photos", photos)))
        stage = session.create_stage("photos", exist_ok=True)
        echo(f"put {len(stage.put(photos))} file(s) into @photos")
        echo("\nSQL over the table:" + TABLE_QUERY)
        print_table(session.sql(TABLE_QUERY))
        echo("\nSQL over the stage, no copy into a table:" + STAGE_QUERY)
        print_table(session.sql(STAGE_QUERY))
    echo(f"demo finished in {time.perf_counter() - started:.1f} s")
