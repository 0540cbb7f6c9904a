"""``sightql.torch``: datasets for your own training loop, over a table (BLOB or FILE values) or a stage.

Real JPEGs made with PIL (some large enough that the JPEG draft decode matters), a temporary warehouse,
a small torch classifier logged in the registry, the real DataLoader with worker processes (forked, and
spawned once). The tensors are checked against what ``classify`` feeds that model: a spy on the loaded
model's ``predict`` captures the engine's input as SQL calls it.
"""

from __future__ import annotations

import gc
import pickle
import shutil
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import sightql
import sightql.torch as sqt
from sightql.errors import ConfigError, ImageError, TableError
from tests.registry_models import tiny_classifier

torch = pytest.importorskip("torch")
from torch.utils.data import DataLoader  # noqa: E402

CLASSES = ("shirt", "shoe")
SIZES = ((64, 48), (640, 480), (48, 64), (300, 200), (96, 96))  # 640x480 decodes at a draft scale for 32 px


def _photo(label: str, index: int) -> Image.Image:
    """Stripes, horizontal for shirts and vertical for shoes, in a colour of their own, plus noise."""
    width, height = SIZES[index % len(SIZES)]
    rng = np.random.default_rng([CLASSES.index(label), index])
    y, x = np.mgrid[0:height, 0:width]
    stripes = ((y if label == "shirt" else x) // max(2, min(width, height) // 8)) % 2
    colour = rng.integers(40, 255, 3)
    pixels = stripes[:, :, None] * colour[None, None, :] + rng.integers(0, 40, (height, width, 3))
    return Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8))


@pytest.fixture
def clothes_dir(tmp_path) -> Path:
    """shirt/0..4.jpg and shoe/0..4.jpg, plus two byte-identical copies of shirt/0.jpg under other names."""
    folder = tmp_path / "clothes"
    for label in CLASSES:
        (folder / label).mkdir(parents=True)
        for i in range(5):
            _photo(label, i).save(folder / label / f"{i}.jpg", quality=90)
    for copy in ("0-copy.jpg", "0-again.jpg"):
        shutil.copyfile(folder / "shirt" / "0.jpg", folder / "shirt" / copy)
    return folder


@pytest.fixture
def clothes(session, clothes_dir):
    """``clothing`` (BLOB), ``clothing_files`` (FILE values) and ``@clothes``; the model ``tex``, alias prod."""
    session.load_images("clothing", clothes_dir, inline=True)
    session.load_images("clothing_files", clothes_dir)
    for table in ("clothing", "clothing_files"):
        session.sql(f"ALTER TABLE {table} ADD COLUMN label VARCHAR")
        session.sql(f"UPDATE {table} SET label = split_part(relative_path, '/', 1)")
    session.create_stage("clothes").put(str(clothes_dir))
    version = session.registry.log_model(tiny_classifier(2), "tex", labels=list(CLASSES), input={"size": 32})
    session.registry.get_model("tex").set_alias("prod", version.version)
    return session


def _fed_by_classify(session, monkeypatch, query: str, params: list, model: str = "tex@prod") -> np.ndarray:
    """The array the engine hands ``model`` when SQL runs ``query`` (one row)."""
    predictor = session.predictor(model)  # the one model cache: the object classify's UDF uses
    captured: list[np.ndarray] = []
    real = predictor.predict
    monkeypatch.setattr(predictor, "predict", lambda batch: captured.append(np.array(batch)) or real(batch))
    (row,) = session.sql(query, params).to_pylist()
    monkeypatch.setattr(predictor, "predict", real)
    assert row["c"]["error"] is None and len(captured) == 1 and captured[0].shape[0] == 1
    return captured[0][0]


def _two_layer_net():
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(3 * 32 * 32, 16), torch.nn.ReLU(),
                               torch.nn.Linear(16, len(CLASSES)))


QUERIES = {
    "clothing": "SELECT classify('tex@prod', image) AS c FROM clothing WHERE relative_path = ?",
    "clothing_files": "SELECT classify('tex@prod', image) AS c FROM clothing_files WHERE relative_path = ?",
    "@clothes": "SELECT classify('tex@prod', stage_file('@clothes', ?)) AS c",
}


