#!/usr/bin/env python3
"""test_bad_inputs.py - the bad-input catalogue of the command-line tools
(issue #17): one table of cases, each a tool, its arguments (inputs made on
the fly in a temporary folder from valid fixtures by a small change), the
exit status expected and a fragment of stderr. A failing case must exit
with that status (1: the work failed), never by a signal, with the
fragment on stderr. A few inputs are valid but hostile (invalid UTF-8, a
1.5 MB one-line text): those must exit 0 with strict JSON on stdout (no
NaN or Infinity). The classes: missing, empty and truncated files; bad .npy
headers (magic, version, descr, shape, fortran_order, truncated data) read
by clattn-forward's common/npy.c; wrong dtypes and shapes; NaN weights;
unknown values; huge sizes; invalid UTF-8; bogus device selectors; and
clattn-server starting on a broken model folder. The library's own
catalogue is tests/io/test_bad_inputs.c.
Usage: test_bad_inputs.py BUILD_TOOLS_DIR FIXTURES_DIR MODELS_DIR
CLATTN_TEST_EMBED_SHORT=1 (Rusticl) leaves out the cases that run the
embedding model."""
import json
import os
import shutil
import struct
import subprocess
import sys
import tempfile

tools, fixtures, models = sys.argv[1], sys.argv[2], sys.argv[3]
short = os.environ.get("CLATTN_TEST_EMBED_SHORT") == "1"
tmp = tempfile.mkdtemp(prefix="clattn-bad-inputs-")
minilm = os.path.join(models, "all-MiniLM-L6-v2")
module = os.path.join(fixtures, "modules", "encoder_layer_post_relu")
llama = os.path.join(fixtures, "lm", "llama_gqa_f32")
n_made = 0


def variant(src, rel, change):
    """A folder of links to src's files, rel copied and changed by change
    (a function of the bytes, returning the new bytes or None: delete)."""
    global n_made
    n_made += 1
    dst = os.path.join(tmp, f"v{n_made}")

    def fill(s, d, rel):
        os.mkdir(d)
        for name in os.listdir(s):
            sp, dp = os.path.join(s, name), os.path.join(d, name)
            if rel == name:
                with open(sp, "rb") as f:
                    data = change(f.read())
                if data is not None:
                    with open(dp, "wb") as f:
                        f.write(data)
            elif rel and rel.startswith(name + "/"):
                fill(sp, dp, rel[len(name) + 1:])
            else:
                os.symlink(os.path.abspath(sp), dp)
    fill(src, dst, rel)
    return dst


def replace(a, b):
    def f(data):
        assert a in data, a
        return data.replace(a, b, 1)
    return f


def poke_nan(name):
    def f(data):
        n = struct.unpack("<Q", data[:8])[0]
        begin = json.loads(data[8:8 + n])[name]["data_offsets"][0]
        at = 8 + n + begin + 4 * 3
        return data[:at] + struct.pack("<f", float("nan")) + data[at + 4:]
    return f


def npy_file(name, data):
    path = os.path.join(tmp, name)
    with open(path, "wb") as f:
        f.write(data)
    return path


def npy(header, payload=b"\0" * (2 * 5 * 32 * 4), magic=b"\x93NUMPY", version=b"\x01\x00"):
    """A .npy file with header text `header` (padded as numpy pads it)."""
    h = header.encode()
    pad = 64 - (10 + len(h) + 1) % 64
    h = h + b" " * pad + b"\n"
    return magic + version + struct.pack("<H", len(h)) + h + payload


with open(os.path.join(module, "src.npy"), "rb") as f:
    src_npy = f.read()
