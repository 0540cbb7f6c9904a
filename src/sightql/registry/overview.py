"""A model's versions as rows: what the Models page and ``sightql models show`` list."""

from __future__ import annotations

from typing import Any

from sightql.registry.registry import Model


def version_rows(model: Model) -> list[dict[str, Any]]:
    """One row per version, oldest first: version, when, framework, task, labels, aliases, default, metrics."""
    default = model.default_version
    aliases = model.aliases()
    rows = []
    for v in model.versions():
        row: dict[str, Any] = {
            "version": v.version,
            "created_at": v.created_at,
            "framework": v.framework,
            "task": v.task,
            "labels": len(v.card.labels),
            "aliases": ", ".join(sorted(a for a, target in aliases.items() if target == v.version)),
            "default": v.version == default,
            "description": v.description,
        }
        row.update(v.metrics)
        rows.append(row)
    return rows
