"""The GPU predictor for torch modules: fp16, channels-last, batches sized to the GPU, JPEGs decoded on it.

:class:`TorchGpuPredictor` answers the :class:`~sightql.models.base.Predictor` protocol
(``predict(array)``) and adds :meth:`~TorchGpuPredictor.predict_encoded`: image bytes in, one output
row and one error per image out. There the images are decoded and preprocessed on the device
(:mod:`sightql.images.tensor_preprocess`: nvJPEG for plain JPEGs, SightQL's CPU path for the rest)
in a background thread, one batch ahead of the model, so decoding overlaps the model's work.

On CUDA the next batch is prepared on a stream of its own, which the model's stream waits for
(an event), and the prepared batch is recorded on the model's stream so the caching allocator
does not hand its memory out while the model still reads it. The decode stream is synchronised
before each decode: nvJPEG's hardware engine may write its output before work already queued on
its stream has run (pytorch/vision#9606, meta-pytorch/torchcodec#1634).

On the CPU (tests, machines without a GPU) the same code runs in float32: torch's CPU autocast to
float16 works but runs about ten times slower than float32.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np

from sightql.images.decode import ImageLimits
from sightql.images.tensor_preprocess import preprocess_encoded
from sightql.models.base import finish_output
from sightql.models.card import ModelCard

CPU_BATCH_SIZE = 32  # on the CPU the batch is not probed
PROBE_SIZES = (16, 32, 64, 128, 256, 512, 1024, 2048)
PROBE_GAIN = 1.05  # a doubled batch must be at least 5% faster (images per second) to be chosen


class TorchGpuPredictor:
    """A torch module run for inference on ``device`` (``'cuda'``, ``'cuda:1'``, or ``'cpu'`` for tests).

    ``fp16`` runs the module under ``torch.autocast(float16)`` on CUDA; ``batch_size`` None probes
    the GPU on first use (:meth:`choose_batch_size`). ``takes_encoded`` tells the batch engine to
    hand :meth:`predict_encoded` the images' bytes; by default it is true on CUDA only.
    """

    def __init__(
        self,
        module: Any,
        card: ModelCard,
        device: str = "cuda",
        *,
        fp16: bool = True,
        batch_size: int | None = None,
        max_batch_size: int = 1024,
        limits: ImageLimits = ImageLimits(),
        cpu_threads: int | None = None,
        takes_encoded: bool | None = None,
    ):
        import torch

        self._torch = torch
        self.card = card
        self.device = device
        self.model_version = card.name
        self.limits = limits
        self.on_cuda = device.startswith("cuda")
        self.fp16 = fp16 and self.on_cuda
        self.takes_encoded = self.on_cuda if takes_encoded is None else takes_encoded
        self._channels_last = card.input.layout == "NCHW"
        module = module.eval().to(device)
        self._module = module.to(memory_format=torch.channels_last) if self._channels_last else module
        self._batch_size = batch_size
        self.max_batch_size = max_batch_size
        self._probe_lock = threading.Lock()
        # The CPU path's share of predict_encoded (PNG, turned JPEGs, ...) over several cores.
        self._cpu_pool = ThreadPoolExecutor(max_workers=cpu_threads or os.cpu_count() or 1, thread_name_prefix="sightql-gpu-cpu")

    # ---- running the module ------------------------------------------------------------------
    def run_tensor(self, batch: Any) -> Any:
        """The module's raw output (float32, on the device) for a float batch already on the device."""
        torch = self._torch
        if self._channels_last and batch.dim() == 4:
            batch = batch.contiguous(memory_format=torch.channels_last)
        with torch.inference_mode(), torch.autocast(device_type="cuda", dtype=torch.float16, enabled=self.fp16):
            return self._module(batch).float()

    def predict(self, batch: np.ndarray) -> np.ndarray:
        """Preprocessed inputs in (the card's layout), the card's outputs out: the Predictor protocol."""
        tensor = self._torch.from_numpy(np.ascontiguousarray(batch, dtype=np.float32)).to(self.device)
        return finish_output(self.run_tensor(tensor).cpu().numpy(), self.card)

    # ---- bytes in ------------------------------------------------------------------------------
    def prepare_encoded(self, images: Sequence[bytes | None], stream: Any = None) -> tuple[Any, list[str | None], Any]:
        """(input batch on the device, each row's error, an event the batch is ready at or None): one
        batch decoded and preprocessed, on ``stream`` when given (CUDA)."""
        def prepare() -> tuple[Any, list[str | None]]:
            return preprocess_encoded(images, self.card.input, self.device, self.limits, cpu_map=self._cpu_pool.map)

        if stream is None:
            return (*prepare(), None)
        torch = self._torch
        with torch.cuda.stream(stream):
            stream.synchronize()  # see the module's docstring: nvJPEG's hardware engine and the allocator
            batch, errors = prepare()
            ready = torch.cuda.Event()
            ready.record(stream)
        return batch, errors, ready

    def predict_encoded(self, images: Sequence[bytes | None]) -> tuple[np.ndarray, list[str | None]]:
        """Each image's output row (NaN where it could not be read) and error (None where it was).

        Batches of :attr:`batch_size`; a background thread decodes the next batch while the module
        runs this one. A failing model call raises (the engine turns that into the batch's rows' errors).
        """
        size = self.batch_size
        starts = list(range(0, len(images), size))
        stream = self._torch.cuda.Stream(device=self.device) if self.on_cuda else None
        parts: list[tuple[list[int], np.ndarray]] = []
        errors: list[str | None] = []
        with ThreadPoolExecutor(max_workers=1, thread_name_prefix="sightql-gpu-decode") as ahead:
            pending = ahead.submit(self.prepare_encoded, images[0:size], stream) if starts else None
            for start in starts:
                batch, batch_errors, ready = pending.result()  # type: ignore[union-attr]
                following = start + size
                pending = ahead.submit(self.prepare_encoded, images[following : following + size], stream) \
                    if following < len(images) else None
                good = [i for i, error in enumerate(batch_errors) if error is None]
                errors.extend(batch_errors)
                if good:
                    parts.append(([start + i for i in good], self._run_prepared(batch, good, ready)))
        return _assembled(len(images), parts, len(self.card.labels)), errors

    def _run_prepared(self, batch: Any, good: list[int], ready: Any) -> np.ndarray:
        torch = self._torch
        if ready is not None:
            current = torch.cuda.current_stream(self.device)
            current.wait_event(ready)
            batch.record_stream(current)  # its memory is not reused until this stream is done with it
        if len(good) < batch.shape[0]:
            batch = batch[torch.tensor(good, device=batch.device)]
        return finish_output(self.run_tensor(batch).cpu().numpy(), self.card)

    # ---- the batch size ------------------------------------------------------------------------
    @property
    def batch_size(self) -> int:
        """Images per model call: given, or on CUDA probed once (:meth:`choose_batch_size`); 32 on the CPU."""
        with self._probe_lock:
            if self._batch_size is None:
                self._batch_size = self.choose_batch_size() if self.on_cuda else CPU_BATCH_SIZE
            return self._batch_size

    def choose_batch_size(self) -> int:
        """Double the batch from 16 while images per second still rise by 5% and memory lasts, up to
        ``max_batch_size``; the best size seen. Takes a few seconds, once per loaded model."""
        torch = self._torch
        best_size, best_rate = PROBE_SIZES[0], 0.0
        for size in (s for s in PROBE_SIZES if s <= self.max_batch_size):
            try:
                rate = self._images_per_second(size)
            except torch.cuda.OutOfMemoryError:
                break
            finally:
                torch.cuda.empty_cache()
            if rate < best_rate * PROBE_GAIN:
                break
            best_size, best_rate = size, rate
        return best_size

    def _images_per_second(self, size: int, calls: int = 3) -> float:
        torch = self._torch
        batch = torch.randn(self.card.input.shape(size), device=self.device)
        self.run_tensor(batch)  # warm-up: cuDNN picks its kernels for this shape
        torch.cuda.synchronize(self.device)
        start = time.perf_counter()
        for _ in range(calls):
            self.run_tensor(batch)
        torch.cuda.synchronize(self.device)
        return calls * size / (time.perf_counter() - start)


def _assembled(count: int, parts: list[tuple[list[int], np.ndarray]], labels: int) -> np.ndarray:
    """One output row per image: each part's rows in their places, NaN for the rows without one."""
    width = parts[0][1].shape[1] if parts else labels
    out = np.full((count, width), np.nan, dtype=np.float32)
    for rows, values in parts:
        out[rows] = values
    return out
