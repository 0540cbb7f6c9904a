"""The best weights judged at the end of a run: the held-out split, and ``test=`` without copies of training images."""

from __future__ import annotations

import warnings
from typing import Any

from sightql.errors import ConfigError
from sightql.sql.warehouse import Warehouse
from sightql.stages.catalog import StageCatalog
from sightql.train import evaluate
from sightql.train.dataset import ImageRowsDataset, make_loader
from sightql.train.options import TrainOptions
from sightql.train.sources import load_examples


def evaluate_rows(model: Any, rows: list[Any], reader: Any, class_index: dict[str, int], labels: list[str], spec: Any,
                  limits: Any, device: str, options: TrainOptions, cache: Any = None) -> dict[str, Any]:
    """The report on ``rows`` (accuracy, per class, confusion matrix, ...) plus the mean loss; ``cache``: the
    run's decoded-image cache, when the rows are the run's own."""
    dataset = ImageRowsDataset(rows, reader, class_index, spec, limits, "none", options.seed, options.decode_threads,
                               cache)
    targets, probabilities, loss = evaluate.predict(model, make_loader(dataset, options.batch_size, False, 0),
                                                    device, options.amp)
    return evaluate.report(targets, probabilities, labels) | {"loss": loss}


def evaluate_test(warehouse: Warehouse, stages: StageCatalog, model: Any, options: TrainOptions, spec: Any,
                  class_index: dict[str, int], labels: list[str], device: str,
                  training_examples: list[Any]) -> dict[str, Any]:
    """The report on ``options.test``; a test image that is an exact copy of a training image is left out, with a warning."""
    assert options.test is not None
    test_examples, reader = load_examples(warehouse, stages, options.test, options.image, options.label)
    unknown = sorted({e.label for e in test_examples} - set(labels))
    if unknown:
        raise ConfigError(f"the test set has label(s) {unknown} the model was not trained on; remove them from {options.test}")
    seen = {e.sha256 for e in training_examples}
    overlap = [e for e in test_examples if e.sha256 in seen]
    if overlap:
        warnings.warn(f"{len(overlap)} test image(s) are exact copies of training images; they are left out", stacklevel=3)
        test_examples = [e for e in test_examples if e.sha256 not in seen]
    report = evaluate_rows(model, test_examples, reader, class_index, labels, spec, warehouse.limits, device, options)
    return report | {"dataset": options.test, "left_out_copies_of_training_images": len(overlap)}
