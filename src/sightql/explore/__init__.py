"""Looking at the warehouse (a job over the warehouse context): stage sampling scored against folders
(``sampling.py``), the SQL console's display-ready results (``console.py``) and top-k labels of
stored images (``topk.py``)."""
