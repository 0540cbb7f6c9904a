"""Image search quality with the bundled model's features: same-class precision@10 on labelled images, and
(optionally) how often a near-duplicate copy finds its original first.

    python benchmarks/search_quality.py                           # textile (2,000) and Animal-MNIST (3,000 sampled)
    python benchmarks/search_quality.py --dataset textile
    python benchmarks/search_quality.py --dataset animal --animal-n 10000
    python benchmarks/search_quality.py --dataset none --duplicates 1000   # near-duplicates only, 1,000 originals

Each data set is loaded into a fresh warehouse and indexed with ``session.create_index(table)`` (the bundled
EfficientNet-Lite0's pooled features, ``embed('imagenet', ...)``, 1,280 numbers of unit length). Then every
indexed image is a query: its stored vector goes through SightQL's own search (``sightql.search.nearest.similar``,
what ``session.similar_images`` calls once the query image is embedded) with k=10 and the query row itself
excluded, exactly (DuckDB ``array_cosine_distance`` over the index table) and approximately (the faiss HNSW
index). precision@10 of a query is the fraction of its 10 nearest other images with its label; the table gives
the mean over all queries, per class, and the chance rate (the mean over queries of (images of its class - 1) /
(images - 1): what 10 others drawn at random would score).

Data: the textile set of the ``conformal-clip-data`` package (2,000 JPEGs; labels nominal / global / local
from their folders) and Animal-MNIST (the ``animal-mnist`` package's data arrays, read directly as
train_accuracy.py does: 10,000 28x28 grey images, 10 classes of 1,000; a seeded sample of ``--animal-n``).

``--duplicates N`` repeats the measurement of tests/test_search.py with its own generator (N originals, each
also stored as a JPEG q=60 re-encode, a 0.5x resize and a middle-90% crop): the share of copies whose original
is the nearest image other than the copy itself and its sibling copies, exact and approximate.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
import warnings
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import train_accuracy  # noqa: E402
from _common import print_table  # noqa: E402

import sightql  # noqa: E402
from sightql.config import Settings  # noqa: E402
from sightql.search import SearchIndexes  # noqa: E402
from sightql.search.nearest import similar  # noqa: E402

K = 10


# ---- data -----------------------------------------------------------------------------------
def load_textile(session: sightql.Session, args: argparse.Namespace) -> str:
    """The textile set as train_accuracy.py loads it (key: relative_path; label: its folder)."""
    return train_accuracy.load_textile(session, args)


def load_animal(session: sightql.Session, args: argparse.Namespace) -> str:
    """train_accuracy.py's Animal-MNIST sample (the first ``animal_n`` of a seed-0 permutation of the 10,000),
    copied into a table with a key, which an index needs."""
    train_accuracy.load_animal(session, argparse.Namespace(limit=args.animal_n))
    session.sql("CREATE TABLE animal_keyed (id BIGINT PRIMARY KEY, image BLOB, label VARCHAR)")
    session.sql("INSERT INTO animal_keyed SELECT rowid, image, label FROM animal")
    return "animal_keyed"


def warehouse_home(tmp: Path, name: str) -> Path:
    """A fresh warehouse folder holding the bundled model's exports (made once per run in ``tmp/models-seed``,
    then hard-linked), so no warehouse pays the one-time ONNX export again."""
    import shutil

    seed = tmp / "models-seed"
    if not (seed / "models").is_dir():
        with sightql.connect(seed) as session:
            session.sql("CREATE TABLE seed (id INTEGER PRIMARY KEY, image BLOB)")
            session.create_index("seed")  # exports the features model; no rows to embed
    home = tmp / name
    shutil.copytree(seed / "models", home / "models", copy_function=os.link)
    return home


# ---- precision@10 ---------------------------------------------------------------------------
def indexed(session: sightql.Session, table: str) -> tuple[Any, list[Any], np.ndarray]:
    """The index record of ``table``, and every indexed row's key and vector (in key order)."""
    record = SearchIndexes(session.warehouse, session.registry, session.stages).record(table)
    found = session.sql(f'SELECT "{record.key}" AS key, embedding FROM {record.quoted_index} '
                        "WHERE embedding IS NOT NULL ORDER BY 1")
    return record, found.column("key").to_pylist(), np.array(found.column("embedding").to_pylist(), np.float32)


