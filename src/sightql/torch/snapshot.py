"""A dataset's rows, read once from the warehouse when it is made: after this, no process opens the warehouse.

The rows come from the trainer's own reading (:func:`sightql.train.sources.load_examples`), so a table
or a stage means the same here as in ``session.train``: a table's image column of BLOBs or FILE values
and its label column (rows without a label left out with a warning), or ``'@stage/prefix'`` with the
folder names as labels (files outside a class folder, and files whose header is not an image's, left
out with a warning). What each kind keeps:

* a BLOB table: its image bytes copied, a few rows at a time, into the snapshot file
  (:mod:`sightql.torch.snapshot_file`), so memory holds ``SNAPSHOT_ROWS`` images at most while copying;
* a table of FILE values: each row's value (stage, path, size, etag); the files stay in their stages;
* a stage: each file's relative path (the stage was read once to hash and check each file).
"""

from __future__ import annotations

from pathlib import Path

from sightql.sql.warehouse import Warehouse
from sightql.stages.catalog import StageCatalog
from sightql.torch.rows import FileBytes, RowBytes, Rows, SnapshotBytes, StageBytes, file_stages
from sightql.torch.snapshot_file import SNAPSHOT_DIR, SnapshotFile
from sightql.train.shared_rows import write_rows
from sightql.train.sources import FileTableReader, StageReader, load_examples

SNAPSHOT_ROWS = 16  # BLOB rows read per query while copying (16 phone photos: under 200 MB)


def take_snapshot(warehouse: Warehouse, stages: StageCatalog, source: str, image: str, label: str | None,
                  snapshot_dir: Path | None = None) -> Rows:
    """The rows of ``source`` (a table, or ``'@stage/prefix'``), labelled ``''`` when ``label`` is None."""
    examples, reader = load_examples(warehouse, stages, source, image, label)
    keys: list[object] = [e.key for e in examples]
    row_bytes: RowBytes
    if isinstance(reader, FileTableReader):
        refs = reader.refs(keys)
        row_bytes = FileBytes(file_stages(refs, stages.get), warehouse.settings.read_budget_bytes, source)
        keys = list(refs)
    elif isinstance(reader, StageReader):
        row_bytes = StageBytes(reader.stage, source)
    else:
        snapshot = SnapshotFile.create(snapshot_dir or warehouse.home / SNAPSHOT_DIR, source)
        write_rows(snapshot.path, examples, [], reader, chunk_rows=SNAPSHOT_ROWS)
        keys = list(range(len(examples)))  # row numbers in the snapshot file
        row_bytes = SnapshotBytes(snapshot, source)
    return Rows(
        keys=tuple(keys), names=tuple(e.name for e in examples), labels=tuple(e.label for e in examples),
        identities=tuple(e.sha256 for e in examples), positions=tuple(range(len(examples))), reader=row_bytes,
    )
