#!/usr/bin/env python3
"""The request bodies scripts/bench sends that are not one short string,
each written to a file (wrk's lua_file reads it): deterministic (fixed seeds),
so every run and every build sends the same bytes.
Usage: bodies.py SUBCOMMAND OUT [ARGS...] (the functions named at the end).
"""

import json
import random
import struct
import zlib

from cli import run

BOUNDARY = b"------------------------tiffinbench"


def digit_form(out, png_path):
    """A multipart upload of one PNG in the field `image` (boundary BOUNDARY)."""
    png = open(png_path, "rb").read()
    body = (b"--" + BOUNDARY + b'\r\nContent-Disposition: form-data; name="image"; filename="digit.png"\r\n'
            b"Content-Type: image/png\r\n\r\n" + png + b"\r\n--" + BOUNDARY + b"--\r\n")
    open(out, "wb").write(body)


def digit_row(out):
    """One [1, 64] row of pixel values 0..16 as JSON."""
    random.seed(7)
    open(out, "w").write("[[" + ",".join(str(random.randint(0, 16)) for _ in range(64)) + "]]\n")


def predict_from_oip(out, oip_json_path):
    """The /predict body ([[...]] rows of 64) of the rows an Open Inference
    Protocol JSON request carries (e.g. one tritonclient wrote)."""
    tensor = json.load(open(oip_json_path))["inputs"][0]
    data, width = tensor["data"], tensor["shape"][-1]
    rows = [data[i:i + width] for i in range(0, len(data), width)]
    open(out, "w").write(json.dumps(rows))


def noise_png(out):
    """A 256x256 RGB PNG of noise: it barely compresses, about 200 KB."""
    random.seed(12)
    w = h = 256
    raw = b"".join(b"\0" + bytes(random.getrandbits(8) for _ in range(w * 3)) for _ in range(h))

    def chunk(t, d):
        return struct.pack(">I", len(d)) + t + d + struct.pack(">I", zlib.crc32(t + d) & 0xffffffff)

    png = (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0))
           + chunk(b"IDAT", zlib.compress(raw, 9)) + chunk(b"IEND", b""))
    open(out, "wb").write(png)


def iris_rows(out):
    """Rows of 4 numbers with 6 decimals (~38 bytes a row), just under the
    default api_server.http.max_request_size of 20 MiB."""
    limit = 20 * 1024 * 1024 - 64
    rng = random.Random(11)
    parts, size = [], 1
    while True:
        row = "[%.6f,%.6f,%.6f,%.6f]" % (rng.uniform(4, 8), rng.uniform(2, 4.5), rng.uniform(1, 7), rng.uniform(0.1, 2.5))
        if size + len(row) + 1 > limit:
            break
        parts.append(row)
        size += len(row) + 1
    open(out, "w").write("[" + ",".join(parts) + "]")
    print(f"   body: {len(parts)} rows, {size / 1048576:.2f} MiB")


if __name__ == "__main__":
    run(digit_form, digit_row, predict_from_oip, noise_png, iris_rows)
