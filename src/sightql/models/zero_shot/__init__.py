"""Zero-shot dual encoders (CLIP-style): an image tower and a text tower mapping into one space.

Three layouts are read (:mod:`.layouts` tells them apart), each by its own module: a Hugging Face CLIP
folder run with transformers (:mod:`.hf_clip`), an open_clip folder run with open_clip
(:mod:`.open_clip_folder`), and an image encoder plus a text encoder as ONNX with their ``tokenizer.json``,
named by a ``zero_shot.json`` manifest (:mod:`.onnx_pair`). All answer to :class:`.encoder.DualEncoder`.
"""
