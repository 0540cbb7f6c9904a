"""Stages: local folders and s3:// prefixes (moto server on loopback), directory() and stage_file() in SQL."""

from __future__ import annotations

import socket

import pytest

import sightql
from sightql.errors import SightQLError, StageError, StagePathError


def test_local_stage_put_list_get_remove(session, photos_dir, tmp_path):
    stage = session.create_stage("photos")
    written = stage.put(photos_dir, prefix="2024")
    assert "2024/chelsea.jpg" in written and len(written) == 9
    assert [f.relative_path for f in stage.list("2024/ch")] == ["2024/chelsea.jpg", "2024/china.jpg"]
    got = stage.get("2024/coffee.jpg", tmp_path / "out")
    assert got[0].read_bytes() == (photos_dir / "coffee.jpg").read_bytes()
    assert stage.remove("2024/notes.txt") == ["2024/notes.txt"]
    assert len(stage.list()) == 8


def test_put_a_glob_keeps_paths_relative_to_the_glob_root(session, photos_dir):
    stage = session.create_stage("globbed")
    written = stage.put(str(photos_dir / "*.png"))
    assert written == ["camera.png"]


def test_directory_lists_files_and_stage_file_classifies_without_a_copy(session, photos_dir):
    session.create_stage("photos").put(photos_dir)
    listing = session.sql("SELECT * FROM directory('@photos')")
    assert listing.column_names == ["relative_path", "file_url", "size", "last_modified", "etag", "file"]
    assert listing.num_rows == 9
    rows = session.sql(
        "SELECT relative_path, classify('imagenet', stage_file('@photos', relative_path)) AS c "
        "FROM directory('@photos') WHERE relative_path LIKE 'co%'"
    ).to_pylist()
    assert rows == [{"relative_path": "coffee.jpg", "c": pytest.approx(rows[0]["c"])}]
    assert rows[0]["c"]["label"] == "espresso"
    # A file added later shows up in the next query: the listing is refreshed per query.
    session.stage("photos").write_bytes("later/new.jpg", (photos_dir / "chelsea.jpg").read_bytes())
    assert session.sql("SELECT count(*) AS n FROM directory('@photos/later')").to_pylist() == [{"n": 1}]


@pytest.mark.parametrize("path", ["../../etc/passwd", "/etc/passwd", "a/../../x", "..", "C:/windows"])
def test_paths_outside_a_stage_are_refused(session, path):
    stage = session.create_stage("safe")
    with pytest.raises(StagePathError):
        stage.read_bytes(path)
    with pytest.raises(StagePathError):
        stage.write_bytes(path, b"x")


def test_stage_file_in_sql_gives_null_for_an_escaping_path(session):
    session.create_stage("safe")
    rows = session.sql("SELECT stage_file('@safe', '../../etc/passwd') AS b").to_pylist()
    assert rows == [{"b": None}]


def test_unknown_stage_is_one_clear_sentence(session):
    with pytest.raises(StageError, match="no stage named 'nope'.*sightql stage create nope"):
        session.stage("nope")


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture
def moto_s3(monkeypatch):
    """A real S3 protocol server (moto) on loopback, with a bucket."""
    from moto.server import ThreadedMotoServer

    port = _free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    endpoint = f"http://127.0.0.1:{port}"
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    monkeypatch.setenv("SIGHTQL_S3_ENDPOINT_URL", endpoint)
    import boto3

    import httpx

    httpx.post(f"{endpoint}/moto-api/reset")  # moto keeps buckets per process, across servers: start empty
    boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1").create_bucket(Bucket="images")
    yield endpoint
    httpx.post(f"{endpoint}/moto-api/reset")
    server.stop()


def test_s3_stage_against_a_loopback_moto_server(moto_s3, session, photos_dir, warehouse):  # endpoint set before connect
    stage = session.create_stage("cloud", "s3://images/raw")
    assert sorted(stage.put(photos_dir, prefix="in")) == sorted(f"in/{p.name}" for p in photos_dir.iterdir())
    assert stage.read_bytes("in/coffee.jpg") == (photos_dir / "coffee.jpg").read_bytes()
    listing = session.sql("SELECT relative_path, etag, file_url FROM directory('@cloud/in') ORDER BY 1").to_pylist()
    assert len(listing) == 9 and all(r["etag"] for r in listing)
    assert listing[0]["file_url"] == "s3://images/raw/in/astronaut.jpg"
    rows = session.sql(
        "SELECT classify('imagenet', stage_file('@cloud', 'in/coffee.jpg')).label AS label"
    ).to_pylist()
    assert rows == [{"label": "espresso"}]
    report = session.load_images("cloud_photos", "@cloud/in")
    assert len(report.loaded) == 8 and [p for p, _ in report.skipped] == ["in/notes.txt"]
    assert stage.remove("in/notes.txt") == ["in/notes.txt"]
    with pytest.raises(StagePathError):
        stage.read_bytes("../other-prefix/secret")
    session.close()
    with sightql.connect(warehouse) as reopened:  # the stage survives a reopen
        assert len(reopened.stage("cloud").list("in")) == 8


