"""Known-benign framework chatter, switched off where SightQL calls the framework, each with its reason.

A normal run prints only warnings that mean something to the user. These context managers change
process-wide settings (warning filters, a progress-bar flag) for the length of one call, so they
are not thread-safe; each wraps a rare call (an export, a model load), never a hot path.
"""

from __future__ import annotations

import contextlib
import warnings
from collections.abc import Iterator


@contextlib.contextmanager
def legacy_onnx_exporter() -> Iterator[None]:
    """Around a call of torch's TorchScript-based ONNX exporter.

    Since torch 2.9 every call of it warns twice that it is deprecated, but it is the only one
    that exports a TorchScript module (torch.export cannot trace one), and the one Keras uses
    for a model with a dynamic batch. Its TracerWarnings say that a Python int or bool read from
    a tensor is fixed in the trace (Keras means to hide them itself, but its filter ends before
    its export starts). Every export is checked against its framework on batches of other sizes
    right after (check_export, export_keras_onnx, the registry's load check), which is what
    catches a trace that does not generalise. For a TorchScript module loaded from a file it
    finds no Python signature of ``forward`` to match keyword inputs against; ours is passed by
    position, so that warning says nothing either. Nor does its note that a strided slice is not
    constant-folded: an optimisation skipped, the graph still computes the same thing.
    """
    import torch

    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", "You are using the legacy TorchScript-based ONNX export", DeprecationWarning)
        warnings.filterwarnings("ignore", "The feature will be removed", DeprecationWarning, r"torch\.onnx\.")
        warnings.filterwarnings("ignore", "Converting a tensor to a Python (boolean|integer)", torch.jit.TracerWarning)
        warnings.filterwarnings("ignore", "no signature found for .*, skipping _decide_input_format", UserWarning)
        warnings.filterwarnings("ignore", "Constant folding - Only steps=1 can be constant folded", UserWarning)
        yield


@contextlib.contextmanager
def torchscript() -> Iterator[None]:
    """Around torch.jit.script/trace/save/load of a TorchScript model the user gave or asked for.

    torch 2.10+ says on each call that TorchScript is deprecated; it is still how SightQL stores a
    module logged without an architecture, and a format users have. The pin on torch in
    pyproject.toml is where a torch without TorchScript would be noticed, not the user's console.
    """
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", r"`torch\.jit\.\w+` is deprecated", FutureWarning)
        yield


@contextlib.contextmanager
def foreign_pickle() -> Iterator[None]:
    """Around ``torch.load(weights_only=True)`` of a file the user gave: for a file written by plain
    pickle (protocol 3 or later) torch warns that its safe unpickler may not read it and asks for a
    bug report. When it cannot, SightQL refuses the file in one sentence that says what to save
    instead, so the warning adds nothing."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", "Detected pickle protocol .* in the checkpoint", UserWarning)
        yield


@contextlib.contextmanager
def transformers_progress_bars() -> Iterator[None]:
    """Around loading a transformers model: it draws a "Loading weights" bar on stderr for each one
    (so on the first ``embed_text`` of every process). Restored after, so a caller's own use of
    transformers keeps its setting."""
    from transformers.utils import logging as transformers_logging

    was_on = transformers_logging.is_progress_bar_enabled()
    transformers_logging.disable_progress_bar()
    try:
        yield
    finally:
        if was_on:
            transformers_logging.enable_progress_bar()
