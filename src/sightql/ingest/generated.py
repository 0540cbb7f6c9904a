"""``generated_images``: each generated image with the prompt, provider and model that made it."""

from __future__ import annotations

from datetime import datetime, timezone

from sightql.errors import GenerationError, ImageError
from sightql.generation import GeneratedImage
from sightql.ingest.rows import IMAGE_COLUMN_DEFS, checked_row
from sightql.ingest.uploads import StoredImage
from sightql.sql.warehouse import Warehouse

GENERATED_TABLE = "generated_images"
GENERATED_DDL = f"""CREATE TABLE IF NOT EXISTS {GENERATED_TABLE} (
    {IMAGE_COLUMN_DEFS},
    prompt VARCHAR NOT NULL,
    revised_prompt VARCHAR,
    provider VARCHAR NOT NULL,
    endpoint VARCHAR NOT NULL,
    model VARCHAR NOT NULL,
    created_at TIMESTAMPTZ NOT NULL
)"""
GENERATED_COLUMNS = ("relative_path", "image", "prompt", "revised_prompt", "provider", "model", "created_at")
_EXTENSIONS = {"JPEG": "jpg", "PNG": "png", "WEBP": "webp", "GIF": "gif"}


def store_generated(warehouse: Warehouse, generated: GeneratedImage) -> StoredImage:
    """Check the provider's bytes like any image and keep them, keyed by content: ``generated/<sha256[:16]>.png``.

    The same bytes stored twice keep their first row (``new`` is False).
    """
    try:
        row = checked_row("", len(generated.data), lambda: generated.data, warehouse.limits)
    except ImageError as exc:
        raise GenerationError(f"the image provider at {generated.endpoint} sent an unusable image: {exc}") from None
    extension = _EXTENSIONS.get(row["format"], row["format"].lower())
    path = f"generated/{row['sha256'][:16]}.{extension}"
    con = warehouse.connection()
    con.execute(GENERATED_DDL)
    inserted = con.execute(
        f"""INSERT INTO {GENERATED_TABLE} (relative_path, image, size, sha256, width, height, format, prompt,
                revised_prompt, provider, endpoint, model, created_at)
            VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (relative_path) DO NOTHING RETURNING 1""",
        [
            path, row["image"], row["size"], row["sha256"], row["width"], row["height"], row["format"],
            generated.prompt, generated.revised_prompt, generated.provider, generated.endpoint, generated.model,
            datetime.now(timezone.utc),
        ],
    ).fetchall()
    return StoredImage(generated.prompt, path, row["sha256"], bool(inserted))
