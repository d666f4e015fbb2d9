"""Training: the local trainer every method and site uses, and the central run around it.

`local` holds `LocalTrainer` (one site's epochs, any method); `central` holds `TrainRun`
(epochs, model selection, checkpoints, resume) for `fediqad train` or a notebook.
"""

from shared.training.local import BatchHook, LocalTrainer, resolve_device

__all__ = ["BatchHook", "LocalTrainer", "resolve_device"]
