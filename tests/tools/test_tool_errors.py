#!/usr/bin/env python3
"""test_tool_errors.py - every CLI clattn-harden owns, run with bad
arguments (issue #17): out-of-range and huge numbers, missing values,
unknown options, bad input and output paths, bogus device selectors, and
a model folder whose weights hold NaN. Each case must exit with the
expected non-zero status (2: bad usage, 1: the work failed), never by a
signal, and print a message on stderr containing the expected fragment.
The cases stop before any training or embedding work, so this runs in
seconds. Usage: test_tool_errors.py BUILD_TOOLS_DIR FIXTURES_DIR"""
import os
import shutil
import struct
import subprocess
import sys
import tempfile

tools, fixtures = sys.argv[1], sys.argv[2]
tmp = tempfile.mkdtemp(prefix="clattn-tool-errors-")
module = os.path.join(fixtures, "modules", "encoder_layer_post_relu")
src = os.path.join(module, "src.npy")

# A copy of the module fixture with a NaN in linear1.weight (F32).
nan_model = os.path.join(tmp, "nan-model")
shutil.copytree(module, nan_model)
path = os.path.join(nan_model, "model.safetensors")
with open(path, "r+b") as f:
    import json
    n = struct.unpack("<Q", f.read(8))[0]
    head = json.loads(f.read(n))
    begin = head["linear1.weight"]["data_offsets"][0]
    f.seek(8 + n + begin + 4 * 5)
    f.write(struct.pack("<f", float("nan")))

