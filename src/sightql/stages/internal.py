"""The warehouse's internal stage: image files kept by content, as tables of references need them.

``load_images`` and ``tables externalize`` copy each image here under ``ab/cd/<sha256>.<format>``
(:func:`~sightql.stages.paths.content_path`), so identical bytes are stored once however many rows
or tables name them, and the table's ``image`` column holds a FILE value naming the copy. A file is
written under a temporary name and renamed into place (an S3 put is atomic by itself), and a final
name is never rewritten, so a kill at any point leaves either no file or the whole one.

The FILE value's etag is the SHA-256 (see :meth:`Stage._tag`), which is also the row's ``sha256``;
predict keys such a row by it, so predictions made while the table held BLOBs stay current after
``externalize``.
"""

from __future__ import annotations

from datetime import datetime, timezone

from sightql.stages.files import FileRef, content_type
from sightql.stages.paths import INTERNAL_STAGE, content_hash, content_path
from sightql.stages.stage import Stage

_EXTENSIONS = {"MPO": "jpeg", "HEIF": "heic", "DICOM": "dcm"}  # phone JPEGs with a depth map are MPO to Pillow


def store_image(stage: Stage, data: bytes, sha256: str, image_format: str) -> FileRef:
    """Keep ``data`` (whose SHA-256 is ``sha256``) in the internal ``stage`` unless it is there already;
    its FILE value. ``image_format``: the decoder's name for it (``JPEG``), which becomes the extension."""
    path = content_path(sha256, _EXTENSIONS.get(image_format.upper(), image_format))
    stage.write_new(path, data)
    return FileRef(f"@{INTERNAL_STAGE}", path, len(data), sha256, content_type(path), datetime.now(timezone.utc))


def is_internal_ref(ref: FileRef) -> bool:
    """Whether ``ref`` names a content-addressed file of the internal stage (its etag is then its SHA-256)."""
    return ref.stage_name == INTERNAL_STAGE and ref.etag is not None and content_hash(ref.relative_path) == ref.etag
