"""ONNX models: the ONNX Runtime predictor (runtime)."""
