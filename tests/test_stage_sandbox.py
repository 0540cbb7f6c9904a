"""The stage sandbox: a symbolic link inside a local stage never leads a read, write, list or delete outside.

Each test stages a real photo plus two links: ``filelink`` to a photo outside the stage and
``dirlink`` to a folder of photos outside it. Every verb (get, put, rm, ls, stage_file,
directory, load) is tried through both, and the outside folder is checked afterwards, byte for
byte and mtime for mtime, so nothing there was written or deleted; what was read would show in
the results, which the tests check hold only the staged photo.
"""

from __future__ import annotations

import logging
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

import sightql
from sightql.errors import StageError, StagePathError

OUTSIDE = "leads outside the stage"


class Outside:
    """A folder outside the stage, with a photo and a subfolder holding another; remembers its state."""

    def __init__(self, folder: Path, photos_dir: Path):
        (folder / "dir").mkdir(parents=True)
        shutil.copy(photos_dir / "coffee.jpg", folder / "secret.jpg")
        shutil.copy(photos_dir / "chelsea.jpg", folder / "dir" / "inner.jpg")
        self.folder = folder
        self.before = self.state()

    def state(self) -> dict[str, tuple[bytes, int] | str]:
        seen: dict[str, tuple[bytes, int] | str] = {}
        for path in sorted(self.folder.rglob("*")):
            rel = path.relative_to(self.folder).as_posix()
            seen[rel] = "folder" if path.is_dir() else (path.read_bytes(), path.stat().st_mtime_ns)
        return seen

    def assert_untouched(self) -> None:
        assert self.state() == self.before


@pytest.fixture
def outside(tmp_path, photos_dir) -> Outside:
    return Outside(tmp_path / "outside", photos_dir)


@pytest.fixture
def linked(session, outside, photos_dir):
    """Stage @s: in.jpg (a real file), sub/ (a real folder), filelink -> outside photo, dirlink -> outside folder."""
    stage = session.create_stage("s")
    stage.put(photos_dir / "astronaut.jpg")
    stage.write_bytes("sub/inner.jpg", (photos_dir / "china.jpg").read_bytes())
    root = Path(stage.root)
    os.rename(root / "astronaut.jpg", root / "in.jpg")
    os.symlink(outside.folder / "secret.jpg", root / "filelink")
    os.symlink(outside.folder / "dir", root / "dirlink")
    return stage


STAGED = ["in.jpg", "sub/inner.jpg"]


@pytest.mark.parametrize("path", ["filelink", "dirlink", "dirlink/inner.jpg"])
def test_get_refuses_a_path_through_a_link_out(linked, outside, tmp_path, path):
    with pytest.raises(StagePathError, match=f"@s/{path} .*{OUTSIDE}"):
        linked.get(path, tmp_path / "got")
    with pytest.raises(StagePathError, match=OUTSIDE):
        linked.read_bytes(path)
    assert not (tmp_path / "got").exists()
    outside.assert_untouched()


@pytest.mark.parametrize("path", ["filelink", "dirlink/inner.jpg", "dirlink/new.jpg", "dirlink/new/deeper.jpg"])
def test_put_and_write_bytes_refuse_a_link_out(linked, outside, photos_dir, path):
    with pytest.raises(StagePathError, match=OUTSIDE):
        linked.write_bytes(path, b"overwritten")
    folder, _, name = path.rpartition("/")
    single = photos_dir / "camera.png"
    with pytest.raises(StagePathError, match=OUTSIDE):
        linked.put(single, prefix=path)  # put into a folder that is (or lies under) the link
    if folder:
        with pytest.raises(StagePathError, match=OUTSIDE):
            linked.put(single, prefix=folder)
    outside.assert_untouched()  # no file overwritten, no new file or folder made


@pytest.mark.parametrize("path", ["filelink", "dirlink", "dirlink/inner.jpg"])
def test_rm_refuses_a_path_through_a_link_out(linked, outside, path):
    with pytest.raises(StagePathError, match=OUTSIDE):
        linked.remove(path)
    assert (Path(linked.root) / "filelink").is_symlink() and (Path(linked.root) / "dirlink").is_symlink()
    outside.assert_untouched()


def test_removing_a_folder_with_links_removes_only_the_staged_files(linked, outside):
    assert linked.remove("") == STAGED
    assert sorted(p.name for p in Path(linked.root).iterdir()) == ["dirlink", "filelink", "sub"]
    outside.assert_untouched()


def test_ls_and_directory_skip_links_out_and_never_list_a_folder_as_a_file(linked, outside, session, caplog):
    with caplog.at_level(logging.WARNING, logger="sightql.stages"):
        assert [f.relative_path for f in linked.list()] == STAGED
    assert "@s/filelink: a symbolic link that leads outside the stage" in caplog.text
    assert "@s/dirlink: a symbolic link that leads outside the stage" in caplog.text
    listed = session.sql("SELECT relative_path, size FROM directory('@s')").to_pylist()
    assert [r["relative_path"] for r in listed] == STAGED
    assert all(r["size"] != 4096 for r in listed)
    assert session.sql("SELECT count(*) AS n FROM directory('@s/dirlink')").to_pylist() == [{"n": 0}]
    with pytest.raises(StagePathError, match=f"@s/dirlink is a symbolic link .*{OUTSIDE}"):
        session.sql("SELECT * FROM directory('@s/dirlink/in')")
    outside.assert_untouched()


