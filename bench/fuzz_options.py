"""Random option combinations through the real ``stylize`` command: each run ends with a
readable output of the asked size, or as one ``error:`` line and exit code 2 with nothing
written. Anything else (a traceback, another exit code, a wrong size, a leftover temporary
file) is a bug.

    python -m stylize.bench.fuzz_options --cases 200 --seed 1           # any values
    python -m stylize.bench.fuzz_options --cases 200 --seed 1 --valid    # values that must work, together

Inputs are made here: a small 4:3 photo and three styles, label, grey and soft masks, one of
another aspect. Each case picks one to three styles and up to six options, fully determined
by ``(seed, case number)``; a case's command line is printed when it fails, to run alone.
The file-format fuzz is :mod:`stylize.bench.fuzz`.
"""
from __future__ import annotations

import argparse
import os
import random
import subprocess
import sys
import tempfile
import warnings
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
from PIL import Image

from stylize.imageio import parse_resolution

from .fuzz_corpus import picture

# Values a user could type, wrong ones among them; VALID keeps those that must work.
VALID = {
    "--res": ["200", "97", "1", "15", "2k", "333"], "--alpha": ["0", "0.5", "1"],
    "--levels": ["5,4,3,2,1", "3", "1,2,3", " 4 , 2", "5", "1"], "--transform": ["wct", "adain"],
    "--stroke-scale": ["auto", "native", "2", "1", "100", "1.5"], "--preserve-color": ["off", "luminance", "style"],
    "--mask": ["labels.png", "grey.png", "soft.png"], "--style-res": ["64", "8", "3", "17"],
    "--tile": ["16", "64", "100", "17", "33", "4096"], "--max-memory": ["2G", "8G", "500M", "1.5G", "600M"],
    "--store": ["auto", "ram", "disk"], "--quality": ["1", "100", "50"], "--bits": ["8", "16"],
    "--device": ["auto", "cpu"], "--backend": ["torch", "onnxruntime"],
}
WRONG = {
    "--res": ["0", "-5", "abc", "1e3", "", "16K"], "--alpha": ["1.5", "-0.1", "nan", "inf", "x"],
    "--levels": ["1,1", "6", "", "0", "5,,4", "a"], "--transform": ["WCT", "foo"],
    "--stroke-scale": ["0.5", "0", "nan", "inf", "x"], "--preserve-color": ["bad", "LUMINANCE"],
    "--style-weights": ["0.7,0.3", "1", "-1,2", "0,0", "nan,1", "1,1,1", "inf,1", "1e308,1e308"],
    "--mask": ["narrow.png", "missing.png", "style1.png"], "--style-res": ["0", "100000", "abc"],
    "--tile": ["0", "1", "-1"], "--max-memory": ["0", "1K", "abc", "-1G", "50M", "1T"], "--store": ["x"],
    "--max-pixels": ["10", "1000", "19200", "0", "-1"], "--quality": ["0", "101"], "--bits": ["12"],
    "--device": ["cuda", "cuda:1", "gpu"], "--backend": ["tensorrt", "x"], "--model": ["vgg19", "missing.pt"],
    "--half": [None], "--scratch": ["scratch", "missing", "photo.jpg"],
}
EXTENSIONS = {True: ["tif", "png", "jpg"], False: ["png", "jpg", "tif", "tiff", "jpeg", "webp", "bmp", "", "PNG"]}
SIZE = (160, 120)  # the photo's


