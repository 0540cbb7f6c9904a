"""PyTorch artifacts: recognise, open safely, rebuild and save.

Three safe formats need no trust: a state dict (``.pt/.pth/.bin`` read with
``torch.load(weights_only=True)``, or ``.safetensors``) plus a torchvision
architecture name, and a TorchScript archive. A pickled whole module runs code
when loaded, so it is opened only for a version logged with ``trust=True``.
"""

from __future__ import annotations

import zipfile
from pathlib import Path
from typing import Any, Literal

from sightql.errors import ConfigError, UnsafeModelError
from sightql.models import quiet

TorchFormat = Literal["state_dict", "torchscript", "pickled_module"]
STATE_DICT_SUFFIXES = (".pt", ".pth", ".bin", ".safetensors")
PICKLE_SUFFIXES = (".pkl", ".pickle", ".joblib")
WRAPPER_PREFIXES = ("module.", "_orig_mod.")


def unsafe_message(path: Path) -> str:
    return (
        f"{path.name} is a pickle, which can run arbitrary code when loaded; "
        "pass trust=True (CLI: --trust) only if you trust its source, or save a state dict or TorchScript instead"
    )


def is_torchscript(path: Path) -> bool:
    """TorchScript archives are zips holding compiled code under ``<root>/code/``."""
    if not zipfile.is_zipfile(path):
        return False
    with zipfile.ZipFile(path) as archive:
        return any("/code/" in name for name in archive.namelist())


def read_state_dict(path: Path) -> dict[str, Any] | None:
    """The tensors of a state dict file, or None when the file holds something else.

    Raises UnsafeModelError when ``torch.load(weights_only=True)`` refuses the file (a pickle).
    """
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        try:
            return load_file(str(path))
        except Exception as exc:
            raise ConfigError(f"{path.name} is not a readable safetensors file ({exc}); save it again") from None
    import pickle

    import torch

    try:
        with quiet.foreign_pickle():
            loaded = torch.load(path, map_location="cpu", weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, AttributeError, ModuleNotFoundError) as exc:
        if isinstance(exc, RuntimeError) and "weights_only" not in str(exc) and "Weights only" not in str(exc):
            raise ConfigError(f"{path.name} is not a readable PyTorch file ({exc}); save it again") from None
        raise UnsafeModelError(unsafe_message(path)) from None
    except Exception as exc:
        raise ConfigError(f"{path.name} is not a readable PyTorch file ({type(exc).__name__}); save it again") from None
    for key in ("state_dict", "model_state_dict"):
        if isinstance(loaded, dict) and isinstance(loaded.get(key), dict):
            loaded = loaded[key]
    if isinstance(loaded, dict) and loaded and all(isinstance(v, torch.Tensor) for v in loaded.values()):
        return loaded
    return None


def detect_format(path: Path, trust: bool) -> tuple[TorchFormat, dict[str, Any] | None]:
    """The file's format and, for a state dict, its tensors (read here once; pass them to :func:`load_module`)."""
    if path.suffix in PICKLE_SUFFIXES:
        if not trust:
            raise UnsafeModelError(unsafe_message(path))
        return "pickled_module", None
    if path.suffix != ".safetensors" and is_torchscript(path):
        return "torchscript", None
    try:
        state = read_state_dict(path)
    except UnsafeModelError:
        if not trust:
            raise
        return "pickled_module", None
    if state is None:
        raise ConfigError(
            f"{path.name} holds neither a state dict nor TorchScript; save model.state_dict() or torch.jit.script(model)"
        )
    return "state_dict", state


def torchvision_architectures() -> list[str]:
    import torchvision

    return sorted(torchvision.models.list_models(module=torchvision.models))


def last_linear_name(module: Any) -> str | None:
    """The dotted name of the module's last ``torch.nn.Linear`` (its classification head), or None."""
    import torch

    names = [name for name, child in module.named_modules() if isinstance(child, torch.nn.Linear)]
    return names[-1] if names else None


def strip_wrapper_prefixes(state: dict[str, Any]) -> dict[str, Any]:
    """``state`` without the ``module.`` (DataParallel, DistributedDataParallel) or ``_orig_mod.``
    (torch.compile) prefix that a wrapped model's ``state_dict()`` puts on every key."""
    stripped = True
    while stripped and state:
        stripped = False
        for prefix in WRAPPER_PREFIXES:
            if all(key.startswith(prefix) for key in state):
                state = {key[len(prefix):]: value for key, value in state.items()}
                stripped = True
    return state


def _some(keys: list[str], count: int = 3) -> str:
    shown = ", ".join(key if len(key) <= 60 else key[:57] + "..." for key in keys[:count])
    return shown + (", ..." if len(keys) > count else "")