@pytest.mark.parametrize("source", list(QUERIES))
def test_one_epoch_with_two_workers_trains_on_what_classify_feeds_the_model(clothes, monkeypatch, source):
    ds = sqt.dataset(clothes, source, model="tex@prod")
    assert ds.classes == list(CLASSES) and len(ds) == 12 and ds.card.input.height == 32
    net = _two_layer_net()
    before = [p.detach().clone() for p in net.parameters()]
    optimiser = torch.optim.SGD(net.parameters(), lr=0.1)
    tensors, targets, losses = [], [], []
    for x, y in DataLoader(ds, batch_size=4, num_workers=2, shuffle=False):
        loss = torch.nn.functional.cross_entropy(net(x), y)
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
        tensors.append(x)
        targets.append(y)
        losses.append(loss.item())
    assert all(np.isfinite(losses)) and any(not torch.equal(a, b) for a, b in zip(before, net.parameters()))
    tensors = torch.cat(tensors)
    assert tensors.shape == (12, 3, 32, 32) and tensors.dtype == torch.float32
    assert torch.cat(targets).tolist() == [CLASSES.index(n.split("/")[0]) for n in ds.names] == ds.targets
    for i, name in enumerate(ds.names):
        fed = _fed_by_classify(clothes, monkeypatch, QUERIES[source], [name])
        assert float(np.abs(tensors[i].numpy() - fed).max()) <= 1e-6, name


TUTORIAL_TABLE = ("CREATE TABLE tutorial AS SELECT relative_path AS file_name, to_file('@clothes', relative_path) "
                  "AS image, split_part(relative_path, '/', 1) AS label FROM directory('@clothes')")


@pytest.mark.parametrize("source", ["clothing", "tutorial"])
def test_split_keeps_byte_identical_copies_together_and_follows_its_seed(clothes, source):
    # tutorial: FILE values of a user's stage and no sha256 column (the copies' etags differ): split hashes the files
    clothes.sql(TUTORIAL_TABLE)
    ds = sqt.dataset(clothes, source, model="tex")
    prefix = "@clothes/" if source == "tutorial" else ""
    copies = {f"{prefix}shirt/0.jpg", f"{prefix}shirt/0-copy.jpg", f"{prefix}shirt/0-again.jpg"}
    assert copies <= set(ds.names)
    identities = [ds.rows.identities[ds.names.index(c)] for c in copies]
    assert all(i.startswith("file:") for i in identities) if source == "tutorial" else len(set(identities)) == 1
    sides = {}
    for seed in range(6):
        train, val = sqt.split(ds, val_fraction=0.3, seed=seed)
        assert sorted(train.names + val.names) == sorted(ds.names) and not set(train.names) & set(val.names)
        assert copies <= set(train.names) or copies <= set(val.names)
        assert len(val) >= 2 and len(train) >= 6
        assert [CLASSES[t] for t in val.targets] == [n.removeprefix(prefix).split("/")[0] for n in val.names]
        sides[seed] = val.names
    assert sqt.split(ds, val_fraction=0.3, seed=0)[1].names == sides[0]  # same seed, same split
    assert any(sides[seed] != sides[0] for seed in range(1, 6))  # another seed, another split


def test_the_training_side_augments_by_seed_and_epoch_and_the_validation_side_never(clothes):
    ds = sqt.dataset(clothes, "@clothes", model="tex", train=True, augment="light", seed=3)
    plain = sqt.dataset(clothes, "@clothes", model="tex")
    train, val = sqt.split(ds, val_fraction=0.3, seed=0)
    by_name = {name: plain[i][0] for i, name in enumerate(plain.names)}
    assert all(torch.equal(val[i][0], by_name[name]) for i, name in enumerate(val.names))

    def epoch(n: int) -> list:
        train.set_epoch(n)
        return [train[i][0] for i in range(len(train))]

    first, again, second = epoch(0), epoch(0), epoch(1)
    assert all(torch.equal(a, b) for a, b in zip(first, again))  # reproducible
    mirrored = [not torch.equal(t, by_name[name]) for t, name in zip(first, train.names)]
    assert any(mirrored) and not all(mirrored)  # a mirror on about half the rows
    assert any(not torch.equal(a, b) for a, b in zip(first, second))  # another epoch, other draws


