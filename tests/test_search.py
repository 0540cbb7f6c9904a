"""Image search and near-duplicates with the real bundled weights, offline (docs/search.md).

The quality test builds N distinct, real-looking originals (crops of the scikit-image / scikit-learn sample
photos at random positions, scales, rotations and colours, mosaics, shapes drawn over them, and pictures of
random shapes) and stores each with three copies: re-encoded as JPEG q=60, resized to 0.5x, cropped to the
middle 90%. For every copy, its original must be the nearest row among all the others (its own sibling
copies, which are duplicates of the same picture, left out), for at least 99% of the copies; and the
approximate (faiss) index must find the same first row. N is the issue's 1,000 (4,000 images embedded, about
30 s on 2 cores); ``SEARCH_TEST_ORIGINALS=200`` runs a quicker one (docs/search.md has the figures).
"""

from __future__ import annotations

import io
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest
from PIL import Image, ImageDraw

import sightql
from sightql.cli import main as cli_main
from sightql.errors import SightQLError

# The 1,000 originals (4,000 images embedded: about 30 s at 140 img/s on 2 cores); fewer for a quick run.
N_ORIGINALS = int(os.environ.get("SEARCH_TEST_ORIGINALS", "1000"))
COPIES = ("jpeg60", "half", "crop90")
SKIMAGE = ("astronaut", "coffee", "chelsea", "rocket", "camera", "immunohistochemistry", "brick", "grass", "gravel",
           "coins", "moon", "page", "text", "clock", "horse", "logo", "colorwheel", "retina")


# ---- real-looking images -------------------------------------------------------------------------------
def sample_photos() -> list[Image.Image]:
    import skimage.data
    from sklearn.datasets import load_sample_image

    photos = []
    for name in SKIMAGE:
        array = getattr(skimage.data, name)()
        if array.ndim == 2:
            array = np.stack([array] * 3, -1)
        if array.dtype != np.uint8:
            array = (255 * (array.astype(float) / max(1, array.max()))).astype(np.uint8)
        photos.append(Image.fromarray(array[..., :3]))
    return photos + [Image.fromarray(load_sample_image(name)) for name in ("china.jpg", "flower.jpg")]


