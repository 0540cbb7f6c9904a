"""Settings: defaults < one TOML config file < ``SIGHTQL_*`` environment variables.

The config file is the first of these that applies (only one file is read):

1. ``$SIGHTQL_CONFIG``, when that variable is set (the file must then exist);
2. ``$SIGHTQL_HOME/config.toml``, when ``SIGHTQL_HOME`` is set and that file exists;
3. ``~/.sightql/config.toml``, when it exists.

Its keys are the field names below (``batch_size = 64``, ``memory_limit = "1GB"``); a key it does
not know is refused. Each key's variable is ``SIGHTQL_`` and the key in capitals, and a variable
that is set (and not empty) wins over the file. Keys and tokens (``SIGHTQL_API_TOKEN``,
``SIGHTQL_IMAGE_API_KEY``, ``SIGHTQL_CHAT_API_KEY``, ``OPENAI_API_KEY``) are secrets: they are read from the environment only,
never from the file. docs/configuration.md lists every key.

| key                   | meaning                                                       | default              |
|-----------------------|---------------------------------------------------------------|----------------------|
| home                  | default warehouse folder                                      | ~/.sightql/warehouse |
| max_image_bytes       | largest image file accepted                                   | 50 MB                |
| max_image_pixels      | largest width*height decoded (bomb guard)                     | 89,478,485           |
| batch_size            | images per model call                                         | 32                   |
| decode_threads        | threads decoding images beside the model                      | CPU count            |
| read_budget_bytes     | image file bytes read and not yet decoded, per process         | 256 MiB              |
| ort_threads           | intra-op threads of each ONNX Runtime model                   | CPU count            |
| memory_limit          | DuckDB memory limit (buffer pool) per session; unset, writes of images may raise it up to half the RAM | 256MB |
| device                | auto, cpu or cuda                                             | auto                 |
| max_model_bytes       | largest model artifact the registry accepts                   | 2 GB                 |
| lock_wait             | seconds to wait while another process holds the warehouse     | 5                    |
| ddp_timeout           | seconds a torchrun rank waits for the others before failing   | 1800                 |
| api_max_request_bytes | largest HTTP API request body                                 | 20 MiB               |
| api_max_images        | images in one HTTP API request                                | 64                   |
| s3_endpoint_url       | S3-compatible endpoint of s3:// stages (else AWS_ENDPOINT_URL) | AWS's               |
| image_api_base        | base URL of an OpenAI-compatible image endpoint               | OpenAI's             |
| image_model           | image model the app's generator asks for                      | dall-e-3             |
| image_size            | image size it asks for                                        | 1024x1024            |
| image_timeout         | seconds to wait for one generated image                       | 120                  |
| dask_scheduler        | Dask scheduler address of predict's runner='dask'             | a local cluster      |
| dask_workers          | worker processes of that local Dask cluster                   | CPU count            |
| job_nice              | CPU priority step of long CLI jobs (predict, train, load, externalize); 0: none | 10 |
| chat_api_base         | base URL of an OpenAI-compatible chat endpoint (ai_classify, ai_complete) | OpenAI's |
| chat_model            | vision-language model asked when a query names none            | gpt-4o-mini          |
| chat_timeout          | seconds to wait for one chat answer                           | 60                   |
| chat_concurrency      | chat requests in flight at once, per session                  | 4                    |
| chat_max_attempts     | tries per image (retries on 429, 5xx, timeouts)               | 4                    |
| chat_max_images       | images sent to the chat provider per query (above: refused)   | 1000                 |
| chat_image_side       | longest side, in pixels, of the image sent                    | 768                  |
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field, fields
from functools import lru_cache
from pathlib import Path

from sightql.errors import ConfigError

DEFAULT_MAX_IMAGE_PIXELS = 89_478_485  # Pillow's own bomb threshold
CONFIG_ENV = "SIGHTQL_CONFIG"


def _cpu_count() -> int:
    return max(1, os.cpu_count() or 1)


# How the config file and the environment give each key (parsed in config_sources.py).
POSITIVE, SECONDS, TEXT = {"kind": "positive"}, {"kind": "seconds"}, {"kind": "text"}
NICE = {"kind": "nice"}
DEVICE, PATH, URL = {"kind": "device"}, {"kind": "path"}, {"kind": "url"}


@dataclass(frozen=True)
class Settings:
    max_image_bytes: int = field(default=50 * 1024 * 1024, metadata=POSITIVE)
    max_image_pixels: int = field(default=DEFAULT_MAX_IMAGE_PIXELS, metadata=POSITIVE)
    batch_size: int = field(default=32, metadata=POSITIVE)
    decode_threads: int = field(default_factory=_cpu_count, metadata=POSITIVE)
    # FILE values' bytes read from stages and not yet decoded, across every reader of the process
    # (SQL functions, predict, training): peak memory follows this, not the core count (engine.ReadBudget).
    read_budget_bytes: int = field(default=256 * 1024 * 1024, metadata=POSITIVE)
    # DuckDB keeps table pages (images included) cached up to this limit, so a small
    # limit keeps RSS flat however large the table a query scans; operators spill to disk.
    memory_limit: str = field(default="256MB", metadata=TEXT)
    # True when the user set the limit (SIGHTQL_MEMORY_LIMIT or memory_limit in the config file): it is
    # then kept as given. Otherwise a write of images may raise it for the session, up to half the
    # machine's memory, because DuckDB rewrites a table's images in memory when rows are added
    # (sql/write_budget.py). Not a key of its own.
    memory_limit_fixed: bool = False
    device: str = field(default="auto", metadata=DEVICE)
    max_model_bytes: int = field(default=2 * 1024 * 1024 * 1024, metadata=POSITIVE)
    lock_wait: float = field(default=5.0, metadata=SECONDS)
    ddp_timeout: float = field(default=1800.0, metadata=SECONDS)
    home: Path = field(default_factory=lambda: Path.home() / ".sightql" / "warehouse", metadata=PATH)
    ort_threads: int = field(default_factory=_cpu_count, metadata=POSITIVE)
    api_max_request_bytes: int = field(default=20 * 1024 * 1024, metadata=POSITIVE)
    api_max_images: int = field(default=64, metadata=POSITIVE)
    s3_endpoint_url: str | None = field(default=None, metadata=TEXT)
    image_api_base: str | None = field(default=None, metadata=URL)
    image_model: str = field(default="dall-e-3", metadata=TEXT)
    image_size: str = field(default="1024x1024", metadata=TEXT)
    image_timeout: float = field(default=120.0, metadata=SECONDS)
    # The Dask runner's cluster (sightql.inference.runners.DaskRunner): a scheduler address, or the
    # size of a local cluster (None: one worker per CPU core); at most one of them.
    dask_scheduler: str | None = field(default=None, metadata=TEXT)
    dask_workers: int | None = field(default=None, metadata=POSITIVE)
    # A long CLI job lowers its own CPU priority by this many steps (0-19; 0 keeps the shell's), so that the
    # API, the app and people's queries on the same machine keep answering while it runs (docs/batch.md).
    job_nice: int = field(default=10, metadata=NICE)
    # Vision-language classification (ai_classify / ai_complete) through an OpenAI-compatible chat API
    # (sightql.generation.chat_provider); its key is a secret, read from the environment only.
    chat_api_base: str | None = field(default=None, metadata=URL)
    chat_model: str = field(default="gpt-4o-mini", metadata=TEXT)
    chat_timeout: float = field(default=60.0, metadata=SECONDS)
    chat_concurrency: int = field(default=4, metadata=POSITIVE)
    chat_max_attempts: int = field(default=4, metadata=POSITIVE)
    chat_max_images: int = field(default=1000, metadata=POSITIVE)
    chat_image_side: int = field(default=768, metadata=POSITIVE)
    # Image search (sightql.search): an index of more rows than this is searched through its approximate
    # (faiss HNSW) index, fewer rows exactly; and the HNSW search breadth (higher: better recall, slower).
    search_exact_rows: int = field(default=20_000, metadata=POSITIVE)
    search_ef: int = field(default=128, metadata=POSITIVE)

    @classmethod
    def keys(cls) -> tuple[str, ...]:
        """The names the config file and ``SIGHTQL_*`` variables may set."""
        return tuple(f.name for f in fields(cls) if "kind" in f.metadata)

    @classmethod
    def from_env(cls) -> "Settings":
        """Defaults, overridden by the config file, overridden by ``SIGHTQL_*`` variables."""
        return read_settings()[0]


def read_settings() -> tuple[Settings, frozenset[str]]:
    """(the settings, the keys the config file or the environment set)."""
    # pydantic-settings costs ~0.3 s to import, so `import sightql` does not load it; only this does.
    from sightql.config_sources import load

    return load(Settings, config_file())


def config_file() -> Path | None:
    """The one config file read (see the module's docstring for the order), or None."""
    explicit = os.environ.get(CONFIG_ENV)
    if explicit:
        path = Path(explicit).expanduser()
        if not path.is_file():
            raise ConfigError(f"{CONFIG_ENV}={explicit!r} names no file; create it, or unset {CONFIG_ENV}")
        return path
    home = os.environ.get("SIGHTQL_HOME")
    candidates = [Path(home).expanduser() / "config.toml"] if home else []
    candidates.append(Path.home() / ".sightql" / "config.toml")
    return next((path for path in candidates if path.is_file()), None)


def cached_settings() -> Settings:
    """:meth:`Settings.from_env`, read once per process: again only when a ``SIGHTQL_*`` variable,
    ``HOME`` or the config file (its path, size or time) changes, so a test's ``monkeypatch.setenv``
    and a Dask worker's own variables are seen. :func:`clear_settings_cache` forgets what was read."""
    path = config_file()
    stat = path.stat() if path is not None else None
    env = tuple(sorted((k, v) for k, v in os.environ.items() if k.startswith("SIGHTQL_") or k == "HOME"))
    stamp = (str(path), stat.st_mtime_ns, stat.st_size) if stat is not None else None
    return _settings_for(env, stamp)


@lru_cache(maxsize=8)
def _settings_for(env: tuple[tuple[str, str], ...], config_stamp: tuple[str, int, int] | None) -> Settings:
    return Settings.from_env()


clear_settings_cache = _settings_for.cache_clear


def decode_threads() -> int:
    """Threads decoding images beside the model (decode_threads, SIGHTQL_DECODE_THREADS)."""
    return cached_settings().decode_threads


def onnx_threads() -> int:
    """Intra-op threads per ONNX Runtime session (ort_threads, SIGHTQL_ORT_THREADS). Read when a model
    loads, so a Dask worker process started with its share of the cores gets that share."""
    return cached_settings().ort_threads


def default_home() -> Path:
    """The warehouse used when ``connect()`` gets no path (home, SIGHTQL_HOME)."""
    return cached_settings().home
