"""Model arrays packed into one Flower Array per record while a message is in flight.

Flower 1.42 moves a message as one object per Array (plus its chunks), each fetched
or uploaded with its own request at every hop (ServerApp -> SuperLink -> SuperNode ->
ClientApp, and back). A Task Net + Meta Learner is ~240 tensors, so ~500 requests per
hop whatever the model's size; on a loaded 2-core machine that was seconds per
message for 125 kB of weights. Packing each ArrayRecord into two Arrays (a JSON
manifest of keys, dtypes and shapes, and the concatenated bytes) makes a message a
handful of objects. The server packs what it sends (`server/messaging.py`) and unpacks
replies; the site's handlers unpack what they receive and pack their reply when the
request came packed, so everything between sees ordinary records and a handler
called with an unpacked message answers unpacked (tests, older servers).
"""

from __future__ import annotations

import json

import numpy as np
from flwr.app import Array, ArrayRecord, RecordDict

MANIFEST = "__fediqad_manifest__"
PACKED = "__fediqad_packed__"


def is_packed(record: ArrayRecord) -> bool:
    return set(record.keys()) == {MANIFEST, PACKED}


def pack_record(record: ArrayRecord) -> ArrayRecord:
    """`record` as a manifest and one byte buffer (bit-exact, dtypes kept)."""
    if not len(record) or is_packed(record):
        return record
    manifest, parts = [], []
    for key, array in record.items():
        arr = np.asarray(array.numpy(), order="C")  # (ascontiguousarray makes 0-d 1-d)
        manifest.append([key, arr.dtype.str, list(arr.shape)])
        parts.append(arr.tobytes())
    header = np.frombuffer(json.dumps(manifest).encode(), dtype=np.uint8)
    body = np.frombuffer(b"".join(parts), dtype=np.uint8)
    return ArrayRecord({MANIFEST: Array(header.copy()), PACKED: Array(body.copy())})


def unpack_record(record: ArrayRecord) -> ArrayRecord:
    """The inverse of `pack_record`; an unpacked record is returned as it is."""
    if not is_packed(record):
        return record
    manifest = json.loads(record[MANIFEST].numpy().tobytes().decode())
    body = record[PACKED].numpy().tobytes()
    out, offset = ArrayRecord(), 0
    for key, dtype, shape in manifest:
        dt = np.dtype(dtype)
        count = int(np.prod(shape, dtype=np.int64))
        arr = np.frombuffer(body, dtype=dt, count=count, offset=offset).reshape(shape)
        out[key] = Array(arr.copy())
        offset += count * dt.itemsize
    if offset != len(body):
        raise ValueError(f"packed arrays: manifest covers {offset} of {len(body)} bytes")
    return out


def _map_arrays(content: RecordDict, fn) -> RecordDict:  # type: ignore[no-untyped-def]
    out = RecordDict()
    for name, record in content.items():
        out[name] = fn(record) if isinstance(record, ArrayRecord) else record
    return out


def pack(content: RecordDict) -> RecordDict:
    return _map_arrays(content, pack_record)


def unpack(content: RecordDict) -> RecordDict:
    return _map_arrays(content, unpack_record)


def any_packed(content: RecordDict) -> bool:
    return any(is_packed(r) for r in content.array_records.values())
