"""Rendering helpers the Stage explorer, Models and Training pages share. They draw; they decide nothing."""

from __future__ import annotations

from typing import Any, Sequence

import streamlit as st

from sightql.explore.sampling import SampledImage, SampleSummary

GRID_COLUMNS = 4


def image_grid(rows: Sequence[SampledImage], columns: int = GRID_COLUMNS) -> None:
    """Each image with its label and confidence (and folder when there is one); a bad image shows its error."""
    for start in range(0, len(rows), columns):
        for cell, row in zip(st.columns(columns), rows[start:start + columns]):
            with cell.container(border=True):
                _image_cell(row)


def _image_cell(row: SampledImage) -> None:
    if row.thumbnail is not None:
        st.image(row.thumbnail, caption=row.relative_path, width="stretch")
    if row.error is not None:
        st.error(f"{row.relative_path}: {row.error}")
        return
    mark = {True: " :green[right]", False: " :red[wrong]", None: ""}[row.correct]
    st.markdown(f"**{row.label}** {row.score:.1%}" + (f" — folder *{row.truth}*{mark}" if row.truth else ""))


def sample_summary(summary: SampleSummary) -> None:
    """n, correct, accuracy; the sentence saying what the accuracy covers; counts per folder and label."""
    a, b, c, d = st.columns(4)
    a.metric("Images", summary.n)
    b.metric("Errors", summary.errors)
    c.metric("Correct", f"{summary.correct} / {summary.judged}" if summary.accuracy is not None else "—")
    d.metric("Accuracy", f"{summary.accuracy:.1%}" if summary.accuracy is not None else "none claimed")
    (st.info if summary.accuracy is not None else st.warning)(summary.note[0].upper() + summary.note[1:] + ".")
    left, right = st.columns(2)
    left.caption("Per folder (ground truth)")
    left.dataframe(
        [{"folder": p.folder, "images": p.images, "errors": p.errors, "a model label": p.in_model_labels,
          "correct": p.correct} for p in summary.per_class],
        hide_index=True,
    )
    right.caption("Per predicted label")
    right.dataframe([{"label": k, "images": v} for k, v in summary.predicted.items()], hide_index=True)


def confusion_heatmap(report: dict[str, Any], heading: str) -> None:
    """A training evaluation's confusion matrix (rows true, columns predicted) as a heatmap with counts."""
    import altair as alt
    import pandas as pd

    from sightql.train.evaluate import confusion_cells

    accuracy = "n/a" if report["accuracy"] is None else f"{report['accuracy']:.3f}"
    title = f"{heading}: accuracy {accuracy} on {report['images']} image(s)"
    cells = pd.DataFrame(confusion_cells(report))
    order = list(report["labels"])
    base = alt.Chart(cells).encode(
        x=alt.X("predicted:N", sort=order, title="predicted"), y=alt.Y("true:N", sort=order, title="true"),
    )
    heat = base.mark_rect().encode(color=alt.Color("share:Q", scale=alt.Scale(scheme="blues"), title="share of row"),
                                   tooltip=["true", "predicted", "count"])
    text = base.mark_text().encode(text="count:Q")
    st.altair_chart((heat + text).properties(title=title), width="content")


def training_curves(history: Sequence[dict[str, Any]], key: str) -> None:
    """Loss and accuracy per epoch (training and validation), and the rows themselves."""
    import pandas as pd

    if not history:
        st.caption("No epoch has finished yet.")
        return
    frame = pd.DataFrame(list(history)).set_index("epoch")
    loss, accuracy = st.columns(2)
    loss.caption("Loss")
    loss.line_chart(frame[["train_loss", "val_loss"]])
    accuracy.caption("Accuracy")
    accuracy.line_chart(frame[["train_acc", "val_acc"]])
    st.dataframe(frame.reset_index(), hide_index=True, key=key)
