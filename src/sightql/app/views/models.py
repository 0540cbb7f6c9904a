"""Models: the registry's models; one model's versions, aliases, metrics and confusion matrix; set an alias."""

from __future__ import annotations

import streamlit as st

from sightql.app.common import open_session, shown_errors
from sightql.app.widgets import confusion_heatmap
from sightql.registry.overview import version_rows
from sightql.train.runs import RunStore

st.title("Models")

with shown_errors(), open_session() as session:
    models = session.registry.show_models()
    if models.num_rows == 0:
        st.info("The registry is empty: train a model on the Training page, or log one with `sightql models log FILE --name NAME`.")
        st.stop()
    st.dataframe(models.to_pandas(), hide_index=True, key="models_table")
    name = st.selectbox("Model", models.column("name").to_pylist(), key="models_name")
    model = session.registry.get_model(name)
    overview = st.container()  # filled after the alias form, so a new alias shows at once

    with st.form("alias", clear_on_submit=True):
        st.markdown(f"**Point an alias of {name} at a version** (e.g. `prod`, then call `{name}@prod` from SQL)")
        left, right = st.columns(2)
        alias = left.text_input("Alias", placeholder="prod")
        target = right.selectbox("Version", [v.version for v in reversed(model.versions())])
        if st.form_submit_button("Set alias"):
            with shown_errors():
                model.set_alias(alias.strip(), target)
                st.success(f"{name}@{alias.strip()} now points at {target}")

    with overview:
        st.subheader(f"{name}: versions")
        st.dataframe(version_rows(model), hide_index=True, key="versions_table")
        aliases = model.aliases()
        st.markdown("**Aliases:** " + (", ".join(f"`{a}` → {v}" for a, v in aliases.items()) or "none yet"))
        versions = [v.version for v in reversed(model.versions())]
        chosen = model.version(st.selectbox("Version to inspect", versions, key="models_version"))
        card = chosen.card
        st.caption(f"{chosen.ref}: {chosen.framework}, {card.task}, {len(card.labels)} label(s), "
                   f"input {card.input.width}x{card.input.height} ({card.input.resize}); {chosen.description}")
        metrics = chosen.metrics
        items = list(metrics.items())
        for start in range(0, len(items), 6):
            for column, (metric, value) in zip(st.columns(6), items[start:start + 6]):
                column.metric(metric, f"{value:.4g}")
        if not metrics:
            st.caption("No metrics recorded for this version.")
        evaluations = RunStore(session.warehouse).evaluations_of_version(chosen.ref)
        for evaluation in evaluations:
            confusion_heatmap(evaluation["report"], f"{evaluation['dataset']} set of run {evaluation['run_id']}")
        if not evaluations:
            st.caption("No confusion matrix: this version was logged, not trained here "
                       "(training stores its evaluation with the version it registers).")