def test_the_iterable_dataset_with_two_workers_yields_each_row_once_in_a_seeded_order(clothes):
    plain = sqt.dataset(clothes, "clothing_files", model="tex", label=None)
    expected = Counter(t.numpy().tobytes() for t in (plain[i] for i in range(len(plain))))
    it = sqt.iterable_dataset(clothes, "clothing_files", model="tex", label=None, shuffle=True, seed=1)
    assert it.classes is None and len(it) == 12

    def epoch(n: int) -> list[bytes]:
        it.set_epoch(n)
        return [t.numpy().tobytes() for batch in DataLoader(it, batch_size=3, num_workers=2) for t in batch]

    first = epoch(0)
    assert Counter(first) == expected  # every row, none twice, across the two workers
    assert epoch(0) == first and epoch(1) != first
    assert Counter(epoch(1)) == expected


def test_a_pickled_dataset_holds_no_connection_and_spawned_workers_read_without_the_warehouse(clothes):
    made = {source: sqt.dataset(clothes, source, model="tex") for source in ("clothing", "clothing_files")}
    pickled = {source: pickle.dumps(ds) for source, ds in made.items()}
    assert all(b"duckdb" not in data.lower() for data in pickled.values())
    expected = {source: torch.stack([ds[i][0] for i in range(len(ds))]) for source, ds in made.items()}
    # This process holds the warehouse open: a worker that tried to open it would fail. Spawned workers
    # unpickle the dataset (FILE values: the stages travel with it).
    loader = DataLoader(pickle.loads(pickled["clothing_files"]), batch_size=5, num_workers=2,
                        multiprocessing_context="spawn")
    assert torch.equal(torch.cat([x for x, _ in loader]), expected["clothing_files"])
    clothes.close()
    for source, data in pickled.items():
        copy = pickle.loads(data)
        assert torch.equal(copy[3][0], expected[source][3]) and copy.targets == made[source].targets


def test_a_warehouse_folder_is_opened_only_while_the_dataset_is_made(clothes, warehouse):
    clothes.close()
    ds = sqt.dataset(warehouse, "clothing_files", model="tex", classes=["shoe", "shirt"])
    assert ds.classes == ["shoe", "shirt"] and ds.targets == [ds.classes.index(n.split("/")[0]) for n in ds.names]
    with sightql.connect(warehouse, lock_wait=1) as again:  # not held by the dataset
        assert again.sql("SELECT count(*) AS n FROM clothing_files").to_pylist() == [{"n": 12}]
    x, _ = next(iter(DataLoader(ds, batch_size=12, num_workers=2)))
    assert x.shape == (12, 3, 32, 32)


def test_a_blob_snapshot_lives_as_long_as_its_datasets(clothes, warehouse):
    ds = sqt.dataset(clothes, "clothing", model="tex")
    path = ds.rows.reader.snapshot.path
    train, _val = sqt.split(ds, val_fraction=0.3)
    assert path.parent == warehouse / "snapshots" and path.exists()
    del ds, _val
    gc.collect()
    assert path.exists() and train[0][0].shape == (3, 32, 32)  # the split's sides share it
    del train
    gc.collect()
    assert not path.exists()


