"""``ai_classify(image, labels, model := ...)`` and ``ai_complete(image, prompt, model := ...)``: an
image and a question sent to a vision-language model behind an OpenAI-compatible chat API.

Both take a BLOB or a FILE value (:mod:`sightql.functions.image_args`); ``model`` may be left out
(the ``chat_model`` setting), given third, or by name (``model := 'x'`` or ``model => 'x'``).
``ai_classify`` returns ``STRUCT(label VARCHAR, error VARCHAR)``, ``ai_complete``
``STRUCT(text VARCHAR, error VARCHAR)``: like every SightQL function, a row that fails (a bad image,
an HTTP error, a timeout after retries, an answer outside the labels) gets NULL plus one sentence
and the query goes on, unless the session is strict (``on_error='raise'``).

Each call of the UDF (up to 2,048 rows):

1. reads each image once to hash it (sha256 of its bytes; FILE values within the read budget);
2. looks the answers up in ``sightql_ai_answers`` (:mod:`.vision_language_cache`); rows asking the
   same thing of the same image share one request;
3. counts the requests it still needs against ``chat_max_images`` for the query (the transaction
   running it, ``txid_current()``): the call that would take the query past it sends nothing and
   fails the query with one sentence naming the setting, so a query never sends more;
4. sends them, at most ``chat_concurrency`` in flight per session (a pool of its own: requests
   wait on the network, not the CPU, so they do not hold the decode pool's threads), each image
   downscaled to ``chat_image_side`` pixels and retried as :mod:`sightql.generation.chat` says;
5. keeps the new answers, in one short transaction, and shapes the rows.
"""

from __future__ import annotations

import hashlib
import os
import threading
import uuid
from collections import OrderedDict
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import duckdb
import pyarrow as pa
from duckdb import sqltypes as T

from sightql.engine import BudgetedRead, parallel_map, read_budget
from sightql.errors import ConfigError, ImageDecodeError, SightQLError
from sightql.functions.image_args import chosen_file_refs, is_file_column, register_image_function
from sightql.functions.image_functions import RowsOf
from sightql.functions.vision_language_cache import Answer, AnswerCache
from sightql.generation.chat import ask, open_client
from sightql.generation.chat_provider import ChatProvider, require_chat_provider
from sightql.generation.vision_language import (
    CLASSIFY, COMPLETE, answer_key, checked_labels, classify_prompt, image_data_url, labels_request, match_label,
)
from sightql.sql.warehouse import Warehouse
from sightql.stages.catalog import StageCatalog
from sightql.stages.files import file_reads

CLASSIFY_ARROW = pa.struct([("label", pa.string()), ("error", pa.string())])
COMPLETE_ARROW = pa.struct([("text", pa.string()), ("error", pa.string())])
MODEL_PARAM = ("model", "VARCHAR", "NULL")
QUERY_ID = (("txid_current()", "UBIGINT"),)
_QUERIES_KEPT = 256  # per-query counts remembered (the running queries are among the latest)


@dataclass
class Ask:
    """What one row asks: ``key`` None when the row failed before asking (``error`` says why)."""

    task: str
    request: str  # the labels (JSON) or the prompt, as cached
    text: str  # what is sent with the image
    model: str
    key: str | None = None
    sha256: str | None = None
    answer: str | None = None
    error: str | None = None


_pools: dict[int, ThreadPoolExecutor] = {}
_pools_lock = threading.Lock()


def request_pool(width: int) -> ThreadPoolExecutor:
    """The process's pool of ``width`` threads for chat requests (one per width asked for)."""
    with _pools_lock:
        if width not in _pools:
            _pools[width] = ThreadPoolExecutor(max_workers=width, thread_name_prefix="sightql-chat")
        return _pools[width]


