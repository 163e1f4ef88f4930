#!/usr/bin/env python3
"""test_plots.py - the tools' pictures (common/plot/, issue #18), end to end:

- clattn-train --plot on a tiny run, as PNG and SVG: the PNG is the
  documented 960 x 540 and both curves and the text are in it; the SVG is
  well-formed XML with glyphs drawn and its metadata names the title, the
  axis titles, the log y axis, the tick labels and both legend entries.
- clattn-forward --weights W.npy --attention-map on MultiheadAttention
  (tests/fixtures/modules/mha_self: batch 2, 4 heads, 7 positions), per head
  and averaged, as SVG and PNG: one panel per batch entry and head, position
  labels on both axes, the values drawn equal to W.npy's (1e-6), and every
  cell's colour (SVG rectangles and PNG pixels) the viridis colour of its
  value, so the picture shows the weights the tool wrote.
- errors: an unknown extension, a missing folder, a full disk, a model
  without attention weights: non-zero exit, by status, with a clear message.

Stdlib only (no numpy): PNGs are decoded with zlib and struct, .npy files
parsed by hand. Usage: test_plots.py BUILD_TOOLS_DIR FIXTURES_DIR"""
import ast
import json
import os
import re
import shutil
import struct
import subprocess
import sys
import tempfile
import xml.etree.ElementTree as ET
import zlib

tools, fixtures = sys.argv[1], sys.argv[2]
tmp = tempfile.mkdtemp(prefix="clattn-test-plots-")
SVG = "{http://www.w3.org/2000/svg}"
failed = 0
checks = 0


def check(cond, msg):
    global failed, checks
    checks += 1
    if not cond:
        failed += 1
        print("FAIL", msg)
    return cond


def run(tool, args, timeout=120):
    try:
        r = subprocess.run([os.path.join(tools, tool)] + args, capture_output=True, text=True,
                           timeout=timeout, errors="replace")
        return r.returncode, r.stdout, r.stderr
    except subprocess.TimeoutExpired:
        return None, "", "(timed out)"


def read_png(path):
    """(width, height, rows of (r, g, b) tuples) of an 8-bit RGB or RGBA PNG."""
    data = open(path, "rb").read()
    assert data[:8] == b"\x89PNG\r\n\x1a\n", path + ": not a PNG"
    pos, idat = 8, b""
    while pos < len(data):
        n, kind = struct.unpack(">I4s", data[pos:pos + 8])
        body = data[pos + 8:pos + 8 + n]
        pos += 12 + n
        if kind == b"IHDR":
            w, h, depth, ctype, _, _, interlace = struct.unpack(">IIBBBBB", body)
        elif kind == b"IDAT":
            idat += body
        elif kind == b"IEND":
            break
    assert depth == 8 and ctype in (2, 6) and interlace == 0, (depth, ctype, interlace)
    bpp = 3 if ctype == 2 else 4
    raw, stride = zlib.decompress(idat), w * bpp
    prev, rows = bytearray(stride), []
    for y in range(h):
        f = raw[y * (stride + 1)]
        line = bytearray(raw[y * (stride + 1) + 1:(y + 1) * (stride + 1)])
        for i in range(stride):
            a = line[i - bpp] if i >= bpp else 0
            b = prev[i]
            if f == 1:
                line[i] = (line[i] + a) & 255
            elif f == 2:
                line[i] = (line[i] + b) & 255
            elif f == 3:
                line[i] = (line[i] + ((a + b) >> 1)) & 255
            elif f == 4:
                c = prev[i - bpp] if i >= bpp else 0
                p = a + b - c
                pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
                line[i] = (line[i] + (a if pa <= pb and pa <= pc else b if pb <= pc else c)) & 255
        rows.append([tuple(line[x * bpp:x * bpp + 3]) for x in range(w)])
        prev = line
    return w, h, rows


def read_npy_f32(path):
    """(shape, flat list of floats) of a little-endian float32 .npy file."""
    data = open(path, "rb").read()
    assert data[:6] == b"\x93NUMPY", path
    major = data[6]
    n, start = (struct.unpack("<H", data[8:10])[0], 10) if major == 1 else \
        (struct.unpack("<I", data[8:12])[0], 12)
    head = ast.literal_eval(data[start:start + n].decode("latin-1"))
    assert head["descr"] == "<f4" and not head["fortran_order"], head
    count = 1
    for s in head["shape"]:
        count *= s
    body = data[start + n:]
    return tuple(head["shape"]), list(struct.unpack("<%df" % count, body[:4 * count]))


