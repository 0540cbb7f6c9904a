"""What a caller says about a model when logging it: labels and input spec."""

from __future__ import annotations

import ast
import dataclasses
import json
from fractions import Fraction
from pathlib import Path
from typing import Any, Mapping, Sequence

from sightql.errors import ConfigError
from sightql.images.spec import InputSpec

InputArg = InputSpec | Mapping[str, Any] | None
LabelsArg = Sequence[str] | str | Path | None
_SPEC_FIELDS = {f.name for f in dataclasses.fields(InputSpec)}
_CONVENIENCE = {"size", "rescale"}


LABEL_FILE_FORMS = (
    "one label per line, a JSON list, or a mapping from index to label "
    "(JSON, or a Python dict literal such as imagenet1000_clsidx_to_labels.txt)"
)


def read_labels(labels: LabelsArg) -> tuple[str, ...]:
    """A list of labels, or a labels file (see :func:`parse_labels_text`)."""
    if labels is None:
        return ()
    if isinstance(labels, (str, Path)):
        path = Path(labels).expanduser()
        if not path.is_file():
            raise ConfigError(f"labels file {str(labels)!r} does not exist; pass a list of labels or a file with {LABEL_FILE_FORMS}")
        try:
            text = path.read_text(encoding="utf-8-sig")
        except UnicodeDecodeError:
            raise ConfigError(f"labels file {path.name} is not UTF-8 text; save it as UTF-8 with {LABEL_FILE_FORMS}") from None
        return parse_labels_text(text, path.name)
    result = tuple(str(label) for label in labels)
    if any(not label for label in result):
        raise ConfigError("a label may not be empty; check the labels list for blank entries")
    return result


def parse_labels_text(text: str, source: str = "the labels") -> tuple[str, ...]:
    """Labels from a file's text: one per line; a JSON list (``["cat", "dog"]``); or an index-to-label
    mapping whose indices are exactly 0..n-1 (JSON ``{"0": "cat"}``, or a Python dict literal
    ``{0: 'tench, Tinca tinca', ...}`` read with ``ast.literal_eval``, which runs no code)."""
    stripped = text.strip()
    if stripped.startswith("["):
        return _label_list(_literal(stripped, source, "a JSON list"), source)
    if stripped.startswith("{"):
        return _labels_by_index(_literal(stripped, source, "a mapping from index to label"), source)
    return tuple(line.strip() for line in stripped.splitlines() if line.strip())


def _literal(text: str, source: str, form: str) -> Any:
    try:
        return json.loads(text)
    except ValueError:
        pass
    try:
        return ast.literal_eval(text)
    except (ValueError, TypeError, SyntaxError, MemoryError, RecursionError):
        raise ConfigError(
            f"{source} starts like {form} but is neither valid JSON nor a Python literal; "
            f"fix it, or write {LABEL_FILE_FORMS}"
        ) from None


def _label_list(values: Any, source: str) -> tuple[str, ...]:
    if not isinstance(values, (list, tuple)) or not all(isinstance(v, str) and v.strip() for v in values):
        raise ConfigError(f"{source} must list labels as non-empty strings, e.g. [\"cat\", \"dog\"]")
    return tuple(v.strip() for v in values)


def _labels_by_index(mapping: Any, source: str) -> tuple[str, ...]:
    if not isinstance(mapping, dict):
        raise ConfigError(f"{source} must map each index to a label, e.g. {{0: 'cat', 1: 'dog'}}")
    by_index: dict[int, str] = {}
    for key, value in mapping.items():
        index = _index(key)
        if index is None or not isinstance(value, str) or not value.strip():
            raise ConfigError(
                f"{source} maps {str(key)[:40]!r} to {str(value)[:40]!r}; each key must be an index "
                "(0, 1, ...) and each value a non-empty label"
            )
        if index in by_index:
            raise ConfigError(f"{source} gives index {index} twice; give each index from 0 one label")
        by_index[index] = value.strip()
    absent = sorted(set(range(len(by_index))) - set(by_index))
    if absent:
        raise ConfigError(
            f"{source} has {len(by_index)} labels but not index {absent[0]}; number the labels 0 to {len(by_index) - 1}, one each"
        )
    return tuple(by_index[i] for i in range(len(by_index)))


def _index(key: Any) -> int | None:
    if isinstance(key, bool):
        return None
    if isinstance(key, int):
        return key
    if isinstance(key, str) and key.strip().isdigit() and key.strip().isascii():
        return int(key.strip())
    return None


def parse_rescale(value: float | str) -> float:
    """``1/255``, ``'0.00392'`` or a number."""
    try:
        return float(Fraction(value)) if isinstance(value, str) else float(value)
    except (ValueError, ZeroDivisionError):
        raise ConfigError(f"rescale {value!r} is not a number; use e.g. '1/255' or 1.0") from None


def build_input_spec(user: InputArg, from_file: Mapping[str, Any] | None = None) -> InputSpec:
    """Defaults (ImageNet mean/std at 224), then what the file says (``from_file``: the framework module's
    defaults, e.g. :meth:`sightql.models.keras.introspect.KerasInfo.card_input`), then what the caller says."""
    if isinstance(user, InputSpec):
        return user
    fields: dict[str, Any] = dict(from_file or {})
    given = dict(user or {})
    unknown = set(given) - _SPEC_FIELDS - _CONVENIENCE
    if unknown:
        raise ConfigError(
            f"input keys {sorted(unknown)} are not known; use size, rescale or InputSpec fields ({', '.join(sorted(_SPEC_FIELDS))})"
        )
    if "size" in given:
        size = given.pop("size")
        height, width = (size, size) if isinstance(size, int) else tuple(size)
        fields.update(height=int(height), width=int(width))
    if "rescale" in given:
        fields["scale"] = parse_rescale(given.pop("rescale"))
    fields.update(given)
    if fields.get("channels") == 1 and "mean" not in fields:
        fields.update(mean=(0.5,), std=(0.5,))
    for key in ("mean", "std"):
        if key in fields:
            fields[key] = tuple(float(v) for v in fields[key])
    try:
        return InputSpec(**fields)
    except TypeError as exc:
        raise ConfigError(f"input spec is not valid ({exc}); check its keys and values") from None
