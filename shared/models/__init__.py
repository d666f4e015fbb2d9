"""Models: backbones, MKCNet's Task Net and Meta Learner, baselines."""

from shared.models.bundle import META_METHODS, ModelBundle, build_models
from shared.models.outputs import TaskOutputs

__all__ = ["META_METHODS", "ModelBundle", "TaskOutputs", "build_models"]
