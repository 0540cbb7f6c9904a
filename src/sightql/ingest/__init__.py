"""Images into tables (a job over the warehouse context): files, folders, globs and stage prefixes
(``loading.py``), uploaded bytes (``uploads.py``) and generated images with their prompts
(``generated.py``)."""
