"""CPU training throughput per speed setting, on the textile JPEGs, settings alternated in one run.

    python benchmarks/train_speed.py                          # 256 images, 224 px squash, batch 32, 2 rounds
    python benchmarks/train_speed.py --images 128 --rounds 3 --settings baseline,all

Each setting runs in a fresh process (glibc's allocator state is per process), in turn, ``--rounds``
times (A B C A B C ...), so a machine that drifts slows every setting alike; the table gives each
setting's median. What is timed, with the bundled EfficientNet-Lite0, full fine-tune (AdamW, the head
at 1e-3 and the body at 1e-4, as ``session.train``), ``augment='light'``:

* **step img/s**: the training loop end to end (read files, decode, augment, resize, the model's forward
  and backward, AdamW) over the second epoch of ``--images`` images, after a first epoch that warms
  up (and fills the decoded-image cache where the setting has one);
* **decode img/s**: the loader alone over the same images, no model (cold: nothing cached);
* **model img/s**: forward, backward and AdamW on one fixed batch, no loading;
* **cpu-s/img** of the timed epoch (less sensitive than wall time to other jobs on the machine), and the
  epoch's minor page faults per step, which is what the glibc setting removes.

``baseline`` is the training code with every speed setting off, which is what it did before them.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

# setting -> (glibc malloc tuning, channels-last, prefetch, decoded-image cache, precision)
SETTINGS = {
    "baseline": (False, False, False, False, "fp32"),
    "malloc": (True, False, False, False, "fp32"),
    "channels_last": (False, True, False, False, "fp32"),
    "malloc+channels_last": (True, True, False, False, "fp32"),
    "all": (True, True, True, True, "auto"),  # what sightql train does by default
    "all-but-prefetch": (True, True, False, True, "auto"),
    "all-but-cache": (True, True, True, False, "auto"),
    "all+bf16": (True, True, True, True, "bf16"),  # only meaningful on a CPU with AVX-512 BF16 or AMX
}


class FolderReader:
    """Image bytes by path: what a local stage's reader does, without a warehouse."""

    description = "textile folder"

    def read(self, keys):
        return [Path(key).read_bytes() for key in keys]


