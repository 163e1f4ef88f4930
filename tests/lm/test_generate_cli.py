#!/usr/bin/env python3
"""clattn-generate and clattn-tokenize from the command line, on the
fixtures of tests/fixtures/make_lm_fixtures.py and make_bpe_fixtures.py:
greedy JSON output equal to transformers' continuation, the --logits file's
shape and rows against transformers' logits, seeded sampling repeated
exactly, the text stream against --output-format json's text, and bad
arguments (exit status 2 with a message, 1 for runtime errors, never a
signal). No device-specific expectations: the environment picks the
device.

    test_generate_cli.py BUILD_TOOLS_DIR FIXTURES_DIR"""
import json
import os
import sys
import tempfile

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..",
                                "support"))
from tool_files import read_npy_f32, run, svg_metadata  # noqa: E402

TOOLS, FIX = sys.argv[1], sys.argv[2]
GEN = os.path.join(TOOLS, "clattn-generate")
TOK = os.path.join(TOOLS, "clattn-tokenize")
checks = failures = 0


# 0 in a build without cairo (meson sets it): the maps are then not drawn.
PICTURES = os.environ.get("CLATTN_PICTURES", "1") == "1"


def check(cond, what):
    global checks, failures
    checks += 1
    if not cond:
        failures += 1
        print(f"FAIL {what}", file=sys.stderr)


