"""load_images at default settings with phone photos: batches by bytes, replaces by path, says what went wrong.

The phone photos are 20 JPEGs of 4032x3024, 3.3-3.5 MB each (tests/media.py). Before the fix,
16 of them ended in a DuckDB OutOfMemory traceback and 0 rows: the whole folder went in one
INSERT OR REPLACE, which holds about four times its bytes under the 256MB memory limit.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys

import pytest

import sightql
from sightql.config import Settings
from sightql.errors import MemoryLimitError, SightQLError
from tests.conftest import CAT_CLASSES

DEFAULTS = Settings()  # SIGHTQL_* variables of the machine running the tests play no part


def _default_env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.startswith("SIGHTQL_")}


def _cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "sightql", *args], capture_output=True, text=True, env=_default_env())


@pytest.fixture(scope="module")
def phone_warehouse(tmp_path_factory, model_cache, phone_photos_dir):
    """A warehouse whose table ``phones`` the CLI loaded twice (the second time replacing every row)."""
    home = tmp_path_factory.mktemp("phones") / "warehouse"
    shutil.copytree(model_cache, home / "models", copy_function=os.link)
    runs = [_cli("load", "phones", str(phone_photos_dir), "-w", str(home)) for _ in range(2)]
    return home, runs


@pytest.mark.slow
def test_the_cli_loads_twenty_phone_photos_at_default_settings_and_a_reload_replaces_them(phone_warehouse):
    home, runs = phone_warehouse
    for run in runs:
        assert run.returncode == 0, run.stderr
        assert "loaded 20 image(s) into phones; skipped 0" in run.stdout and "Traceback" not in run.stderr
    with sightql.connect(home, settings=DEFAULTS) as s:
        rows = s.sql("SELECT relative_path, size, width, height, format FROM phones ORDER BY 1").to_pylist()
    assert len(rows) == 20 and rows[0]["relative_path"] == "IMG_0000.jpg"
    assert all(r["size"] >= 3_000_000 and (r["width"], r["height"], r["format"]) == (3024, 4032, "JPEG") for r in rows)


@pytest.mark.slow
def test_classify_in_sql_and_predict_over_the_phone_photos_at_default_settings(phone_warehouse):
    home, _ = phone_warehouse
    with sightql.connect(home, settings=DEFAULTS) as s:
        labelled = s.sql(
            "SELECT relative_path, c.label, c.error FROM (SELECT relative_path, classify('imagenet', image) AS c "
            "FROM phones) ORDER BY relative_path"
        ).to_pylist()
        assert len(labelled) == 20 and all(r["label"] is not None and r["error"] is None for r in labelled)
        assert labelled[0]["label"] in CAT_CLASSES  # IMG_0000 is the cat, shown upright
        report = s.predict("imagenet", "phones", progress=False)
        assert (report.predicted, report.errors) == (20, 0)
        predicted = s.sql("SELECT count(predicted_label) AS n, count(prediction_error) AS e FROM phones").to_pylist()
        assert predicted == [{"n": 20, "e": 0}]


def test_load_from_a_stage_takes_the_phone_photos_in_byte_sized_batches(warehouse, phone_photos_dir):
    with sightql.connect(warehouse, settings=DEFAULTS) as s:
        s.create_stage("camera").put(phone_photos_dir, prefix="dcim")
        report = s.load_images("phones", "@camera/dcim")
        assert len(report.loaded) == 20 and report.skipped == []
        assert s.sql("SELECT count(*) AS n, min(width) AS w, min(height) AS h FROM phones").to_pylist() == [
            {"n": 20, "w": 3024, "h": 4032}
        ]


def test_a_duckdb_error_part_way_is_one_sentence_and_keeps_the_batches_before_it(warehouse, phone_photos_dir):
    """A batch is at most 1/8 of the 256MB limit (9 phone photos); the second batch breaks a table constraint."""
    with sightql.connect(warehouse, settings=DEFAULTS) as s:
        s.sql(
            "CREATE TABLE phones (relative_path VARCHAR PRIMARY KEY CHECK (relative_path <> 'IMG_0012.jpg'), "
            "image BLOB NOT NULL, size BIGINT NOT NULL, sha256 VARCHAR NOT NULL, width INTEGER, height INTEGER, "
            "format VARCHAR, loaded_at TIMESTAMPTZ NOT NULL)"
        )
        with pytest.raises(SightQLError) as raised:
            s.load_images("phones", phone_photos_dir)
        message = str(raised.value)
        assert type(raised.value).__module__ == "sightql.errors" and "\n" not in message
        assert "CHECK constraint" in message and message.endswith("(9 image(s) loaded before it are kept)")
        kept = [r["relative_path"] for r in s.sql("SELECT relative_path FROM phones ORDER BY 1").to_pylist()]
        assert kept == [f"IMG_{i:04d}.jpg" for i in range(9)]


def test_a_table_past_what_the_memory_limit_can_rewrite_is_refused_before_anything_is_written(warehouse, phone_photos_dir):
    tight = Settings(memory_limit="64MB", memory_limit_fixed=True)  # as SIGHTQL_MEMORY_LIMIT=64MB sets it
    with sightql.connect(warehouse, settings=tight) as s:
        with pytest.raises(MemoryLimitError) as raised:
            s.load_images("phones", phone_photos_dir, inline=True)
        assert str(raised.value) == (
            "table 'phones' would hold 68 MB of images, and DuckDB rewrites a table's images in memory when rows "
            "are added, which needs more than SIGHTQL_MEMORY_LIMIT=64MB; set SIGHTQL_MEMORY_LIMIT=256MB or more, "
            "or write into another table (nothing was written)"
        )
        assert s.sql("SELECT count(*) AS n FROM phones").to_pylist() == [{"n": 0}]
        # A table of references holds no image bytes, so the same limit takes it whole.
        assert len(s.load_images("by_reference", phone_photos_dir).loaded) == 20


def test_a_limit_left_unset_grows_for_the_write_so_the_table_loads(warehouse, phone_photos_dir):
    # 64MB stands in for the default: 20 phone photos (68 MB) need more, and the limit was not set by the user.
    small_default = Settings(memory_limit="64MB")
    with sightql.connect(warehouse, settings=small_default) as s:
        report = s.load_images("phones", phone_photos_dir, inline=True)
        assert len(report.loaded) == 20 and not report.skipped
        grown = s.sql("SELECT current_setting('memory_limit') AS m").to_pylist()[0]["m"]
        assert s.sql("SELECT count(*) AS n FROM phones").to_pylist() == [{"n": 20}]
    assert memory_limit_text_bytes(grown) >= 68e6 / 0.75  # raised from 64MB to what the table needs
    with sightql.connect(warehouse, settings=small_default) as s:  # reopened: the rows are all there
        assert s.sql("SELECT count(*) AS n, sum(size) > 68e6 AS big FROM phones").to_pylist() == [{"n": 20, "big": True}]


def test_settings_from_the_environment_mark_a_set_limit_as_fixed(monkeypatch):
    monkeypatch.delenv("SIGHTQL_MEMORY_LIMIT", raising=False)
    assert Settings.from_env().memory_limit_fixed is False
    monkeypatch.setenv("SIGHTQL_MEMORY_LIMIT", "1GB")
    assert Settings.from_env().memory_limit_fixed is True
    assert Settings.from_env().memory_limit == "1GB"


def memory_limit_text_bytes(text: str) -> float:
    number, unit = text.split()
    return float(number) * {"KiB": 1024, "MiB": 1024**2, "GiB": 1024**3}[unit]


@pytest.mark.slow
def test_predict_reads_a_table_bigger_than_the_memory_limit_in_runs_that_fit(warehouse, phone_photos_dir):
    # 20 phone photos are 68 MB; at a 64MB limit one run of the default 256 rows cannot be read at once.
    with sightql.connect(warehouse, settings=Settings(memory_limit="64MB")) as s:
        s.load_images("phones", phone_photos_dir, inline=True)  # the write raises the limit it needs
    tight = Settings(memory_limit="64MB", memory_limit_fixed=True)
    with sightql.connect(warehouse, settings=tight) as s:
        report = s.predict("imagenet", "phones", progress=False)
        rows = s.sql("SELECT predicted_label, prediction_error FROM phones").to_pylist()
    assert report.predicted == 20
    assert all(r["predicted_label"] and r["prediction_error"] is None for r in rows)
