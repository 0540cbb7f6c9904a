"""Generate: a prompt goes to the configured image provider; the image is kept with its prompt and recognized."""

from __future__ import annotations

import streamlit as st

from sightql.app.common import model_picker, open_session, shown_errors
from sightql.app.labels import show_recognized
from sightql.config import Settings
from sightql.explore.topk import classify_stored
from sightql.generation import SETUP_HELP, generate_image, provider_from_env
from sightql.ingest.generated import GENERATED_COLUMNS, GENERATED_TABLE, store_generated
from sightql.ingest.uploads import stored_images

TOP_K = 5
LAST = "generate_last_path"

st.title("Generate")
with shown_errors():
    provider = provider_from_env()
    if provider is None:
        st.info(SETUP_HELP)
        st.stop()
    st.caption(
        f"Images come from {provider.name} at {provider.endpoint} (model `{provider.model}`, {provider.size}); "
        f"each is stored with its prompt in `{GENERATED_TABLE}` and recognized by `classify_topk`."
    )
    with st.form("generate"):
        prompt = st.text_area("Prompt", placeholder="a tabby cat asleep on a windowsill, photo")
        submitted = st.form_submit_button("Generate", type="primary")
    generated = None
    if submitted:
        with st.spinner("Asking the image provider..."):
            generated = generate_image(prompt, provider, max_bytes=Settings.from_env().max_image_bytes)
    with open_session() as session:
        model = model_picker(session)
        if generated is not None:
            st.session_state[LAST] = store_generated(session.warehouse, generated).relative_path
        path = st.session_state.get(LAST)
        if path:
            rows = stored_images(session.warehouse, session.stages, GENERATED_TABLE, [path], GENERATED_COLUMNS).to_pylist()
            if rows:
                row = rows[0]
                result = classify_stored(session.warehouse, GENERATED_TABLE, [path], model, TOP_K).get(path)
                note = f"prompt: {row['prompt']}" + (
                    f" · provider's revised prompt: {row['revised_prompt']}" if row["revised_prompt"] else ""
                )
                show_recognized(row["image"], path, result, f"{note} · {row['provider']} `{row['model']}` · model `{model}`")