def mismatch_message(architecture: str, expected: dict[str, Any], state: dict[str, Any]) -> str | None:
    """One sentence of bounded length on how ``state`` differs from the ``expected`` state dict, or None."""
    missing = [key for key in expected if key not in state]
    unexpected = [key for key in state if key not in expected]
    reshaped = [
        f"{key} {'x'.join(map(str, state[key].shape))} instead of {'x'.join(map(str, expected[key].shape))}"
        for key in expected if key in state and tuple(state[key].shape) != tuple(expected[key].shape)
    ]
    problems = []
    if missing:
        problems.append(
            f"{len(missing)} of the {len(expected)} tensors {architecture} needs are missing (e.g. {_some(missing)})"
        )
    if unexpected:
        problems.append(
            f"{len(unexpected)} of its {len(state)} keys are not in {architecture} (e.g. {_some(unexpected)})"
        )
    if reshaped:
        problems.append(f"{len(reshaped)} tensors have another shape in {architecture} ({_some(reshaped, 2)})")
    if not problems:
        return None
    return (
        f"the state dict does not fit architecture {architecture!r}: {'; '.join(problems)}; "
        "pass the architecture it was trained with"
    )


def build_architecture(architecture: str, state: dict[str, Any]) -> Any:
    """A torchvision model (weights=None, nothing downloaded) with ``state`` loaded strictly.

    The number of classes is read from the state dict's last linear layer; a ``module.`` prefix
    on every key (a model saved inside DataParallel/DDP, or ``_orig_mod.`` from torch.compile)
    is dropped first, and a state dict that does not fit is refused in one short sentence.
    """
    import torchvision

    state = strip_wrapper_prefixes(state)

    known = torchvision_architectures()
    if architecture not in known:
        raise ConfigError(
            f"architecture {architecture!r} is not a torchvision classification model; use one such as "
            f"'resnet18' or 'mobilenet_v3_large' (known: {len(known)}, e.g. {', '.join(known[:6])}, ...)"
        )
    probe = torchvision.models.get_model(architecture, weights=None)
    head = last_linear_name(probe)
    kwargs: dict[str, Any] = {}
    if head and f"{head}.weight" in state:
        kwargs["num_classes"] = int(state[f"{head}.weight"].shape[0])
    if "aux_logits" in probe.__init__.__code__.co_varnames:  # inception/googlenet keep no aux head in eval
        kwargs["aux_logits"] = any(k.startswith("aux") for k in state)
        kwargs["init_weights"] = False
    module = torchvision.models.get_model(architecture, weights=None, **kwargs)
    problem = mismatch_message(architecture, module.state_dict(), state)
    if problem:
        raise ConfigError(problem)
    module.load_state_dict(state, strict=True)
    return module.eval()


def load_module(
    path: Path, fmt: TorchFormat, architecture: str | None, trusted: bool, device: str = "cpu",
    state: dict[str, Any] | None = None,
) -> Any:
    """The eval-mode torch module stored at ``path`` (a state dict's tensors: ``state`` when already read)."""
    import torch

    if fmt == "torchscript":
        with quiet.torchscript():
            return torch.jit.load(str(path), map_location=device).eval()
    if fmt == "state_dict":
        if not architecture:
            raise ConfigError(
                f"{path.name} is a state dict, which needs its architecture; pass architecture='resnet18' (CLI: --arch) or similar"
            )
        state = state if state is not None else read_state_dict(path)
        if state is None:
            raise ConfigError(f"{path.name} is not a state dict; save model.state_dict() instead")
        return build_architecture(architecture, state)
    if not trusted:
        raise UnsafeModelError(unsafe_message(path))
    module = torch.load(path, map_location=device, weights_only=False)
    if not isinstance(module, torch.nn.Module):
        raise ConfigError(f"{path.name} holds a {type(module).__name__}, not a torch.nn.Module; save the model itself")
    return module.eval()


def save_module(module: Any, folder: Path, architecture: str | None, example_shape: tuple[int, ...]) -> tuple[str, TorchFormat]:
    """Save an in-memory module: a safetensors state dict when its architecture is named, else TorchScript."""
    import torch

    module = module.eval().cpu()
    if architecture and not isinstance(module, torch.jit.ScriptModule):
        from safetensors.torch import save_file

        state = {k: v.detach().cpu().contiguous().clone() for k, v in module.state_dict().items()}
        save_file(state, str(folder / "model.safetensors"))
        return "model.safetensors", "state_dict"
    with quiet.torchscript():
        if isinstance(module, torch.jit.ScriptModule):
            scripted = module
        else:
            try:
                scripted = torch.jit.script(module)
            except Exception:
                with torch.inference_mode(False), torch.no_grad():
                    scripted = torch.jit.trace(module, torch.zeros(*example_shape))
        torch.jit.save(scripted, str(folder / "model.pt"))
    return "model.pt", "torchscript"
