"""Helpers for driving the web app's pages with Streamlit's AppTest, on a test's own warehouse."""

from __future__ import annotations

from pathlib import Path

import sightql.app

PAGES = Path(sightql.app.__file__).parent / "views"


def page(name: str, warehouse: Path, monkeypatch):
    """The page ``name`` (e.g. 'recognize') ready to run against ``warehouse``."""
    from streamlit.testing.v1 import AppTest

    monkeypatch.setenv("SIGHTQL_HOME", str(warehouse))
    return AppTest.from_file(str(PAGES / f"{name}.py"), default_timeout=120)


def texts(at) -> list[str]:
    """Every piece of visible text the page drew: markdown, captions, bars' labels, info and error boxes."""
    shown = [m.value for m in at.markdown] + [c.value for c in at.caption]
    shown += [p.proto.text for p in at.get("progress")]
    return shown + [i.value for i in at.info] + [e.value for e in at.error]