good = "{'descr': '<f4', 'fortran_order': False, 'shape': (2, 5, 32), }"
npys = {
    "empty": (b"", "magic"),
    "magic": (b"\x93NUMPX" + src_npy[6:], "magic"),
    "version": (npy(good, version=b"\x09\x00"), "version 9.0"),
    "descr": (npy(good.replace("<f4", "<c8")), "<c8"),
    "object": (npy(good.replace("<f4", "|O")), "object"),
    "shape": (npy(good.replace("(2, 5, 32)", "(2, 5, 33)"), payload=b"\0" * (2 * 5 * 33 * 4)),
              "src"),
    "negative": (npy(good.replace("(2, 5, 32)", "(2, -5, 32)")), "shape"),
    "huge": (npy(good.replace("(2, 5, 32)", "(4294967296, 4294967296, 4294967296)")), "overflow"),
    "fortran": (npy(good.replace("False", "True")), "fortran"),
    "fortran_bad": (npy(good.replace("False", "Maybe")), "fortran_order"),
    "truncated": (src_npy[:-4], "truncated"),
    "header_cut": (src_npy[:40], "runs past the end"),
    "not_dict": (npy("[1, 2, 3]"), "dict"),
    "non_ascii": (npy(good.replace("'descr'", "'d\xff'")), "unknown header key"),
}

# Folders with one thing broken.
st_cut = lambda d: d[:len(d) - 100]
bad_minilm_cfg = variant(minilm, "config.json", replace(b'"hidden_size": 384', b'"hidden_size": -1')) \
    if os.path.isdir(minilm) else None
bad_minilm_st = variant(minilm, "model.safetensors", st_cut) if os.path.isdir(minilm) else None
nan_minilm = variant(minilm, "model.safetensors", poke_nan("embeddings.word_embeddings.weight")) \
    if os.path.isdir(minilm) else None
bad_tok = variant(llama, "tokenizer.json", lambda d: d[:300])
bad_lm_cfg = variant(llama, "config.json", replace(b'"num_hidden_layers": 2',
                                                   b'"num_hidden_layers": 100000'))
