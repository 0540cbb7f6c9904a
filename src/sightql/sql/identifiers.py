"""Table and column names cannot be bound as parameters, so they are checked and quoted."""

from __future__ import annotations

import re

from sightql.errors import ConfigError

_IDENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,127}$")


def quote_ident(name: str, what: str = "name") -> str:
    """Quote a (possibly schema-qualified) identifier after checking it is a plain name."""
    parts = name.split(".") if isinstance(name, str) else [name]
    if not 1 <= len(parts) <= 2 or not all(isinstance(p, str) and _IDENT.match(p) for p in parts):
        raise ConfigError(
            f"{what} {name!r} is not allowed; use letters, digits and '_', starting with a letter"
        )
    return ".".join(f'"{p}"' for p in parts)
