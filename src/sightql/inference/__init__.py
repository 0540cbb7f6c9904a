"""Batched prediction over image bytes: decode beside the model, one bad row never stops a batch."""