def svg_metadata(path):
    """(root element, metadata JSON) of an SVG written by common/plot/."""
    root = ET.parse(path).getroot()  # raises on malformed XML
    meta = root.find(SVG + "metadata")
    assert meta is not None and meta.get("id") == "clattn", path + ": no clattn metadata"
    return root, json.loads(meta.text)


# Viridis at 9 points, as plot.h documents (matplotlib's values), linearly
# interpolated: the colour a cell of value t in [0, 1] must have.
VIRIDIS = [(68, 1, 84), (71, 44, 122), (59, 81, 139), (44, 113, 142), (33, 144, 141),
           (39, 173, 129), (92, 200, 99), (170, 220, 50), (253, 231, 37)]


def viridis(t):
    t = min(max(t, 0.0), 1.0) * 8
    i = min(int(t), 7)
    f = t - i
    return tuple(VIRIDIS[i][k] + f * (VIRIDIS[i + 1][k] - VIRIDIS[i][k]) for k in range(3))


def near(c1, c2, tol):
    return all(abs(a - b) <= tol for a, b in zip(c1, c2))


# ---- clattn-train --plot ----------------------------------------------------

train = ["regression", "--epochs", "2", "--steps", "10", "--heldout", "2", "-q",
         "--checkpoint", os.path.join(tmp, "c.safetensors")]
loss_png, loss_svg = os.path.join(tmp, "loss.png"), os.path.join(tmp, "loss.svg")
for path in (loss_png, loss_svg):
    rc, out, err = run("clattn-train", train + ["--plot", path])
    check(rc == 0 and os.path.getsize(path) > 1000, f"clattn-train --plot {path}: exit {rc}: {err[-300:]}")
    check(f"loss curves: {path} (960 x 540)" in out, f"clattn-train does not report the picture: {out[-300:]}")

root, meta = svg_metadata(loss_svg)
check(root.get("width", "").startswith("960") and root.get("height", "").startswith("540"),
      f"loss.svg is {root.get('width')} x {root.get('height')}")
glyphs = root.iter(SVG + "use")
check(sum(1 for _ in glyphs) > 50, "loss.svg draws (almost) no text glyphs")
check(meta["kind"] == "lines" and meta["width"] == 960 and meta["height"] == 540, f"loss.svg metadata {meta}")
check("regression" in meta["title"] and meta["x_label"] == "step" and "loss" in meta["y_label"],
      f"titles: {meta['title']!r} {meta['x_label']!r} {meta['y_label']!r}")
check(meta["y_axis"]["log"] is True and not meta["x_axis"]["log"], "y should be log, x linear")
for name in ("x_axis", "y_axis"):
    ax = meta[name]
    check(len(ax["ticks"]) >= 2 and len(ax["labels"]) == len(ax["ticks"]) and all(ax["labels"]),
          f"{name}: ticks {ax['ticks']} labels {ax['labels']}")
    check(all(abs(float(l) - t) <= 1e-6 * max(abs(t), 1e-300) for l, t in zip(ax["labels"], ax["ticks"])),
          f"{name}: labels {ax['labels']} are not the ticks {ax['ticks']}")
check(meta["x_axis"]["lo"] <= 1 and meta["x_axis"]["hi"] >= 20, f"x axis {meta['x_axis']} misses steps 1..20")
series = meta["series"]
check([s["name"] for s in series] == ["training loss, every step", "held-out loss, after each epoch"]
      and [s["points"] for s in series] == [20, 2] and [s["drawn"] for s in series] == [20, 2],
      f"legend / series: {series}")

