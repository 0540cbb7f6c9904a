"""The versioned model registry: ``session.registry``.

>>> v = session.registry.log_model("defects.onnx", name="defects", labels=["ok", "crack"])
>>> session.registry.get_model("defects").set_alias("prod", v.version)
>>> session.sql("SELECT classify('defects@prod', image) FROM images")
"""

from sightql.registry.refs import ModelRef, parse_ref
from sightql.registry.registry import Model, ModelVersion, Registry

__all__ = ["Model", "ModelRef", "ModelVersion", "Registry", "parse_ref"]
