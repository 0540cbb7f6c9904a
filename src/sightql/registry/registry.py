"""The model registry: versions, aliases, metrics and loading by reference.

Every read and write uses its own short-lived DuckDB cursor, so the registry is
safe to use from several threads (and from inside a running SQL function).
"""

from __future__ import annotations

import shutil
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterator, Mapping

import pyarrow as pa

from sightql.errors import ConfigError, ModelNotFoundError, RegistryError
from sightql.models.card import ModelCard
from sightql.registry.artifacts import REGISTRY_DIR
from sightql.registry.inputs import InputArg, LabelsArg
from sightql.registry.records import VERSION_COLUMNS, VersionRecord
from sightql.registry.refs import LATEST, ModelRef, check_alias, check_model_name, parse_ref

if TYPE_CHECKING:
    from sightql.models.base import LoadedModel
    from sightql.session import Session

# created_at is read as UTC without a zone: fetching TIMESTAMPTZ into Python needs pytz.
_SELECT_VERSION = "SELECT " + ", ".join(
    "timezone('UTC', created_at)" if c == "created_at" else c for c in VERSION_COLUMNS
) + " FROM sightql_model_versions"
_LATEST_ORDER = "ORDER BY created_at DESC, version DESC"


class Registry:
    """``session.registry``: log models, list them, and resolve references such as 'defects@prod'."""

    def __init__(self, session: "Session"):
        self._session = session

    # ---- plumbing -----------------------------------------------------------------
    @property
    def home(self) -> Path:
        return self._session.home

    @property
    def settings(self) -> Any:
        return self._session.settings

    @contextmanager
    def _cursor(self) -> Iterator[Any]:
        con = self._session.con
        if con is None:
            raise RegistryError("the session is closed; open the warehouse again with sightql.connect()")
        cursor = con.cursor()
        try:
            yield cursor
        finally:
            cursor.close()

    @contextmanager
    def _transaction(self) -> Iterator[Any]:
        with self._cursor() as cursor:
            cursor.execute("BEGIN TRANSACTION")
            try:
                yield cursor
            except BaseException:
                cursor.execute("ROLLBACK")
                raise
            cursor.execute("COMMIT")

    def _rows(self, query: str, params: list[Any]) -> list[tuple[Any, ...]]:
        with self._cursor() as cursor:
            return cursor.execute(query, params).fetchall()

    def _version_names(self, name: str) -> list[str]:
        return [r[0] for r in self._rows("SELECT version FROM sightql_model_versions WHERE name = ?", [name])]

    def _alias_names(self, name: str) -> list[str]:
        return [r[0] for r in self._rows("SELECT alias FROM sightql_model_aliases WHERE name = ?", [name])]

    def _insert_version(self, record: VersionRecord, metrics: Mapping[str, float], description: str) -> None:
        values = [getattr(record, c) for c in VERSION_COLUMNS if c != "created_at"]
        columns = ", ".join(c for c in VERSION_COLUMNS if c != "created_at")
        marks = ", ".join("?" for _ in values)
        try:
            with self._transaction() as cur:
                cur.execute(
                    "INSERT INTO sightql_models (name, description) VALUES (?, ?) ON CONFLICT (name) DO NOTHING",
                    [record.name, description],
                )
                cur.execute(f"INSERT INTO sightql_model_versions ({columns}) VALUES ({marks})", values)
                for metric, value in metrics.items():
                    cur.execute(
                        "INSERT INTO sightql_model_metrics (name, version, metric, value) VALUES (?, ?, ?, ?)",
                        [record.name, record.version, metric, value],
                    )
        except Exception as exc:
            if "constraint" in str(exc).lower() or "conflict" in str(exc).lower():
                raise RegistryError(
                    f"{record.ref} was logged meanwhile by another writer; log again for the next number"
                ) from None
            raise

    # ---- public API ---------------------------------------------------------------
    def log_model(
        self,
        model_or_path: Any,
        name: str,
        version: str | None = None,
        framework: str = "auto",
        task: str = "classification",
        labels: LabelsArg = None,
        input: InputArg = None,
        metrics: Mapping[str, float] | None = None,
        description: str = "",
        trust: bool = False,
        architecture: str | None = None,
        output: str | None = None,
    ) -> "ModelVersion":
        """Register a model file (or an in-memory ``torch.nn.Module``) as the next version of ``name``.

        ``labels``: a list or a text file, one per line (classification). ``input``: an
        ``InputSpec`` or a dict of its fields plus ``size`` and ``rescale`` ('1/255').
        ``output``: 'logits', 'probabilities' or 'embedding'; guessed when None.
        Pickles are refused unless ``trust=True``. Returns the new :class:`ModelVersion`.
        """
        from sightql.registry.log import log_model

        record = log_model(
            self, model_or_path, name, version=version, framework=framework, task=task, labels=labels,
            input=input, metrics=metrics, description=description, trust=trust, architecture=architecture,
            output=output,
        )
        return self.get_model(name).version(record.version)

    def model_names(self) -> list[str]:
        return [r[0] for r in self._rows("SELECT name FROM sightql_models ORDER BY name", [])]

    def refs(self, task: str | None = None) -> list[str]:
        """Each model as 'name' and 'name@alias', keeping those whose version does ``task`` (e.g. 'classification')."""
        refs: list[str] = []
        for name in self.model_names():
            for ref in [name, *(f"{name}@{alias}" for alias in self.get_model(name).aliases())]:
                try:
                    if task is None or self.resolve(ref).task == task:
                        refs.append(ref)
                except ModelNotFoundError:  # a model whose versions were all removed
                    continue
        return refs

    def show_models(self) -> pa.Table:
        """One row per model: default and latest version, how many versions, its aliases."""
        with self._cursor() as cursor:
            return cursor.sql(
                f"""SELECT m.name, m.description, m.default_version,
                       (SELECT v.version FROM sightql_model_versions v WHERE v.name = m.name
                        {_LATEST_ORDER.replace('created_at', 'v.created_at').replace('version DESC', 'v.version DESC')}
                        LIMIT 1) AS latest_version,
                       (SELECT count(*) FROM sightql_model_versions v WHERE v.name = m.name) AS versions,
                       (SELECT string_agg(a.alias || '=' || a.version, ', ' ORDER BY a.alias)
                        FROM sightql_model_aliases a WHERE a.name = m.name) AS aliases,
                       m.created_at
                FROM sightql_models m ORDER BY m.name"""
            ).to_arrow_table()

    def describe(self) -> list[dict[str, Any]]:
        """Every model with its default and latest version, aliases, and each version's card summary and metrics."""
        described = []
        for row in self.show_models().to_pylist():
            model = Model(self, row["name"], row["description"] or "")
            aliases = model.aliases()
            versions = [
                {
                    "version": v.version, "ref": v.ref, "framework": v.framework, "task": v.task,
                    "input": v.card.modality, "created_at": v.created_at.isoformat() if v.created_at else None,
                    "aliases": sorted(a for a, target in aliases.items() if target == v.version), "metrics": v.metrics,
                }
                for v in model.versions()
            ]
            described.append({
                "name": model.name, "description": model.description,
                "default_version": row["default_version"] or row["latest_version"],
                "latest_version": row["latest_version"], "aliases": aliases, "versions": versions,
            })
        return described

    def get_model(self, name: str) -> "Model":
        check_model_name(name)
        row = self._rows("SELECT name, description FROM sightql_models WHERE name = ?", [name])
        if not row:
            from sightql.models.builtin import BUILTIN_NAMES

            known = self.model_names()
            raise ModelNotFoundError(
                f"no model named {name!r} in the registry; "
                + (f"known models: {', '.join(known)}" if known else "log one with session.registry.log_model(...)")
                + f" (built-in models: {', '.join(BUILTIN_NAMES)})"
            )
        return Model(self, row[0][0], row[0][1])

    def delete_model(self, name: str) -> None:
        """Remove a model, all its versions, aliases and metrics, and its files."""
        model = self.get_model(name)
        users = [
            fn for fn, ref in self._rows("SELECT name, model_ref FROM sightql_functions", [])
            if parse_ref(ref).name == model.name
        ]
        if users:
            raise RegistryError(
                f"SQL function(s) {', '.join(users)} use {name}; drop them first with session.drop_function(name)"
            )
        with self._transaction() as cur:
            for table in ("sightql_model_aliases", "sightql_model_metrics", "sightql_model_versions", "sightql_models"):
                cur.execute(f"DELETE FROM {table} WHERE name = ?", [name])
        shutil.rmtree(self.home / REGISTRY_DIR / name, ignore_errors=True)

    def resolve(self, ref: str | ModelRef) -> VersionRecord:
        """The exact version a reference names: 'name' (default, else latest), 'name@v3', '@latest', '@alias'."""
        parsed = parse_ref(ref) if isinstance(ref, str) else ref
        name, selector = parsed.name, parsed.selector
        if selector is None:
            rows = self._rows(
                f"""{_SELECT_VERSION} WHERE name = ? AND version = coalesce(
                        (SELECT default_version FROM sightql_models WHERE name = ?),
                        (SELECT version FROM sightql_model_versions WHERE name = ? {_LATEST_ORDER} LIMIT 1))""",
                [name, name, name],
            )
        elif selector == LATEST:
            rows = self._rows(f"{_SELECT_VERSION} WHERE name = ? {_LATEST_ORDER} LIMIT 1", [name])
        else:
            # A version name first; otherwise an alias, read and followed in one statement.
            rows = self._rows(
                f"""{_SELECT_VERSION} WHERE name = ? AND version = coalesce(
                        (SELECT version FROM sightql_model_versions WHERE name = ? AND version = ?),
                        (SELECT version FROM sightql_model_aliases WHERE name = ? AND alias = ?))""",
                [name, name, selector, name, selector],
            )
        if rows:
            return VersionRecord.from_row(rows[0])
        model = self.get_model(name)  # raises with the known names when the model is unknown
        versions = [v.version for v in model.versions()]
        aliases = sorted(model.aliases())
        if not versions:
            raise ModelNotFoundError(f"model {name!r} has no versions; log one with session.registry.log_model(...)")
        raise ModelNotFoundError(
            f"{name} has no version or alias {selector!r}; versions: {', '.join(versions)}"
            + (f"; aliases: {', '.join(aliases)}" if aliases else "")
        )

    def predictor(self, ref: str) -> "LoadedModel":
        """The loaded model of the exact version ``ref`` names now; loaded once per process per version."""
        from sightql.models.device import resolve_device
        from sightql.models.loader import cached_predictor
        from sightql.registry.loading import load_version

        record = self.resolve(ref)
        device = resolve_device(self._session.device)
        key = ("registry", str(self.home), record.ref, record.sha256, record.derived_onnx_sha256 or "", device)
        return cached_predictor(key, lambda: load_version(record, self.home, device))


