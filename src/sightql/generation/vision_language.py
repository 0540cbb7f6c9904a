"""What ai_classify / ai_complete ask a vision-language model, and how its answer is read.

- :func:`image_data_url`: the image as ``data:image/jpeg;base64,...``, decoded as classify decodes
  (EXIF-upright, any supported format) and downscaled to ``side`` pixels on its longest side.
- :func:`classify_prompt`: the labels, one per line, and the instruction to answer with exactly one.
- :func:`match_label`: the answer as one of the labels (case and surrounding punctuation or quotes
  ignored), or a GenerationError saying what the model answered instead: never a label it did not give.
- :func:`answer_key`: the cache key of one answer: (image sha256, task, labels or prompt, model, endpoint).
"""

from __future__ import annotations

import base64
import hashlib
import json
import string
from collections.abc import Sequence

from sightql.errors import ConfigError, GenerationError
from sightql.images.decode import ImageLimits
from sightql.images.thumbnails import downscaled_jpeg

JPEG_QUALITY = 85
CLASSIFY, COMPLETE = "classify", "complete"
_TRIM = string.punctuation + string.whitespace + "\u201c\u201d\u2018\u2019\u00ab\u00bb"


def image_data_url(data: bytes | None, limits: ImageLimits, side: int) -> str:
    """The image as a JPEG ``data:`` URL at most ``side`` pixels on its longest side (ImageError if no image)."""
    jpeg = downscaled_jpeg(data, limits, side, JPEG_QUALITY)
    return "data:image/jpeg;base64," + base64.b64encode(jpeg).decode("ascii")


def normalized(text: str) -> str:
    """``text`` without surrounding punctuation, quotes or spaces, in one case, spaces collapsed."""
    return " ".join(text.strip(_TRIM).split()).casefold()


def checked_labels(labels: Sequence[str | None]) -> tuple[str, ...]:
    """The label list, refused in one sentence when it cannot classify (fewer than 2, blank, or twins)."""
    cleaned = tuple(label.strip() for label in labels if label is not None)
    if len(cleaned) != len(labels) or any(not normalized(label) for label in cleaned):
        raise ConfigError("ai_classify's labels include a NULL or blank label; give words, e.g. ['cat', 'dog']")
    if len(cleaned) < 2:
        raise ConfigError(f"ai_classify needs at least 2 labels to choose from, got {len(cleaned)}; "
                          "pass a list such as ['cat', 'dog']")
    seen: dict[str, str] = {}
    for label in cleaned:
        twin = seen.setdefault(normalized(label), label)
        if twin != label or cleaned.count(label) > 1:
            raise ConfigError(f"ai_classify's labels {twin!r} and {label!r} are the same label to the model; "
                              "give each label once")
    return cleaned


def classify_prompt(labels: Sequence[str]) -> str:
    listed = "\n".join(f"- {label}" for label in labels)
    return ("Classify this image. Answer with exactly one of the following labels, copied exactly, "
            f"and nothing else:\n{listed}")


def match_label(answer: str, labels: Sequence[str]) -> str:
    """The label ``answer`` names (compared after :func:`normalized`), else that row's GenerationError."""
    wanted = normalized(answer)
    for label in labels:
        if normalized(label) == wanted:
            return label
    shown = " ".join(answer.split())
    shown = shown if len(shown) <= 80 else shown[:77] + "..."
    raise GenerationError(f"the model answered {shown!r}, which is not one of the labels "
                          f"({', '.join(labels)}); no label was given")


def answer_key(image_sha256: str, task: str, request: str, model: str, endpoint: str) -> str:
    """The cache key of one answer (hex sha256 of its parts)."""
    parts = json.dumps([image_sha256, task, request, model, endpoint], ensure_ascii=False)
    return hashlib.sha256(parts.encode("utf-8")).hexdigest()


def labels_request(labels: Sequence[str]) -> str:
    """The labels as stored in the cache (a JSON list, in the order given)."""
    return json.dumps(list(labels), ensure_ascii=False)