def _examples(count: int):
    import conformal_clip_data

    from sightql.train.sources import Example

    root = Path(conformal_clip_data.textile_simulated_root())
    files = sorted(root.glob("*/*.jpg"))
    step = max(1, len(files) // count)
    picked = files[::step][:count]  # every class, spread over the set
    return [Example(key=str(p), label=p.parent.name, sha256=str(p), name=p.name) for p in picked]


def child(setting: str, count: int, size: int, batch: int) -> dict:
    """One setting's figures, in this process."""
    malloc, channels_last, prefetch, cache_on, precision = SETTINGS[setting]
    os.environ["SIGHTQL_MALLOC_TUNING"] = "1" if malloc else "0"
    import torch

    from sightql.images.decode import ImageLimits
    from sightql.train import speed
    from sightql.train.bases import BUNDLED, build_base, train_input
    from sightql.train.dataset import ImageRowsDataset, make_loader
    from sightql.train.image_cache import DecodedImageCache

    examples = _examples(count)
    labels = sorted({e.label for e in examples})
    index = {label: i for i, label in enumerate(labels)}
    with speed.tuned_malloc() as tuned:
        base = build_base(None, None, BUNDLED, len(labels))  # type: ignore[arg-type]  # bundled: no warehouse needed
        spec = train_input(base, size, "squash")
        model = speed.to_channels_last(base.module, "cpu") if channels_last else base.module
        optimizer = torch.optim.AdamW([{"params": list(base.head.parameters()), "lr": 1e-3},
                                       {"params": [p for n, p in model.named_parameters() if not n.startswith("_fc")], "lr": 1e-4}])
        loss_fn = torch.nn.CrossEntropyLoss()
        chosen = speed.choose_precision(precision, "cpu")
        cache = DecodedImageCache(512 * 1024 * 1024) if cache_on else None

        def loader(augment: str, with_cache: bool):
            dataset = ImageRowsDataset(examples, FolderReader(), index, spec, ImageLimits(), augment, 0, 0,
                                       cache if with_cache else None)
            return dataset, make_loader(dataset, batch, True, 0, prefetch=prefetch)

        def step(images, targets):
            if channels_last:
                images = images.contiguous(memory_format=torch.channels_last)
            optimizer.zero_grad(set_to_none=True)
            with speed.autocast("cpu", False, chosen):
                loss = loss_fn(model(images).float(), targets)
            loss.backward()
            optimizer.step()

        # decode only, cold
        _, plain = loader("light", False)
        started = time.perf_counter()
        decoded = sum(len(t) for _, t in plain)
        decode_ips = decoded / (time.perf_counter() - started)

        # model only, one fixed batch
        images, targets = next(iter(plain))
        model.train()
        step(images, targets)
        started, steps = time.perf_counter(), 2
        for _ in range(steps):
            step(images, targets)
        model_ips = steps * len(targets) / (time.perf_counter() - started)

        # end to end: epoch 1 warms up (and fills the cache), epoch 2 is timed
        dataset, train_loader = loader("light", True)
        for epoch in (1, 2):
            dataset.set_epoch(epoch)
            train_loader.generator.manual_seed(epoch)
            if epoch == 2:
                usage, cpu, started = resource.getrusage(resource.RUSAGE_SELF), time.process_time(), time.perf_counter()
            seen = 0
            for images, targets in train_loader:
                step(images, targets)
                seen += len(targets)
        wall, cpu = time.perf_counter() - started, time.process_time() - cpu
        faults = resource.getrusage(resource.RUSAGE_SELF).ru_minflt - usage.ru_minflt
    return {"setting": setting, "step": seen / wall, "decode": decode_ips, "model": model_ips, "cpu_per_img": cpu / seen,
            "faults_per_step": faults / len(train_loader), "malloc_tuned": tuned, "precision": chosen,
            "threads": torch.get_num_threads()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--images", type=int, default=256)
    parser.add_argument("--image-size", type=int, default=224)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--settings", default="baseline,malloc,channels_last,malloc+channels_last,all")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(child(args.child, args.images, args.image_size, args.batch_size)))
        return
    settings = args.settings.split(",")
    unknown = [s for s in settings if s not in SETTINGS]
    if unknown:
        parser.error(f"unknown setting(s) {unknown}; choose from {', '.join(SETTINGS)}")
    results: dict[str, list[dict]] = {s: [] for s in settings}
    for round_ in range(args.rounds):
        for setting in settings:
            out = subprocess.run([sys.executable, __file__, "--child", setting, "--images", str(args.images),
                                  "--image-size", str(args.image_size), "--batch-size", str(args.batch_size)],
                                 check=True, capture_output=True, text=True).stdout
            results[setting].append(json.loads(out.strip().splitlines()[-1]))
            print(f"round {round_ + 1}: {results[setting][-1]}", file=sys.stderr)
    base = statistics.median(r["step"] for r in results[settings[0]])
    print(f"\nCPU training speed, textile, {args.images} images, {args.image_size} px squash, batch {args.batch_size}, "
          f"medians of {args.rounds} round(s), {results[settings[0]][0]['threads']} torch threads")
    print("| setting (precision) | step img/s | vs first | decode img/s | model img/s | cpu-s/img | minor faults/step |")
    print("|---|---|---|---|---|---|---|")
    for setting, runs in results.items():
        med = {k: statistics.median(r[k] for r in runs) for k in ("step", "decode", "model", "cpu_per_img", "faults_per_step")}
        print(f"| {setting} ({runs[0]['precision']}) | {med['step']:.1f} | x{med['step'] / base:.2f} | {med['decode']:.0f} | "
              f"{med['model']:.1f} | {med['cpu_per_img']:.3f} | {med['faults_per_step']:,.0f} |")

if __name__ == "__main__":
    main()
