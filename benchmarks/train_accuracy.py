"""Training accuracy and speed on real labelled images, through ``session.train`` end to end.

    python benchmarks/train_accuracy.py --dataset textile   # fine-tune vs linear probe, same 30% held-out split
    python benchmarks/train_accuracy.py --dataset animal    # Animal-MNIST, 10 classes, 28x28 upscaled
    python benchmarks/train_accuracy.py --dataset xray      # chest X-rays: train/ -> test/ (69 images; a smoke test)

Prints a table. On Linux, preloading tcmalloc roughly doubles CPU training throughput:
``LD_PRELOAD=/usr/lib/x86_64-linux-gnu/libtcmalloc_minimal.so.4`` (Debian: libtcmalloc-minimal4).
"""

from __future__ import annotations

import argparse
import gzip
import io
import os
import sys
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import print_table  # noqa: E402

import sightql  # noqa: E402

XRAY = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "chest_xray"


def _label_table(session: sightql.Session, table: str) -> None:
    """Class = first folder of relative_path."""
    session.sql(f"ALTER TABLE {table} ADD COLUMN label VARCHAR")
    session.sql(f"UPDATE {table} SET label = split_part(relative_path, '/', 1)")


def _speed_rows(result) -> list[tuple[str, str]]:
    history = result.history
    seconds = np.mean([h["seconds"] for h in history])
    ips = np.mean([h["images_per_s"] for h in history])
    return [("epochs run", str(len(history))), ("best epoch", str(result.best_epoch)),
            ("seconds per epoch (train + val), mean", f"{seconds:.1f}"),
            ("training images/s, mean", f"{ips:.1f}")]


def linear_probe(session: sightql.Session, table: str, result) -> float:
    """Logistic regression on frozen EfficientNet-Lite0 features (224 px, its own card), on the SAME split."""
    import torch
    from sklearn.linear_model import LogisticRegression

    from sightql.images.preprocess import preprocess
    from sightql.models.torch import efficientnet_lite
    from sightql.train.sources import table_examples
    from sightql.train.splits import split_by_content

    examples, reader = table_examples(session.warehouse, table, "image", "label")
    split = split_by_content(examples, 0.3, 0)
    assert len(split.val) == result.evaluation["images"], "the probe must use the run's own held-out split"
    body = efficientnet_lite.build(pretrained=True)
    body._fc = torch.nn.Identity()
    body.eval()

    def features(part):
        out = []
        for start in range(0, len(part), 64):
            chunk = part[start:start + 64]
            arrays = [preprocess(b, efficientnet_lite.INPUT_SPEC) for b in reader.read([e.key for e in chunk])]
            with torch.inference_mode():
                out.append(body(torch.from_numpy(np.stack(arrays))).numpy())
        return np.concatenate(out)

    x_train, x_val = features(split.train), features(split.val)
    probe = LogisticRegression(max_iter=3000, C=1.0).fit(x_train, [e.label for e in split.train])
    return float((probe.predict(x_val) == np.array([e.label for e in split.val])).mean())


def textile(session: sightql.Session, args) -> list[tuple[str, str]]:
    import conformal_clip_data

    report = session.load_images("textile", conformal_clip_data.textile_simulated_root(), inline=True)  # training reads BLOB tables
    _label_table(session, "textile")
    result = session.train(
        "textile", "textile", label="label", base="efficientnet_lite0", epochs=args.epochs or 5, batch_size=32,
        lr=args.lr or 3e-3, image_size=args.image_size or 160, resize=args.resize or "squash", augment="light",
        val_fraction=0.3, seed=0,
        freeze=args.freeze, unfreeze_after=args.unfreeze_after, checkpoint_every=100,
    )
    probe = linear_probe(session, "textile", result)
    tuned = result.evaluation["accuracy"]
    return [("images (3 classes)", str(len(report.loaded))),
            ("held-out images (30%, by content hash)", str(result.evaluation["images"])),
            ("fine-tuned accuracy (held-out)", f"{tuned:.3f}"),
            ("linear probe accuracy (same split)", f"{probe:.3f}"),
            ("fine-tuned minus probe (points)", f"{100 * (tuned - probe):+.1f}"),
            ("macro F1 (fine-tuned)", f"{result.evaluation['macro_f1']:.3f}"),
            (f"confusion matrix {result.labels} (rows true)", str(result.evaluation["confusion_matrix"])),
            *_speed_rows(result)]


