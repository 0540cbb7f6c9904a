"""Reference resolution: 'name', 'name@v3', 'name@latest', 'name@prod' -> the exact version record.

A miss names what is known: the registered models (and the built-in ones), or the model's
versions and aliases.
"""

from __future__ import annotations

from sightql.errors import ModelNotFoundError
from sightql.models.builtin import BUILTIN_NAMES
from sightql.registry.records import VersionRecord
from sightql.registry.refs import LATEST, ModelRef, check_model_name, parse_ref
from sightql.registry.store import RegistryStore


def known_model(store: RegistryStore, name: str) -> tuple[str, str]:
    """(name, description) of a registered model; ModelNotFoundError naming the known ones otherwise."""
    check_model_name(name)
    row = store.model_row(name)
    if row is None:
        known = store.model_names()
        raise ModelNotFoundError(
            f"no model named {name!r} in the registry; "
            + (f"known models: {', '.join(known)}" if known else "log one with session.registry.log_model(...)")
            + f" (built-in models: {', '.join(BUILTIN_NAMES)})"
        )
    return row


def resolve(store: RegistryStore, ref: str | ModelRef) -> VersionRecord:
    """The exact version a reference names: 'name' (default, else latest), 'name@v3', '@latest', '@alias'."""
    parsed = parse_ref(ref) if isinstance(ref, str) else ref
    name, selector = parsed.name, parsed.selector
    if selector is None:
        record = store.default_or_latest(name)
    elif selector == LATEST:
        record = store.latest(name)
    else:
        record = store.version_or_alias(name, selector)
    if record is not None:
        return record
    known_model(store, name)  # raises with the known names when the model is unknown
    versions = [v.version for v in store.versions(name)]
    aliases = sorted(store.aliases(name))
    if not versions:
        raise ModelNotFoundError(f"model {name!r} has no versions; log one with session.registry.log_model(...)")
    raise ModelNotFoundError(
        f"{name} has no version or alias {selector!r}; versions: {', '.join(versions)}"
        + (f"; aliases: {', '.join(aliases)}" if aliases else "")
    )