w, h, px = read_png(loss_png)
check((w, h) == (960, 540), f"loss.png is {w} x {h}, want the documented 960 x 540")
left, top, right, bottom = (int(v) for v in meta["plot"])  # same run, same layout
inside = [px[y][x] for y in range(top + 2, bottom - 2) for x in range(left + 2, right - 2)]
blue = sum(1 for r, g, b in inside if b > 150 and b - r > 40 and b - g > 20)
red = sum(1 for r, g, b in inside if r > 150 and r - g > 80 and r - b > 80)
check(blue > 100, f"loss.png: {blue} pixels of the per-step (blue) curve in the plot area")
check(red > 20, f"loss.png: {red} pixels of the held-out (red) curve in the plot area")
title_ink = sum(1 for y in range(0, top) for x in range(w) if sum(px[y][x]) < 300)
check(title_ink > 100, f"loss.png: the title area has {title_ink} dark pixels")
axis_ink = sum(1 for y in range(bottom + 4, h) for x in range(left, right) if sum(px[y][x]) < 300)
check(axis_ink > 100, f"loss.png: the x tick labels and title have {axis_ink} dark pixels")

# ---- clattn-forward --attention-map -----------------------------------------

mha = os.path.join(fixtures, "modules", "mha_self")
fwd = ["-q", "--model", mha, "--output", os.path.join(tmp, "o.npy")]
for name in ("query", "key", "value"):
    fwd += ["--input", f"{name}={os.path.join(mha, name + '.npy')}"]


def check_map(per_head):
    tag = "per-head" if per_head else "averaged"
    wpath = os.path.join(tmp, f"w-{tag}.npy")
    msvg, mpng = os.path.join(tmp, f"m-{tag}.svg"), os.path.join(tmp, f"m-{tag}.png")
    extra = ["--per-head-weights"] if per_head else []
    for path in (msvg, mpng):
        rc, _, err = run("clattn-forward", fwd + extra + ["--weights", wpath, "--attention-map", path])
        if not check(rc == 0 and os.path.exists(path), f"clattn-forward --attention-map {path}: exit {rc}: {err[-300:]}"):
            return
    shape, wv = read_npy_f32(wpath)
    batch, heads = shape[0], shape[1] if per_head else 1
    n, m = shape[-2], shape[-1]
    check(shape == ((2, 4, 7, 7) if per_head else (2, 7, 7)), f"{tag} weights shape {shape}")
    root, meta = svg_metadata(msvg)
    panels = meta["panels"]
    check(meta["kind"] == "heatmaps" and len(panels) == batch * heads,
          f"{tag}: {len(panels)} panels, want batch x heads = {batch * heads}")
    check(meta["rows"] == n and meta["cols"] == m, f"{tag}: panels {meta['rows']} x {meta['cols']}")
    labels = [str(i) for i in range(n)]
    check(meta["row_labels"] == labels and meta["col_labels"] == [str(i) for i in range(m)],
          f"{tag}: labels {meta['row_labels']} / {meta['col_labels']}")
    check(meta["label_stride"] == 1, f"{tag}: 7 labels should all be drawn, stride {meta['label_stride']}")
    check(meta["x_label"] == "key position" and meta["y_label"] == "query position",
          f"{tag}: axis titles {meta['x_label']!r} {meta['y_label']!r}")
    check(meta["vmin"] == 0 and meta["vmax"] == 1, f"{tag}: colour range {meta['vmin']}..{meta['vmax']}")
    bar = meta["colorbar"]["axis"]
    check(len(bar["labels"]) >= 2 and bar["ticks"][0] >= 0 and bar["ticks"][-1] <= 1,
          f"{tag}: colour bar ticks {bar['ticks']}")
    want_titles = [f"batch {b}, head {hh}" if per_head else f"batch {b}, mean of heads"
                   for b in range(batch) for hh in range(heads)]
    check([p["title"] for p in panels] == want_titles, f"{tag}: titles {[p['title'] for p in panels]}")
    worst = 0.0
    for p, panel in enumerate(panels):
        for r in range(n):
            for c in range(m):
                worst = max(worst, abs(panel["values"][r][c] - wv[(p * n + r) * m + c]))
    check(worst <= 1e-6, f"{tag}: drawn values differ from {wpath} by {worst}")
    W, H = meta["width"], meta["height"]
    boxes = [p["box"] for p in panels]
    for i, (x, y, bw, bh) in enumerate(boxes):
        check(0 <= x and 0 <= y and x + bw <= W and y + bh <= H and bw == m * meta["cell"] and bh == n * meta["cell"],
              f"{tag}: panel {i} box {boxes[i]} outside {W} x {H} or not {m} x {n} cells")
        for j in range(i):
            X, Y, BW, BH = boxes[j]
            check(x >= X + BW or X >= x + bw or y >= Y + BH or Y >= y + bh, f"{tag}: panels {j} and {i} overlap")
    # SVG cells: one filled rectangle per cell, in the colour of its value.
    cell = meta["cell"]
    rects = {}
    for e in root.iter(SVG + "path"):
        st, d = e.get("style", ""), e.get("d", "")
        col = re.search(r"fill:rgb\(([\d.]+)%,([\d.]+)%,([\d.]+)%\)", st)
        corner = re.match(r"M ([\d.]+) ([\d.]+) L", d)
        if col and corner:
            rects[(float(corner.group(1)), float(corner.group(2)))] = \
                tuple(float(v) * 2.55 for v in col.groups())
    bad = 0
    for p, (x, y, _, _) in enumerate(boxes):
        for r in range(n):
            for c in range(m):
                got = rects.get((x + c * cell, y + r * cell))
                want = viridis(wv[(p * n + r) * m + c])
                bad += got is None or not near(got, want, 1.5)
    check(bad == 0, f"{tag}: {bad} of {len(boxes) * n * m} SVG cells missing or of the wrong colour")
    # PNG: the same layout; the centre of each cell in its value's colour.
    pw, ph, px = read_png(mpng)
    check((pw, ph) == (W, H), f"{tag}: PNG is {pw} x {ph}, the SVG {W} x {H}")
    if (pw, ph) != (W, H):
        return
    bad = 0
    for p, (x, y, _, _) in enumerate(boxes):
        for r in range(n):
            for c in range(m):
                got = px[int(y + (r + 0.5) * cell)][int(x + (c + 0.5) * cell)]
                bad += not near(got, viridis(wv[(p * n + r) * m + c]), 1.5)
        check(len({px[int(y + (r + 0.5) * cell)][int(x + (c + 0.5) * cell)]
                   for r in range(n) for c in range(m)}) > 3, f"{tag}: PNG panel {p} is (nearly) blank")
    check(bad == 0, f"{tag}: {bad} PNG cells not in the colour of their value")


