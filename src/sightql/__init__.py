"""SightQL: image recognition inside a SQL warehouse.

>>> import sightql
>>> s = sightql.connect("my-warehouse")
>>> s.load_images("photos", "path/to/photos/")
>>> s.sql("SELECT relative_path, classify('imagenet', image).label FROM photos")
"""

from sightql.errors import SightQLError
from sightql.session import Session, connect

__all__ = ["Session", "SightQLError", "connect"]
__version__ = "0.1.0"