class VisionLanguage:
    """The UDF bodies, bound to one warehouse (settings, limits, error policy) and its stages."""

    def __init__(self, warehouse: Warehouse, stages: StageCatalog, environ: Any = os.environ):
        self.warehouse = warehouse
        self.stages = stages
        self.environ = environ
        self.cache = AnswerCache(warehouse)
        self._sent: OrderedDict[int, int] = OrderedDict()  # query (transaction id) -> images sent
        self._sent_lock = threading.Lock()

    # ---- ai_classify(image, labels, model) -> STRUCT(label, error) --------------------------
    def ai_classify(self, images: pa.ChunkedArray, labels: pa.ChunkedArray, models: pa.ChunkedArray,
                    query: pa.ChunkedArray) -> pa.Array:
        provider = require_chat_provider(self.warehouse.settings, self.environ)
        asks, lists = [], []
        for label_list, model in zip(labels.to_pylist(), models.to_pylist()):
            chosen = checked_labels(label_list) if label_list is not None else ()
            lists.append(chosen)
            asks.append(Ask(CLASSIFY, labels_request(chosen), classify_prompt(chosen), model or provider.model,
                            error=None if label_list is not None else "no labels (the labels argument is NULL)"))
        self._answer(provider, images, asks, query)
        rows = []
        for row, chosen in zip(asks, lists):
            if row.answer is not None:
                try:
                    row.answer = match_label(row.answer, chosen)
                except SightQLError as exc:
                    row.answer, row.error = None, str(exc)
            rows.append({"label": row.answer, "error": row.error})
        self._raise_if_strict(asks)
        return pa.array(rows, type=CLASSIFY_ARROW)

    # ---- ai_complete(image, prompt, model) -> STRUCT(text, error) ---------------------------
    def ai_complete(self, images: pa.ChunkedArray, prompts: pa.ChunkedArray, models: pa.ChunkedArray,
                    query: pa.ChunkedArray) -> pa.Array:
        provider = require_chat_provider(self.warehouse.settings, self.environ)
        asks = [
            Ask(COMPLETE, prompt or "", prompt or "", model or provider.model,
                error=None if prompt and prompt.strip() else "no prompt (the prompt is NULL or blank)")
            for prompt, model in zip(prompts.to_pylist(), models.to_pylist())
        ]
        self._answer(provider, images, asks, query)
        self._raise_if_strict(asks)
        return pa.array([{"text": a.answer, "error": a.error} for a in asks], type=COMPLETE_ARROW)

    # ---- the steps ----------------------------------------------------------------------------
    def _answer(self, provider: ChatProvider, images: pa.ChunkedArray, asks: list[Ask], query: pa.ChunkedArray) -> None:
        """Fill each ask's ``answer`` or ``error``: hash, cache, count, send, keep."""
        items, read = self._images(images)
        todo = [i for i, a in enumerate(asks) if a.error is None]
        for i, digest in zip(todo, parallel_map(lambda i: _sha256(items[i], read), todo,
                                                self.warehouse.settings.decode_threads)):
            if isinstance(digest, SightQLError):
                asks[i].error = str(digest)
            else:
                a = asks[i]
                a.sha256, a.key = digest, answer_key(digest, a.task, a.request, a.model, provider.endpoint)
        keyed = [i for i in todo if asks[i].key is not None]
        known = self.cache.get(asks[i].key for i in keyed)  # type: ignore[misc]
        first: dict[str, int] = {}  # each key still to ask -> the first row asking it
        for i in keyed:
            if asks[i].key not in known:
                first.setdefault(asks[i].key, i)  # type: ignore[arg-type]
        self._count(provider, query, len(first))
        sent = self._send(provider, items, read, [asks[i] for i in first.values()], list(first.values()))
        self.cache.put([Answer(a.key, a.sha256, a.task, a.request, a.model, provider.endpoint, a.answer)  # type: ignore[arg-type]
                        for a in sent if a.answer is not None])
        for i in keyed:
            a = asks[i]
            if a.key in known:
                a.answer = known[a.key]  # type: ignore[index]
            else:
                asked = asks[first[a.key]]  # type: ignore[index]
                a.answer, a.error = asked.answer, asked.error

    def _images(self, images: pa.ChunkedArray) -> tuple[Sequence[Any], BudgetedRead | None]:
        """Every row of the image column, and how a FILE value is read (None: the rows are bytes)."""
        rows = list(range(len(images)))
        if is_file_column(images):
            budget = read_budget(self.warehouse.settings.read_budget_bytes)
            return chosen_file_refs(images, rows), file_reads(self.stages.get, budget)
        return RowsOf(images, rows), None

    def _count(self, provider: ChatProvider, query: pa.ChunkedArray, needed: int) -> None:
        """Take ``needed`` images from this query's ``chat_max_images``, or refuse the query in one sentence."""
        if not needed:
            return
        query_id = query[0].as_py() if len(query) else None
        with self._sent_lock:
            already = self._sent.get(query_id, 0)
            if already + needed > provider.max_images:
                raise ConfigError(
                    f"this query would send {already + needed:,} images to the vision-language provider, over "
                    f"chat_max_images ({provider.max_images:,}); raise SIGHTQL_CHAT_MAX_IMAGES or select fewer rows "
                    "(answers already cached are not counted)"
                )
            self._sent[query_id] = already + needed
            self._sent.move_to_end(query_id)
            while len(self._sent) > _QUERIES_KEPT:
                self._sent.popitem(last=False)

    def _send(self, provider: ChatProvider, items: Sequence[Any], read: BudgetedRead | None,
              asks: list[Ask], rows: list[int]) -> list[Ask]:
        """Ask each of ``asks`` (the image at the same place of ``rows``), ``provider.concurrency`` at a time."""
        if not asks:
            return asks
        limits, side = self.warehouse.limits, provider.image_side
        client = open_client(provider)

        def one(a: Ask, item: Any) -> None:
            try:
                url = _use(item, read, lambda data: image_data_url(data, limits, side))
                a.answer = ask(client, provider, a.model, a.text, url)
            except SightQLError as exc:
                a.error = provider.redact(str(exc))

        try:
            pool = request_pool(provider.concurrency)
            for future in [pool.submit(one, a, items[i]) for a, i in zip(asks, rows)]:
                future.result()
        finally:
            client.close()
        return asks

    def _raise_if_strict(self, asks: list[Ask]) -> None:
        if self.warehouse.on_error == "raise":
            for a in asks:
                if a.error is not None:
                    raise SightQLError(a.error)


