"""CPU training throughput through ``session.train``: an earlier revision of SightQL against this one.

    python benchmarks/train_before_after.py --before be2fc6a                 # 320 textile images, 3 epochs, 2 rounds
    python benchmarks/train_before_after.py --before be2fc6a --images 640 --epochs 3 --rounds 1

The earlier revision's ``src/`` is exported with ``git archive`` into a temporary folder; each run is a
fresh process with that ``src/`` (or this checkout's) first on its path, in turn (before, after, before,
after, ...), so a machine that drifts slows both alike. Every run trains the bundled EfficientNet-Lite0 on
the same ``--images`` textile JPEGs (a fixed sample, stratified by nothing but a hash of the path) with
the same explicit settings: 224 px, ``resize='squash'``, batch 32, ``lr=1e-3``, ``augment='light'``, a
full fine-tune for ``--epochs`` epochs, no early stop; this revision also runs without its probe epoch
and learning-rate range test, which the earlier one does not have. What is compared is the img/s that
each run's ``training_log`` records for its fine-tuning epochs: epoch 1 (cold: the decoded-image cache is
still empty) and the mean of the later ones.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def run_once(images: int, epochs: int) -> dict:
    """One ``session.train`` in this process, with whichever ``sightql`` is first on the path."""
    import conformal_clip_data

    import sightql
    from sightql.train.options import TrainOptions

    settings = {"epochs": epochs, "image_size": 224, "resize": "squash", "lr": 1e-3, "batch_size": 32,
                "augment": "light", "patience": None, "register": False, "seed": 0}
    if "probe" in TrainOptions.__dataclass_fields__:  # this revision: no probe epoch, every epoch run
        settings.update(probe=False, patience=0)
    with tempfile.TemporaryDirectory() as folder:
        session = sightql.connect(str(Path(folder) / "w.duckdb"))
        session.load_images("textile", conformal_clip_data.textile_simulated_root(), inline=True)
        session.sql(f"CREATE TABLE sample AS SELECT image, split_part(relative_path, '/', 1) AS label "
                    f"FROM textile ORDER BY hash(relative_path) LIMIT {int(images)}")
        started = time.perf_counter()
        result = session.train("speed", "sample", progress=False, **settings)
        seconds = time.perf_counter() - started
        log = session.sql("SELECT epoch, images_per_s FROM training_log WHERE run_id = ? AND epoch > 0 "
                          "ORDER BY epoch", [result.run_id]).to_pylist()
        session.close()
    speeds = [row["images_per_s"] for row in log]
    return {"epoch1": speeds[0], "later": statistics.mean(speeds[1:]) if len(speeds) > 1 else None,
            "seconds": seconds, "epochs": len(log), "settings": settings}


def export_revision(revision: str, into: Path) -> Path:
    archive = subprocess.run(["git", "-C", str(ROOT), "archive", revision, "src"], check=True,
                             capture_output=True).stdout
    subprocess.run(["tar", "-x", "-C", str(into)], input=archive, check=True)
    return into / "src"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--before", required=True, help="the earlier revision (a commit, tag or branch)")
    parser.add_argument("--images", type=int, default=320)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--inner", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.inner:
        print(json.dumps(run_once(args.images, args.epochs)))
        return
    results: dict[str, list[dict]] = {"before": [], "after": []}
    with tempfile.TemporaryDirectory() as folder:
        sources = {"before": export_revision(args.before, Path(folder)), "after": ROOT / "src"}
        for _ in range(args.rounds):
            for name, src in sources.items():
                env = {k: v for k, v in os.environ.items() if not k.startswith("SIGHTQL_")}
                env["PYTHONPATH"] = str(src)
                out = subprocess.run([sys.executable, __file__, "--inner", "--before", args.before,
                                      "--images", str(args.images), "--epochs", str(args.epochs)],
                                     env=env, check=True, capture_output=True, text=True).stdout
                results[name].append(json.loads(out.strip().splitlines()[-1]))
                print(f"{name}: {results[name][-1]}", file=sys.stderr)
    print(f"\nsession.train throughput, {args.images} textile images, 224 px squash, batch 32, "
          f"{args.epochs} epochs, {args.rounds} round(s) alternated\n")
    rows = [("measure", f"{args.before} (before)", "this checkout (after)", "after / before"), ("---",) * 4]
    for key, title in (("epoch1", "epoch 1 img/s (cold), median"), ("later", "epochs 2+ img/s, median")):
        before = statistics.median(r[key] for r in results["before"])
        after = statistics.median(r[key] for r in results["after"])
        rows.append((title, f"{before:.1f}", f"{after:.1f}", f"x{after / before:.2f}"))
    rows.append(("whole run seconds, median", *(f"{statistics.median(r['seconds'] for r in results[n]):.0f}"
                                                 for n in ("before", "after")), ""))
    for row in rows:
        print("| " + " | ".join(row) + " |")


if __name__ == "__main__":
    main()
