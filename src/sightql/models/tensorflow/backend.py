"""Import TensorFlow and tf2onnx on first use, or say what to install."""

from __future__ import annotations

import contextlib
import ctypes
import importlib
import importlib.util
import os
import sys
from pathlib import Path
from typing import Any, Iterator

from sightql.errors import MissingDependencyError


def import_tensorflow() -> Any:
    """TensorFlow, imported now (a second or more), with its C++ start-up chatter off unless the
    user asked for it (``TF_CPP_MIN_LOG_LEVEL`` already set is left as it is)."""
    chatty = "TF_CPP_MIN_LOG_LEVEL" in os.environ or "tensorflow" in sys.modules
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    if "keras" not in sys.modules and importlib.util.find_spec("torch") is not None:
        # TensorFlow imports Keras as it loads, and Keras fixes its backend at that first import; SightQL runs
        # Keras models on torch (sightql.models.keras.backend), so a Keras model logged after a SavedModel
        # in one process must find Keras on torch, not on TensorFlow.
        os.environ["KERAS_BACKEND"] = "torch"
    _load_triton_first()
    with contextlib.nullcontext() if chatty else _native_stderr_silenced():
        return _import_or_name_the_extra("tensorflow")


@contextlib.contextmanager
def _native_stderr_silenced() -> Iterator[None]:
    """File descriptor 2 to /dev/null for the length of TensorFlow's first import.

    TensorFlow 2.21 writes four lines to stderr as it loads (absl's "All log messages before
    absl::InitializeLog() ..." and oneDNN's "custom operations are on"), from C++ before
    ``TF_CPP_MIN_LOG_LEVEL`` applies, so ``sightql models log`` would print them under its one line.
    Only that import (3-5 s, once per process) is silenced; a failed import still raises its
    ImportError, which names the fix. Set ``TF_CPP_MIN_LOG_LEVEL`` yourself to see them.
    """
    sys.stderr.flush()
    saved = os.dup(2)
    try:
        with open(os.devnull, "w") as devnull:
            os.dup2(devnull.fileno(), 2)
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)


def import_tf2onnx() -> Any:
    import_tensorflow()
    return _import_or_name_the_extra("tf2onnx")


def _import_or_name_the_extra(name: str) -> Any:
    try:
        return importlib.import_module(name)
    except ImportError as exc:
        raise MissingDependencyError(name, "tensorflow") from exc


def _load_triton_first() -> None:
    """Load triton's native library (torch's compiler, installed with torch) before TensorFlow.

    Both carry their own LLVM; loaded after TensorFlow, ``libtriton`` crashes the process (a segmentation
    fault, measured with TensorFlow 2.21 and triton 3.x: ``import tensorflow, torchvision`` exits 139) the
    moment torch.export, torch.compile or torchvision first imports it. Loaded first (0.2 s), both work,
    so a session can log a TensorFlow model and then a torch one. The shared library is loaded as such
    (ctypes), not imported: triton comes with torch on Linux only, and where it is missing there is
    nothing to clash with.
    """
    if "tensorflow" in sys.modules or "triton" in sys.modules:
        return
    spec = importlib.util.find_spec("triton")
    if spec is None or spec.origin is None:
        return
    for library in sorted(Path(spec.origin).parent.glob("_C/libtriton*.so")):
        ctypes.CDLL(str(library))
