"""TensorFlow SavedModels: a folder, or one zipped or tarred as TF-Hub hands them out.

``archive`` unpacks a ``.zip`` / ``.tar.gz`` safely, ``files`` finds the SavedModel in what was
given, ``signature`` loads it and picks the signature and its input and output, ``runtime``
answers predictions (images) and ``embed_texts`` (strings), and ``export`` converts it to ONNX
with tf2onnx, checked against TensorFlow. TensorFlow itself is imported only when a model is
logged or run through it (``backend``); importing this package imports none of it.
"""