def main():
    model = os.path.join(FIX, "lm", "llama_gqa_f32")
    case = json.load(open(os.path.join(model, "case.json")))
    prompt = ",".join(str(i) for i in case["prompt_ids"])
    P, G = len(case["prompt_ids"]), len(case["ids"])
    with tempfile.TemporaryDirectory() as tmp:
        logits = os.path.join(tmp, "logits.npy")
        rc, out, err = run(GEN, "-m", model, "--prompt-ids", prompt, "--temp", "0", "-n", "32",
                           "-c", "64", "--output-format", "json", "--logits", logits, "-q")
        check(rc == 0, f"greedy json run: rc {rc}: {err}")
        if rc == 0:
            j = json.loads(out)
            check(j["ids"] == case["ids"], "greedy ids equal transformers'")
            check(j["prompt_ids"] == case["prompt_ids"], "prompt ids echoed")
            check(isinstance(j["text"], str), "text is a string")
            check(j["prompt_tokens_per_s"] > 0 and j["gen_tokens_per_s"] > 0, "rates")
            check(err == "", "-q prints no summary")
            shape, vals = read_npy_f32(logits)
            V = 320
            check(shape == (P + G - 1, V), f"--logits shape {shape}")
            # The first row against transformers' (the test of the library
            # checks every row; this checks the file's layout).
            ref_shape, ref = read_npy_f32(os.path.join(model, "logits.npy"))
            worst = max(abs(a - b) for a, b in zip(vals[:V * 2], ref[:V * 2]))
            check(worst < 1e-3, f"--logits rows match transformers' ({worst:.2e})")
        # The summary goes to stderr, the text to stdout.
        rc, out, err = run(GEN, "-m", model, "--prompt-ids", prompt, "-n", "5", "-s", "3", "-c", "64")
        check(rc == 0 and "tokens/s" in err and "seed 3" in err, f"summary on stderr: {err}")
        # Seeded sampling repeats exactly.
        args = [GEN, "-m", model, "--prompt-ids", prompt, "-n", "16", "-s", "11", "--temp", "0.9",
                "--top-k", "20", "--top-p", "0.9", "--min-p", "0.02", "--repeat-penalty", "1.2",
                "--output-format", "json", "-q", "-c", "64"]
        a, b = run(*args), run(*args)
        check(a[0] == 0 and b[0] == 0 and json.loads(a[1])["ids"] == json.loads(b[1])["ids"],
              "the same seed gives the same ids")
        # --stop and a text prompt with the folder's tokenizer.
        rc, out, err = run(GEN, "-m", os.path.join(FIX, "lm", "gpt2_f32"), "-p", "The quick brown",
                           "--temp", "0", "-n", "10", "--output-format", "json", "-q")
        check(rc == 0 and json.loads(out)["ids"], f"text prompt: {err}")
        # --attention-weights: the last generated token's row over the
        # context, against transformers' output_attentions (the library's
        # test, tests/lm/test_lm_attention.c, checks every model and path).
        aw, at = os.path.join(tmp, "attn.npy"), os.path.join(tmp, "attn.json")
        svg = os.path.join(tmp, "attn.svg")
        rc, out, err = run(GEN, "-m", model, "--prompt-ids", prompt, "--temp", "0", "-n", "32",
                           "-c", "64", "-q", "--attention-weights", aw, "--attention-tokens", at,
                           *(["--attention-map", svg] if PICTURES else []))
        check(rc == 0, f"--attention-weights run: rc {rc}: {err}")
        if rc == 0:
            shape, vals = read_npy_f32(aw)
            ref_shape, ref = read_npy_f32(os.path.join(model, "attn_full.npy"))
            check(shape == ref_shape == (2, 4, P + G), f"--attention-weights shape {shape}")
            worst = max(abs(a - b) for a, b in zip(vals, ref)) if shape == ref_shape else 1
            check(worst <= 1e-5, f"--attention-weights match transformers' ({worst:.2e})")
            j = json.load(open(at))
            check(j["shape"] == [2, 4, P + G] and j["query"] == P + G - 1 and
                  j["ids"] == case["prompt_ids"] + case["ids"] and
                  len(j["tokens"]) == len(j["labels"]) == P + G, "--attention-tokens JSON")
        if rc == 0 and PICTURES:
            # The heatmaps: a panel per layer and head, one row (the last
            # token) over the context, labelled as the JSON labels them.
            meta = svg_metadata(svg)
            titles = [p["title"] for p in meta["panels"]]
            check(titles == [f"layer {l}, head {h}" for l in range(2) for h in range(4)],
                  f"--attention-map panels {titles}")
            check(meta["col_labels"] == j["labels"] and meta["row_labels"] == j["labels"][-1:],
                  "--attention-map labels")
            drawn = [x for p in meta["panels"] for row in p["values"] for x in row]
            worst = max(abs(a - b) for a, b in zip(drawn, vals)) if len(drawn) == len(vals) else 1
            check(worst <= 1e-6, f"--attention-map values differ from the .npy by {worst:.2e}")
            rc, out, err = run(GEN, "-m", model, "--prompt-ids", prompt, "--temp", "0", "-n", "4",
                               "-c", "64", "-q", "--attention-map", svg, "--layer", "0",
                               "--head", "3")
            check(rc == 0 and [p["title"] for p in svg_metadata(svg)["panels"]] ==
                  ["layer 0, head 3"], f"--layer 0 --head 3: {err}")
            rc, out, err = run(GEN, "-m", model, "--prompt-ids", prompt, "-n", "2", "-c", "64",
                               "-q", "--attention-map", svg, "--layer", "7")
            check(rc == 1 and "--layer 7 is outside [0, 2)" in err, f"--layer 7: rc {rc}, {err!r}")
        rc, out, err = run(GEN, "-m", model, "--prompt-ids", prompt, "--cache-type", "f16",
                           "--temp", "0", "-n", "8", "-q", "--output-format", "json", "-c", "64")
        check(rc == 0 and json.loads(out)["ids"] == case["ids"][:8], "f16 cache greedy ids")

    bad = [
        ([GEN], 2, "give -m"),
        ([GEN, "-m", model], 2, "exactly one of"),
        ([GEN, "-m", model, "--prompt-ids", prompt, "-n", "0"], 2, "-n"),
        ([GEN, "-m", model, "--prompt-ids", prompt, "-n", "99999999999"], 2, "-n"),
        ([GEN, "-m", model, "--prompt-ids", prompt, "--temp", "nan"], 2, "--temp"),
        ([GEN, "-m", model, "--prompt-ids", prompt, "--top-p", "1.5"], 2, "--top-p"),
        ([GEN, "-m", model, "--prompt-ids", prompt, "--top-k", "-1"], 2, "--top-k"),
        ([GEN, "-m", model, "--prompt-ids", prompt, "-c", "-5"], 2, "-c"),
        ([GEN, "-m", model, "--prompt-ids", "1,,2"], 2, "--prompt-ids"),
        ([GEN, "-m", model, "--prompt-ids", prompt, "--cache-type", "q8"], 2, "--cache-type"),
        ([GEN, "-m", model, "--prompt-ids", prompt, "--output-format", "xml"], 2,
         "--output-format"),
        ([GEN, "-m", model, "--prompt-ids", prompt, "--bogus"], 2, "unknown option"),
        ([GEN, "-m", model, "--prompt-ids", "1,2,320"], 1, "outside the vocabulary"),
        ([GEN, "-m", model, "--prompt-ids", prompt, "-c", "8"], 1, "fill the context"),
        ([GEN, "-m", "/nonexistent", "--prompt-ids", "1"], 1, "config.json"),
        ([GEN, "-m", model, "-f", "/nonexistent/prompt.txt"], 1, "cannot read"),
        ([GEN, "-m", model, "--prompt-ids", "1", "--device", "no-such-device"], 1, ""),
        ([GEN, "-m", model, "--prompt-ids", prompt, "--logits", "/nonexistent/l.npy", "-n", "2"],
         1, "l.npy"),
        ([GEN, "-m", model, "--prompt-ids", prompt, "--attention-weights", "/nonexistent/a.npy"],
         2, "a.npy"),
        ([GEN, "-m", model, "--prompt-ids", prompt, "--attention-tokens"], 2, "needs a value"),
        ([GEN, "-m", model, "--prompt-ids", prompt, "--attention-map", "/tmp/m.jpg"], 2,
         "unknown picture format" if PICTURES else "built without cairo"),
        ([GEN, "-m", model, "--prompt-ids", prompt, "--head", "1"], 2, "go with --attention-map"),
        ([TOK], 1, ""),
        ([TOK, "-m", model, "--decode", "1,x"], 1, ""),
        ([TOK, "-m", "/nonexistent", "hi"], 1, ""),
    ]
    for args, want, fragment in bad:
        rc, out, err = run(*args)
        check(rc == want and (fragment in err), f"{args[1:]}: rc {rc} (want {want}), {err!r}")

    # clattn-tokenize round trip on a BPE fixture.
    bpe = os.path.join(FIX, "bpe", "llama3")
    rc, out, err = run(TOK, "-m", bpe, "The quick brown fox")
    check(rc == 0, f"tokenize: {err}")
    if rc == 0:
        ids = json.loads(out)
        rc, text, err = run(TOK, "-m", bpe, "--decode", ",".join(str(i) for i in ids))
        check(rc == 0 and "The quick brown fox" in text, f"decode round trip: {text!r}")
    print(f"test_generate_cli: {checks} checks, {failures} failed")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