nan_lm = variant(llama, "model.safetensors", poke_nan("model.embed_tokens.weight"))
no_lm_st = variant(llama, "model.safetensors", lambda d: None)
bad_module = variant(module, "config.json", replace(b'"d_model": 32', b'"d_model": 1000000000'))
cut_module = variant(module, "model.safetensors", lambda d: d[:len(d) // 2])
bad_init = os.path.join(tmp, "init.safetensors")
with open(bad_init, "wb") as f:
    f.write(struct.pack("<Q", 10 ** 15))

long_text = os.path.join(tmp, "long.txt")
with open(long_text, "w") as f:
    f.write("hello world " * 125000 + "\n")
bad_utf8 = os.path.join(tmp, "bad.txt")
with open(bad_utf8, "wb") as f:
    f.write(b"caf\xc3 \xff\xfe ab\xed\xa0\x80 \xf4\x90\x80\x80 x\xc0\xaf\n")

E, F, G, S, K, T, I, B = ("clattn-embed", "clattn-forward", "clattn-generate", "clattn-server",
                          "clattn-tokenize", "clattn-train", "clattn-info", "clattn-bench")
out_npy = os.path.join(tmp, "o.npy")
cases = [
    # tool, arguments, expected status (0: accepted, strict JSON on stdout), stderr fragment
]
for key, (data, fragment) in npys.items():
    path = npy_file(key + ".npy", data)
    cases.append((F, ["--model", module, "--input", "src=" + path, "--output", out_npy], 1,
                  fragment))
cases += [
    (F, ["--model", bad_module, "--input", "src=" + os.path.join(module, "src.npy"), "--output",
         out_npy], 1, "d_model"),
    (F, ["--model", cut_module, "--input", "src=" + os.path.join(module, "src.npy"), "--output",
         out_npy], 1, "truncated"),
    (G, ["-m", bad_tok, "-p", "hi", "-n", "1"], 1, "tokenizer.json"),
    (G, ["-m", bad_lm_cfg, "-p", "hi", "-n", "1"], 1, "num_hidden_layers"),
    (G, ["-m", nan_lm, "-p", "hi", "-n", "1", "--output-format", "json"], 1,
     "model.embed_tokens.weight"),
    (G, ["-m", no_lm_st, "-p", "hi", "-n", "1"], 1, "model.safetensors"),
    (G, ["-m", llama, "-p", "hi", "-n", "1", "--device", "no-such-device-xyz"], 1,
     "no-such-device-xyz"),
    (K, ["-m", bad_tok, "hello"], 1, "tokenizer.json"),
    (K, ["-m", llama, "-f", "/nonexistent/t.txt"], 1, "/nonexistent/t.txt"),
    (K, ["-m", llama, "-f", bad_utf8], 0, ""),
    (K, ["-m", llama, "-f", long_text], 0, ""),
    (S, ["--lm", bad_lm_cfg, "--port", "0"], 1, "num_hidden_layers"),
    (S, ["--lm", nan_lm, "--port", "0"], 1, "model.embed_tokens.weight"),
    (S, ["--lm", "/nonexistent/lm", "--port", "0"], 1, "/nonexistent/lm"),
    (S, ["--lm", llama, "--port", "0", "--device", "no-such-device-xyz"], 1,
     "no-such-device-xyz"),
    (T, ["regression", "-q", "--init", bad_init, "--checkpoint",
         os.path.join(tmp, "c.safetensors")], 1, "header length"),
    (I, ["--device", "\udcff\udcfe"], 1, "no OpenCL device"),
    (B, ["embed", "--model", "/nonexistent/model"], 1, "/nonexistent/model"),
]
if bad_minilm_cfg:
    cases += [
        (E, ["--model", bad_minilm_cfg, "x"], 1, "hidden_size"),
        (E, ["--model", bad_minilm_st, "x"], 1, "truncated"),
        (E, ["--model", nan_minilm, "--output-format", "json", "x"], 1,
         "embeddings.word_embeddings.weight"),
        (S, ["--model", bad_minilm_cfg, "--port", "0"], 1, "hidden_size"),
        (S, ["--model", nan_minilm, "--port", "0"], 1, "embeddings.word_embeddings.weight"),
        (S, ["--model", bad_minilm_st, "--port", "0"], 1, "truncated"),
        (K, ["-m", minilm, "-f", bad_utf8], 0, ""),
    ]
    if not short:
        cases += [
            (E, ["--model", minilm, "--output-format", "json+", "--file", bad_utf8], 0, ""),
            (E, ["--model", minilm, "--output-format", "json", "--file", long_text], 0, ""),
        ]
else:
    print(f"note: {minilm} absent, its cases not run (tools/check fetches it)")


def no_constant(name):
    raise ValueError(f"non-finite number {name} in the JSON output")


# CLATTN_SERVER=0: a build without libmicrohttpd (meson sets it), so no
# clattn-server to try.
if os.environ.get("CLATTN_SERVER", "1") == "0":
    cases = [c for c in cases if c[0] != S]

failed = 0
for tool, args, want, fragment in cases:
    exe = os.path.join(tools, tool)
    argv = [exe] + [os.fsencode(a) for a in args]
    try:
        r = subprocess.run(argv, capture_output=True, timeout=120)
        rc, out = r.returncode, r.stdout.decode("utf-8", "replace")
        err = r.stderr.decode("utf-8", "replace")
    except subprocess.TimeoutExpired:
        rc, out, err = None, "", "(timed out)"
    if want == 0:
        ok = rc == 0
        try:
            json.loads(out, parse_constant=no_constant)
        except ValueError as e:
            ok, err = False, f"stdout is not strict JSON ({e}): {out[:200]!r}; " + err
    else:
        ok = rc == want and err.strip() != "" and fragment in err
    if not ok:
        failed += 1
        print(f"FAIL {tool} {' '.join(args)[:300]}: exit {rc} (want {want}), "
              f"stderr: {err.strip()[:400]!r}")
    elif os.environ.get("CLATTN_TEST_VERBOSE"):
        print(f"ok {tool} {' '.join(args)[:120]}: {err.strip()[:200]!r}")
shutil.rmtree(tmp, ignore_errors=True)
print(f"test_bad_inputs.py: {len(cases)} cases, {failed} failed")
sys.exit(1 if failed else 0)
