"""Model references, parsed in one place: 'name', 'name@v3', 'name@latest', 'name@prod'."""

from __future__ import annotations

import re
from dataclasses import dataclass

from sightql.errors import ConfigError

_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9_\-]{0,99}$")
_TAG = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.\-]{0,99}$")
AUTO_VERSION = re.compile(r"^v([0-9]+)$")
LATEST = "latest"


@dataclass(frozen=True)
class ModelRef:
    """``name`` plus what follows '@': None (the default version), 'latest', a version or an alias."""

    name: str
    selector: str | None = None

    def __str__(self) -> str:
        return self.name if self.selector is None else f"{self.name}@{self.selector}"


def check_model_name(name: str) -> str:
    if not isinstance(name, str) or not _NAME.match(name):
        raise ConfigError(
            f"model name {name!r} is not allowed; use letters, digits, '_' and '-', starting with a letter"
        )
    return name


def check_tag(tag: str, what: str) -> str:
    """A version or alias name: letters, digits, '_', '-' and '.'."""
    if not isinstance(tag, str) or not _TAG.match(tag):
        raise ConfigError(f"{what} {tag!r} is not allowed; use letters, digits, '_', '-' and '.', e.g. 'prod'")
    return tag


def parse_ref(ref: str) -> ModelRef:
    """Split 'name@selector'; both halves are checked, so a reference is always plain data."""
    if not isinstance(ref, str):
        raise ConfigError(f"a model reference must be a string such as 'defects@prod', not {ref!r}")
    name, sep, selector = ref.partition("@")
    check_model_name(name)
    if not sep:
        return ModelRef(name)
    return ModelRef(name, check_tag(selector, "version or alias"))


def check_alias(alias: str) -> str:
    """Aliases may not look like the versions the registry numbers itself, nor be 'latest'."""
    check_tag(alias, "alias")
    if alias == LATEST or AUTO_VERSION.match(alias):
        raise ConfigError(f"alias {alias!r} would be read as a version; pick a word such as 'prod' or 'staging'")
    return alias


def version_number(version: str) -> int | None:
    match = AUTO_VERSION.match(version)
    return int(match.group(1)) if match else None
