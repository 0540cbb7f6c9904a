"""How a recognized image is shown: the image beside its top-k labels as bars, each label also as text."""

from __future__ import annotations

from typing import Any

import streamlit as st


def label_text(label: str, score: float) -> str:
    """'tabby — 48.2%': the words a person (or a browser test) reads next to each bar."""
    return f"{label} — {score:.1%}"


def show_recognized(image: bytes, caption: str, result: dict[str, Any] | None, note: str = "") -> None:
    """The image on the left; on the right the top label in bold, then one bar per label."""
    left, right = st.columns([1, 2], vertical_alignment="top")
    left.image(image, caption=caption, width="stretch")
    with right:
        if note:
            st.caption(note)
        if result is None or result["top"] is None:
            reason = (result or {}).get("error") or "the model gave no answer for this image"
            st.error(f"{caption}: {reason}")
            return
        best = result["top"][0]
        st.markdown(f"**{label_text(best['label'], best['score'])}**")
        for item in result["top"]:
            st.progress(min(max(float(item["score"]), 0.0), 1.0), text=label_text(item["label"], item["score"]))