def animal(session: sightql.Session, args) -> list[tuple[str, str]]:
    import pickle

    try:
        import animal_mnist  # noqa: F401  -- only to locate it; importing its modules needs TensorFlow
    except ImportError:
        raise SystemExit("Animal-MNIST is not installed; run: pip install --no-deps animal-mnist") from None
    from PIL import Image

    folder = Path(animal_mnist.__path__[0]) / "data" / "Animal_MNIST"
    # The package ships its arrays as pickles; they are read here, in a benchmark, not in the product.
    with gzip.open(folder / "animal_data_version_3.gz", "rb") as f:
        data = pickle.load(f)
    with gzip.open(folder / "animal_label_version_3.gz", "rb") as f:
        labels = pickle.load(f)
    order = np.random.default_rng(0).permutation(len(data))[: args.limit or len(data)]
    import pyarrow as pa

    blobs = []
    for i in order:
        buffer = io.BytesIO()
        Image.fromarray(data[i]).save(buffer, "PNG")
        blobs.append(buffer.getvalue())
    table = pa.table({"image": pa.array(blobs, pa.binary()), "label": [f"class_{int(labels[i])}" for i in order]})
    session.con.register("animal_arrow", table)
    session.sql("CREATE TABLE animal AS SELECT * FROM animal_arrow")
    session.con.unregister("animal_arrow")
    result = session.train(
        "animal", "animal", label="label", base="efficientnet_lite0", epochs=args.epochs or 4, batch_size=64,
        lr=args.lr or 2e-3, image_size=args.image_size or 64, augment="none", val_fraction=0.2, seed=0,
        checkpoint_every=100,
    )
    return [("images (10 classes)", str(len(order))),
            ("held-out images (20%, by content hash)", str(result.evaluation["images"])),
            ("accuracy (held-out)", f"{result.evaluation['accuracy']:.3f}"),
            ("macro F1", f"{result.evaluation['macro_f1']:.3f}"),
            *_speed_rows(result)]


def xray(session: sightql.Session, args) -> list[tuple[str, str]]:
    if not XRAY.is_dir():
        raise SystemExit(f"{XRAY} is absent; the X-ray benchmark needs the shared sample set")
    stage = session.create_stage("xray")
    stage.put(str(XRAY))
    result = session.train(
        "xray", "@xray/train", label="folder", base="efficientnet_lite0", epochs=args.epochs or 10, batch_size=8,
        lr=args.lr or 1e-3, image_size=args.image_size or 224, augment="standard", val_fraction=0.2, seed=0,
        test="@xray/test", checkpoint_every=100,
    )
    test = result.test_evaluation
    return [("train / held-out / test images", f"{result.train_images} / "
             f"{result.evaluation['images']} / {test['images']}"),
            ("test accuracy", f"{test['accuracy']:.3f}"),
            ("test ROC-AUC (PNEUMONIA positive)", f"{test['roc_auc']:.3f}"),
            ("test confusion matrix [NORMAL, PNEUMONIA]", str(test["confusion_matrix"])),
            *_speed_rows(result)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dataset", choices=["textile", "animal", "xray"], required=True)
    parser.add_argument("--epochs", type=int)
    parser.add_argument("--lr", type=float)
    parser.add_argument("--image-size", type=int)
    parser.add_argument("--limit", type=int, help="Animal-MNIST: use this many images (default all 10,000)")
    parser.add_argument("--freeze", default="none")
    parser.add_argument("--resize", choices=["shorter", "squash"])
    parser.add_argument("--unfreeze-after", type=int)
    args = parser.parse_args()
    if args.freeze not in ("none", "backbone"):
        args.freeze = int(args.freeze)
    warnings.simplefilter("ignore")
    import torch

    started = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp, sightql.connect(Path(tmp) / "wh") as session:
        rows = {"textile": textile, "animal": animal, "xray": xray}[args.dataset](session, args)
    rows += [("torch threads", str(torch.get_num_threads())),
             ("tcmalloc preloaded", "yes" if "tcmalloc" in os.environ.get("LD_PRELOAD", "") else "no"),
             ("wall seconds (whole benchmark)", f"{time.perf_counter() - started:.0f}")]
    print_table(f"session.train on {args.dataset} (CPU, {os.cpu_count()} cores)", rows)


if __name__ == "__main__":
    main()
