#!/usr/bin/env python3
"""clattn-embed's --attention-weights, --attention-tokens and
--attention-map on the tiny BERT of tests/fixtures/make_attention_fixtures.py:
the .npy file against transformers' output_attentions, the JSON sidecar's
tokens against transformers' tokenizer, the SVG heatmaps' metadata (panels,
labels, the values drawn) against the .npy file, and bad arguments (exit
status 2 with a message, 1 for a --layer past the model's).

    test_embed_cli.py BUILD_TOOLS_DIR TINY_BERT_DIR"""
import json
import os
import sys
import tempfile

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..",
                                "support"))
from tool_files import read_npy_f32, run, svg_metadata  # noqa: E402

TOOLS, MODEL = sys.argv[1], sys.argv[2]
EMBED = os.path.join(TOOLS, "clattn-embed")
checks = failures = 0
PICTURES = os.environ.get("CLATTN_PICTURES", "1") == "1"


def check(cond, what):
    global checks, failures
    checks += 1
    if not cond:
        failures += 1
        print(f"FAIL {what}", file=sys.stderr)


def check_map(meta, vals, L, H, R, C, labels_r, labels_c, only, what):
    """Panels titled 'layer l, head h' holding the rows of vals [L, H, R, C]."""
    want = [(l, h) for l in range(L) for h in range(H) if only in (None, (l, h))]
    panels = meta["panels"]
    check([p["title"] for p in panels] == [f"layer {l}, head {h}" for l, h in want],
          f"{what}: panel titles {[p['title'] for p in panels]}")
    check(meta["row_labels"] == labels_r and meta["col_labels"] == labels_c,
          f"{what}: labels {meta['row_labels']} / {meta['col_labels']}")
    worst = 0.0
    for p, (l, h) in zip(panels, want):
        base = (l * H + h) * R * C
        flat = [x for row in p["values"] for x in row]
        check(len(flat) == R * C, f"{what}: panel {l},{h} has {len(flat)} values")
        worst = max([worst] + [abs(a - b) for a, b in zip(flat, vals[base:base + R * C])])
    check(worst <= 1e-6, f"{what}: values drawn differ from the .npy by {worst:.2e}")


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
        svg = os.path.join(tmp, "m.svg")
        if PICTURES:  # 0 in a build without cairo (meson sets it)
            # The heatmaps: every layer and head, then one chosen.
            c = cases[3]
            T = len(c["ids"])
            svg = os.path.join(tmp, "m.svg")
            rc, out, err = run(EMBED, "--model", MODEL, "-q", "--attention-weights", aw,
                               "--attention-map", svg, "--", c["text"])
            check(rc == 0, f"--attention-map: rc {rc}: {err}")
            if rc == 0:
                shape, vals = read_npy_f32(aw)
                check_map(svg_metadata(svg), vals, 2, 4, T, T, c["tokens"], c["tokens"], None,
                          "--attention-map")
                rc, out, err = run(EMBED, "--model", MODEL, "-q", "--attention-map", svg,
                                   "--layer", "1", "--head", "2", "--", c["text"])
                check(rc == 0, f"--layer 1 --head 2: rc {rc}: {err}")
                if rc == 0:
                    check_map(svg_metadata(svg), vals, 2, 4, T, T, c["tokens"], c["tokens"],
                              (1, 2), "--layer 1 --head 2")
            png = os.path.join(tmp, "m.png")
            rc, out, err = run(EMBED, "--model", MODEL, "-q", "--attention-map", png, "hello")
            check(rc == 0 and open(png, "rb").read(8) == b"\x89PNG\r\n\x1a\n", f"PNG map: {err}")
            rc, out, err = run(EMBED, "--model", MODEL, "-q", "--attention-map", svg, "--layer", "2",
                               "hello")
            check(rc == 1 and "--layer 2 is outside [0, 2)" in err, f"--layer 2: rc {rc}, {err!r}")
        bad = [
            (["--attention-weights", aw, "one", "two"], "exactly one text"),
            (["--attention-weights", "/nonexistent/a.npy", "one"], "a.npy"),
            (["--attention-tokens"], "needs a value"),
            (["--attention-map", os.path.join(tmp, "m.jpg"), "one"], "unknown picture format"),
            (["--attention-map", svg, "one", "two"], "exactly one text"),
            (["--layer", "1", "one"], "go with --attention-map"),
            (["--attention-map", svg, "--head", "-1", "one"], "--head"),
        ]
        if not PICTURES:  # every --attention-map is refused up front
            bad = [b for b in bad if "--attention-map" not in b[0]]
            bad.append((["--attention-map", svg, "one"], "built without cairo"))
        for args, fragment in bad:
            rc, out, err = run(EMBED, "--model", MODEL, *args)
            check(rc == 2 and fragment in err, f"{args}: rc {rc} (want 2), {err!r}")
    print(f"test_embed_cli: {checks} checks, {failures} failed")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
