"""Reading :class:`sightql.config.Settings` from the config file and ``SIGHTQL_*`` variables.

pydantic-settings merges the two sources (a set, non-empty variable wins over the file) and refuses
keys the file should not have; each key is parsed by its kind (``Settings`` field metadata), and a bad
value or an unknown key becomes one ConfigError sentence naming where it was set and the fix.
Imported only by ``read_settings()``: pydantic costs ~0.3 s to import, which ``import sightql`` skips.
"""

from __future__ import annotations

import dataclasses
import functools
import math
import os
import tomllib
from pathlib import Path
from typing import Annotated, Any, Callable
from urllib.parse import urlsplit

from pydantic import BeforeValidator, ValidationError, create_model
from pydantic_settings import BaseSettings, SettingsConfigDict

from sightql.errors import ConfigError

ENV_PREFIX = "SIGHTQL_"
UNSET = object()  # an empty value: the default stays


class _Refused(ValueError):
    """A bad value; the message is the key, (when ``show_value``) the value it was given, then ``tail``."""

    def __init__(self, tail: str, *, show_value: bool = True) -> None:
        super().__init__(tail)
        self.show_value = show_value


def _blank(raw: Any) -> bool:
    return isinstance(raw, str) and not raw.strip()


def _positive(raw: Any, default: Any) -> Any:
    try:
        if isinstance(raw, bool) or (isinstance(raw, float) and not raw.is_integer()):
            raise ValueError
        value = int(raw.replace("_", "")) if isinstance(raw, str) else int(raw)
    except (ValueError, TypeError, OverflowError):
        raise _Refused(f"is not a whole number; set it to one, e.g. {default or 4}") from None
    if value <= 0:
        raise _Refused(f"must be positive; set it to e.g. {default or 4}", show_value=False)
    return value


def _seconds(raw: Any, default: Any) -> Any:
    try:
        if isinstance(raw, bool):
            raise ValueError
        value = float(raw)
    except (ValueError, TypeError):
        raise _Refused(f"is not a number of seconds; set it to one, e.g. {default:g}") from None
    if value < 0 or math.isnan(value):
        raise _Refused(f"must be zero or more seconds; set it to e.g. {default:g}", show_value=False)
    return value


def _text(raw: Any, default: Any) -> Any:
    if not isinstance(raw, str):
        raise _Refused("is not text; write it in quotes" + (f", e.g. {default!r}" if default else ""))
    return raw.strip()


def _nice(raw: Any, default: Any) -> Any:
    try:
        if isinstance(raw, bool) or (isinstance(raw, float) and not raw.is_integer()):
            raise ValueError
        value = int(raw.strip()) if isinstance(raw, str) else int(raw)
    except (ValueError, TypeError, OverflowError):
        raise _Refused(f"is not a whole number; set it to one from 0 to 19, e.g. {default}") from None
    if not 0 <= value <= 19:
        raise _Refused(f"must be from 0 (the shell's priority) to 19 (the lowest); set it to e.g. {default}")
    return value


def _device(raw: Any, default: Any) -> Any:
    if raw not in ("auto", "cpu", "cuda"):
        raise _Refused("is not valid; use auto, cpu or cuda")
    return raw


def _path(raw: Any, default: Any) -> Any:
    return Path(_text(raw, str(default))).expanduser()


def _url(raw: Any, default: Any) -> Any:
    base = _text(raw, default).rstrip("/")
    parts = urlsplit(base)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise _Refused("is not an http(s) URL; set it to e.g. http://localhost:8080/v1")
    return base


PARSERS: dict[str, Callable[[Any, Any], Any]] = {
    "positive": _positive, "nice": _nice, "seconds": _seconds, "text": _text, "device": _device, "path": _path, "url": _url,
}


def _default(spec: dataclasses.Field[Any]) -> Any:
    return spec.default_factory() if spec.default_factory is not dataclasses.MISSING else spec.default


def _validator(spec: dataclasses.Field[Any]) -> BeforeValidator:
    parse = PARSERS[spec.metadata["kind"]]

    def check(raw: Any) -> Any:
        return UNSET if _blank(raw) else parse(raw, _default(spec))

    return BeforeValidator(check)


class _FileThenEnvironment(BaseSettings):
    """Values given to the constructor (the file's) under ``SIGHTQL_*`` variables; nothing else."""

    model_config = SettingsConfigDict(env_prefix=ENV_PREFIX, env_ignore_empty=True, extra="forbid",
                                      validate_default=False)

    @classmethod
    def settings_customise_sources(cls, settings_cls: Any, init_settings: Any, env_settings: Any,
                                   dotenv_settings: Any, file_secret_settings: Any) -> tuple[Any, ...]:
        return env_settings, init_settings


@functools.cache
def _model(settings_cls: type) -> type[BaseSettings]:
    specs = [f for f in dataclasses.fields(settings_cls) if "kind" in f.metadata]
    return create_model(  # type: ignore[call-overload, no-any-return]
        "SightQLSettings", __base__=_FileThenEnvironment,
        **{f.name: (Annotated[Any, _validator(f)], None) for f in specs},
    )


def read_file(path: Path) -> dict[str, Any]:
    """The config file's keys and values; a file that is not TOML is refused in one sentence."""
    try:
        return tomllib.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ConfigError(f"cannot read the config file {path} ({exc.strerror}); fix its permissions, "
                          "or point SIGHTQL_CONFIG at another file") from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ConfigError(f"the config file {path} is not valid TOML ({exc}); fix it, "
                          "e.g. batch_size = 64 and memory_limit = \"1GB\", one per line") from None


def load(settings_cls: type, path: Path | None) -> tuple[Any, frozenset[str]]:
    """(``settings_cls`` from the file at ``path`` and the environment, the keys they set)."""
    file_values = read_file(path) if path is not None else {}
    model = _model(settings_cls)
    try:
        parsed = model(**file_values)
    except ValidationError as exc:
        raise ConfigError(_message(exc, settings_cls, path)) from None
    values = {key: getattr(parsed, key) for key in parsed.model_fields_set}
    values = {key: value for key, value in values.items() if value is not UNSET}
    return settings_cls(**values, memory_limit_fixed="memory_limit" in values), frozenset(values)


def _message(exc: ValidationError, settings_cls: Any, path: Path | None) -> str:
    errors = exc.errors()
    unknown = [str(e["loc"][0]) for e in errors if e["type"] == "extra_forbidden"]
    if unknown:
        names = ", ".join(repr(name) for name in unknown)
        return (f"the config file {path} has {'an unknown key' if len(unknown) == 1 else 'unknown keys'} {names}; "
                f"remove or rename {'it' if len(unknown) == 1 else 'them'} (the known keys are {', '.join(sorted(settings_cls.keys()))})")
    error = errors[0]
    key, raw = str(error["loc"][0]), error["input"]
    variable = ENV_PREFIX + key.upper()
    where = variable if os.environ.get(variable, "") else f"{key} in the config file {path}"
    refused = error.get("ctx", {}).get("error")
    if not isinstance(refused, _Refused):  # not one of ours: say what pydantic found
        return f"{where} is not valid ({error['msg']})"
    if not refused.show_value:
        return f"{where} {refused}"
    if where == variable:
        return f"{variable}={raw!r} {refused}"
    return f"{key} = {raw!r} in the config file {path} {refused}"
