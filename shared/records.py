"""The one conversion between torch state dicts and Flower ArrayRecords.

Both sides of the federation use it, so the wire format is decided here only:
floating tensors may travel as float16 to halve the bytes (a tensor whose values do
not fit in float16 travels as float32 instead of turning into inf); integer buffers
(BatchNorm's `num_batches_tracked`) travel unchanged; arriving arrays are always
upcast to float32, so training and aggregation never run in half precision.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Literal

import numpy as np
import torch
from flwr.app import Array, ArrayRecord
from torch import nn

TransportDtype = Literal["float32", "float16"]
TRANSPORT_DTYPES: tuple[str, ...] = ("float32", "float16")
_F16_MAX = float(np.finfo(np.float16).max)


def _wire_array(tensor: torch.Tensor, dtype: str) -> np.ndarray:
    arr = tensor.detach().cpu().numpy()
    halve = dtype == "float16" and arr.dtype.kind == "f" and arr.dtype != np.float16
    if halve and float(np.abs(arr).max(initial=0.0)) <= _F16_MAX:
        return arr.astype(np.float16)
    return arr


def to_record(
    state: Mapping[str, torch.Tensor],
    *,
    dtype: str = "float32",
    exclude: Iterable[str] = (),
) -> ArrayRecord:
    """A state dict as an ArrayRecord, floats in the transport dtype, `exclude` left out."""
    if dtype not in TRANSPORT_DTYPES:
        raise ValueError(f"transport dtype must be one of {TRANSPORT_DTYPES}, got {dtype!r}")
    skip = set(exclude)
    record = ArrayRecord()
    for key, tensor in state.items():
        if key not in skip:
            record[key] = Array(np.asarray(_wire_array(tensor, dtype), order="C"))
    return record


def from_record(record: ArrayRecord) -> dict[str, torch.Tensor]:
    """An ArrayRecord as a state dict; half-precision arrays come back as float32."""
    return {key: torch.from_numpy(arr) for key, arr in to_numpy(record).items()}


def to_numpy(record: ArrayRecord) -> dict[str, np.ndarray]:
    """An ArrayRecord's arrays by key, float16 upcast to float32 (writable copies)."""
    out: dict[str, np.ndarray] = {}
    for key, array in record.items():
        arr = np.array(array.numpy(), copy=True)
        if arr.dtype == np.float16:
            arr = arr.astype(np.float32)
        out[key] = arr
    return out


def from_numpy(arrays: Mapping[str, np.ndarray], *, dtype: str = "float32") -> ArrayRecord:
    """The inverse of `to_numpy`, with the same transport rule as `to_record`."""
    return to_record({k: torch.from_numpy(np.asarray(v)) for k, v in arrays.items()}, dtype=dtype)


def module_record(
    module: nn.Module, *, dtype: str = "float32", exclude: Iterable[str] = ()
) -> ArrayRecord:
    return to_record(module.state_dict(), dtype=dtype, exclude=exclude)


def load_record(
    module: nn.Module, record: ArrayRecord, *, allow_missing: Iterable[str] = ()
) -> None:
    """Load `record` into `module`; only keys in `allow_missing` may be absent.

    Missing keys keep the module's current values (FedBN's local BatchNorm);
    unknown keys and shape mismatches raise ValueError naming the key.
    """
    own = module.state_dict()
    incoming = from_record(record)
    unknown = sorted(set(incoming) - set(own))
    missing = sorted(set(own) - set(incoming) - set(allow_missing))
    if unknown or missing:
        raise ValueError(
            f"arrays do not match the model: unknown {unknown[:3]}, missing {missing[:3]}"
        )
    for key, value in incoming.items():
        if tuple(value.shape) != tuple(own[key].shape):
            raise ValueError(
                f"array {key!r} has shape {tuple(value.shape)}, model expects "
                f"{tuple(own[key].shape)}"
            )
    module.load_state_dict(incoming, strict=False)


def batchnorm_keys(module: nn.Module) -> set[str]:
    """State-dict keys owned by BatchNorm layers (what FedBN keeps local)."""
    keys: set[str] = set()
    for name, child in module.named_modules():
        if isinstance(child, nn.modules.batchnorm._BatchNorm):
            prefix = f"{name}." if name else ""
            keys.update(prefix + k for k in child.state_dict())
    return keys


def record_nbytes(record: ArrayRecord) -> int:
    """Payload bytes of the arrays (what crosses the network, framing excluded)."""
    return sum(len(array.data) for array in record.values())


def spec(record: ArrayRecord) -> dict[str, tuple[int, ...]]:
    """Key -> shape; what a valid update must match."""
    return {key: tuple(int(s) for s in array.shape) for key, array in record.items()}


# ------------------------------------------------------------------ message layout
# The keys both sides agree on; a message carries one ArrayRecord per model.
MODEL_KEYS: tuple[str, ...] = ("task_net", "meta_learner")
CONFIG = "config"  # ConfigRecord server -> site
METRICS = "metrics"  # MetricRecord site -> server
SITE = "site"  # ConfigRecord site -> server: {"name": ...}
NUM_EXAMPLES = "num-examples"  # Flower's default weighting key

# ConfigRecord keys (server -> site)
CFG_RUN = "run-config-json"  # the pydantic RunConfig as one JSON string
CFG_ROUND = "server-round"  # injected by Flower's strategies
CFG_EPOCHS = "local-epochs"
CFG_DTYPE = "transport-dtype"
CFG_FEDBN = "fedbn"
CFG_PROX_MU = "proximal-mu"  # injected by Flower's FedProx
CFG_EVAL_SPLIT = "eval-split"
CFG_NUM_ROUNDS = "num-rounds"  # DP: a site calibrates its noise for the whole run
