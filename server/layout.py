"""What the server knows about the models it aggregates, and the global weights.

The server keeps a float32 master copy of every model (`GlobalModels`), sends each
model in its own ArrayRecord, and hands Flower's strategies one *flat* ArrayRecord
whose keys are namespaced `model/key` - so any stock strategy (which expects exactly
one ArrayRecord per reply) aggregates the Task Net and the Meta Learner together, and
robust selection (Krum) judges a site by both models at once.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

import numpy as np
from flwr.app import Array, ArrayRecord

from shared.models import ModelBundle
from shared.records import batchnorm_keys, from_numpy

SEP = "/"


@dataclass(frozen=True)
class ModelLayout:
    """Per model: every key's shape and dtype, which keys are buffers, which stay local."""

    shapes: dict[str, dict[str, tuple[int, ...]]]
    dtypes: dict[str, dict[str, np.dtype]]
    buffers: dict[str, frozenset[str]]
    local: dict[str, frozenset[str]] = field(default_factory=dict)

    @classmethod
    def from_bundle(cls, bundle: ModelBundle, *, fedbn: bool = False) -> ModelLayout:
        shapes, dtypes, buffers, local = {}, {}, {}, {}
        for name, module in bundle.modules().items():
            state = module.state_dict()
            shapes[name] = {k: tuple(v.shape) for k, v in state.items()}
            dtypes[name] = {
                k: np.dtype(str(v.dtype).removeprefix("torch.")) for k, v in state.items()
            }
            buffers[name] = frozenset(k for k, _ in module.named_buffers())
            local[name] = frozenset(batchnorm_keys(module)) if fedbn else frozenset()
        return cls(shapes, dtypes, buffers, local)

    @property
    def models(self) -> tuple[str, ...]:
        return tuple(self.shapes)

    def shared_keys(self, model: str) -> list[str]:
        """Keys that travel (all but FedBN's local BatchNorm state)."""
        return [k for k in self.shapes[model] if k not in self.local.get(model, ())]

    def strategy_keys(self, model: str, *, with_buffers: bool) -> list[str]:
        keys = self.shared_keys(model)
        return keys if with_buffers else [k for k in keys if k not in self.buffers[model]]


class GlobalModels:
    """The float32 master copy of the global weights, keyed by model then state key."""

    def __init__(self, layout: ModelLayout, arrays: Mapping[str, Mapping[str, np.ndarray]]):
        self.layout = layout
        self.arrays = {m: {k: np.asarray(v) for k, v in arrays[m].items()} for m in layout.models}

    @classmethod
    def from_bundle(cls, layout: ModelLayout, bundle: ModelBundle) -> GlobalModels:
        arrays = {
            name: {k: v.detach().cpu().numpy().copy() for k, v in module.state_dict().items()}
            for name, module in bundle.modules().items()
        }
        return cls(layout, arrays)

    def wire(self, model: str, dtype: str) -> ArrayRecord:
        """The ArrayRecord sent to sites for `model` (transport dtype, local keys omitted)."""
        keys = self.layout.shared_keys(model)
        return from_numpy({k: self.arrays[model][k] for k in keys}, dtype=dtype)

    def flat(self, *, with_buffers: bool) -> ArrayRecord:
        """One namespaced float ArrayRecord of what the strategy aggregates."""
        record = ArrayRecord()
        for model in self.layout.models:
            for key in self.layout.strategy_keys(model, with_buffers=with_buffers):
                record[f"{model}{SEP}{key}"] = Array(self.arrays[model][key])
        return record

    def update(self, model: str, key: str, value: np.ndarray) -> None:
        """Set one array, cast back to the model's dtype (integer counters are rounded)."""
        dtype = self.layout.dtypes[model][key]
        value = np.asarray(value)
        if dtype.kind in "iu" and value.dtype.kind == "f":
            value = np.rint(value)
        self.arrays[model][key] = np.asarray(value, dtype=dtype).reshape(
            self.layout.shapes[model][key]
        )

    def state_dicts(self) -> dict[str, dict[str, np.ndarray]]:
        return self.arrays


def flatten(
    arrays: Mapping[str, Mapping[str, np.ndarray]], keys: Mapping[str, Iterable[str]]
) -> ArrayRecord:
    """A reply's decoded per-model arrays as one namespaced record restricted to `keys`."""
    flat = ArrayRecord()
    for model, model_keys in keys.items():
        for key in model_keys:
            flat[f"{model}{SEP}{key}"] = Array(np.asarray(arrays[model][key], order="C"))
    return flat


def split(flat: ArrayRecord) -> dict[str, dict[str, np.ndarray]]:
    """The inverse of `flatten`: model -> key -> array."""
    out: dict[str, dict[str, np.ndarray]] = {}
    for name, array in flat.items():
        model, key = name.split(SEP, 1)
        out.setdefault(model, {})[key] = array.numpy()
    return out
