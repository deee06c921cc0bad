#!/usr/bin/python3
"""Reads a safetensors checkpoint with numpy alone (no torch, no safetensors
package): parses the header, maps the bytes, lists every tensor, checks the
layout independently of yoke's reader, and optionally checks values.

Run it with the system Python (numpy installed), from the repository root:

  # what yoke wrote: tests/data/yoke_small.safetensors is the file that
  # tests/test_checkpoint.c (save_small) writes, byte for byte
  /usr/bin/python3 tools/read_checkpoint.py tests/data/yoke_small.safetensors \
      --expect 'emb=0.5,-1.25,2,3.75,-0.125,8' --expect 'bias=0.1,-1e-300' \
      --expect 'scale=2.5' --expect 'empty=' \
      --expect 'counts=1,-2,3000000000' \
      --expect-meta step=12 --expect-meta 'config={"dim": 2}' \
      --expect-meta yoke_format_version=1

  # the other way: write the sample that test_checkpoint.c loads
  /usr/bin/python3 tools/read_checkpoint.py \
      --write-sample tests/data/numpy_small.safetensors

--expect NAME=v1,v2,... compares the tensor's values, flattened, with the
decimal numbers given, converted to the tensor's dtype: exact equality, so
a value round-trips or the check fails. Exit status 0 when every check
passes, 1 otherwise.
"""
import json
import struct
import sys

import numpy as np

import yoke_cli

# safetensors dtype -> numpy dtype (little-endian). BF16 and F8 have no
# numpy type: they are mapped as raw unsigned integers of their width.
DTYPES = {
    "F64": "<f8", "F32": "<f4", "F16": "<f2", "BF16": "<u2",
    "I64": "<i8", "I32": "<i4", "I16": "<i2", "I8": "i1",
    "U64": "<u8", "U32": "<u4", "U16": "<u2", "U8": "u1",
    "BOOL": "?", "F8_E5M2": "u1", "F8_E4M3": "u1",
}


class BadFile(Exception):
    pass


def parse(path):
    """(metadata dict, {name: numpy array over a memory map}) of a file."""
    raw = np.memmap(path, dtype=np.uint8, mode="r")
    if raw.size < 8:
        raise BadFile(f"{path}: {raw.size} bytes, no header length")
    (n,) = struct.unpack("<Q", raw[:8].tobytes())
    if n == 0 or n > raw.size - 8:
        raise BadFile(f"{path}: header length {n} does not fit")
    text = raw[8:8 + n].tobytes().decode("utf-8")
    if not text.startswith("{"):
        raise BadFile(f"{path}: the header is not a JSON object")
    header = json.loads(text)
    meta = header.pop("__metadata__", {})
    if not all(isinstance(v, str) for v in meta.values()):
        raise BadFile(f"{path}: metadata values must be strings")
    data_size = raw.size - 8 - n
    tensors = {}
    spans = []
    for name, e in header.items():
        dtype = np.dtype(DTYPES[e["dtype"]])
        shape = tuple(e["shape"])
        begin, end = e["data_offsets"]
        count = int(np.prod(shape, dtype=np.int64))
        if end - begin != count * dtype.itemsize or not 0 <= begin <= end <= data_size:
            raise BadFile(f"{path}: tensor {name}: offsets {begin, end} do "
                          f"not hold {shape} of {e['dtype']}")
        spans.append((begin, end, name))
        tensors[name] = np.frombuffer(raw, dtype=dtype, count=count,
                                      offset=8 + n + begin).reshape(shape)
    pos = 0
    for begin, end, name in sorted(spans):
        if begin != pos:
            raise BadFile(f"{path}: tensor {name} starts at {begin}, "
                          f"expected {pos} (gap or overlap)")
        pos = end
    if pos != data_size:
        raise BadFile(f"{path}: tensors end at {pos}, data has {data_size}")
    return meta, tensors, {name: header[name]["dtype"] for name in header}


def describe(meta, tensors, dtypes):
    for k, v in meta.items():
        print(f"metadata {k} = {v!r}")
    for name, a in tensors.items():
        line = f"{name:24s} {dtypes[name]:5s} {list(a.shape)}"
        if a.size and a.dtype.kind == "f":
            line += (f"  min {a.min():.6g} max {a.max():.6g}"
                     f"  finite {bool(np.isfinite(a).all())}")
        print(line)


def check_values(tensors, spec):
    name, _, values = spec.partition("=")
    if name not in tensors:
        return f"--expect {name}: no such tensor"
    a = tensors[name]
    want = np.array([v for v in values.split(",") if v != ""],
                    dtype=np.float64 if a.dtype.kind == "f" else np.int64)
    if a.dtype.kind == "f" and a.dtype.itemsize == 4:
        want = want.astype(np.float32)
    got = a.reshape(-1)
    if got.shape != want.shape or not np.array_equal(got, want):
        return f"--expect {name}: got {got.tolist()}, want {want.tolist()}"
    return None


def write_sample(path):
    """A safetensors file written without yoke. Its values are those
    tests/test_checkpoint.c (loads_file_written_by_numpy) expects. Header
    keys are not in data order, the JSON is indented and not padded, and
    the metadata comes last."""
    arrays = [  # in data order
        ("W", "F32", np.array([[1, -2], [0.25, 1024]], dtype="<f4")),
        ("ignored/x", "I64", np.array([7, -8], dtype="<i8")),
        ("b", "F64", np.array([0.1, -0.5, 3], dtype="<f8")),
        ("ignored/half", "F16", np.array([1, -2], dtype="<f2")),
    ]
    entries, offset = {}, 0
    for name, dt, a in arrays:
        entries[name] = {"dtype": dt, "shape": list(a.shape),
                         "data_offsets": [offset, offset + a.nbytes]}
        offset += a.nbytes
    header = {k: entries[k] for k in ["b", "ignored/half", "W", "ignored/x"]}
    header["__metadata__"] = {"step": "9", "config": "written by numpy"}
    text = json.dumps(header, indent=1).encode("utf-8")
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(text)))
        f.write(text)
        for _, _, a in arrays:
            f.write(a.tobytes())


def main():
    ap = yoke_cli.parser(__doc__)
    ap.add_argument("file", nargs="?")
    ap.add_argument("--expect", action="append", default=[],
                    metavar="NAME=v1,v2,...")
    ap.add_argument("--expect-meta", action="append", default=[],
                    metavar="KEY=VALUE")
    ap.add_argument("--write-sample", metavar="OUT")
    args = ap.parse_args()
    if args.write_sample:
        write_sample(args.write_sample)
        print(f"wrote {args.write_sample}")
        if not args.file:
            return 0
    if not args.file:
        ap.error("a file to read is needed")
    try:
        meta, tensors, dtypes = parse(args.file)
    except (BadFile, ValueError, KeyError, TypeError) as e:
        print(f"bad file: {e}", file=sys.stderr)
        return 1
    describe(meta, tensors, dtypes)
    errors = [e for e in (check_values(tensors, s) for s in args.expect) if e]
    for spec in args.expect_meta:
        key, _, value = spec.partition("=")
        if meta.get(key) != value:
            errors.append(f"--expect-meta {key}: got {meta.get(key)!r}, "
                          f"want {value!r}")
    for e in errors:
        print(e, file=sys.stderr)
    checks = len(args.expect) + len(args.expect_meta)
    if checks:
        print(f"{checks - len(errors)} of {checks} checks passed")
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
