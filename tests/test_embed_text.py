"""embed_text(model, text) in SQL with the built-in MiniLM: batching, NULLs, cosine search, wrong-modality errors."""

from __future__ import annotations

import numpy as np
import pytest

import sightql
from sightql.errors import SightQLError

GUITAR = "A man is playing a guitar."
PARAPHRASE = "Someone plays an acoustic guitar."
UNRELATED = "The stock market fell sharply today."


@pytest.fixture
def notes(session):
    session.sql("CREATE TABLE notes (i INTEGER, body VARCHAR)")
    for i, text in enumerate([GUITAR, PARAPHRASE, UNRELATED, None]):
        session.sql("INSERT INTO notes VALUES (?, ?)", [i, text])
    return session


def test_tutorial_paraphrase_scores_higher_than_an_unrelated_sentence(notes):
    rows = notes.sql(
        """WITH e AS (SELECT i, body, embed_text('minilm', body) AS v FROM notes WHERE body IS NOT NULL)
           SELECT b.body, len(b.v) AS dims, list_cosine_similarity(a.v, b.v) AS cos
           FROM e a, e b WHERE a.body = ? ORDER BY cos DESC""",
        [GUITAR],
    ).to_pylist()
    assert [r["body"] for r in rows] == [GUITAR, PARAPHRASE, UNRELATED]
    assert {r["dims"] for r in rows} == {384}
    assert rows[0]["cos"] == pytest.approx(1.0, abs=1e-5)
    assert rows[1]["cos"] > rows[2]["cos"] + 0.3
    typed = notes.sql("SELECT typeof(embed_text('minilm', 'x')) AS t").to_pylist()
    assert typed == [{"t": "FLOAT[]"}]


def test_null_text_and_null_model_give_null(notes):
    rows = notes.sql("SELECT i, embed_text('minilm', body) AS v, embed_text(NULL, body) AS n FROM notes ORDER BY i").to_pylist()
    assert [r["v"] is None for r in rows] == [False, False, False, True]
    assert all(r["n"] is None for r in rows)


def test_rows_are_embedded_in_one_batch_and_match_the_model(session, monkeypatch):
    model = session.predictor("minilm")
    assert model.model_version.startswith("minilm@builtin-") and model.card.modality == "text"
    calls: list[int] = []
    original = model.embed_texts

    def counting(texts):
        calls.append(len(texts))
        return original(texts)

    monkeypatch.setattr(model, "embed_texts", counting)
    rows = session.sql(
        "SELECT i, embed_text('minilm', 'inspection note ' || i::VARCHAR) AS v FROM range(150) t(i) ORDER BY i"
    ).to_pylist()
    assert calls == [150]  # one Arrow chunk, one model call (the model batches by 64 inside)
    got = np.array([r["v"] for r in rows])
    expected = original([f"inspection note {i}" for i in range(150)])
    assert got.shape == (150, 384) and float(np.abs(got - expected).max()) <= 1e-4


def test_a_text_that_fails_costs_only_its_row(session, monkeypatch):
    model = session.predictor("minilm")
    original = model.embed_texts

    def failing_on_poison(texts):
        if "poison" in texts:
            raise RuntimeError("tokenizer broke")
        return original(texts)

    monkeypatch.setattr(model, "embed_texts", failing_on_poison)
    rows = session.sql(
        "SELECT embed_text('minilm', t) AS v FROM (VALUES (1, 'fine'), (2, 'poison'), (3, 'also fine')) x(i, t) ORDER BY i"
    ).to_pylist()
    assert [r["v"] is None for r in rows] == [False, True, False]
    with sightql.connect(session.home.parent / "strict", on_error="raise") as strict:
        with pytest.raises(SightQLError, match="tokenizer broke"):
            strict.sql("SELECT embed_text('minilm', 'poison')")


def test_each_function_names_the_right_one_for_the_model(session, photos_dir):
    coffee = (photos_dir / "coffee.jpg").read_bytes()
    with pytest.raises(SightQLError, match=r"^'imagenet' reads images; use embed\(model, image\)$"):
        session.sql("SELECT embed_text('imagenet', 'a steel plate')")
    for query in ("SELECT embed('minilm', ?::BLOB)", "SELECT classify('minilm', ?::BLOB)"):
        with pytest.raises(SightQLError, match=r"^'minilm' reads text; use embed_text\(model, text\)$"):
            session.sql(query, [coffee])


def test_a_function_made_for_a_text_model_takes_text(warehouse):
    with sightql.connect(warehouse) as session:
        session.create_function("note_vector", "minilm")
        row = session.sql("SELECT note_vector(?) AS v, typeof(note_vector(?)) AS t", [GUITAR, GUITAR]).to_pylist()[0]
        assert len(row["v"]) == 384 and row["t"] == "FLOAT[]"
        assert session.sql("SELECT task FROM sightql_functions").to_pylist() == [{"task": "text-embedding"}]
    with sightql.connect(warehouse) as session:  # registered again on connect, still taking text
        direct, named = session.sql(
            "SELECT embed_text('minilm', ?) AS a, note_vector(?) AS b", [PARAPHRASE, PARAPHRASE]
        ).to_pylist()[0].values()
        assert direct == named
        with pytest.raises(SightQLError):
            session.sql("SELECT note_vector(?::BLOB)", [b"\xff\xd8"])