def labels_of(session: sightql.Session, table: str, key: str, keys: list[Any]) -> list[str]:
    found = session.sql(f'SELECT "{key}" AS key, label FROM {table}')
    label = dict(zip(found.column("key").to_pylist(), found.column("label").to_pylist()))
    return [label[k] for k in keys]


def precision_at_k(session: sightql.Session, record: Any, keys: list[Any], vectors: np.ndarray, labels: list[str],
                   approximate: bool) -> tuple[np.ndarray, list[list[Any]], float]:
    """Per query: precision@K through SightQL's search; the neighbours found; seconds for all queries."""
    label_of = dict(zip(keys, labels))
    scores, neighbours = np.zeros(len(keys)), []
    started = time.perf_counter()
    for i, (key, vector) in enumerate(zip(keys, vectors)):
        found = similar(session.warehouse, record, vector, K, approximate=approximate, exclude=key)["key"].to_pylist()
        neighbours.append(found)
        scores[i] = sum(label_of[other] == labels[i] for other in found) / K
    return scores, neighbours, time.perf_counter() - started


def brute_force_top(vectors: np.ndarray) -> np.ndarray:
    """Each row's K nearest others by cosine distance, in NumPy: a check on the product's exact search."""
    distances = 1.0 - vectors @ vectors.T
    np.fill_diagonal(distances, np.inf)
    return np.argsort(distances, axis=1, kind="stable")[:, :K]


def dataset_rows(session: sightql.Session, name: str, table: str, report: Any) -> list[tuple[str, str]]:
    record, keys, vectors = indexed(session, table)
    labels = labels_of(session, table, record.key, keys)
    counts = Counter(labels)
    n = len(labels)
    chance = float(np.mean([(counts[label] - 1) / (n - 1) for label in labels]))
    exact, exact_found, exact_seconds = precision_at_k(session, record, keys, vectors, labels, approximate=False)
    approx, approx_found, approx_seconds = precision_at_k(session, record, keys, vectors, labels, approximate=True)
    top = brute_force_top(vectors)
    same_set = np.mean([set(found) == {keys[j] for j in top[i]} for i, found in enumerate(exact_found)])
    overlap = np.mean([len(set(a) & set(e)) / K for a, e in zip(approx_found, exact_found)])
    by_class = {label: float(exact[[lab == label for lab in labels]].mean()) for label in sorted(counts)}
    rows = [
        ("images indexed (classes)", f"{n:,} ({len(counts)}: " + ", ".join(f"{c} {counts[c]}" for c in sorted(counts)) + ")"),
        ("index errors (unreadable images)", f"{report.errors}"),
        ("create_index: embed + write", f"{report.seconds:.1f} s ({report.images_per_second:.0f} img/s)"),
        ("precision@10, exact search (mean over every image as query)", f"**{exact.mean():.3f}**"),
        ("precision@10, approximate search (faiss HNSW)", f"{approx.mean():.3f}"),
        ("chance rate (class frequency, query excluded)", f"{chance:.3f}"),
        ("queries with all 10 neighbours of the same class", f"{(exact == 1).mean():.3f}"),
        ("queries with none of the same class", f"{(exact == 0).mean():.3f}"),
        ("precision@10 per class (exact)", ", ".join(f"{c} {p:.3f}" for c, p in by_class.items())),
        ("exact top-10 equal to a NumPy brute force (as sets)", f"{same_set:.3f} of queries"),
        ("approximate top-10 overlap with exact (recall@10)", f"{overlap:.3f}"),
        ("search time per query, exact / approximate",
         f"{1000 * exact_seconds / n:.1f} / {1000 * approx_seconds / n:.1f} ms (index build included once)"),
    ]
    print_table(f"Search quality: {name}, same-class precision@10 (k=10, query excluded)", rows)
    return rows