def _use(item: Any, read: BudgetedRead | None, fn: Callable[[bytes | None], Any]) -> Any:
    return fn(item) if read is None else read.use(item, fn)


def _sha256(item: Any, read: BudgetedRead | None) -> str | SightQLError:
    """The hex sha256 of the row's image bytes, or the error that says why there are none."""

    def digest(data: bytes | None) -> str:
        if not data:
            raise ImageDecodeError("no image (the value is NULL)" if data is None else "empty file (0 bytes)")
        return hashlib.sha256(data).hexdigest()

    try:
        return _use(item, read, digest)  # type: ignore[no-any-return]
    except SightQLError as exc:  # a FILE that is missing, forbidden or changed
        return exc


def register_vision_language(con: Any, warehouse: Warehouse, stages: StageCatalog) -> VisionLanguage:
    """Register ``ai_classify`` and ``ai_complete`` on ``con``."""
    funcs = VisionLanguage(warehouse, stages)
    classify_type = duckdb.struct_type({"label": T.VARCHAR, "error": T.VARCHAR})
    complete_type = duckdb.struct_type({"text": T.VARCHAR, "error": T.VARCHAR})
    register_image_function(con, "ai_classify", funcs.ai_classify, classify_type,
                            after=(("labels", "VARCHAR[]"), MODEL_PARAM), hidden=QUERY_ID)
    register_image_function(con, "ai_complete", funcs.ai_complete, complete_type,
                            after=(("prompt", "VARCHAR"), MODEL_PARAM), hidden=QUERY_ID)
    return funcs


def ask_about_images(warehouse: Warehouse, sql_name: str, images: Sequence[bytes], argument: Any,
                     model: str | None) -> list[dict[str, Any]]:
    """``sql_name`` (ai_classify or ai_complete) over image bytes, through the same SQL function queries use:
    one ``{"label" or "text", "error"}`` per image, in order."""
    if sql_name not in ("ai_classify", "ai_complete"):
        raise ConfigError(f"{sql_name!r} is not a vision-language function; use ai_classify or ai_complete")
    table = pa.table({"i": list(range(len(images))), "image": pa.array(list(images), pa.binary())})
    view = f"_sightql_ai_input_{uuid.uuid4().hex}"
    con = warehouse.connection()
    con.register(view, table)
    try:
        result = warehouse.sql(f"SELECT {sql_name}(image, $argument, model := $model) AS answer FROM {view} ORDER BY i",
                               {"argument": argument, "model": model})
    finally:
        con.unregister(view)
    return result.column("answer").to_pylist()
