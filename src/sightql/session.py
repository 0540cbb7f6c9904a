"""``sightql.connect()`` and the Session: the one public entry point.

A warehouse is a folder holding a DuckDB catalog (``warehouse.duckdb``), stage
storage (``stages/``) and model artifacts (``models/``).
"""

from __future__ import annotations

import atexit
import functools
import weakref
from pathlib import Path
from typing import Any, Sequence

import pyarrow as pa

from sightql.config import Settings, default_home
from sightql.errors import ConfigError
from sightql.explore.topk import classify_images
from sightql.functions.named import create_model_function, drop_model_function, list_model_functions
from sightql.functions.register import register_functions
from sightql.functions.vision_language import ask_about_images
from sightql.functions.zero_shot import classify_labels_images
from sightql.images.decode import ImageLimits
from sightql.inference.predict import PredictReport, predict
from sightql.inference.runners import Runner, RunnerName
from sightql.ingest.externalize import ExternalizeReport, externalize_table
from sightql.ingest.loading import load_images
from sightql.ingest.rows import LoadReport
from sightql.ingest.uploads import StoreReport, store_images
from sightql.models.base import LoadedModel
from sightql.models.loader import describe_builtins
from sightql.registry import Registry
from sightql.quantize import quantize_with_stages
from sightql.search import RefreshReport, SearchIndexes, attach_search
from sightql.sql.warehouse import OnError, Params, Warehouse
from sightql.stages.catalog import StageCatalog
from sightql.stages.paths import split_stage_ref
from sightql.stages.stage import Stage
from sightql.train.options import TrainOptions
from sightql.train.result import TrainResult
from sightql.train.run import train as run_training


_open_sessions: "weakref.WeakSet[Session]" = weakref.WeakSet()


def _of_warehouse(name: str, doc: str) -> property:
    """A read-only Session attribute that is the Warehouse's own."""
    return property(lambda session: getattr(session.warehouse, name), doc=doc)


@atexit.register
def _close_open_sessions() -> None:
    """Close what callers left open, so DuckDB flushes and shuts down cleanly."""
    for session in list(_open_sessions):
        session.close()


def connect(
    path: str | Path | None = None,
    *,
    read_only: bool = False,
    on_error: OnError = "null",
    device: str | None = None,
    settings: Settings | None = None,
    lock_wait: float | None = None,
) -> "Session":
    """Open (creating if needed) the warehouse at ``path``, or at ``$SIGHTQL_HOME``.

    While another process holds the warehouse, opening retries for ``lock_wait`` seconds
    (default ``$SIGHTQL_LOCK_WAIT``, 5) and then raises a WarehouseError naming that process.

    ``on_error='null'`` gives a bad image's row NULL plus an error message;
    ``on_error='raise'`` fails the query on the first bad image instead.
    """
    return Session(
        path, read_only=read_only, on_error=on_error, device=device, settings=settings, lock_wait=lock_wait
    )


