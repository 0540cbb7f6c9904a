"""Transfer learning from images in tables or stages: honest splits, a training log, checkpoints, registration.

Heavy imports (torch, torchvision, scikit-learn) happen inside the functions that need them.
"""

from sightql.train.options import TrainOptions

__all__ = ["TrainOptions"]
