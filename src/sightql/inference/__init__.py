"""Batch predict: a whole table or stage through a model, predictions written back (``predict``), run by a runner."""
