"""Named file stores: a local folder inside the warehouse, or an s3:// prefix."""

from sightql.stages.paths import safe_relative_path
from sightql.stages.stage import Stage, StageFile

__all__ = ["Stage", "StageFile", "safe_relative_path"]
