"""Benchmark the GPU path: fp16 torch model, JPEGs decoded on the GPU, decoding overlapped with the model.

    python benchmarks/gpu_predict.py                       # --device cuda, 4,096 generated 500x375 JPEGs
    python benchmarks/gpu_predict.py --n 1024 --batch 256  # a fixed batch instead of the probed one
    python benchmarks/gpu_predict.py --device cpu --n 32   # the same code on the CPU (a smoke test)

Prints, from one run on one machine, for the bundled EfficientNet-Lite0 (``TorchGpuPredictor``):
  (a) model only: images per second on preprocessed tensors already on the device (fp16 on CUDA,
      the chosen batch size)
  (b) decode only: GPU JPEG decode + resize/crop/normalise (``preprocess_encoded``), bytes in
  (c) end to end: bytes in, labels out (``predict_encoded``: decoding one batch ahead, in a thread)
(a') the model's own speed inside (c) (its calls timed with CUDA events), and the ratios a' / a
(how much decoding beside it slows the model), c / a (how much of the model's speed the whole
pipeline keeps) and c / min(a, b) (against perfect overlap). ``benchmarks/batch_predict.py --device cuda`` calls
:func:`main` here.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import generated_jpegs, print_table  # noqa: E402

from sightql.images.tensor_preprocess import preprocess_encoded  # noqa: E402
from sightql.models.builtin import imagenet_card, imagenet_torch_module  # noqa: E402
from sightql.models.torch.gpu import TorchGpuPredictor  # noqa: E402


def _synchronize(device: str) -> None:
    import torch

    if device.startswith("cuda"):
        torch.cuda.synchronize(device)


def model_only(predictor: TorchGpuPredictor, images: list[bytes], n: int) -> float:
    """(a) Images per second of the module alone, on one preprocessed batch already on the device."""
    size = predictor.batch_size
    batch, _ = preprocess_encoded((images * (size // len(images) + 1))[:size], predictor.card.input, predictor.device)
    for _ in range(2):  # warm-up: cuDNN's (or oneDNN's) kernels for this shape
        predictor.run_tensor(batch)
    _synchronize(predictor.device)
    rounds = max(2, n // size)
    start = time.perf_counter()
    for _ in range(rounds):
        predictor.run_tensor(batch)
    _synchronize(predictor.device)
    return rounds * size / (time.perf_counter() - start)


def decode_only(predictor: TorchGpuPredictor, images: list[bytes]) -> float:
    """(b) Images per second of decoding and preprocessing on the device, in the predictor's batches."""
    size, spec = predictor.batch_size, predictor.card.input
    preprocess_encoded(images[:size], spec, predictor.device)  # warm-up (nvJPEG's handles, kernels)
    _synchronize(predictor.device)
    start = time.perf_counter()
    for first in range(0, len(images), size):
        preprocess_encoded(images[first : first + size], spec, predictor.device)
    _synchronize(predictor.device)
    return len(images) / (time.perf_counter() - start)


def end_to_end(predictor: TorchGpuPredictor, images: list[bytes]) -> tuple[float, float, int]:
    """(c) Images per second from bytes to labels; the model's own images per second inside that run
    (its calls timed with CUDA events on the model's stream, or the clock on the CPU); rows with an error."""
    labels = predictor.card.labels
    predictor.predict_encoded(images[: predictor.batch_size])  # warm-up
    timed = _ModelTimer(predictor)
    start = time.perf_counter()
    outputs, errors = predictor.predict_encoded(images)
    answers = [labels[int(row.argmax())] if error is None else None for row, error in zip(outputs, errors)]
    seconds = time.perf_counter() - start
    return len(answers) / seconds, timed.images / timed.seconds(), sum(error is not None for error in errors)


class _ModelTimer:
    """Times each of the predictor's model calls (``run_tensor``) while the pipeline runs."""

    def __init__(self, predictor: TorchGpuPredictor):
        import torch

        self.images, self._spans, self._torch = 0, [], torch
        self._cuda = predictor.on_cuda
        run = predictor.run_tensor

        def timed_run(batch: Any) -> Any:
            self.images += batch.shape[0]
            if self._cuda:
                begin, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
                begin.record()
                out = run(batch)
                end.record()
                self._spans.append((begin, end))
                return out
            begin_s = time.perf_counter()
            out = run(batch)
            self._spans.append(time.perf_counter() - begin_s)
            return out

        predictor.run_tensor = timed_run  # type: ignore[method-assign]

    def seconds(self) -> float:
        if self._cuda:
            self._torch.cuda.synchronize()
            return sum(begin.elapsed_time(end) for begin, end in self._spans) / 1000
        return sum(self._spans)


def device_name(device: str) -> str:
    import torch

    if device.startswith("cuda"):
        return torch.cuda.get_device_name(device)
    return f"CPU ({os.cpu_count()} cores)"


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cuda", help="'cuda' (default), 'cuda:N' or 'cpu'")
    parser.add_argument("--n", type=int, default=None, help="images (default 4096 on CUDA, 32 on the CPU)")
    parser.add_argument("--batch", type=int, default=None, help="batch size (default: probed on CUDA, 16 on the CPU)")
    parser.add_argument("--fp32", action="store_true", help="run the model in float32 instead of fp16 autocast")
    args = parser.parse_args(argv)
    on_cuda = args.device.startswith("cuda")
    n = args.n or (4096 if on_cuda else 32)
    print(f"generating {n} JPEGs at 500x375 ...", flush=True)
    images = generated_jpegs(n, (500, 375))
    predictor = TorchGpuPredictor(
        imagenet_torch_module(), imagenet_card(), args.device, fp16=not args.fp32,
        batch_size=args.batch or (None if on_cuda else 16),
    )
    started = time.perf_counter()
    size = predictor.batch_size
    chosen = f"{size} ({'given' if args.batch or not on_cuda else f'probed in {time.perf_counter() - started:.1f} s'})"
    a = model_only(predictor, images, n)
    b = decode_only(predictor, images)
    c, in_pipeline, errors = end_to_end(predictor, images)
    results = {"device": device_name(args.device), "batch_size": size, "model_only": a, "decode_only": b,
               "end_to_end": c, "model_in_pipeline": in_pipeline, "errors": errors, "n": n}
    precision = "fp16 autocast" if predictor.fp16 else "float32"
    rows = [
        ("device", results["device"]),
        ("images (n)", f"{n} JPEGs, 500x375"),
        ("model", f"EfficientNet-Lite0, {precision}, channels_last"),
        ("batch size", chosen),
        ("(a) model only, tensors on the device", f"{a:.1f} img/s"),
        ("(b) decode only: JPEG decode + preprocess on the device", f"{b:.1f} img/s"),
        ("(c) end to end: bytes in, labels out, overlapped", f"{c:.1f} img/s ({errors} errors)"),
        ("(a') the model inside (c): its calls' own time", f"{in_pipeline:.1f} img/s"),
        ("a' / a: the model's speed in the pipeline against alone", f"{in_pipeline / a:.2f}"),
        ("c / a: end to end against the model alone", f"{c / a:.2f}"),
        ("c / min(a, b): against perfect overlap", f"{c / min(a, b):.2f}"),
    ]
    print_table("GPU predict benchmark", rows)
    return results


if __name__ == "__main__":
    main()
