"""`sightql init --storage s3://...`: a warehouse whose loaded images live in a bucket (moto server on loopback)."""

from __future__ import annotations

import subprocess
import sys

import boto3

import sightql
from sightql.stages.paths import content_hash
from tests.test_stages import moto_s3  # noqa: F401 - the fixture

CLI = [sys.executable, "-m", "sightql"]


def run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([*CLI, *args], capture_output=True, text=True)


def test_init_storage_s3_keeps_loaded_images_in_the_bucket(moto_s3, warehouse, photos_dir):  # noqa: F811
    w = ["-w", str(warehouse)]
    made = run("init", str(warehouse), "--storage", "s3://images/team")
    assert made.returncode == 0 and "s3://images/team" in made.stdout, made.stderr
    assert run("load", "pics", str(photos_dir), *w).returncode == 0
    keys = [o["Key"] for o in boto3.client("s3", endpoint_url=moto_s3).list_objects_v2(Bucket="images")["Contents"]]
    assert len(keys) == 8 and all(k.startswith("team/") and content_hash(k[len("team/"):]) for k in keys)
    assert not (warehouse / "stages" / "_internal").exists()
    with sightql.connect(warehouse) as s:
        s.load_images("bytes", photos_dir, inline=True)
        query = "SELECT relative_path, classify('imagenet', image).label AS label FROM {} ORDER BY 1"
        assert s.sql(query.format("pics")).to_pylist() == s.sql(query.format("bytes")).to_pylist()
        assert s.predict("imagenet", "pics", progress=False).predicted == 8
        assert s.predict("imagenet", "pics", progress=False).skipped == 8  # etag from the name: current
    moved = run("init", str(warehouse), "--storage", "s3://images/elsewhere")
    assert moved.returncode == 2 and "already keeps its images at s3://images/team" in moved.stderr


def test_storage_is_refused_once_images_are_kept_elsewhere_or_the_bucket_is_missing(moto_s3, warehouse, photos_dir):  # noqa: F811
    assert run("load", "pics", str(photos_dir / "coffee.jpg"), "-w", str(warehouse)).returncode == 0
    late = run("init", str(warehouse), "--storage", "s3://images/team")
    assert late.returncode == 2 and "already keeps its images" in late.stderr and "Traceback" not in late.stderr
    missing = run("init", str(warehouse.parent / "other"), "--storage", "s3://no-such-bucket/x")
    assert missing.returncode == 2 and "cannot list s3://no-such-bucket/x" in missing.stderr
