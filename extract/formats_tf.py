"""TensorFlow checkpoints (SimCLR's release) read in plain Python, so TensorFlow is not needed.

The TensorBundle format (TF >= 1.x "V2"): an SSTable ``.index`` (LevelDB's table layout) whose
values are protobuf ``BundleEntryProto`` messages naming each variable's dtype, shape, shard,
offset and size, plus ``.data-NNNNN-of-MMMMM`` shards holding the raw little-endian bytes. The
conversion of the variables to torchvision names is ``extract.formats.convert_simclr_tf``.
"""

from __future__ import annotations

import shutil
import struct
import zipfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np

from base.errors import LceError

_TF_MAGIC = 0xDB4775248B80FB57
# tensorflow/core/framework/types.proto
_TF_DTYPES = {
    1: "<f4",
    2: "<f8",
    3: "<i4",
    4: "u1",
    5: "<i2",
    6: "i1",
    9: "<i8",
    10: "?",
    19: "<f2",
}


def _varint(buf: bytes, pos: int) -> tuple[int, int]:
    value = shift = 0
    while True:
        byte = buf[pos]
        pos += 1
        value |= (byte & 0x7F) << shift
        if byte < 0x80:
            return value, pos
        shift += 7


def _proto_fields(buf: bytes) -> dict[int, list[Any]]:
    """A protobuf message as {field number: [values]} (varints as int, others as bytes)."""
    fields: dict[int, list[Any]] = {}
    pos = 0
    while pos < len(buf):
        tag, pos = _varint(buf, pos)
        number, wire = tag >> 3, tag & 7
        value: Any
        if wire == 0:
            value, pos = _varint(buf, pos)
        elif wire == 1:
            value, pos = buf[pos : pos + 8], pos + 8
        elif wire == 2:
            size, pos = _varint(buf, pos)
            value, pos = buf[pos : pos + size], pos + size
        elif wire == 5:
            value, pos = buf[pos : pos + 4], pos + 4
        else:
            raise ValueError(f"unsupported protobuf wire type {wire}")
        fields.setdefault(number, []).append(value)
    return fields


def _sstable_block(data: bytes, handle: bytes) -> Iterator[tuple[bytes, bytes]]:
    offset, pos = _varint(handle, 0)
    size, _ = _varint(handle, pos)
    block = data[offset : offset + size]
    if data[offset + size] != 0:  # TensorBundle writes its index uncompressed
        raise ValueError("compressed SSTable block")
    n_restarts = struct.unpack("<I", block[-4:])[0]
    end = len(block) - 4 - 4 * n_restarts
    pos, key = 0, b""
    while pos < end:
        shared, pos = _varint(block, pos)
        unshared, pos = _varint(block, pos)
        size, pos = _varint(block, pos)
        key = key[:shared] + block[pos : pos + unshared]
        pos += unshared
        yield key, block[pos : pos + size]
        pos += size


def _sstable(data: bytes) -> Iterator[tuple[bytes, bytes]]:
    """Every (key, value) of a LevelDB-format table (TensorFlow's ``.index`` files)."""
    if len(data) < 48 or struct.unpack("<Q", data[-8:])[0] != _TF_MAGIC:
        raise ValueError("not a TensorFlow checkpoint index (bad magic number)")
    footer = data[-48:]
    _, pos = _varint(footer, 0)  # metaindex handle: offset
    _, pos = _varint(footer, pos)  # and size
    index_handle = footer[pos:]
    for _, handle in _sstable_block(data, index_handle):
        yield from _sstable_block(data, handle)


def read_tf_checkpoint(
    index: Path, keep: Callable[[str], bool] | None = None
) -> dict[str, np.ndarray]:
    """The tensors of a TensorFlow (TensorBundle, TF >= 1.x "V2") checkpoint.

    ``index`` is the ``.index`` file (or the prefix before it); the data shards sit beside it.
    ``keep`` selects variables by name, so optimiser slots are never read.
    """
    index = Path(index)
    if index.suffix != ".index":
        index = index.with_name(index.name + ".index")
    if not index.is_file():
        raise LceError(f"{index}: TensorFlow checkpoint index not found")
    prefix = str(index)[: -len(".index")]
    try:
        entries = list(_sstable(index.read_bytes()))
    except (ValueError, IndexError, struct.error) as exc:
        raise LceError(f"{index}: cannot read as a TensorFlow checkpoint: {exc}") from None
    header = _proto_fields(dict(entries).get(b"", b""))
    n_shards = header.get(1, [1])[0]
    if header.get(2, [0])[0] != 0:
        raise LceError(f"{index}: big-endian TensorFlow checkpoints are not supported")
    out: dict[str, np.ndarray] = {}
    shards: dict[int, Any] = {}
    try:
        for raw_key, value in entries:
            name = raw_key.decode()
            if not name or (keep is not None and not keep(name)):
                continue
            entry = _proto_fields(value)
            dtype = _TF_DTYPES.get(entry.get(1, [0])[0])
            if dtype is None or 7 in entry:  # strings, bfloat16, partitioned variables
                continue
            dims = [_proto_fields(d).get(1, [0])[0] for d in _proto_fields(entry[2][0]).get(2, [])]
            shard = entry.get(3, [0])[0]
            offset, size = entry.get(4, [0])[0], entry.get(5, [0])[0]
            if shard not in shards:
                path = f"{prefix}.data-{shard:05d}-of-{n_shards:05d}"
                try:
                    shards[shard] = open(path, "rb")  # noqa: SIM115 (closed below)
                except OSError:
                    raise LceError(f"{path}: TensorFlow checkpoint data file not found") from None
            fh = shards[shard]
            fh.seek(offset)
            raw = fh.read(size)
            if len(raw) != size:
                raise LceError(f"{fh.name}: truncated (variable {name})")
            out[name] = np.frombuffer(raw, dtype=dtype).reshape(dims).copy()
    finally:
        for fh in shards.values():
            fh.close()
    return out


def extract_tf_zip(archive: Path, folder: Path) -> Path:
    """Unpack the TensorFlow checkpoint inside a zip (SimCLR-v1's release) into ``folder``
    (once, atomically: a half-unpacked folder never takes the final name); returns its
    ``.index`` path."""
    try:
        with zipfile.ZipFile(archive) as zf:
            names = zf.namelist()
            indexes = sorted(n for n in names if n.endswith(".index"))
            if not indexes:
                raise LceError(f"{archive}: the zip holds no TensorFlow checkpoint (.index file)")
            stem = indexes[-1][: -len(".index")]
            members = [n for n in names if n == indexes[-1] or n.startswith(stem + ".data-")]
            target = folder / Path(indexes[-1]).name
            if all((folder / Path(m).name).is_file() for m in members):
                return target
            tmp = folder.with_name(folder.name + ".tmp")
            shutil.rmtree(tmp, ignore_errors=True)
            tmp.mkdir(parents=True)
            for member in members:
                with zf.open(member) as src, (tmp / Path(member).name).open("wb") as dst:
                    shutil.copyfileobj(src, dst, 1 << 20)
    except zipfile.BadZipFile as exc:
        raise LceError(f"{archive}: not a readable zip: {exc}") from None
    shutil.rmtree(folder, ignore_errors=True)
    tmp.rename(folder)
    return target