def make_inputs(folder: Path) -> None:
    """The photo, three styles and the masks, small so that a case takes about a second."""
    Image.fromarray(picture(*SIZE)).save(folder / "photo.jpg")
    for i, (w, h) in enumerate([(128, 96), (100, 100), (90, 120)], 1):
        Image.fromarray(np.roll(picture(w, h), i, axis=-1)).save(folder / f"style{i}.png")
    labels = np.zeros((SIZE[1], SIZE[0], 3), np.uint8)
    labels[:, SIZE[0] // 2:] = 255
    labels[:40, :40] = 128
    Image.fromarray(labels).save(folder / "labels.png")
    Image.fromarray(labels[..., 0]).save(folder / "grey.png")
    Image.fromarray(np.tile(np.linspace(0, 255, SIZE[0]).astype(np.uint8), (SIZE[1], 1))).save(folder / "soft.png")
    Image.fromarray(labels[:60, :60]).save(folder / "narrow.png")
    (folder / "scratch").mkdir()
    (folder / "out").mkdir()


def case(seed: int, number: int, valid: bool) -> list[str]:
    """Case ``number`` of run ``seed``: the arguments after ``stylize``."""
    r = random.Random(f"{seed}:{number}:{valid}")
    styles = r.sample(["style1.png", "style2.png", "style3.png"], r.choice([1, 1, 1, 2, 3]))
    args = ["photo.jpg", *styles, "-o", f"out/{number}.{r.choice(EXTENSIONS[valid])}".rstrip("."), "-q"]
    table = VALID if valid else {k: VALID.get(k, []) + WRONG.get(k, []) for k in {**VALID, **WRONG}}
    for option in r.sample(sorted(table), r.randint(0, 6)):
        values = table[option]
        if valid and option == "--mask":  # 3 labels paint 2 or 3 styles; a soft mask blends 1 or 2
            values = [m for m in values if (m != "labels.png" or len(styles) > 1) and (m != "soft.png" or len(styles) < 3)]
        value = r.choice(values)
        args += [option] if value is None else [option, value]
    if valid and "--bits" in args and args[args.index("--bits") + 1] == "16":
        at = args.index("-o") + 1
        args[at] = args[at].rsplit(".", 1)[0] + ".tif"  # 16 bits are written to TIFF only
    return args


def long_side(args: list[str]) -> int:
    if "--res" not in args:
        return max(SIZE)
    return parse_resolution(args[args.index("--res") + 1])


def check(args: list[str], code: int, stderr: str, folder: Path, valid: bool = False) -> str:
    """'ok', 'refused', or what went wrong (with ``valid``, a refusal too)."""
    out = folder / args[args.index("-o") + 1]
    # This case's own partial files only: another worker may be writing its output right now.
    leftovers = [p.name for p in (folder / "out").iterdir() if p.name.startswith(f".{out.name}.")]
    if leftovers:
        return f"left {leftovers}"
    if code == 2:
        lines = stderr.strip().splitlines()
        if len(lines) != 1 or not lines[0].startswith("error: ") or "Traceback" in stderr:
            return "not one error line"
        if out.exists():
            return "wrote an output"
        return "refused valid values" if valid else "refused"
    if code != 0:
        return f"exit {code}"
    if not out.exists():
        return "no output"
    with warnings.catch_warnings():  # a 16K output is this run's own, not a decompression bomb
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)
        with Image.open(out) as im:
            w, h = im.size
    if max(w, h) != long_side(args) or w < h:
        return f"output {w}x{h}"
    return "ok"


def run(cases: int, seed: int = 1, valid: bool = False, workers: int = 2, first: int = 0,
        report=print) -> Counter:
    """Run cases ``first .. first + cases - 1``; report each bad one; the outcomes counted."""
    outcomes: Counter = Counter()
    with tempfile.TemporaryDirectory(prefix="stylize-fuzz-options-") as tmp:
        folder = Path(tmp)
        make_inputs(folder)
        env = {**os.environ, "STYLIZE_SCRATCH": str(folder / "scratch")}

        def one(number: int) -> tuple[list[str], str, str]:
            args = case(seed, number, valid)
            p = subprocess.run([sys.executable, "-m", "stylize.cli", *args], cwd=folder, env=env,
                               capture_output=True, text=True, timeout=600)
            return args, check(args, p.returncode, p.stderr, folder, valid), p.stderr.strip()

        with ThreadPoolExecutor(workers) as pool:
            for args, outcome, stderr in pool.map(one, range(first, first + cases)):
                outcomes[outcome] += 1
                if outcome not in ("ok", "refused"):
                    report(f"{outcome}: stylize {' '.join(repr(a) if not a or ' ' in a else a for a in args)}\n"
                           f"{stderr[-2000:]}")
    return outcomes


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m stylize.bench.fuzz_options", description=__doc__.split("\n\n")[0])
    ap.add_argument("--cases", type=int, default=200)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--first", type=int, default=0, help="first case number (replay one with --cases 1)")
    ap.add_argument("--valid", action="store_true", help="only values that must work")
    ap.add_argument("--workers", type=int, default=2)
    a = ap.parse_args(argv)
    outcomes = run(a.cases, a.seed, a.valid, a.workers, a.first)
    print(f"{a.cases} cases (seed {a.seed}{', valid values' if a.valid else ''}): "
          + "  ".join(f"{k} {v}" for k, v in sorted(outcomes.items())))
    return 0 if set(outcomes) <= {"ok", "refused"} else 1


if __name__ == "__main__":
    sys.exit(main())