def _shape(rng, draw: ImageDraw.ImageDraw, w: int, h: int) -> None:
    color = tuple(int(c) for c in rng.integers(0, 256, 3))
    x0, y0 = int(rng.integers(0, w)), int(rng.integers(0, h))
    box = (x0, y0, x0 + int(rng.integers(20, w // 2)), y0 + int(rng.integers(20, h // 2)))
    kind = rng.integers(3)
    if kind == 0:
        draw.ellipse(box, fill=color)
    elif kind == 1:
        draw.rectangle(box, fill=color)
    else:
        draw.polygon([(int(rng.integers(0, w)), int(rng.integers(0, h))) for _ in range(int(rng.integers(3, 7)))], fill=color)


def _crop(rng, photos: list[Image.Image]) -> Image.Image:
    base = photos[rng.integers(len(photos))]
    w, h = base.size
    scale = rng.uniform(0.2, 0.55)
    cw, ch = int(w * scale), min(h, int(h * scale * rng.uniform(0.75, 1.33)))
    x, y = rng.integers(0, w - cw + 1), rng.integers(0, h - ch + 1)
    image = base.crop((x, y, x + cw, y + ch)).rotate(float(rng.choice([0, 90, 180, 270, rng.uniform(-30, 30)])))
    if rng.random() < 0.5:
        image = image.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
    side = int(rng.integers(448, 640))
    return image.resize((side, max(64, int(side * image.size[1] / image.size[0]))), Image.Resampling.BICUBIC)


def _colours(rng, image: Image.Image) -> Image.Image:
    array = np.asarray(image).astype(np.float32)[..., rng.permutation(3)]
    array = 255 * (array / 255) ** rng.uniform(0.6, 1.6)
    return Image.fromarray(np.clip(array * rng.uniform(0.7, 1.2, 3) + rng.uniform(-30, 30, 3), 0, 255).astype(np.uint8))


def _shapes_picture(rng) -> Image.Image:
    w, h = int(rng.integers(448, 640)), int(rng.integers(448, 640))
    ramp = np.linspace(0, 1, h)[:, None, None]
    background = (rng.integers(0, 256, 3) * (1 - ramp) + rng.integers(0, 256, 3) * ramp) * np.ones((1, w, 1))
    image = Image.fromarray(np.clip(background + rng.normal(0, 8, (h, w, 3)), 0, 255).astype(np.uint8))
    draw = ImageDraw.Draw(image)
    for _ in range(int(rng.integers(3, 10))):
        _shape(rng, draw, w, h)
    return image


def originals(n: int, seed: int = 0) -> list[Image.Image]:
    rng = np.random.default_rng(seed)
    photos = sample_photos()
    images = []
    for i in range(n):
        if i % 4 == 3:
            images.append(_shapes_picture(rng))
            continue
        image = _crop(rng, photos)
        if i % 4 == 2:  # a mosaic of two photos
            image.paste(_crop(rng, photos).resize((image.size[0] // 2, image.size[1])), (image.size[0] // 2, 0))
        image = _colours(rng, image)
        draw = ImageDraw.Draw(image)
        for _ in range(int(rng.integers(1, 4))):
            _shape(rng, draw, *image.size)
        images.append(image)
    return images


def jpeg(image: Image.Image, quality: int = 92) -> bytes:
    buffer = io.BytesIO()
    image.convert("RGB").save(buffer, "JPEG", quality=quality)
    return buffer.getvalue()


def copies(image: Image.Image) -> dict[str, bytes]:
    w, h = image.size
    cw, ch = int(w * 0.9), int(h * 0.9)
    left, top = (w - cw) // 2, (h - ch) // 2
    return {"jpeg60": jpeg(image, 60), "half": jpeg(image.resize((w // 2, h // 2), Image.Resampling.BILINEAR)),
            "crop90": jpeg(image.crop((left, top, left + cw, top + ch)))}


def store(session, table: str, rows: list[tuple[str, bytes]]) -> None:
    session.sql(f"CREATE TABLE {table} (id VARCHAR PRIMARY KEY, image BLOB)")
    session.con.register("_rows", pa.table({"id": [r[0] for r in rows], "image": pa.array([r[1] for r in rows], pa.binary())}))
    session.sql(f"INSERT INTO {table} SELECT id, image FROM _rows")
    session.con.unregister("_rows")


# ---- fixtures ------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def search_models(tmp_path_factory) -> Path:
    """Both exports of the bundled model (classifier and pooled features), made once for the module."""
    home = tmp_path_factory.mktemp("search-models")
    with sightql.connect(home) as session:
        session.sql("SELECT embed('imagenet', ?::BLOB)", [jpeg(_shapes_picture(np.random.default_rng(1)))])
    return home / "models"


def fresh_home(base: Path, models: Path) -> Path:
    home = base / "warehouse"
    shutil.copytree(models, home / "models", copy_function=os.link)
    return home


@pytest.fixture
def home(tmp_path, search_models) -> Path:
    return fresh_home(tmp_path, search_models)


@pytest.fixture(scope="module")
def duplicates(tmp_path_factory, search_models):
    """A warehouse with N originals and their three copies each, indexed: (session, image bytes by key, seconds)."""
    folder = fresh_home(tmp_path_factory.mktemp("duplicates"), search_models)
    rows = []
    for i, image in enumerate(originals(N_ORIGINALS)):
        rows.append((f"o{i:04d}", jpeg(image)))
        rows += [(f"c{i:04d}_{kind}", data) for kind, data in copies(image).items()]
    session = sightql.connect(folder)
    store(session, "photos", rows)
    report = session.create_index("photos")
    print(f"\nembedded {report.embedded} images in {report.seconds:.1f} s ({report.images_per_second:.0f} img/s)")
    yield session, dict(rows), report
    session.close()


def index_vectors(session, table: str = "photos") -> tuple[list[str], np.ndarray]:
    found = session.sql(f"SELECT id, embedding FROM _sightql_index_{table} ORDER BY id")
    return found.column("id").to_pylist(), np.array(found.column("embedding").to_pylist(), np.float32)


# ---- the bundled model's features ----------------------------------------------------------------------
@pytest.mark.slow
def test_embed_imagenet_gives_the_pooled_features_as_unit_vectors(duplicates):
    session, images, _ = duplicates
    got = session.sql("SELECT embed('imagenet', image) AS v, classify('imagenet', image).label AS label, "
                      "embed('imagenet', image)::FLOAT[1280] AS fixed FROM photos WHERE id = 'o0000'")
    vector = np.array(got.column("v")[0].as_py(), np.float32)
    assert vector.shape == (1280,) and abs(np.linalg.norm(vector) - 1) < 1e-4
    assert got.column("label")[0].as_py() is not None  # classify still gives a label
    fixed = got.schema.field("fixed").type
    assert pa.types.is_fixed_size_list(fixed) and fixed.list_size == 1280 and fixed.value_type == pa.float32()
    ids, vectors = index_vectors(session)
    assert np.abs(vectors[ids.index("o0000")] - vector).max() < 1e-5  # the index holds exactly embed()'s vector


# ---- near-duplicate quality ----------------------------------------------------------------------------
@pytest.mark.slow
def test_each_copy_finds_its_original_first(duplicates):
    session, _, report = duplicates
    assert report.embedded == 4 * N_ORIGINALS and report.errors == 0
    ids, vectors = index_vectors(session)
    distances = 1 - vectors @ vectors.T
    position = {key: i for i, key in enumerate(ids)}
    copy_keys = [key for key in ids if key.startswith("c")]
    hits = strict_hits = 0
    approximate_hits = 0
    for key in copy_keys:
        i, original = position[key], position["o" + key[1:5]]
        row = distances[i].copy()
        row[i] = np.inf
        strict_hits += int(np.argmin(row) == original)
        for sibling in COPIES:
            row[position[f"{key[:5]}_{sibling}"]] = np.inf
        hits += int(np.argmin(row) == original)
        approx = _approximate_first(session, vectors[i], key)
        approximate_hits += int(approx == ids[original])
    # From the original's side: searching with it, each of its copies ranks above every unrelated image
    # (ranks 1-3 hold its three copies), so no sibling is left out of this count.
    above_unrelated = 0
    for key in (k for k in ids if k.startswith("o")):
        i = position[key]
        own = [position[f"c{key[1:]}_{kind}"] for kind in COPIES]
        unrelated = np.delete(distances[i], [i, *own])
        above_unrelated += int(sum(distances[i][c] < unrelated.min() for c in own))
    rate, strict_rate = hits / len(copy_keys), strict_hits / len(copy_keys)
    own_first = above_unrelated / len(copy_keys)
    print(f"\ncopies whose original is rank 1: {rate:.4f} (siblings left out), {strict_rate:.4f} (siblings in); "
          f"copies ranked above every unrelated image when searching with the original: {own_first:.4f}; "
          f"approximate index agrees: {approximate_hits / len(copy_keys):.4f}")
    assert rate >= 0.99 and own_first >= 0.99
    assert approximate_hits / len(copy_keys) >= 0.99


def _approximate_first(session, vector: np.ndarray, key: str) -> str | None:
    """The first row of the forced approximate search that is not the query itself nor a sibling copy."""
    from sightql.search import SearchIndexes
    from sightql.search.nearest import similar

    record = SearchIndexes(session.warehouse, session.registry, session.stages).record("photos")
    found = similar(session.warehouse, record, vector, 5, approximate=True)["key"].to_pylist()
    return next((k for k in found if not k.startswith(key[:5])), None)


@pytest.mark.slow
def test_similar_images_from_python_sql_and_the_approximate_index_agree(duplicates, tmp_path):
    session, images, _ = duplicates
    for i in (0, 7, 42, 123):
        query = images[f"c{i:04d}_crop90"]
        exact = session.similar_images("photos", query, k=5, approximate=False)
        approx = session.similar_images("photos", query, k=5, approximate=True)
        assert exact["key"][0].as_py() == f"c{i:04d}_crop90" and exact["distance"][0].as_py() < 1e-5
        assert f"o{i:04d}" in exact["key"].to_pylist()[1:4]
        assert exact["rank"].to_pylist() == [1, 2, 3, 4, 5]
        assert approx["key"].to_pylist()[:3] == exact["key"].to_pylist()[:3]
        sql = session.sql("SELECT key, distance, rank FROM similar_images('photos', ?::BLOB, 5)", [query])
        assert sql["key"].to_pylist() == exact["key"].to_pylist()
        assert np.allclose(sql["distance"].to_pylist(), exact["distance"].to_pylist(), atol=1e-5)
    path = tmp_path / "query.jpg"
    path.write_bytes(images["o0010"])
    assert session.similar_images("photos", str(path), k=1)["key"].to_pylist() == ["o0010"]
    default_k = session.sql("SELECT count(*) FROM similar_images('photos', ?::BLOB)", [images["o0010"]])
    assert default_k.column(0)[0].as_py() == 10


@pytest.mark.slow
def test_near_duplicates_pairs_each_original_with_its_copies(duplicates):
    session, _, _ = duplicates
    pairs = session.near_duplicates("photos", threshold=0.1)
    rows = pairs.to_pylist()
    assert rows and all(r["key_a"] < r["key_b"] and 0 <= r["distance"] <= 0.1 for r in rows)
    assert [r["distance"] for r in rows] == sorted(r["distance"] for r in rows)
    found = {(r["key_a"], r["key_b"]) for r in rows}
    with_original = [(f"c{i:04d}_{kind}", f"o{i:04d}") for i in range(N_ORIGINALS) for kind in COPIES]
    recall = sum(pair in found for pair in with_original) / len(with_original)
    unrelated = sum(r["key_a"][1:5] != r["key_b"][1:5] for r in rows)
    print(f"\nnear_duplicates(0.1): {len(rows)} pairs, {recall:.3f} of the copy-original pairs, {unrelated} unrelated")
    assert recall >= 0.8 and unrelated <= len(rows) * 0.02
    sql = session.sql("SELECT key_a, key_b, distance FROM near_duplicates('photos', 0.1)")
    assert sql.to_pylist() == [{**r, "distance": pytest.approx(r["distance"], abs=1e-9)} for r in rows]
    approx = {(r["key_a"], r["key_b"]) for r in session.near_duplicates("photos", 0.1, approximate=True).to_pylist()}
    assert len(approx & found) >= 0.95 * len(found)


# ---- incremental refresh -------------------------------------------------------------------------------
def small_rows(n: int, seed: int = 3) -> list[tuple[str, bytes]]:
    return [(f"p{i:02d}", jpeg(image)) for i, image in enumerate(originals(n, seed))]


@pytest.mark.slow
def test_refresh_embeds_only_added_and_changed_rows_and_drops_deleted_ones(home):
    rows = small_rows(10)
    with sightql.connect(home) as session:
        store(session, "photos", rows[:6])
        first = session.create_index("photos")
        assert (first.embedded, first.deleted, first.skipped) == (6, 0, 0)
        again = session.refresh_index("photos")
        assert (again.embedded, again.deleted, again.skipped) == (0, 0, 6)
        session.sql("INSERT INTO photos VALUES (?, ?), (?, ?)", [*rows[6], *rows[7]])
        session.sql("UPDATE photos SET image = ? WHERE id = 'p01'", [rows[8][1]])
        session.sql("DELETE FROM photos WHERE id = 'p02'")
        report = session.refresh_index("photos")
        assert (report.embedded, report.deleted, report.skipped) == (3, 1, 4)
        indexed = session.sql("SELECT id FROM _sightql_index_photos ORDER BY id")["id"].to_pylist()
        assert indexed == ["p00", "p01", "p03", "p04", "p05", "p06", "p07"]
        assert session.similar_images("photos", rows[8][1], k=1)["key"].to_pylist() == ["p01"]  # its new image
        assert "p02" not in session.similar_images("photos", rows[2][1], k=7)["key"].to_pylist()
        assert session.similar_images("photos", rows[7][1], k=1)["key"].to_pylist() == ["p07"]
        assert session.indexes()[0]["dimension"] == 1280 and session.indexes()[0]["table"] == "photos"


@pytest.mark.slow
def test_an_index_of_file_values_searches_with_a_file_value(home, tmp_path):
    folder = tmp_path / "images"
    folder.mkdir()
    for key, data in small_rows(5, seed=5):
        (folder / f"{key}.jpg").write_bytes(data)
    with sightql.connect(home) as session:
        session.load_images("files", folder)
        report = session.create_index("files")
        assert report.embedded == 5
        key_of_p03 = session.sql("SELECT relative_path FROM files WHERE relative_path LIKE '%p03.jpg'").column(0)[0].as_py()
        found = session.sql("SELECT s.key, s.rank FROM similar_images('files', "
                            "(SELECT image FROM files WHERE relative_path LIKE '%p03.jpg'), 2) s")
        assert found["key"][0].as_py() == str(key_of_p03) and found["rank"].to_pylist() == [1, 2]
        session.create_stage("queries").write_bytes("q/p03.jpg", (folder / "p03.jpg").read_bytes())
        assert session.similar_images("files", "@queries/q/p03.jpg", k=1)["key"].to_pylist() == [key_of_p03]
        sql = session.sql("SELECT key FROM similar_images('files', '@queries/q/p03.jpg', 1)")
        assert sql["key"].to_pylist() == [str(key_of_p03)]
        file_value = session.sql("SELECT image FROM files WHERE relative_path = ?", [key_of_p03]).column(0)[0].as_py()
        assert session.similar_images("files", file_value, k=1)["key"].to_pylist() == [key_of_p03]
        (folder / "p03.jpg").write_bytes(small_rows(1, seed=9)[0][1])
        session.load_images("files", folder / "p03.jpg")  # a new FILE value (new bytes): its row is due again
        assert session.refresh_index("files").embedded == 1


CRASH = """
import os, signal, sys
import sightql
from sightql.search import SearchIndexes
point, chunk = sys.argv[2], int(sys.argv[3])
def hook(where, n):
    if where == point and n == chunk:
        os.kill(os.getpid(), signal.SIGKILL)
with sightql.connect(sys.argv[1]) as session:
    SearchIndexes(session.warehouse, session.registry, session.stages).create("photos", chunk_rows=4, on_write=hook)
"""


@pytest.mark.slow
@pytest.mark.parametrize("point", ["after-commit", "before-commit"])
def test_a_refresh_killed_mid_run_loses_and_doubles_nothing(home, point):
    rows = small_rows(14, seed=11)
    with sightql.connect(home) as session:
        store(session, "photos", rows)
    killed = subprocess.run([sys.executable, "-c", CRASH, str(home), point, "2"], capture_output=True, text=True)
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    with sightql.connect(home) as session:
        survived = session.sql("SELECT count(*) FROM _sightql_index_photos").column(0)[0].as_py()
        assert survived == (8 if point == "after-commit" else 4)  # whole chunks of 4 only
        report = session.refresh_index("photos")
        assert report.embedded == 14 - survived and report.skipped == survived
        counts = session.sql("SELECT count(*), count(DISTINCT id), count(embedding) FROM _sightql_index_photos")
        assert counts.to_pylist()[0] == {"count_star()": 14, "count(DISTINCT id)": 14, "count(embedding)": 14}
        for key, data in rows[:3] + rows[-2:]:
            assert session.similar_images("photos", data, k=1)["key"].to_pylist() == [key]


# ---- mistakes: one sentence each -----------------------------------------------------------------------
@pytest.mark.slow
def test_mistakes_are_one_sentence(home, capsys, monkeypatch):
    rows = small_rows(3, seed=13)
    with sightql.connect(home) as session:
        store(session, "photos", rows)
        store(session, "plain", rows)
        session.create_index("photos")
        cases = [
            (lambda: session.similar_images("nowhere", rows[0][1]), r"^no table named 'nowhere'; load images first"),
            (lambda: session.similar_images("plain", rows[0][1]), r"^table 'plain' has no search index; create one with"),
            (lambda: session.similar_images("photos", rows[0][1], k=0), r"^k must be a whole number from 1 to 10,000, not 0$"),
            (lambda: session.similar_images("photos", rows[0][1], k=10_001), r"^k must be a whole number from 1 to 10,000"),
            (lambda: session.similar_images("photos", "a red car"), r"^text search needs an index built with a zero-shot model"),
            (lambda: session.near_duplicates("photos", 3), r"^threshold is a cosine distance from 0 to 2"),
            (lambda: session.similar_images("photos", b"not an image"), r"^the query image cannot be used: "),
            (lambda: session.sql("SELECT * FROM similar_images('plain', 'a red car', 3)"), r"table 'plain' has no search index"),
            (lambda: session.sql("SELECT * FROM similar_images('photos', 'a red car', 3)"), r"text search needs an index"),
        ]
        for call, message in cases:
            with pytest.raises(SightQLError, match=message) as caught:
                call()
            assert "\n" not in str(caught.value)
    monkeypatch.setenv("SIGHTQL_HOME", str(home))
    monkeypatch.setattr(sys, "argv", ["sightql", "search", "plain", "a red car"])
    with pytest.raises(SystemExit) as exit_code:
        cli_main()
    assert exit_code.value.code == 2
    assert capsys.readouterr().err.startswith("error: table 'plain' has no search index")


# ---- CLI -----------------------------------------------------------------------------------------------
@pytest.mark.slow
def test_cli_index_and_search(home, tmp_path):
    rows = small_rows(4, seed=17)
    with sightql.connect(home) as session:
        store(session, "photos", rows)
    query = tmp_path / "q.jpg"
    query.write_bytes(rows[2][1])
    cli = [sys.executable, "-m", "sightql"]

    def run(*args: str) -> str:
        done = subprocess.run([*cli, *args, "-w", str(home)], capture_output=True, text=True, timeout=300)
        assert done.returncode == 0, done.stderr
        return done.stdout

    assert "embedded 4 row(s)" in run("index", "create", "photos")
    assert "embedded 0 row(s)" in run("index", "refresh", "photos")
    lines = run("search", "photos", str(query), "-k", "2").splitlines()
    assert len(lines) == 2 and lines[0].split("\t")[:2] == ["1", "p02"] and float(lines[0].split("\t")[2]) < 1e-5
    assert run("index", "ls").startswith("photos\timage\timagenet@builtin-")
    assert "removed" in run("index", "rm", "photos")
    assert run("index", "ls") == ""


@pytest.mark.slow
def test_above_search_exact_rows_the_approximate_index_file_is_used_and_rebuilt_on_change(home):
    from dataclasses import replace

    from sightql.config import Settings

    rows = small_rows(8, seed=19)
    settings = replace(Settings.from_env(), search_exact_rows=5)
    with sightql.connect(home, settings=settings) as session:
        store(session, "photos", rows[:6])
        session.create_index("photos")  # 6 vectors > 5: the approximate index is built with the refresh
        folder = home / "search" / "_sightql_index_photos"
        first = sorted(p.name for p in folder.iterdir())
        assert len(first) == 2 and first[0].endswith(".faiss") and first[1].endswith(".keys.parquet")
        for key, data in rows[:6]:
            assert session.similar_images("photos", data, k=3)["key"].to_pylist() == \
                session.similar_images("photos", data, k=3, approximate=False)["key"].to_pylist()
            assert session.similar_images("photos", data, k=1)["key"].to_pylist() == [key]
        session.sql("INSERT INTO photos VALUES (?, ?)", list(rows[6]))
        session.sql("DELETE FROM photos WHERE id = 'p00'")
        session.refresh_index("photos")
        second = sorted(p.name for p in folder.iterdir())
        assert len(second) == 2 and not set(second) & set(first)  # a new file for the new content, the old one gone
        assert session.similar_images("photos", rows[6][1], k=1)["key"].to_pylist() == ["p06"]
        assert "p00" not in session.similar_images("photos", rows[0][1], k=6)["key"].to_pylist()
        session.drop_index("photos")
        assert not folder.exists() and session.indexes() == []