T = "clattn-train"
E = "clattn-embed"
F = "clattn-forward"
I = "clattn-info"
D = "clattn-attention-demo"
fwd = ["--model", module, "--input", "src=" + src]
cases = [
    # tool, arguments, expected status, stderr fragment
    (T, [], 2, "usage"),
    (T, ["nosuchmodel"], 2, "unknown model"),
    (T, ["regression", "--epochs", "2", "--steps", "4611686018427387904"], 2, "--steps"),
    (T, ["regression", "--epochs", "1000", "--steps", "1000000"], 2, "steps in all"),
    (T, ["regression", "--epochs", "0"], 2, "--epochs"),
    (T, ["regression", "--epochs", "-3"], 2, "--epochs"),
    (T, ["regression", "--epochs", "99999999999999999999"], 2, "--epochs"),
    (T, ["regression", "--epochs", "1e3"], 2, "--epochs"),
    (T, ["regression", "--steps"], 2, "--steps"),
    (T, ["regression", "--batch", "65537"], 2, "--batch"),
    (T, ["regression", "--batch", "0x10"], 2, "--batch"),
    (T, ["regression", "--warmup", "-1"], 2, "--warmup"),
    (T, ["regression", "--epochs", "1", "--steps", "5", "--warmup", "6"], 2, "--warmup"),
    (T, ["regression", "--heldout", "0"], 2, "--heldout"),
    (T, ["regression", "--lr", "nan"], 2, "--lr"),
    (T, ["regression", "--lr", "inf"], 2, "--lr"),
    (T, ["regression", "--lr", "0"], 2, "--lr"),
    (T, ["regression", "--lr", "1e999"], 2, "--lr"),
    (T, ["regression", "--clip", "-1"], 2, "--clip"),
    (T, ["regression", "--seed", "-1"], 2, "--seed"),
    (T, ["regression", "--seed", "18446744073709551616"], 2, "--seed"),
    (T, ["regression", "--seed", "12abc"], 2, "--seed"),
    (T, ["regression", "--checkpoint", "/nonexistent/dir/c.safetensors"], 2, "does not exist"),
    (T, ["regression", "--checkpoint", tmp], 2, "is a folder"),
    (T, ["regression", "--checkpoint", ""], 2, "empty path"),
    (T, ["regression", "--plot", "/nonexistent/p.png"], 2, "--plot"),
    (T, ["regression", "--init"], 2, "needs a value"),
    (T, ["regression", "--bogus"], 2, "unknown option"),
    (T, ["regression", "-q", "--init", "/nonexistent.safetensors", "--checkpoint",
         os.path.join(tmp, "c.safetensors")], 1, "nonexistent"),
    (T, ["regression", "-q", "--device", "no-such-device-xyz", "--checkpoint",
         os.path.join(tmp, "c.safetensors")], 1, "no-such-device-xyz"),
    (T, ["regression", "-q", "--device", "99999", "--checkpoint",
         os.path.join(tmp, "c.safetensors")], 1, "99999"),
    (E, ["--batch", "0", "x"], 2, "--batch"),
    (E, ["--batch", "99999999999999999999", "x"], 2, "--batch"),
    (E, ["--max-length", "1", "x"], 2, "--max-length"),
    (E, ["--max-length", "abc", "x"], 2, "--max-length"),
    (E, ["--max-length"], 2, "needs a value"),
    (E, ["--pooling", "sum", "x"], 2, "--pooling"),
    (E, ["--normalize", "maybe", "x"], 2, "--normalize"),
    (E, ["--output-format", "xml", "x"], 2, "--output-format"),
    (E, ["--bogus", "x"], 2, "unknown option"),
    (E, ["--model", "/nonexistent/model", "x"], 1, "/nonexistent/model"),
    (E, ["--file", "/nonexistent/texts.txt"], 1, "/nonexistent/texts.txt"),
    (E, ["--model", nan_model, "-q", "x"], 1, ""),
    (F, [], 2, "required"),
    (F, ["--model"], 2, "needs a value"),
    (F, fwd + ["--output", "/nonexistent/o.npy"], 2, "does not exist"),
    (F, fwd + ["--output", tmp], 2, "is a folder"),
    (F, fwd + ["--output", os.path.join(tmp, "o.npy"), "--weights", "/nonexistent/w.npy"], 2,
     "--weights"),
    (F, ["--model", module, "--input", "src", "--output", os.path.join(tmp, "o.npy")], 2,
     "NAME=FILE"),
    (F, ["--model", module, "--input", "src=/nonexistent.npy", "--output",
         os.path.join(tmp, "o.npy")], 1, "nonexistent"),
    (F, ["--model", "/nonexistent/model", "--input", "src=" + src, "--output",
         os.path.join(tmp, "o.npy")], 1, "/nonexistent/model"),
    (F, ["--model", nan_model, "--input", "src=" + src, "--output", os.path.join(tmp, "o.npy")],
     1, "holds NaN at flat index 5"),
    (F, fwd + ["--output", os.path.join(tmp, "o.npy"), "--flag", "is_causal=maybe"], 2,
     "true or false"),
    (F, fwd + ["--output", os.path.join(tmp, "o.npy"), "--device", "no-such-device-xyz"], 1,
     "no-such-device-xyz"),
    (F, ["--bogus"], 2, "unknown argument"),
    (I, ["--device"], 2, "needs a value"),
    (I, ["--device", "no-such-device-xyz"], 1, "no-such-device-xyz"),
    (I, ["--device", "7:99"], 1, "7:99"),
    (I, ["--bogus"], 2, "unknown argument"),
    (D, ["--size", "1"], 2, "takes no arguments"),
]

failed = 0
for tool, args, want, fragment in cases:
    exe = os.path.join(tools, tool)
    env = dict(os.environ)
    try:
        r = subprocess.run([exe] + args, capture_output=True, text=True, timeout=120, env=env,
                           errors="replace")
        rc, err = r.returncode, r.stderr
    except subprocess.TimeoutExpired:
        rc, err = None, "(timed out)"
    ok = rc == want and rc is not None and rc > 0 and err.strip() != "" and fragment in err
    if not ok:
        failed += 1
        print(f"FAIL {tool} {' '.join(args)}: exit {rc} (want {want}), stderr: {err.strip()[:300]!r}")
shutil.rmtree(tmp, ignore_errors=True)
print(f"test_tool_errors: {len(cases)} cases, {failed} failed")
sys.exit(1 if failed else 0)