def test_links_inside_the_stage_are_listed_once_and_removed_themselves(session, photos_dir):
    stage = session.create_stage("inner")
    stage.put(photos_dir / "coffee.jpg", prefix="real")
    root = Path(stage.root)
    os.symlink(root / "real" / "coffee.jpg", root / "alias.jpg")  # a link to a file inside: listed by its own name
    os.symlink(root / "real", root / "also")  # a link to a folder inside: not followed, so nothing is listed twice
    os.symlink(root / "gone.jpg", root / "broken.jpg")
    assert [f.relative_path for f in stage.list()] == ["alias.jpg", "real/coffee.jpg"]
    assert stage.read_bytes("alias.jpg") == (photos_dir / "coffee.jpg").read_bytes()
    assert stage.remove("alias.jpg") == ["alias.jpg"]
    assert not (root / "alias.jpg").exists() and (root / "real" / "coffee.jpg").is_file()


def test_stage_file_gives_null_for_links_folders_and_missing_files_and_the_other_rows_go_on(linked, outside, session):
    rows = session.sql(
        "SELECT p, classify('imagenet', stage_file('@s', p)) AS c FROM (VALUES "
        "('in.jpg'), ('filelink'), ('dirlink'), ('dirlink/inner.jpg'), ('sub'), ('gone.jpg'), ('sub/inner.jpg')) v(p)"
    ).to_pylist()
    got = {r["p"]: r["c"] for r in rows}
    assert got["in.jpg"]["label"] and got["sub/inner.jpg"]["label"]
    for refused in ("filelink", "dirlink", "dirlink/inner.jpg", "sub", "gone.jpg"):
        assert got[refused]["label"] is None, refused
    outside.assert_untouched()


def test_stage_file_in_a_strict_session_fails_with_the_sandbox_sentence(linked, outside, session, warehouse):
    session.close()  # one session per warehouse per process
    with sightql.connect(warehouse, on_error="raise") as strict:
        with pytest.raises(StagePathError, match=f"@s/filelink is a symbolic link .*{OUTSIDE}"):
            strict.sql("SELECT stage_file('@s', 'filelink') AS b")
        with pytest.raises(StageError, match="@s/sub is a folder, not a file"):
            strict.sql("SELECT stage_file('@s', 'sub') AS b")
    outside.assert_untouched()


def test_load_from_a_stage_skips_links_out(linked, outside, session):
    report = session.load_images("t", "@s")
    assert report.loaded == STAGED
    assert session.sql("SELECT relative_path FROM t ORDER BY 1").column(0).to_pylist() == STAGED
    outside.assert_untouched()


def test_directory_with_dot_dot_is_the_same_path_error_as_the_other_verbs(linked, session):
    with pytest.raises(StagePathError, match=r"stage path '\.\./\.\.' goes outside the stage with '\.\.'"):
        session.sql("SELECT * FROM directory('@s/../..')")
    with pytest.raises(StagePathError, match="goes outside the stage"):
        session.sql("SELECT * FROM directory(?)", ["@s/sub/../../x"])
    with pytest.raises(StagePathError, match="goes outside the stage"):
        linked.list("../..")


def test_percent_2f_is_a_literal_name_inside_the_stage(session, tmp_path):
    stage = session.create_stage("lit")
    root = Path(stage.root)
    assert stage.write_bytes("..%2fescaped.txt", b"x") == "..%2fescaped.txt"
    assert (root / "..%2fescaped.txt").read_bytes() == b"x"
    assert not (root.parent / "escaped.txt").exists()
    [listed] = session.sql("SELECT relative_path, file_url FROM directory('@lit')").to_pylist()
    assert listed["relative_path"] == "..%2fescaped.txt"
    assert listed["file_url"] == (root / "..%2fescaped.txt").as_uri()  # '%' itself is escaped: ..%252f
    assert listed["file_url"].endswith("/..%252fescaped.txt")
    rows = session.sql("SELECT stage_file('@lit', '..%2f..%2f..%2fetc%2fpasswd') AS b").to_pylist()
    assert rows == [{"b": None}]


def _cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "sightql", *args], capture_output=True, text=True)


@pytest.mark.slow
def test_the_cli_refuses_links_out_and_a_rm_that_matches_nothing(linked, outside, session, warehouse, tmp_path, photos_dir):
    session.close()  # the CLI opens the warehouse itself
    w = ["-w", str(warehouse)]
    for args in (["stage", "get", "@s/filelink", str(tmp_path / "got")], ["stage", "get", "@s/dirlink", str(tmp_path / "got")],
                 ["stage", "rm", "@s/filelink"], ["stage", "rm", "@s/dirlink/inner.jpg"],
                 ["stage", "put", "@s/dirlink", str(photos_dir / "camera.png")]):
        result = _cli(*args, *w)
        assert result.returncode == 2, (args, result.stderr)
        assert result.stderr.startswith("error: ") and OUTSIDE in result.stderr and "Traceback" not in result.stderr
    nomatch = _cli("stage", "rm", "@s/nomatch", *w)
    assert nomatch.returncode == 2
    assert nomatch.stderr == "error: nothing in @s matches 'nomatch'; list the stage with `sightql stage ls @s`\n"
    listed = _cli("stage", "ls", "@s", *w)
    assert listed.returncode == 0 and [line.split("\t")[0] for line in listed.stdout.splitlines()] == STAGED
    assert "filelink" in listed.stderr and "dirlink" in listed.stderr  # skipped entries are said
    assert not (tmp_path / "got").exists()
    outside.assert_untouched()
