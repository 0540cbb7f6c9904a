"""``sightql models ls|show|log|alias|rm``: the model registry from the shell."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, List, Optional

import typer

from sightql.cli.common import WarehouseOpt, open_session, print_table

INT8_REF = "imagenet@int8"  # sightql.models.builtin.INT8_REF, not imported here: the CLI starts without torch

app = typer.Typer(help="The versioned model registry: log, list, alias and remove models.")


def parse_labels(raw: str | None) -> list[str] | Path | None:
    """'a,b,c', or '@labels.txt', whose text the library reads (registry.inputs.parse_labels_text)."""
    if raw is None:
        return None
    if raw.startswith("@"):
        return Path(raw[1:])
    return [label.strip() for label in raw.split(",") if label.strip()]


def parse_metrics(items: list[str] | None) -> dict[str, float]:
    from sightql.errors import ConfigError

    metrics: dict[str, float] = {}
    for item in items or []:
        key, sep, value = item.partition("=")
        try:
            metrics[key.strip()] = float(value)
        except ValueError:
            sep = ""
        if not sep or not key.strip():
            raise ConfigError(f"--metric {item!r} is not name=number; write e.g. --metric accuracy=0.93")
    return metrics


@app.command("ls")
def ls(warehouse: WarehouseOpt = None) -> None:
    """List registered models with their default and latest versions and aliases.

    **Example**

        sightql models ls
    """
    with open_session(warehouse) as session:
        print_table(session.registry.show_models())


@app.command("show")
def show(
    ref: Annotated[str, typer.Argument(help="NAME, NAME@v2, NAME@latest or NAME@alias.")],
    warehouse: WarehouseOpt = None,
) -> None:
    """Print a model version's card: framework, task, input, labels, metrics, sha256, aliases.

    **Examples**

        sightql models show defects

        sightql models show defects@prod
    """
    with open_session(warehouse) as session:
        if ref == INT8_REF:
            typer.echo(_builtin_int8_lines(session.home))
            return
        version = session.registry.get_model(ref.partition("@")[0]).version(ref.partition("@")[2] or None)
        card = version.card
        spec = card.input
        labels = card.labels
        shown = ", ".join(labels[:8]) + (", ..." if len(labels) > 8 else "")
        lines = [
            f"model:       {version.ref}",
            f"framework:   {version.framework}",
            f"runtime:     {version.runtime}",
            f"task:        {version.task} (output: {card.output})",
            f"input:       {spec.channels}x{spec.height}x{spec.width} {spec.layout}, scale {spec.scale:.6g}, "
            f"mean {list(spec.mean)}, std {list(spec.std)}, resize {spec.resize}, {spec.interpolation}",
            f"labels:      {len(labels)}" + (f" ({shown})" if labels else ""),
            f"metrics:     " + (", ".join(f"{k}={v:g}" for k, v in version.metrics.items()) or "none"),
            f"sha256:      {version.sha256}",
            f"size:        {version.size_bytes:,} bytes",
            f"trusted:     {'yes' if version.trusted else 'no'}",
            f"created:     {version.created_at:%Y-%m-%d %H:%M:%S} UTC",
            f"aliases:     {', '.join(version.aliases) or 'none'}",
        ]
        if card.task == "zero-shot":
            lines.append(f"zero-shot:   logit scale {card.logit_scale:g}, templates {list(card.templates)}")
        if version.description:
            lines.append(f"description: {version.description}")
        typer.echo("\n".join(lines))


def _builtin_int8_lines(home: Path) -> str:
    from sightql.models.builtin import imagenet_int8_gate

    gate = imagenet_int8_gate(home / "models")
    if gate is None:
        return f"model:       {INT8_REF}\nruntime:     not built yet: it is built on first use, or now by `sightql models quantize imagenet`"
    return "\n".join([
        f"model:       {INT8_REF}",
        "runtime:     ONNX Runtime, int8 (quantized from imagenet, calibrated on the bundled photos)",
        f"gate:        {gate['sentence']}",
        f"speed:       {gate['int8_speedup_batch32']:g}x fp32, model only, batch 32, when it was built",
        f"recipe:      weights {gate['weights']}; activations {gate['activations']}; fp32: {gate['kept_fp32']}",
    ])


@app.command("quantize")
def quantize(
    ref: Annotated[str, typer.Argument(help="NAME, NAME@v2 or NAME@alias of a classifier; or imagenet (the built-in).")],
    calibrate: Annotated[Optional[str], typer.Option("--calibrate", help="Images like the ones it will see: a table, @stage/prefix, or a table of FILE values.")] = None,
    n: Annotated[int, typer.Option("--n", help="Calibration images, a seeded sample (at most half of the source).")] = 300,
    held_out: Annotated[int, typer.Option("--held-out", help="Other images of the source the gate is measured on (at most).")] = 1000,
    image: Annotated[str, typer.Option("--image", help="The table's image column.")] = "image",
    label: Annotated[Optional[str], typer.Option("--label", help="A label column (or folder, for a stage) to also measure accuracy.")] = None,
    threshold: Annotated[float, typer.Option("--threshold", help="Least top-1 agreement with fp32 on the held-out images.")] = 0.98,
    force: Annotated[bool, typer.Option("--force", help="Keep the int8 version even below the threshold.")] = False,
    seed: Annotated[int, typer.Option("--seed", help="Seed of the sample.")] = 0,
    method: Annotated[str, typer.Option("--method", help="Activation ranges: minmax, percentile or entropy (weights are always GPTQ-rounded).")] = "minmax",
    warehouse: WarehouseOpt = None,
) -> None:
    """Make an int8 version of a classifier, calibrated on your images and gated on others (about 2x faster on the CPU).

    The new version's card says int8, so SQL, predict and the API run it as int8 when it is used by
    reference (move an alias to it to switch). Refused, with the figures, below the threshold.

    **Examples**

        sightql models quantize textiles@v1 --calibrate textile_images --label label

        sightql models quantize xray --calibrate @xrays/train --label folder --n 200

        sightql models quantize imagenet
    """
    with open_session(warehouse) as session:
        made = session.registry.quantize(
            ref, calibrate=calibrate, n=n, image=image, label=label, held_out=held_out, threshold=threshold,
            force=force, seed=seed, method=method,
        )
        if isinstance(made, dict):
            typer.echo(f"{made['ref']} is ready: {made['sentence']}; {made['int8_speedup_batch32']:g}x fp32 model-only")
            return
        figures = made.metrics
        typer.echo(
            f"logged {made.ref} (int8 of {ref}): top-1 agreement {figures['int8_top1_agreement']:.1%} on "
            f"{int(figures['held_out_images'])} held-out images, {figures['int8_speedup_batch32']:g}x fp32 model-only"
            + (f", accuracy {figures['fp32_accuracy']:.1%} -> {figures['int8_accuracy']:.1%}" if "int8_accuracy" in figures else "")
        )


@app.command("log")
def log(
    path: Annotated[str, typer.Argument(help="Model file (.onnx, .pt/.pth/.bin, .safetensors, .h5/.keras), folder "
                                              "(SavedModel, sentence-transformers, CLIP or zero_shot.json), .zip/.tar.gz of a SavedModel, "
                                              "or @stage/path of any of these.")],
    name: Annotated[str, typer.Option("--name", "-n", help="Model name.")],
    framework: Annotated[str, typer.Option("--framework", help="auto (told from the file), onnx, torch, keras, tensorflow, sentence-transformers, transformers (a CLIP folder) or onnx-dual (zero_shot.json).")] = "auto",
    labels: Annotated[Optional[str], typer.Option("--labels", "-l", help="Comma list, or @file: one per line, a JSON list, or an index-to-label mapping.")] = None,
    task: Annotated[str, typer.Option("--task", help="classification, embedding or zero-shot (a CLIP-style dual encoder folder).")] = "classification",
    template: Annotated[Optional[List[str]], typer.Option("--template", help="A zero-shot model's prompt template, e.g. 'a photo of a {}.'; repeatable.")] = None,
    arch: Annotated[Optional[str], typer.Option("--arch", help="torchvision architecture of a state dict, e.g. resnet18.")] = None,
    input_size: Annotated[Optional[int], typer.Option("--input-size", help="Square input size in pixels.")] = None,
    rescale: Annotated[Optional[str], typer.Option("--rescale", help="Pixel scale, e.g. 1/255.")] = None,
    version: Annotated[Optional[str], typer.Option("--version", help="Version name (default: next vN).")] = None,
    metric: Annotated[Optional[List[str]], typer.Option("--metric", help="name=value; repeatable.")] = None,
    description: Annotated[str, typer.Option("--description", help="What this version is.")] = "",
    trust: Annotated[bool, typer.Option("--trust", help="Allow a pickle, a Keras Lambda layer or TensorFlow file ops (run code on load): only for files you trust.")] = False,
    signature: Annotated[Optional[str], typer.Option("--signature", help="SavedModel signature to call (default: serving_default, or the only one).")] = None,
    input_name: Annotated[Optional[str], typer.Option("--input-name", help="The signature's input to feed (default: its only one).")] = None,
    output_name: Annotated[Optional[str], typer.Option("--output-name", help="The signature's output to read (default: its only float output).")] = None,
    runtime: Annotated[str, typer.Option("--runtime", help="fp32, or fp16: half precision where a CUDA GPU runs it (int8 versions come from `models quantize`).")] = "fp32",
    warehouse: WarehouseOpt = None,
) -> None:
    """Log a model file, folder or archive (local or @stage/path) as the next version of NAME (copied, hashed, checked).

    **Examples**

        sightql models log defects.h5 --name defects --labels crazing,inclusion,patches,pitted,rolled,scratches --input-size 200 --rescale 1/255

        sightql models log resnet18.pth --name pets --arch resnet18 --labels @labels.txt --metric accuracy=0.91

        sightql models log model.onnx --name features --task embedding

        sightql models log ./all-MiniLM-L6-v2 --name sentences

        sightql models log ./clip-vit-b-32 --name clip --task zero-shot --template "a photo of a {}."

        sightql models log @models/use.zip --name use

        sightql models log ./flowers_savedmodel --name flowers --labels @labels.txt --framework tensorflow --output-name logits
    """
    spec: dict[str, object] = {}
    if input_size is not None:
        spec["size"] = input_size
    if rescale is not None:
        spec["rescale"] = rescale
    with open_session(warehouse) as session:
        logged = session.registry.log_model(
            path if path.startswith("@") else Path(path), name, version=version, framework=framework, task=task,
            labels=parse_labels(labels), input=spec or None, metrics=parse_metrics(metric), description=description,
            trust=trust, architecture=arch, signature=signature, input_name=input_name, output_name=output_name,
            templates=template or None, runtime=runtime,
        )
        typer.echo(f"logged {logged.ref} ({logged.framework}, {logged.task}, sha256 {logged.sha256[:12]})")


@app.command("alias")
def alias(
    name: Annotated[str, typer.Argument(help="Model name.")],
    alias_name: Annotated[str, typer.Argument(metavar="ALIAS", help="Alias, e.g. prod.")],
    version: Annotated[str, typer.Argument(help="Version it points at, e.g. v3.")],
    warehouse: WarehouseOpt = None,
) -> None:
    """Point an alias at a version (moves atomically; queries using NAME@ALIAS follow it).

    **Example**

        sightql models alias defects prod v3
    """
    with open_session(warehouse) as session:
        session.registry.get_model(name).set_alias(alias_name, version)
        typer.echo(f"{name}@{alias_name} -> {version}")


@app.command("rm")
def rm(
    ref: Annotated[str, typer.Argument(help="NAME (the whole model) or NAME@VERSION.")],
    warehouse: WarehouseOpt = None,
) -> None:
    """Remove one version, or a whole model with all its versions.

    **Examples**

        sightql models rm defects@v1

        sightql models rm defects
    """
    name, _, version = ref.partition("@")
    with open_session(warehouse) as session:
        if version:
            session.registry.get_model(name).delete_version(version)
        else:
            session.registry.delete_model(name)
        typer.echo(f"removed {ref}")
