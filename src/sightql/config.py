"""Settings: defaults, overridden by ``SIGHTQL_*`` environment variables.

| variable                    | meaning                                         | default            |
|-----------------------------|-------------------------------------------------|--------------------|
| SIGHTQL_HOME                | default warehouse folder                        | ~/.sightql/warehouse |
| SIGHTQL_MAX_IMAGE_BYTES     | largest image file accepted                     | 50 MB              |
| SIGHTQL_MAX_IMAGE_PIXELS    | largest width*height decoded (bomb guard)       | 89,478,485         |
| SIGHTQL_BATCH_SIZE          | images per model call                           | 32                 |
| SIGHTQL_DECODE_THREADS      | threads decoding images beside the model        | CPU count          |
| SIGHTQL_ORT_THREADS         | intra-op threads of each ONNX Runtime model     | CPU count          |
| SIGHTQL_MEMORY_LIMIT        | DuckDB memory limit (buffer pool) per session; unset, writes of images may raise it up to half the RAM | 256MB |
| SIGHTQL_DEVICE              | auto, cpu or cuda                               | auto               |
| SIGHTQL_MAX_MODEL_BYTES     | largest model artifact the registry accepts     | 2 GB               |
| SIGHTQL_LOCK_WAIT           | seconds to wait while another process holds the warehouse | 5        |
| SIGHTQL_DDP_TIMEOUT         | seconds a torchrun rank waits for the others before failing | 1800   |
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from sightql.errors import ConfigError

DEFAULT_MAX_IMAGE_PIXELS = 89_478_485  # Pillow's own bomb threshold


def _int_env(name: str, default: int) -> int:
    raw = os.environ.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw.replace("_", ""))
    except ValueError:
        raise ConfigError(f"{name}={raw!r} is not a whole number; set it to one, e.g. {default}") from None
    if value <= 0:
        raise ConfigError(f"{name} must be positive; set it to e.g. {default}")
    return value


def _seconds_env(name: str, default: float) -> float:
    raw = os.environ.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = float(raw)
    except ValueError:
        raise ConfigError(f"{name}={raw!r} is not a number of seconds; set it to one, e.g. {default:g}") from None
    if value < 0:
        raise ConfigError(f"{name} must be zero or more seconds; set it to e.g. {default:g}")
    return value


def decode_threads() -> int:
    """Threads decoding images beside the model (SIGHTQL_DECODE_THREADS)."""
    return _int_env("SIGHTQL_DECODE_THREADS", max(1, os.cpu_count() or 1))


def onnx_threads() -> int:
    """Intra-op threads per ONNX Runtime session (SIGHTQL_ORT_THREADS). Read when a model loads, so a
    Dask worker process started with its share of the cores gets that share."""
    return _int_env("SIGHTQL_ORT_THREADS", max(1, os.cpu_count() or 1))


def default_home() -> Path:
    """The warehouse used when ``connect()`` gets no path."""
    raw = os.environ.get("SIGHTQL_HOME")
    if raw:
        return Path(raw).expanduser()
    return Path.home() / ".sightql" / "warehouse"


@dataclass(frozen=True)
class Settings:
    max_image_bytes: int = 50 * 1024 * 1024
    max_image_pixels: int = DEFAULT_MAX_IMAGE_PIXELS
    batch_size: int = 32
    decode_threads: int = field(default_factory=lambda: max(1, os.cpu_count() or 1))
    # DuckDB keeps table pages (images included) cached up to this limit, so a small
    # limit keeps RSS flat however large the table a query scans; operators spill to disk.
    memory_limit: str = "256MB"
    # True when the user set the limit (SIGHTQL_MEMORY_LIMIT): it is then kept as given. Otherwise a
    # write of images may raise it for the session, up to half the machine's memory, because DuckDB
    # rewrites a table's images in memory when rows are added (sql/write_budget.py).
    memory_limit_fixed: bool = False
    device: str = "auto"
    max_model_bytes: int = 2 * 1024 * 1024 * 1024
    lock_wait: float = 5.0
    ddp_timeout: float = 1800.0

    @classmethod
    def from_env(cls) -> "Settings":
        base = cls()
        device = os.environ.get("SIGHTQL_DEVICE", base.device)
        if device not in ("auto", "cpu", "cuda"):
            raise ConfigError(f"SIGHTQL_DEVICE={device!r} is not valid; use auto, cpu or cuda")
        return cls(
            max_image_bytes=_int_env("SIGHTQL_MAX_IMAGE_BYTES", base.max_image_bytes),
            max_image_pixels=_int_env("SIGHTQL_MAX_IMAGE_PIXELS", base.max_image_pixels),
            batch_size=_int_env("SIGHTQL_BATCH_SIZE", base.batch_size),
            decode_threads=decode_threads(),
            memory_limit=os.environ.get("SIGHTQL_MEMORY_LIMIT") or base.memory_limit,
            memory_limit_fixed=bool(os.environ.get("SIGHTQL_MEMORY_LIMIT")),
            device=device,
            max_model_bytes=_int_env("SIGHTQL_MAX_MODEL_BYTES", base.max_model_bytes),
            lock_wait=_seconds_env("SIGHTQL_LOCK_WAIT", base.lock_wait),
            ddp_timeout=_seconds_env("SIGHTQL_DDP_TIMEOUT", base.ddp_timeout),
        )
