"""One error hierarchy: every error says what was wrong and how to fix it.

The CLI, the app and the API turn these into one sentence for the user; anything
that is not a ``SightQLError`` is a bug of ours and keeps its stack trace.
"""

from __future__ import annotations


class SightQLError(Exception):
    """Base class for every error a user can cause and fix."""


class ConfigError(SightQLError):
    """A setting or argument is invalid."""


class MissingDependencyError(SightQLError):
    """An optional dependency is not installed."""

    def __init__(self, package: str, extra: str):
        super().__init__(
            f"{package} is not installed; run: pip install 'sightql[{extra}]'"
        )


class ImageError(SightQLError):
    """An image cannot be used; the row gets NULL plus this message."""


class ImageDecodeError(ImageError):
    """The bytes are not a readable image."""


class ImageTooLargeError(ImageError):
    """The image has more pixels or bytes than the configured limit."""


class StageError(SightQLError):
    """A stage does not exist, or a path in it is not allowed."""


class StageFileChangedError(StageError):
    """A FILE value's file has other bytes (size or etag) than when the value was made."""


class StagePathError(StageError):
    """A path would escape its stage's root."""


class ModelNotFoundError(SightQLError):
    """No model answers to this reference."""


class UnsafeModelError(SightQLError):
    """A model file could run arbitrary code when loaded (pickle, Keras Lambda) and was not marked trusted."""


class ArtifactIntegrityError(SightQLError):
    """A stored model artifact no longer matches the sha256 recorded when it was logged."""


class RegistryError(SightQLError):
    """A registry operation is not allowed (an alias points at the version, a name is taken, ...)."""


class QuantizeRefused(RegistryError):
    """A quantized model agreed with its original less often than the gate asks; nothing was registered."""


class WarehouseError(SightQLError):
    """The warehouse cannot be opened or is in use."""


class WarehouseBusyError(WarehouseError):
    """Another process held the warehouse for longer than the lock wait; trying again later may work."""


class TableError(SightQLError):
    """A table or column does not exist or has the wrong type."""


class GenerationError(SightQLError):
    """The image provider is not configured, refused the request, or could not be reached."""


class DistributedError(SightQLError):
    """Another process of a torchrun training job failed, or the launcher stopped this one; or a local
    Dask worker process ended before it joined its cluster, or a worker cannot see a file the driver wrote for it."""


class MemoryLimitError(SightQLError):
    """A statement or write needs more than the session's DuckDB memory limit (SIGHTQL_MEMORY_LIMIT)."""


def error_named(name: str, message: str) -> SightQLError:
    """The error class of this module called ``name``, carrying ``message``.

    DuckDB passes an exception raised in a SQL function on only as text ("StageError: no stage
    named ..."); this gives it its class back, so callers can catch e.g. StagePathError from a
    query. An unknown name (or a class built from other arguments) gives a plain SightQLError.
    """
    cls = globals().get(name)
    if isinstance(cls, type) and issubclass(cls, SightQLError) and cls.__init__ is SightQLError.__init__:
        return cls(message)
    return SightQLError(message)
