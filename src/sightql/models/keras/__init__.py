"""Keras 3 models: ``.keras`` and legacy ``.h5`` files, run on the torch backend (no TensorFlow).

``files`` reads and checks a file without building it (format, config, the Lambda safety scan,
legacy patches), ``load`` builds it, ``introspect`` reads its shapes, ``runtime`` answers
predictions and ``export`` writes ONNX. Keras itself is imported only when a model is built.
"""

from sightql.models.keras.export import export_keras_model_onnx, export_keras_onnx
from sightql.models.keras.files import check_safe, code_layers, keras_config, keras_format, needs_input_layer, with_input_layer
from sightql.models.keras.introspect import KerasInfo, describe_model, inspect_keras
from sightql.models.keras.runtime import KerasPredictor, load_keras_predictor

__all__ = [
    "KerasInfo",
    "KerasPredictor",
    "check_safe",
    "code_layers",
    "describe_model",
    "export_keras_model_onnx",
    "export_keras_onnx",
    "inspect_keras",
    "keras_config",
    "keras_format",
    "load_keras_predictor",
    "needs_input_layer",
    "with_input_layer",
]
