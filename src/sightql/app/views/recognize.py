"""Recognize: upload images; each is stored once (by content) in ``uploads`` and labelled by ``classify_topk``."""

from __future__ import annotations

import math

import streamlit as st

from sightql.app.common import model_picker, open_session, shown_errors
from sightql.app.labels import show_recognized
from sightql.explore.topk import classify_stored
from sightql.ingest.uploads import stored_images

UPLOADS = "uploads"
TOP_K = 5
IMAGE_TYPES = ["jpg", "jpeg", "png", "gif", "bmp", "webp", "tif", "tiff"]

st.title("Recognize")
st.caption(
    f"Uploaded images are stored in the `{UPLOADS}` table (once each, by content) and labelled by the same "
    f"`classify_topk` SQL function that queries use: `SELECT classify_topk('imagenet', image, {TOP_K}) FROM {UPLOADS}`."
)
with shown_errors(), open_session() as session:
    model = model_picker(session)
    files = st.file_uploader(
        "Images",
        type=IMAGE_TYPES,
        accept_multiple_files=True,
        max_upload_size=max(1, math.ceil(session.limits.max_bytes / 2**20)),
        help="JPEG, PNG, GIF, BMP, WebP or TIFF, each within the warehouse's image size limits.",
    )
    if not files:
        st.info("Upload one or more images to recognize them.")
    else:
        report = session.store_images(UPLOADS, [(f.name, f.getvalue()) for f in files])
        for name, reason in report.skipped:
            st.error(f"{name}: {reason}")
        paths = list(dict.fromkeys(image.relative_path for image in report.stored))
        results = classify_stored(session.warehouse, UPLOADS, paths, model, TOP_K)
        rows = {row["relative_path"]: row for row in stored_images(session.warehouse, session.stages, UPLOADS, paths).to_pylist()}
        notes = {i.relative_path: ("stored in" if i.new else "already in") for i in reversed(report.stored)}
        for path in paths:
            show_recognized(rows[path]["image"], path, results.get(path), f"{notes[path]} `{UPLOADS}` as `{path}` · model `{model}`")
