"""ONNX models: reading a file's input shape (files) and the ONNX Runtime predictor (runtime)."""