class Model:
    """A registered model name and its versions."""

    def __init__(self, registry: Registry, name: str, description: str = ""):
        self.registry = registry
        self.name = name
        self.description = description

    def __repr__(self) -> str:
        return f"Model({self.name!r})"

    @property
    def default_version(self) -> str | None:
        rows = self.registry._rows("SELECT default_version FROM sightql_models WHERE name = ?", [self.name])
        return rows[0][0] if rows else None

    def versions(self) -> list["ModelVersion"]:
        rows = self.registry._rows(f"{_SELECT_VERSION} WHERE name = ? ORDER BY created_at, version", [self.name])
        return [ModelVersion(self.registry, VersionRecord.from_row(r)) for r in rows]

    def version(self, selector: str | None = None) -> "ModelVersion":
        """'v2', 'latest', an alias such as 'prod', or None for the default version."""
        ref = ModelRef(self.name, selector) if selector is None else parse_ref(f"{self.name}@{selector}")
        return ModelVersion(self.registry, self.registry.resolve(ref))

    def aliases(self) -> dict[str, str]:
        rows = self.registry._rows(
            "SELECT alias, version FROM sightql_model_aliases WHERE name = ? ORDER BY alias", [self.name]
        )
        return dict(rows)

    def _existing_version(self, version: str) -> str:
        if version not in self.registry._version_names(self.name):
            raise ModelNotFoundError(
                f"{self.name} has no version {version!r}; versions: {', '.join(self.registry._version_names(self.name))}"
            )
        return version

    def set_alias(self, alias: str, version: str) -> None:
        """Point ``alias`` at ``version`` in one statement, so readers see the old or the new target."""
        check_alias(alias)
        if alias in self.registry._version_names(self.name):
            raise RegistryError(f"{alias!r} is a version of {self.name}; pick an alias that is not a version name")
        version = self._existing_version(version)
        with self.registry._cursor() as cur:
            cur.execute(
                """INSERT INTO sightql_model_aliases (name, alias, version, updated_at) VALUES (?, ?, ?, now())
                   ON CONFLICT (name, alias) DO UPDATE SET version = excluded.version, updated_at = excluded.updated_at""",
                [self.name, alias, version],
            )

    def remove_alias(self, alias: str) -> None:
        if alias not in self.aliases():
            raise RegistryError(f"{self.name} has no alias {alias!r}; its aliases: {', '.join(self.aliases()) or 'none'}")
        with self.registry._cursor() as cur:
            cur.execute("DELETE FROM sightql_model_aliases WHERE name = ? AND alias = ?", [self.name, alias])

    def set_default(self, version: str | None) -> None:
        """The version plain 'name' resolves to; None means the latest."""
        if version is not None:
            self._existing_version(version)
        with self.registry._cursor() as cur:
            cur.execute("UPDATE sightql_models SET default_version = ? WHERE name = ?", [version, self.name])

    def delete_version(self, version: str) -> None:
        """Remove one version, its metrics and files; refused while an alias or the default points at it."""
        self._existing_version(version)
        pointing = sorted(a for a, v in self.aliases().items() if v == version)
        if pointing:
            raise RegistryError(
                f"alias {', '.join(pointing)} points at {self.name}@{version}; move it first, "
                f"e.g. model.set_alias({pointing[0]!r}, '<other version>') or remove_alias({pointing[0]!r})"
            )
        if self.default_version == version:
            raise RegistryError(
                f"{self.name}@{version} is the default version; set another first with model.set_default('<version>')"
            )
        with self.registry._transaction() as cur:
            cur.execute("DELETE FROM sightql_model_metrics WHERE name = ? AND version = ?", [self.name, version])
            cur.execute("DELETE FROM sightql_model_versions WHERE name = ? AND version = ?", [self.name, version])
        shutil.rmtree(self.registry.home / REGISTRY_DIR / self.name / version, ignore_errors=True)


