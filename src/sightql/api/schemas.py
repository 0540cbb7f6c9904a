"""Request and response bodies, as the OpenAPI document (/docs) shows them."""

from __future__ import annotations

from typing import Literal, Optional

from pydantic import BaseModel, ConfigDict, Field


class PredictJson(BaseModel):
    """One image as ``image``, or a batch as ``images``: base64 strings (a ``data:...;base64,`` prefix is allowed)."""

    model_config = ConfigDict(extra="forbid")

    image: Optional[str] = Field(None, description="One base64-encoded image.")
    images: Optional[list[str]] = Field(None, description="A batch of base64-encoded images.")


class LabelScore(BaseModel):
    label: str
    score: float = Field(description="The model's probability for this label.")


class ImagePrediction(BaseModel):
    index: int = Field(description="Position of the image in the request, from 0.")
    name: str = Field(description="The uploaded file's name, or image / images[i] for JSON.")
    model_version: Optional[str] = Field(description="The exact model version that answered, e.g. 'defects@v3'.")
    top: Optional[list[LabelScore]] = Field(description="The top-k labels, best first; null when error is set.")
    error: Optional[str] = Field(description="Why this image has no labels (not an image, too large, bad base64).")


class PredictResponse(BaseModel):
    model: str = Field(description="The model reference as requested.")
    model_version: Optional[str] = Field(description="The exact version that answered (null if no image was readable).")
    k: int
    predictions: list[ImagePrediction]


class VersionInfo(BaseModel):
    version: str
    ref: str = Field(description="The exact reference, e.g. 'defects@v3'.")
    framework: str
    task: str
    input: str = Field(description="What the model reads: image or text.")
    runtime: Optional[str] = Field(
        None, description="What runs it on the CPU and why, e.g. 'runs through TensorFlow: tf2onnx could not convert: ...'."
    )
    created_at: Optional[str]
    aliases: list[str]
    metrics: dict[str, float]


class ModelInfo(BaseModel):
    """A built-in model (name, input, task, exact version) or a registry model (versions and aliases)."""

    name: str
    source: Literal["builtin", "registry"]
    description: str
    input: Optional[str] = Field(None, description="Built-ins: what the model reads, image or text.")
    task: Optional[str] = Field(None, description="Built-ins: classification or embedding.")
    version: Optional[str] = Field(None, description="Built-ins: the exact version, e.g. 'imagenet@builtin-5793...'.")
    default_version: Optional[str] = Field(None, description="Registry: what plain 'name' resolves to.")
    latest_version: Optional[str] = None
    aliases: dict[str, str] = Field(default_factory=dict, description="Registry: alias -> version.")
    versions: list[VersionInfo] = Field(default_factory=list)


class ModelList(BaseModel):
    models: list[ModelInfo]


class Health(BaseModel):
    status: Literal["ok"]
    version: str = Field(description="The SightQL version serving.")


class ErrorBody(BaseModel):
    detail: str = Field(description="One sentence: what was wrong and how to fix it.")
