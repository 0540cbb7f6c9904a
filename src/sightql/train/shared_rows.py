"""The training and validation rows of a torchrun job, copied once by rank 0 for every rank to read.

DuckDB lets one process open the warehouse, so ranks other than 0 never touch it. Rank 0
writes the split's rows, image bytes included, to one uncompressed Arrow IPC file inside
the warehouse (``training/<run_id>/shared/rows.arrow``): training rows first, then
validation rows. Every rank, rank 0 included, memory-maps that file, so a batch reads only
its own rows' pages, all ranks read the very same bytes, and nothing is unpickled. Rank 0
deletes the file when the run ends.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Sequence

import pyarrow as pa

from sightql.partial_files import partial_path
from sightql.train.sources import READ_CHUNK, ByteReader, Example

SHARED_DIR = "shared"
ROWS_FILE = "rows.arrow"
SCHEMA = pa.schema([
    ("name", pa.string()), ("label", pa.string()), ("sha256", pa.string()), ("split", pa.string()),
    ("image", pa.large_binary()),
])


def fresh_shared_dir(run_dir: Path) -> Path:
    """An empty ``shared/`` folder for this attempt (a resumed run's old error notes go)."""
    shared = run_dir / SHARED_DIR
    shutil.rmtree(shared, ignore_errors=True)
    shared.mkdir(parents=True)
    return shared


def write_rows(path: Path, train: Sequence[Example], val: Sequence[Example], reader: ByteReader,
               chunk_rows: int = READ_CHUNK) -> None:
    """Copy the rows, ``chunk_rows`` at a time, to ``path`` (written as a partial file, then renamed)."""
    tmp = partial_path(path)
    try:
        with pa.OSFile(str(tmp), "wb") as sink, pa.ipc.new_file(sink, SCHEMA) as writer:
            for split, examples in (("train", train), ("val", val)):
                for start in range(0, len(examples), chunk_rows):
                    chunk = examples[start : start + chunk_rows]
                    blobs = reader.read([e.key for e in chunk])
                    writer.write_batch(pa.record_batch([
                        [e.name for e in chunk], [e.label for e in chunk], [e.sha256 for e in chunk],
                        [split] * len(chunk), blobs,
                    ], schema=SCHEMA))
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


class SharedRowsReader:
    """Image bytes by row number from the memory-mapped file; ``description`` names the original source."""

    def __init__(self, path: Path, description: str):
        self._source = pa.memory_map(str(path), "r")
        self._table: pa.Table | None = pa.ipc.open_file(self._source).read_all()  # zero-copy: pages load on use
        self.description = description

    def split(self) -> tuple[list[Example], list[Example]]:
        """(training examples, validation examples), keyed by their row number in the file."""
        assert self._table is not None
        columns = self._table.select(["name", "label", "sha256", "split"]).to_pydict()
        train: list[Example] = []
        val: list[Example] = []
        for row, (name, label, sha, split) in enumerate(
            zip(columns["name"], columns["label"], columns["sha256"], columns["split"])
        ):
            (train if split == "train" else val).append(Example(row, label, sha, name))
        return train, val

    def read(self, keys: Sequence[int | str]) -> list[bytes]:
        assert self._table is not None
        return self._table.column("image").take(pa.array([int(k) for k in keys], pa.int64())).to_pylist()

    def close(self) -> None:
        self._table = None
        self._source.close()