class ModelVersion:
    """One exact, immutable model version: its card, artifact, metrics and aliases."""

    def __init__(self, registry: Registry, record: VersionRecord):
        self.registry = registry
        self.record = record

    def __repr__(self) -> str:
        return f"ModelVersion({self.ref!r}, framework={self.framework!r}, task={self.task!r})"

    name = property(lambda self: self.record.name)
    version = property(lambda self: self.record.version)
    framework = property(lambda self: self.record.framework)
    task = property(lambda self: self.record.task)
    sha256 = property(lambda self: self.record.sha256)
    size_bytes = property(lambda self: self.record.size_bytes)
    trusted = property(lambda self: self.record.trusted)
    description = property(lambda self: self.record.description)

    @property
    def ref(self) -> str:
        return self.record.ref

    @property
    def created_at(self) -> datetime | None:
        return self.record.created_at

    @property
    def card(self) -> ModelCard:
        return self.record.card

    @property
    def artifact_path(self) -> Path:
        return self.record.artifact(self.registry.home)

    @property
    def metrics(self) -> dict[str, float]:
        rows = self.registry._rows(
            "SELECT metric, value FROM sightql_model_metrics WHERE name = ? AND version = ? ORDER BY metric",
            [self.name, self.version],
        )
        return dict(rows)

    @property
    def aliases(self) -> list[str]:
        return sorted(a for a, v in self.registry.get_model(self.name).aliases().items() if v == self.version)

    def set_metric(self, name: str, value: float) -> None:
        if not isinstance(name, str) or not name.strip():
            raise ConfigError("a metric needs a name, e.g. set_metric('accuracy', 0.93)")
        with self.registry._cursor() as cur:
            cur.execute(
                """INSERT INTO sightql_model_metrics (name, version, metric, value) VALUES (?, ?, ?, ?)
                   ON CONFLICT (name, version, metric) DO UPDATE SET value = excluded.value""",
                [self.name, self.version, name, float(value)],
            )

    def predictor(self) -> "LoadedModel":
        return self.registry.predictor(self.ref)