def _truncated_table(session, clothes_dir) -> None:
    session.sql("CREATE TABLE broken (relative_path VARCHAR, image BLOB, label VARCHAR)")
    for path in sorted(clothes_dir.glob("*/[1-4].jpg")):
        session.sql("INSERT INTO broken VALUES (?, ?, ?)", [path.name + "-" + path.parent.name, path.read_bytes(),
                                                            path.parent.name])
    good = (clothes_dir / "shoe" / "1.jpg").read_bytes()
    session.sql("INSERT INTO broken VALUES (?, ?, ?)", ["bad.jpg", good[: len(good) // 2], "shoe"])


def test_a_bad_image_raises_one_sentence_naming_the_row(clothes, clothes_dir):
    _truncated_table(clothes, clothes_dir)
    sentence = (r"image bad\.jpg in broken cannot be used \(.*\); remove or replace it \(or leave such rows out: "
                r"sightql\.torch\.iterable_dataset\(\.\.\., on_error='skip'\)\)")
    ds = sqt.dataset(clothes, "broken", model="tex")
    with pytest.raises(ImageError, match=sentence):  # re-raised by the DataLoader with the worker's sentence
        for _ in DataLoader(ds, batch_size=4, num_workers=2):
            pass
    with pytest.raises(ImageError, match=sentence):
        ds[ds.names.index("bad.jpg")]
    with pytest.raises(ImageError, match=sentence):
        list(sqt.iterable_dataset(clothes, "broken", model="tex"))


def test_the_iterable_dataset_can_leave_a_bad_image_out_with_a_warning(clothes, clothes_dir):
    _truncated_table(clothes, clothes_dir)
    it = sqt.iterable_dataset(clothes, "broken", model="tex", on_error="skip", shuffle=False)
    with pytest.warns(UserWarning, match=r"image bad\.jpg in broken cannot be used .*; it is left out"):
        assert sum(len(y) for _, y in DataLoader(it, batch_size=4)) == 8
    assert it.skipped == ["bad.jpg"]
    assert sum(len(y) for _, y in DataLoader(it, batch_size=4, num_workers=2)) == 8


def _size(image):
    return torch.tensor(image.size)


def test_your_own_transform_gets_the_whole_upright_image(clothes):
    ds = sqt.dataset(clothes, "@clothes", transform=_size)
    sizes = {name: tuple(ds[i][0].tolist()) for i, name in enumerate(ds.names)}
    assert sizes["shirt/1.jpg"] == (640, 480) and sizes["shoe/3.jpg"] == (300, 200)


def test_mistakes_are_one_sentence(clothes):
    with pytest.raises(ConfigError, match="on_error='maybe' is not valid"):
        sqt.iterable_dataset(clothes, "clothing", on_error="maybe")
    with pytest.raises(ConfigError, match="transform= replaces the model card's transforms"):
        sqt.dataset(clothes, "clothing", transform=_size, train=True)
    with pytest.raises(ConfigError, match="reads text, not images"):
        sqt.dataset(clothes, "clothing", model="minilm")
    with pytest.raises(TableError, match="no label column 'kind'"):
        sqt.dataset(clothes, "clothing", model="tex", label="kind")
    with pytest.raises(ConfigError, match=r"label\(s\) 'shoe' of clothing are not in classes"):
        sqt.dataset(clothes, "clothing", model="tex", classes=["shirt"])
    with pytest.raises(ConfigError, match="seed=-1 must be a whole number"):
        sqt.dataset(clothes, "clothing", seed=-1)
    with pytest.raises(ConfigError, match="split\\(\\) takes a dataset made by sightql.torch"):
        sqt.split([1, 2, 3])
    with pytest.raises(ConfigError, match="val_fraction=1.5 must be between 0 and 1"):
        sqt.split(sqt.dataset(clothes, "clothing", model="tex"), val_fraction=1.5)


@pytest.mark.slow
def test_phone_photos_decode_upright_at_the_draft_scale_as_classify_does(session, phone_photos_dir, monkeypatch):
    stage = session.create_stage("phone")
    for i, name in enumerate(("IMG_0000.jpg", "IMG_0001.jpg", "IMG_0005.jpg")):
        stage.write_bytes(f"{('cat', 'cup')[i % 2]}/{name}", (phone_photos_dir / name).read_bytes())
    ds = sqt.dataset(session, "@phone")  # the bundled model's card, 224 px
    ((got, targets),) = list(DataLoader(ds, batch_size=3, num_workers=2))
    assert got.shape == (3, 3, 224, 224) and targets.tolist() == ds.targets
    for i, name in enumerate(ds.names):
        fed = _fed_by_classify(session, monkeypatch, "SELECT classify('imagenet', stage_file('@phone', ?)) AS c",
                               [name], model="imagenet")
        assert float(np.abs(got[i].numpy() - fed).max()) <= 1e-6, name
