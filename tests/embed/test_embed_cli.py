#!/usr/bin/env python3
"""clattn-embed's --attention-weights and --attention-tokens on the tiny
BERT of tests/fixtures/make_attention_fixtures.py: the .npy file against
transformers' output_attentions, the JSON sidecar's tokens against
transformers' tokenizer, and bad arguments (exit status 2 with a message).

    test_embed_cli.py BUILD_TOOLS_DIR TINY_BERT_DIR"""
import json
import os
import struct
import subprocess
import sys
import tempfile

TOOLS, MODEL = sys.argv[1], sys.argv[2]
EMBED = os.path.join(TOOLS, "clattn-embed")
checks = failures = 0


def check(cond, what):
    global checks, failures
    checks += 1
    if not cond:
        failures += 1
        print(f"FAIL {what}", file=sys.stderr)


def run(*args):
    p = subprocess.run(list(args), capture_output=True, timeout=300)
    return p.returncode, p.stdout.decode("utf-8", "replace"), p.stderr.decode("utf-8", "replace")


def read_npy_f32(path):
    """(shape, floats) of a version 1 float32 .npy file, without numpy."""
    with open(path, "rb") as f:
        data = f.read()
    assert data[:6] == b"\x93NUMPY", "not a .npy file"
    hlen = struct.unpack("<H", data[8:10])[0]
    header = eval(data[10:10 + hlen].decode("latin1"))  # a Python dict literal
    assert header["descr"] == "<f4" and not header["fortran_order"]
    body = data[10 + hlen:]
    return tuple(header["shape"]), struct.unpack(f"<{len(body) // 4}f", body)


def main():
    cases = json.load(open(os.path.join(MODEL, "texts.json"), encoding="utf-8"))["cases"]
    with tempfile.TemporaryDirectory() as tmp:
        aw, at = os.path.join(tmp, "a.npy"), os.path.join(tmp, "a.json")
        for i in (0, 3):
            c = cases[i]
            rc, out, err = run(EMBED, "--model", MODEL, "-q", "--attention-weights", aw,
                               "--attention-tokens", at, "--", c["text"])
            check(rc == 0, f"text {i}: rc {rc}: {err}")
            if rc != 0:
                continue
            T = len(c["ids"])
            shape, vals = read_npy_f32(aw)
            ref_shape, ref = read_npy_f32(os.path.join(MODEL, f"attn_{i}.npy"))
            check(shape == ref_shape == (2, 4, T, T), f"text {i}: shape {shape}")
            worst = max(abs(a - b) for a, b in zip(vals, ref)) if shape == ref_shape else 1
            check(worst <= 1e-5, f"text {i}: weights match transformers' ({worst:.2e})")
            j = json.load(open(at, encoding="utf-8"))
            check(j["shape"] == [2, 4, T, T] and j["ids"] == c["ids"] and
                  j["tokens"] == c["tokens"] and j["labels"] == c["tokens"] and
                  j["text"] == c["text"], f"text {i}: --attention-tokens JSON {j}")
        bad = [
            (["--attention-weights", aw, "one", "two"], "exactly one text"),
            (["--attention-weights", "/nonexistent/a.npy", "one"], "a.npy"),
            (["--attention-tokens"], "needs a value"),
        ]
        for args, fragment in bad:
            rc, out, err = run(EMBED, "--model", MODEL, *args)
            check(rc == 2 and fragment in err, f"{args}: rc {rc} (want 2), {err!r}")
    print(f"test_embed_cli: {checks} checks, {failures} failed")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
