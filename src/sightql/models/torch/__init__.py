"""PyTorch models: reading and checking a file (files), the runtime (runtime), ONNX export (export), and the bundled EfficientNet-Lite0 (efficientnet_lite)."""
