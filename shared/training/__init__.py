"""Training: the local trainer every method and site uses, and the central run around it.

`local` holds `LocalTrainer` (one site's epochs, any method); `central` holds `TrainRun`
(epochs, model selection, checkpoints, resume) for `fediqad train` or a notebook.
"""

from typing import Any

__all__ = ["BatchHook", "LocalTrainer", "resolve_device"]


def __getattr__(name: str) -> Any:
    # lazy: `shared.training.start` validates a run's settings before torch is imported
    if name in __all__:
        from shared.training import local

        return getattr(local, name)
    raise AttributeError(f"module 'shared.training' has no attribute {name!r}")