def test_s3_stages_get_their_endpoint_from_the_warehouse_settings(warehouse, monkeypatch):
    pytest.importorskip("s3fs")
    from sightql.config import Settings
    from sightql.stages.stage import Stage

    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://127.0.0.1:2")
    with sightql.connect(warehouse, settings=Settings(s3_endpoint_url="http://127.0.0.1:1")) as s:
        stage = s.create_stage("cloud", "s3://images/raw")  # opening an s3 stage contacts nothing yet
        assert stage.endpoint_url == "http://127.0.0.1:1" and stage.fs.client_kwargs == {"endpoint_url": "http://127.0.0.1:1"}
    with sightql.connect(warehouse, settings=Settings()) as s:
        assert s.stage("cloud").endpoint_url == "http://127.0.0.1:2"  # no setting: AWS_ENDPOINT_URL
    assert Stage("direct", "s3://images/raw").fs.client_kwargs == {}  # built directly: the endpoint given, here none


def test_stage_name_and_url_are_checked(session):
    with pytest.raises(SightQLError, match="stage name"):
        session.create_stage("bad name; drop")
    with pytest.raises(SightQLError, match="not supported"):
        session.create_stage("web", "http://example.com/x")


def test_directory_of_an_unknown_stage_is_one_sentence(session):
    session.create_stage("shots")
    with pytest.raises(StageError, match=r"no stage named 'nope' \(stages: shots\); create it with `sightql stage create nope`"):
        session.sql("SELECT * FROM directory('@nope')")


def test_a_copied_warehouse_uses_its_own_local_stage_files(tmp_path, photos_dir):
    import shutil

    original = tmp_path / "original"
    with sightql.connect(original) as session:
        session.create_stage("shots").put(photos_dir / "coffee.jpg")
    copy = tmp_path / "copy"
    shutil.copytree(original, copy)
    with sightql.connect(copy) as session:
        stage = session.stage("shots")
        assert stage.url == (copy / "stages" / "shots").resolve().as_uri()
        stage.write_bytes("only-in-copy.jpg", (photos_dir / "chelsea.jpg").read_bytes())
        listed = session.sql("SELECT relative_path FROM directory('@shots') ORDER BY 1").column(0).to_pylist()
    assert listed == ["coffee.jpg", "only-in-copy.jpg"]
    assert not (original / "stages" / "shots" / "only-in-copy.jpg").exists()
    with sightql.connect(original) as session:
        assert session.sql("SELECT relative_path FROM directory('@shots')").column(0).to_pylist() == ["coffee.jpg"]


STAGE_FILE_QUERIES = {
    "literal": ("SELECT classify('imagenet', stage_file('@photos', 'coffee.jpg')).label AS label", None),
    "parameters": ("SELECT classify('imagenet', stage_file(?, ?)).label AS label", ["@photos", "coffee.jpg"]),
    "values": ("SELECT classify('imagenet', stage_file('@photos', p)).label AS label FROM (VALUES ('coffee.jpg')) v(p)", None),
    "table": ("SELECT classify('imagenet', stage_file('@photos', p)).label AS label FROM paths", None),
}


@pytest.mark.parametrize("kind", STAGE_FILE_QUERIES)
def test_stage_file_works_in_any_query_without_directory(session, warehouse, photos_dir, kind):
    session.create_stage("photos").put(photos_dir)
    session.sql("CREATE TABLE paths AS SELECT 'coffee.jpg' AS p")
    session.close()
    query, params = STAGE_FILE_QUERIES[kind]
    with sightql.connect(warehouse) as fresh:  # no stage looked up yet in this session
        assert fresh.sql(query, params).to_pylist() == [{"label": "espresso"}]


def test_directory_is_case_insensitive_takes_parameters_and_is_always_current(session, warehouse, photos_dir):
    session.create_stage("photos").put(photos_dir)
    session.close()
    with sightql.connect(warehouse) as fresh:
        upper = fresh.sql("SELECT relative_path FROM DIRECTORY('@photos')").column(0).to_pylist()
        assert len(upper) == 9 and upper == sorted(upper)
        assert fresh.sql("SELECT relative_path FROM directory('@photos')").column(0).to_pylist() == upper
        assert fresh.sql("SELECT relative_path FROM Directory(?)", ["@photos"]).column(0).to_pylist() == upper
        fresh.stage("photos").write_bytes("later/new.jpg", (photos_dir / "chelsea.jpg").read_bytes())
        later = fresh.sql("SELECT relative_path FROM DIRECTORY($ref)", {"ref": "@photos/later"}).to_pylist()
        assert later == [{"relative_path": "later/new.jpg"}]
        with pytest.raises(StageError, match=r"no stage named 'nope' \(stages: photos\)"):
            fresh.sql("SELECT * FROM directory(?)", ["@nope"])
