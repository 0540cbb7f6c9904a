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


def detect_format(path: Path, trust: bool) -> TorchFormat:
    if path.suffix in PICKLE_SUFFIXES:
        if not trust:
            raise UnsafeModelError(unsafe_message(path))
        return "pickled_module"
    if path.suffix != ".safetensors" and is_torchscript(path):
        return "torchscript"
    try:
        state = read_state_dict(path)
    except UnsafeModelError:
        if not trust:
            raise
        return "pickled_module"
    if state is None:
        raise ConfigError(
            f"{path.name} holds neither a state dict nor TorchScript; save model.state_dict() or torch.jit.script(model)"
        )
    return "state_dict"


def torchvision_architectures() -> list[str]:
    import torchvision

    return sorted(torchvision.models.list_models(module=torchvision.models))


def _last_linear_name(module: Any) -> str | None:
    import torch

    names = [name for name, child in module.named_modules() if isinstance(child, torch.nn.Linear)]
    return names[-1] if names else None


def build_architecture(architecture: str, state: dict[str, Any]) -> Any:
    """A torchvision model (weights=None, nothing downloaded) with ``state`` loaded strictly.

    The number of classes is read from the state dict's last linear layer.
    """
    import torchvision

    known = torchvision_architectures()
    if architecture not in known:
        raise ConfigError(
            f"architecture {architecture!r} is not a torchvision classification model; use one such as "
            f"'resnet18' or 'mobilenet_v3_large' (known: {len(known)}, e.g. {', '.join(known[:6])}, ...)"
        )
    probe = torchvision.models.get_model(architecture, weights=None)
    head = _last_linear_name(probe)
    kwargs: dict[str, Any] = {}
    if head and f"{head}.weight" in state:
        kwargs["num_classes"] = int(state[f"{head}.weight"].shape[0])
    if "aux_logits" in probe.__init__.__code__.co_varnames:  # inception/googlenet keep no aux head in eval
        kwargs["aux_logits"] = any(k.startswith("aux") for k in state)
        kwargs["init_weights"] = False
    module = torchvision.models.get_model(architecture, weights=None, **kwargs)
    try:
        module.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        first = str(exc).split("\n\t")[1] if "\n\t" in str(exc) else str(exc)
        raise ConfigError(
            f"the state dict does not fit architecture {architecture!r} ({first.strip()}); pass the architecture it was trained with"
        ) from None
    return module.eval()


def load_module(path: Path, fmt: TorchFormat, architecture: str | None, trusted: bool, device: str = "cpu") -> Any:
    """The eval-mode torch module stored at ``path``."""
    import torch

    if fmt == "torchscript":
        with quiet.torchscript():
            return torch.jit.load(str(path), map_location=device).eval()
    if fmt == "state_dict":
        if not architecture:
            raise ConfigError(
                f"{path.name} is a state dict, which needs its architecture; pass architecture='resnet18' (CLI: --arch) or similar"
            )
        state = read_state_dict(path)
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
