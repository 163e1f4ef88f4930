"""What the Python tests of the tools share: running a tool, and reading
the files the tools write (float32 .npy without numpy, the JSON metadata
common/plot/ puts into an SVG). Standard library only."""
import json
import re
import struct
import subprocess


def run(*args, timeout=300):
    """(exit status, stdout, stderr) of one command, the outputs as text."""
    p = subprocess.run(list(args), capture_output=True, timeout=timeout)
    return p.returncode, p.stdout.decode("utf-8", "replace"), p.stderr.decode("utf-8", "replace")


def read_npy_f32(path):
    """(shape, floats) of a version 1 float32 .npy file."""
    with open(path, "rb") as f:
        data = f.read()
    assert data[:6] == b"\x93NUMPY", "not a .npy file"
    hlen = struct.unpack("<H", data[8:10])[0]
    header = eval(data[10:10 + hlen].decode("latin1"))  # a Python dict literal
    assert header["descr"] == "<f4" and not header["fortran_order"]
    body = data[10 + hlen:]
    return tuple(header["shape"]), struct.unpack(f"<{len(body) // 4}f", body)


def svg_metadata(path):
    """The JSON object common/plot/ writes into an SVG's <metadata>."""
    text = open(path, encoding="utf-8").read()
    m = re.search(r'<metadata id="clattn">(.*?)</metadata>', text, re.S)
    body = m.group(1).replace("&lt;", "<").replace("&gt;", ">").replace("&amp;", "&")
    return json.loads(body)
