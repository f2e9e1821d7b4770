"""Peak memory and time of the digit recogniser on a decompression-bomb-like upload.

Builds a small PNG of SIDE x SIDE pixels that is ink everywhere (default 4000 x 4000, about 70 KB),
then, in a fresh process each, posts it to the real Flask app (one request, then PARALLEL at once) and
prints the peak resident memory (ru_maxrss) above the process's baseline and the wall time.

    .venv/bin/python scripts/gui_bomb_bench.py [--side 4000] [--parallel 8]
"""

from __future__ import annotations

import argparse
import io
import json
import resource
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
from PIL import Image


def bomb_png(side: int) -> bytes:
    """An opaque RGBA image on white paper (a one-pixel white frame) that is black ink everywhere inside."""
    img = np.zeros((side, side, 4), np.uint8)
    img[..., 3] = 255
    img[[0, -1], :, :3] = img[:, [0, -1], :3] = 255
    buffer = io.BytesIO()
    Image.fromarray(img).save(buffer, format="PNG", optimize=True)
    return buffer.getvalue()


def child(png: Path, parallel: int) -> None:
    from nnlib import MLPSpec, Network
    from nnstudy.gui.app import create_app
    from nnstudy.gui.models import Choice

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "m.npz"
        Network(MLPSpec(hidden=(16,)), seed=0).save(path)
        app = create_app([Choice("mlp", "test net", path, 0.5, None)])
    client = app.test_client()
    data = png.read_bytes()
    base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss

    def post(_):
        return client.post("/api/predict", data={"image": (io.BytesIO(data), "bomb.png")}).status_code

    start = time.perf_counter()
    with ThreadPoolExecutor(parallel) as pool:
        codes = list(pool.map(post, range(parallel)))
    seconds = time.perf_counter() - start
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    extra = round((peak - base) / 1024)
    print(json.dumps({"parallel": parallel, "seconds": round(seconds, 2), "extra_peak_rss_mb": extra,
                      "peak_rss_mb": round(peak / 1024), "status": sorted(set(codes))}))  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--side", type=int, default=4000)
    parser.add_argument("--parallel", type=int, default=8)
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(Path(args.child), args.parallel)
        return
    with tempfile.TemporaryDirectory() as tmp:
        png = Path(tmp) / "bomb.png"
        png.write_bytes(bomb_png(args.side))
        print(f"{args.side}x{args.side} PNG of {png.stat().st_size / 1024:.0f} KB", flush=True)
        for parallel in (1, args.parallel):
            cmd = [sys.executable, __file__, "--child", str(png), "--parallel", str(parallel)]
            subprocess.run(cmd, check=True)


if __name__ == "__main__":
    main()
