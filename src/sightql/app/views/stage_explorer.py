"""Stage explorer: sample images from a stage, classify them in SQL where they lie, score them against folders."""

from __future__ import annotations

import streamlit as st

from sightql.app.common import model_picker, open_session, shown_errors
from sightql.app.widgets import image_grid, sample_summary
from sightql.explore.sampling import MAX_SAMPLE, sample_stage
from sightql.stages.paths import INTERNAL_STAGE

st.title("Stage explorer")
st.caption(
    "Samples files under a stage prefix and runs `classify(model, stage_file(stage, path))` on them, "
    "with no copy into a table. A file's parent folder is its ground truth when folders are classes."
)

with shown_errors(), open_session() as session:
    # Your stages first; the warehouse's own image store (@_internal, content-addressed) last.
    stages = sorted(session.stages.names(), key=lambda name: name == INTERNAL_STAGE)
    if not stages:
        st.info("No stages yet: create one with `sightql stage create NAME` and `sightql stage put NAME FOLDER`.")
        st.stop()
    model = model_picker(session)
    with st.form("sample"):
        stage = st.selectbox("Stage", stages, key="explorer_stage")
        prefix = st.text_input("Prefix", placeholder="test/", key="explorer_prefix",
                               help="Files whose path starts with this, as directory() lists.")
        n = st.number_input("Images", min_value=1, max_value=MAX_SAMPLE, value=12, key="explorer_n",
                            help=f"At most {MAX_SAMPLE}.")
        seed = st.number_input("Seed", min_value=0, value=0, key="explorer_seed",
                               help="The same seed picks the same files.")
        submitted = st.form_submit_button("Sample and classify", type="primary")
    if submitted:
        ref = f"@{stage}/{prefix.strip().lstrip('/')}"
        with st.spinner(f"classifying {n} file(s) from {ref} with {model}"):
            sample = sample_stage(session.warehouse, session.registry, session.stages, ref, int(n), int(seed), model)
        st.subheader(f"{len(sample.rows)} of {sample.files_under_prefix} file(s) under {sample.ref}")
        st.caption(f"model {sample.model_version}, seed {sample.seed}")
        sample_summary(sample.summary)
        image_grid(sample.rows)