check_map(per_head=True)
check_map(per_head=False)

# ---- errors -----------------------------------------------------------------

full = os.path.join(tmp, "full.png")
if os.path.exists("/dev/full"):  # Linux: every write fails with ENOSPC
    os.symlink("/dev/full", full)
enc = os.path.join(fixtures, "modules", "encoder_layer_post_relu")
cases = [
    ("clattn-train", train + ["--plot", os.path.join(tmp, "out.bmp")], 2, "unknown picture format '.bmp'"),
    ("clattn-train", train + ["--plot", os.path.join(tmp, "noext")], 2, ".png or .svg"),
    ("clattn-train", train + ["--plot", "/nonexistent/dir/p.svg"], 2, "does not exist"),
    ("clattn-forward", fwd + ["--attention-map", os.path.join(tmp, "m.bmp")], 2, "unknown picture format"),
    ("clattn-forward", fwd + ["--attention-map", "/nonexistent/dir/m.png"], 2, "--attention-map"),
    ("clattn-forward", fwd + ["--attention-map"], 2, "needs a value"),
    ("clattn-forward", ["-q", "--model", enc, "--input", "src=" + os.path.join(enc, "src.npy"),
                        "--output", os.path.join(tmp, "o.npy"), "--attention-map",
                        os.path.join(tmp, "enc.svg")], 1, "only MultiheadAttention"),
]
if os.path.islink(full):
    # A disk that is full when the picture is written, after training.
    cases.append(("clattn-train", train + ["--plot", full], 1, "No space left on device"))
for tool, args, want, fragment in cases:
    rc, _, err = run(tool, args)
    check(rc == want and fragment in err, f"{tool} {' '.join(args[-2:])}: exit {rc} (want {want}), "
          f"stderr {err.strip()[-300:]!r} lacks {fragment!r}")
check(not os.path.exists(os.path.join(tmp, "enc.svg")), "a failed run left a picture behind")

shutil.rmtree(tmp, ignore_errors=True)
print(f"test_plots: {checks} checks, {failed} failed")
sys.exit(1 if failed else 0)