class Session:
    """The facade over one open warehouse: composes the narrow :class:`~sightql.sql.warehouse.Warehouse`
    context, the registry, the stages and the SQL functions, and hands the context (never itself) down."""

    def __init__(
        self,
        path: str | Path | None = None,
        *,
        read_only: bool = False,
        on_error: OnError = "null",
        device: str | None = None,
        settings: Settings | None = None,
        lock_wait: float | None = None,
    ):
        if on_error not in ("null", "raise"):
            raise ConfigError(f"on_error={on_error!r} is not valid; use 'null' or 'raise'")
        chosen = settings or Settings.from_env()
        if path is not None:
            home = Path(path).expanduser()
        else:  # the settings just read name it; with settings given, home still comes from the environment/file
            home = chosen.home if settings is None else default_home()
        self.warehouse = Warehouse.open(
            home, read_only=read_only, settings=chosen, device=device or chosen.device, on_error=on_error,
            lock_wait=chosen.lock_wait if lock_wait is None else lock_wait,
        )
        self._finalizer = weakref.finalize(self, self.warehouse.give_back_turn)  # a session never closed frees its turn
        try:
            self.stages = StageCatalog(self.warehouse)
            self.registry = Registry(
                self.warehouse, fetch_staged=functools.partial(fetch_staged_model, self.stages),
                quantizer=functools.partial(quantize_with_stages, self.stages),  # holds the stages, not the session
            )
            self._functions = register_functions(self.warehouse, self.registry, self.stages)
            self._search: SearchIndexes = attach_search(self.warehouse, self.registry, self.stages)
            again = weakref.WeakMethod(self._register_functions_again)  # weak: the warehouse must not keep us alive
            self.warehouse.on_reopen(lambda con: (again() or (lambda _c: None))(con))
        except BaseException:
            self.close()
            raise
        _open_sessions.add(self)

    # ---- the open warehouse (read-only views of the narrow context, for adapters and users) ----
    con = _of_warehouse("con", "The DuckDB connection (None once closed).")
    home = _of_warehouse("home", "The warehouse folder.")
    settings = _of_warehouse("settings", "The Settings this session runs with (config file < SIGHTQL_* variables).")
    limits = _of_warehouse("limits", "The image limits (bytes, pixels) every decode checks.")
    device = _of_warehouse("device", "'auto', 'cpu' or 'cuda', as asked for.")
    on_error = _of_warehouse("on_error", "'null' (a bad image gives its row NULL plus an error) or 'raise'.")
    models_dir = _of_warehouse("models_dir", "Where model artifacts live (models/ under the warehouse).")

    # ---- lifecycle -------------------------------------------------------------
    def close(self) -> None:
        self.warehouse.close()

    def _register_functions_again(self, _connection: Any) -> None:
        """SQL functions live on an open database: after a job released the warehouse, register them again."""
        self._functions = register_functions(self.warehouse, self.registry, self.stages)
        self._finalizer()

    def __enter__(self) -> "Session":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"Session({str(self.home)!r})"

    # ---- SQL -------------------------------------------------------------------
    def sql(self, query: str, params: Params = None, *, limit: int | None = None) -> pa.Table:
        """Run SQL with bound parameters (``?`` or ``$name``); returns an Arrow table.

        Call ``.to_pandas()`` on the result for a DataFrame. ``directory('@stage')`` lists the
        stage as it is when the query runs.
        ``limit`` fetches at most that many rows of a query's result, computing no more.
        """
        return self.warehouse.sql(query, params, limit=limit)

    def sql_script(self, script: str, params: Params = None) -> pa.Table:
        """Run a script of SQL statements separated by ``;`` in order; returns the last query's result.

        DuckDB's parser splits the script (a ``;`` inside a string or a comment is no separator).
        The result is the last query's (SELECT, FROM, VALUES, SHOW, DESCRIBE, ...), or, in a script
        with no query, the last statement's. Each statement commits on its own unless the script has
        BEGIN/COMMIT; a failing statement is named in the error and the ones before it stay done.
        ``params`` bind to a script of one statement only.
        """
        return self.warehouse.sql_script(script, params)

    # ---- images ----------------------------------------------------------------
    def load_images(self, table: str, source: str | Path, *, inline: bool = False) -> LoadReport:
        """Load a file, folder (recursive), glob or ``'@stage/prefix'`` into ``table``.

        Each file is checked; non-images and over-limit files are listed in the
        report's ``skipped`` and loading goes on. Reloading a path replaces its row.
        A new table's ``image`` column holds FILE values naming copies in the warehouse's own
        stage (identical bytes stored once); ``inline=True`` keeps the bytes in the table (BLOB)
        instead. An existing table is loaded the way its ``image`` column already holds images.
        """
        return load_images(self.warehouse, self.stages, table, str(source), inline=inline)

    def externalize_table(self, table: str) -> ExternalizeReport:
        """Move a table's image bytes (BLOB) into the warehouse's stage, leaving FILE values; crash-safe
        and resumable (run it again after an interruption). A table already holding FILE values is left as it is."""
        return externalize_table(self.warehouse, self.stages, table)

    def set_storage(self, url: str) -> Stage:
        """Keep this warehouse's loaded images at ``url`` (``s3://bucket/prefix``) instead of its folder; only
        before the first load. Credentials and endpoint come from the environment of each process."""
        return self.stages.set_internal_storage(url)

    def store_images(self, table: str, items: Sequence[tuple[str, bytes]]) -> StoreReport:
        """Store ``(name, bytes)`` pairs (uploads) in ``table``, checked like ``load_images``.

        Idempotent by content: bytes whose sha256 is already in the table are reported with their
        existing row, never inserted twice; a name taken by other bytes gets a ``-<sha8>`` suffix.
        """
        return store_images(self.warehouse, self.stages, table, items)

    # ---- stages ----------------------------------------------------------------
    def create_stage(self, name: str, url: str | None = None, *, exist_ok: bool = False) -> Stage:
        """A local stage inside the warehouse, or one at an ``s3://bucket/prefix`` URL."""
        return self.stages.create(name, url, exist_ok=exist_ok)

    def stage(self, name: str) -> Stage:
        return self.stages.get(name.lstrip("@"))

    # ---- training --------------------------------------------------------------
    def train(
        self,
        name: str | None = None,
        source: str | None = None,
        options: TrainOptions | None = None,
        *,
        resume: str | None = None,
        progress: bool = True,
        progress_file: str | Path | None = None,
        **overrides: Any,
    ) -> TrainResult:
        """Fine-tune a base on labelled images and register the best epoch as the next version of ``name``.

        ``source``: a table (``image`` BLOB column, ``label`` column) or ``'@stage/prefix'`` with
        ``label='folder'``. The settings are :class:`sightql.train.TrainOptions` fields: pass a
        ``TrainOptions`` as ``options``, or any of its fields as keywords (``label='folder', epochs=8,
        image_size=128, test='@xray/test', ...``), which override ``options``; a name that is not a
        field is a ConfigError naming the close match. docs/training.md lists every setting with its
        meaning and default (``base``, ``epochs``, ``batch_size``, ``lr``, ``schedule``, ``freeze``,
        ``augment``, ``val_fraction``/``split_column``, ``class_weights``, ``patience``, ``test``, ...).

        Each epoch adds a row to ``training_log``; the run is a row of ``training_runs``.
        ``resume=RUN_ID`` continues a run from its last checkpoint with its stored settings (only
        ``epochs=`` may be given, to extend it); ``progress_file`` is a JSON file kept current for
        processes that cannot open the warehouse meanwhile (the app). Returns a
        :class:`sightql.train.run.TrainResult`.
        """
        if resume is not None:
            extra = sorted(set(overrides) - {"epochs"}) + (["name"] if name else []) + (["source"] if source else [])
            if options is not None or extra:
                raise ConfigError(f"resume={resume!r} continues with the run's stored settings; "
                                  f"leave out {', '.join(extra) or 'options'} (only epochs= may be given)")
            return run_training(self.warehouse, self.registry, self.stages, resume=resume,
                                epochs=overrides.get("epochs"), progress=progress, progress_file=progress_file)
        chosen = TrainOptions.build(options, **({"name": name} if name else {}),
                                    **({"source": source} if source else {}), **overrides)
        return run_training(self.warehouse, self.registry, self.stages, chosen, progress=progress,
                            progress_file=progress_file)

    # ---- models ----------------------------------------------------------------
    def predictor(self, ref: str) -> LoadedModel:
        """The loaded model for ``ref``: a built-in ('imagenet', text model 'minilm') or a registry reference
        ('name', 'name@v3', 'name@latest', 'name@prod'). Loaded once per process per exact version and device,
        in the one model cache that batch predict shares (see sightql.registry.specs)."""
        return self.registry.predictor(ref)

    def models(self) -> list[dict[str, Any]]:
        """Every model a reference can name: the built-ins, then the registry's models with versions and aliases."""
        builtins = [{**b, "source": "builtin"} for b in describe_builtins()]
        return builtins + [{**m, "source": "registry"} for m in self.registry.describe()]

    def create_function(self, sql_name: str, ref: str, *, replace: bool = False) -> None:
        """A SQL function ``sql_name(image)`` running the model ``ref``, kept across reconnects.

        Classification models give STRUCT(label, score, error) like ``classify``;
        embedding models give FLOAT[] like ``embed``; a text model makes ``sql_name(text)``
        giving FLOAT[] like ``embed_text``. The reference is resolved on
        every query, so ``'name@prod'`` follows the alias.
        """
        create_model_function(self.warehouse, self.registry, self._functions, sql_name, ref, replace=replace)

    def functions(self) -> list[dict[str, str]]:
        """The functions made with :meth:`create_function`, by name: ``{"name", "model_ref", "task"}``."""
        return list_model_functions(self.registry)

    def drop_function(self, sql_name: str) -> None:
        """Remove a function made with :meth:`create_function`."""
        drop_model_function(self.warehouse, self.registry, sql_name)

    def predict(
        self,
        model: str,
        source: str,
        *,
        image: str = "image",
        stage: str | None = None,
        columns: dict[str, str] | str | None = None,
        key: str | None = None,
        into: str | None = None,
        where: str | None = None,
        params: Sequence[Any] | dict[str, Any] | None = None,
        top_k: int = 0,
        recompute: bool = False,
        batch_size: int | None = None,
        chunk_rows: int | None = None,
        runner: RunnerName | Runner = "local",
        device: str | None = None,
        progress: bool | None = None,
    ) -> PredictReport:
        """Classify every row of a table (or every file under ``'@stage/prefix'``) and write the predictions back.

        ``image`` is the table's column of images: BLOB, FILE values, or paths (VARCHAR) relative to
        ``stage`` ('@clothing') or full '@stage/path' references. Results go into ``into`` (default: the
        source table itself) as columns ``predicted_label``, ``confidence``, ``top_k`` (when ``top_k > 0``),
        ``model_version``, ``predicted_at``, ``prediction_error`` and ``predicted_sha256``, or, with
        ``columns={'label': 'TYPE', 'score': 'CONFIDENCE', 'predicted_at': 'PRED_TIMESTAMP'}``, into your
        own columns (made if missing), one transaction per chunk, keyed by the row key: the primary key,
        else ``key`` (a unique column), else the path column. Rows already predicted by the same model
        version from the same bytes (or, for paths, the same file) are skipped unless ``recompute=True``;
        a rerun after a crash finishes the job. ``where`` is the caller's SQL filter on the source; bind its
        values through ``params``. ``runner`` is ``'local'``, ``'dask'`` (the cluster the settings
        ``dask_scheduler`` / ``dask_workers`` name) or a runner such as ``DaskRunner(scheduler='tcp://host:8786')``
        from :mod:`sightql.inference.runners`. See docs/batch.md.
        """
        return predict(
            self.warehouse, self.registry, self.stages, model, source, image=image, stage=stage, columns=columns,
            key=key, into=into, where=where, params=params, top_k=top_k, recompute=recompute, batch_size=batch_size,
            chunk_rows=chunk_rows, runner=runner, device=device, progress=progress,
        )

    def classify(self, images: Sequence[bytes], model: str = "imagenet", k: int = 5) -> list[dict[str, Any]]:
        """Top-``k`` labels for each image, through the same SQL function as queries use.

        ``model`` is resolved once, to the exact version that then answers every image (an alias
        moved meanwhile changes nothing). Each result is ``{"top": [{"label", "score"}, ...] or None,
        "error": None or one sentence, "model_version": e.g. 'defects@v3'}``.
        """
        return classify_images(self.warehouse, self.registry, images, model, k)

    def ai_classify(self, images: Sequence[bytes], labels: Sequence[str], model: str | None = None) -> list[dict[str, Any]]:
        """One of ``labels`` for each image, chosen by a vision-language model behind an OpenAI-compatible
        chat API, through the SQL function ``ai_classify``: ``{"label": ... or None, "error": None or one
        sentence}`` per image. ``model`` defaults to the ``chat_model`` setting; answers are cached (docs/search.md)."""
        return ask_about_images(self.warehouse, "ai_classify", images, list(labels), model)

    def ai_complete(self, images: Sequence[bytes], prompt: str, model: str | None = None) -> list[dict[str, Any]]:
        """A vision-language model's answer to ``prompt`` about each image, through the SQL function
        ``ai_complete``: ``{"text": ... or None, "error": None or one sentence}`` per image."""
        return ask_about_images(self.warehouse, "ai_complete", images, prompt, model)

    def classify_labels(
        self, images: Sequence[bytes], labels: Sequence[str], *, model: str | None = None,
        templates: Sequence[str] | None = None,
    ) -> list[dict[str, Any]]:
        """The best of ``labels`` for each image from a zero-shot model, through the ``classify_labels`` SQL function.

        ``model`` is a version logged with ``task='zero-shot'`` (None: the one registered), resolved once;
        ``templates`` override its prompt templates (e.g. ``["a close-up photo of a {}."]``). Each result is
        ``{"label", "score", "scores": [{"label", "score"}, ...], "error", "model_version"}``.
        """
        return classify_labels_images(self.warehouse, self.registry, images, labels, model, templates)

    # ---- image search (sightql.search, docs/search.md) ---------------------------
    def create_index(self, table: str, *, image: str = "image", model: str = "imagenet") -> RefreshReport:
        """Make an embedding index on ``table``'s ``image`` column (BLOB, FILE values or '@stage/path' values) and
        embed every row; returns what was embedded. ``model``: ``'imagenet'`` (the bundled network's 1,280 pooled
        features) or a registry reference whose output is a vector (a zero-shot model also answers text queries).
        Run again with the same column and model, it refreshes; with another, it replaces the index."""
        return self._search.create(table, image, model)

    def refresh_index(self, table: str) -> RefreshReport:
        """Bring ``table``'s index up to date: embed rows added or changed since (new bytes, a new FILE value) and
        remove deleted ones. One transaction per chunk: after a crash, run it again; nothing is lost or doubled."""
        return self._search.refresh(table)

    def indexes(self) -> list[dict[str, Any]]:
        """The embedding indexes: table, image column, key, model, model version, dimension, refreshed_at."""
        return self._search.list()

    def drop_index(self, table: str) -> None:
        """Remove ``table``'s embedding index (its vectors and its approximate-index files); the table stays."""
        self._search.drop(table)

    def similar_images(self, table: str, query: Any, k: int = 10, *, approximate: bool | None = None) -> pa.Table:
        """The ``k`` indexed rows of ``table`` nearest ``query``: an Arrow table ``(key, distance, rank)``, nearest
        first. ``query``: image bytes, a local image file path, ``'@stage/path'``, a FILE value (dict), or a text (only
        for an index built by a zero-shot model). ``distance`` is the cosine distance (0 = same direction, up to 2);
        ``key`` is the table's row key. ``approximate``: None picks by size (above the ``search_exact_rows``
        setting), True/False forces it. Rows added since the last :meth:`refresh_index` are not found."""
        return self._search.similar_images(table, query, k, approximate=approximate)

    def index_images(self, table: str, keys: Sequence[Any]) -> dict[Any, bytes | None]:
        """The image bytes of these rows of an indexed ``table`` by key (None where a row is gone or its file cannot
        be read), read as the index reads them: e.g. to show :meth:`similar_images` results."""
        return self._search.images(table, list(keys))

    def near_duplicates(self, table: str, threshold: float = 0.1, *, approximate: bool | None = None) -> pa.Table:
        """Pairs of indexed rows at most ``threshold`` apart (cosine distance): an Arrow table
        ``(key_a, key_b, distance)`` with ``key_a < key_b``, closest first."""
        return self._search.near_duplicates(table, threshold, approximate=approximate)


def fetch_staged_model(stages: StageCatalog, ref: str, folder: Path, limit: int) -> Path:
    """Copy ``'@stage/path'`` (a file, or every file under a folder) into ``folder`` for ``registry.log_model``;
    the local file or folder to log. Read through the stage catalog, so its sandbox applies; a model over
    ``limit`` bytes is refused before anything is copied."""
    name, path = split_stage_ref(ref)
    stage = stages.get(name)
    files = stage.matching(path)
    total = sum(f.size for f in files)
    if total > limit:
        raise ConfigError(
            f"{ref} is {total:,} bytes, over the {limit:,}-byte model limit; raise SIGHTQL_MAX_MODEL_BYTES to accept it"
        )
    if len(files) == 1 and files[0].relative_path == path:
        return stage.get(path, folder)[0]
    target = folder / (path.rsplit("/", 1)[-1] or name)
    stage.get(path, target)  # nothing there: one sentence naming the stage
    return target
