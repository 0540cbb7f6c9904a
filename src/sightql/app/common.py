"""What every page shares: a short-lived session, the model picker, errors shown as one sentence.

Pages open the warehouse for one script run and close it at the end, so the CLI, the API and
other browser tabs can use the same warehouse between runs (see docs/app.md).
"""

from __future__ import annotations

from contextlib import contextmanager
from typing import Iterator

import streamlit as st

import sightql
from sightql.errors import SightQLError

BUILTIN_CLASSIFIERS = ["imagenet"]
# Session-state key that holds the model chosen in any page's picker (see model_picker).
CHOSEN_MODEL = "sightql_chosen_model"


def open_session() -> sightql.Session:
    """The warehouse at ``$SIGHTQL_HOME`` (``sightql app --warehouse`` sets it); use it in a ``with``,
    so it is open for this script run only."""
    return sightql.connect()


@contextmanager
def shown_errors() -> Iterator[None]:
    """A SightQL error becomes a red one-sentence box on the page instead of a stack trace."""
    try:
        yield
    except SightQLError as exc:
        st.error(str(exc))


def classifier_refs(session: sightql.Session) -> list[str]:
    """Built-in classifiers, then each registry classification model and its aliases (``name``, ``name@prod``)."""
    return [*BUILTIN_CLASSIFIERS, *session.registry.refs(task="classification")]


def model_picker(session: sightql.Session, key: str = "model") -> str:
    """A select box of :func:`classifier_refs`; remembers the choice across pages.

    Streamlit forgets a widget's value when a page without that widget runs (every page switch
    does), so the choice is also kept under :data:`CHOSEN_MODEL`, a plain session-state key that
    every page's picker starts from.
    """
    refs = classifier_refs(session)
    chosen = st.session_state.get(CHOSEN_MODEL)
    index = refs.index(chosen) if chosen in refs else 0
    model: str = st.sidebar.selectbox("Model", refs, index=index, key=key,
                                      help="A built-in model or a registry reference.")
    st.session_state[CHOSEN_MODEL] = model
    return model
