#!/usr/bin/env python3
"""Writes the seed corpus of fuzz_safetensors into tests/fuzz/corpus/safetensors/:
small valid files covering every dtype, scalars, empty tensors, many
dimensions and metadata, plus a few broken ones near the validation rules.
Standard library only.

Usage: tests/fuzz/make_seed_corpus.py [OUTPUT_DIR]
"""
import json
import os
import struct
import sys

BITS = {"BOOL": 8, "U8": 8, "I8": 8, "I16": 16, "U16": 16, "I32": 32, "U32": 32, "I64": 64,
        "U64": 64, "F16": 16, "BF16": 16, "F32": 32, "F64": 64, "F8_E5M2": 8, "F8_E4M3": 8,
        "F8_E8M0": 8, "F8_E4M3FNUZ": 8, "F8_E5M2FNUZ": 8, "F6_E2M3": 6, "F6_E3M2": 6,
        "F4": 4, "C64": 64}


def file_of(tensors, metadata=None, raw_header=None):
    """tensors: list of (name, dtype, shape); data bytes are a counter."""
    header = {"__metadata__": metadata} if metadata is not None else {}
    offset = 0
    for name, dtype, shape in tensors:
        n = 1
        for e in shape:
            n *= e
        size = n * BITS[dtype] // 8
        header[name] = {"dtype": dtype, "shape": shape, "data_offsets": [offset, offset + size]}
        offset += size
    text = raw_header if raw_header is not None else json.dumps(header, separators=(",", ":"))
    text = text.encode()
    text += b" " * (-len(text) % 8)
    return struct.pack("<Q", len(text)) + text + bytes(i % 251 for i in range(offset))


def main():
    here = os.path.dirname(os.path.abspath(__file__))
    out = sys.argv[1] if len(sys.argv) > 1 else os.path.join(here, "corpus", "safetensors")
    os.makedirs(out, exist_ok=True)
    seeds = {
        "empty": file_of([]),
        "every_dtype": file_of([(d.lower(), d, [4]) for d in BITS]),
        "scalar_empty_meta": file_of([("s", "F32", []), ("e", "F16", [0, 3]), ("b", "BF16", [2, 2])],
                                     metadata={"format": "pt", "k": "v"}),
        "six_dims": file_of([("x", "F32", [1, 2, 1, 2, 1, 2])]),
        "null_meta": file_of([("w", "F64", [3])], raw_header='{"__metadata__":null,"w":'
                             '{"dtype":"F64","shape":[3],"data_offsets":[0,24]}}'),
        "overlap": file_of([], raw_header='{"a":{"dtype":"U8","shape":[4],"data_offsets":[0,4]},'
                           '"b":{"dtype":"U8","shape":[4],"data_offsets":[2,6]}}') + b"\0" * 6,
        "size_mismatch": file_of([], raw_header='{"w":{"dtype":"F32","shape":[2,3],'
                                 '"data_offsets":[0,12]}}') + b"\0" * 12,
        "too_large": struct.pack("<Q", 100000001) + b"{}",
        "duplicate": file_of([], raw_header='{"a":{"dtype":"U8","shape":[1],"data_offsets":[0,1]},'
                             '"a":{"dtype":"U8","shape":[1],"data_offsets":[0,1]}}') + b"x",
    }
    for name, data in seeds.items():
        with open(os.path.join(out, name + ".safetensors"), "wb") as f:
            f.write(data)
    print(f"wrote {len(seeds)} seeds to {out}")


if __name__ == "__main__":
    main()
