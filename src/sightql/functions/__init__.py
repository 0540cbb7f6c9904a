"""The SQL functions SightQL registers on a warehouse's connection (a job over the warehouse context).

``register.py`` registers them; ``image_functions.py`` holds the bodies of ``classify``,
``classify_topk``, ``embed``, ``embed_text``, ``image_info`` and ``stage_file``;
``image_args.py`` lets the image functions take a BLOB or a FILE value (two UDFs under a typed
TEMP macro; a FILE's bytes read a batch at a time) and holds ``to_file``;
``stage_listing.py`` the function under ``directory()`` (with its ``file`` column);
``named.py`` the functions made with ``create_function`` and kept in ``sightql_functions``.
"""