# ---- near-duplicates ------------------------------------------------------------------------
def duplicate_rows(session: sightql.Session, n: int) -> list[tuple[str, str]]:
    """tests/test_search.py's measurement at ``n`` originals, through SightQL's search (exact and approximate)."""
    root = str(Path(__file__).resolve().parents[1])
    if root not in sys.path:
        sys.path.insert(0, root)
    from tests.test_search import copies, jpeg, originals, store

    started = time.perf_counter()
    rows = []
    for i, image in enumerate(originals(n)):
        rows.append((f"o{i:05d}", jpeg(image)))
        rows += [(f"c{i:05d}_{kind}", data) for kind, data in copies(image).items()]
    made = time.perf_counter() - started
    store(session, "photos", rows)
    report = session.create_index("photos")
    record, keys, vectors = indexed(session, "photos")
    hits = {False: 0, True: 0}
    queries = [(k, v) for k, v in zip(keys, vectors) if k.startswith("c")]
    for key, vector in queries:
        for approximate in (False, True):
            # k=4 after the query itself: at most 2 sibling copies come first, so a non-sibling is always found
            found = similar(session.warehouse, record, vector, 4, approximate=approximate, exclude=key)["key"].to_pylist()
            first = next((k for k in found if not k.startswith(key[:6])), None)
            hits[approximate] += int(first == "o" + key[1:6])
    result = [
        ("originals (images indexed)", f"{n:,} ({report.embedded:,}; {report.errors} errors)"),
        ("generating the images", f"{made:.0f} s"),
        ("create_index: embed + write", f"{report.seconds:.1f} s ({report.images_per_second:.0f} img/s)"),
        ("copies whose original is rank 1, exact (siblings left out)",
         f"**{hits[False] / len(queries):.4f}** ({len(queries) - hits[False]} of {len(queries):,} missed)"),
        ("same, approximate (faiss HNSW)",
         f"{hits[True] / len(queries):.4f} ({len(queries) - hits[True]} of {len(queries):,} missed)"),
    ]
    print_table(f"Near-duplicates: {n:,} originals, each with a JPEG q=60, a 0.5x and a 90%-crop copy", result)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dataset", choices=["textile", "animal", "both", "none"], default="both")
    parser.add_argument("--animal-n", type=int, default=3000, help="Animal-MNIST images sampled (default 3000 of 10000)")
    parser.add_argument("--duplicates", type=int, default=0, metavar="N",
                        help="also measure near-duplicates with N originals (4 N images; default 0: skip)")
    args = parser.parse_args()
    warnings.simplefilter("ignore")
    started = time.perf_counter()
    loaders = {"textile": ("textile (conformal-clip-data)", load_textile),
               "animal": (f"Animal-MNIST, {args.animal_n:,} sampled with seed 0", load_animal)}
    chosen = list(loaders) if args.dataset == "both" else [] if args.dataset == "none" else [args.dataset]
    with tempfile.TemporaryDirectory() as tmp:
        for dataset in chosen:
            name, load = loaders[dataset]
            with sightql.connect(warehouse_home(Path(tmp), dataset)) as session:
                table = load(session, args)
                report = session.create_index(table)
                dataset_rows(session, name, table, report)
        if args.duplicates:
            with sightql.connect(warehouse_home(Path(tmp), "duplicates")) as session:
                duplicate_rows(session, args.duplicates)
    print(f"\n{os.cpu_count()} CPU cores; search_ef {Settings.from_env().search_ef}; "
          f"wall {time.perf_counter() - started:.0f} s")


if __name__ == "__main__":
    main()
