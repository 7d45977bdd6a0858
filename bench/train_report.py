"""Real training runs of the training module, and what the students are worth.

    python -m stylize.bench.train_report train OUT     # distil (about 12 minutes on a 2-core CPU)
    python -m stylize.bench.train_report evaluate OUT  # PSNR, size, speed, stylizations -> OUT/report.json

``train`` runs two students on crops of ``../shared/images`` (a few images held out):

1. the original WCT (vgg19, levels 1-3) distilled to 1/4 width: encoder by collaborative
   distillation with the frozen teacher decoder, then a small decoder; merged into one model;
2. the 16x model distilled further to 1/8 of VGG width (half of cd16x) at one level.

``evaluate`` measures, on the held-out photos, reconstruction PSNR of decode(encode(x))
against x for teachers and students (at their pruned initialisation too), parameters,
bytes, CPU milliseconds per 512x512 encode+decode, and stylizes one held-out pair with the
teacher and with the student (3 levels for vgg19, level 3 alone for the 16x pair).
"""
from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from stylize.api import stylize
from stylize.bench.measure import psnr_db
from stylize.models.training import RandomCrops, TrainConfig, fit, list_images, make_task, merge_models
from stylize.models.training.loop import curve_path, write_curve
from stylize.models.zoo import load_levels
from stylize.settings import Settings

ROOT = Path(__file__).resolve().parent.parent

SHARED = Path(os.environ.get("STYLIZE_SHARED", ROOT.parent / "shared")).resolve()
HELD_OUT = ["content/golden_gate.jpg", "content/lenna.jpg", "content/sailboat.jpg", "style/woman_with_hat_matisse.jpg"]
PAIR = ("content/golden_gate.jpg", "style/woman_with_hat_matisse.jpg")
VGG_STEPS = {1: 300, 2: 200, 3: 200}
CD16X_LEVEL, CD16X_STEPS = 3, 300
CONFIG = dict(batch_size=4, crop=128, lr=2e-4, seed=0, device="auto", save_every=100)


def training_data() -> RandomCrops:
    held = {SHARED / "images" / h for h in HELD_OUT}
    files = [f for f in list_images(SHARED / "images") if f not in held]
    return RandomCrops(files, CONFIG["crop"], seed=CONFIG["seed"])


def train_all(out: Path) -> None:
    data = training_data()
    print(f"{len(data.files)} training images, held out: {', '.join(HELD_OUT)}", flush=True)
    runs = [("vgg19", k, 0.25, steps) for k, steps in VGG_STEPS.items()] + [("cd16x", CD16X_LEVEL, 0.5, CD16X_STEPS)]
    for teacher, level, ratio, steps in runs:
        enc, dec = out / f"{teacher}_enc{level}.pt", out / f"{teacher}_small{level}.pt"
        for kind, path, options in [("encoder", enc, dict(teacher=teacher, width_ratio=ratio)),
                                    ("small-decoder", dec, dict(encoder=str(enc), teacher=teacher))]:
            t0 = time.perf_counter()
            config = TrainConfig(steps=steps, **CONFIG)
            history = fit(kind, data, path, config, resume=path.is_file(), level=level,
                          log=lambda s, p=path.name: print(f"[{p}] {s}", flush=True), **options)
            print(f"[{path.name}] done: loss {history[0]['total']:.4g} -> {history[-1]['total']:.4g} "
                  f"in {time.perf_counter() - t0:.0f}s", flush=True)
    merge_models([out / f"vgg19_small{k}.pt" for k in VGG_STEPS], out / "vgg19_quarter.pt")
    merge_models([out / f"vgg19_enc{k}.pt" for k in VGG_STEPS], out / "vgg19_quarter_encoders.pt")


# ----------------------------------------------------------------------------------- evaluation
def load_image(rel: str, long_side: int = 512) -> np.ndarray:
    """(3, H, W) float32, long side ``long_side``, sides multiples of 16."""
    with Image.open(SHARED / "images" / rel) as im:
        im = im.convert("RGB")
        s = long_side / max(im.size)
        size = tuple(max(16, round(v * s / 16) * 16) for v in im.size)
        return np.asarray(im.resize(size, Image.BICUBIC), dtype=np.float32).transpose(2, 0, 1) / 255


def save_image(chw: np.ndarray, path: Path) -> None:
    Image.fromarray(np.round(np.clip(chw, 0, 1) * 255).astype(np.uint8).transpose(1, 2, 0)).save(path)


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    return psnr_db(*(np.round(np.clip(v, 0, 1) * 255) for v in (a, b)))


@torch.no_grad()
def reconstruction_psnr(module, images: list[np.ndarray]) -> float:
    """Mean PSNR of decode(encode(x)) against x over the held-out photos."""
    module = module.eval()
    scores = [psnr(module.decode(module.encode(torch.from_numpy(x)[None]))[0].numpy(), x) for x in images]
    return round(float(np.mean(scores)), 2)


def size_of(module) -> dict:
    n = sum(p.numel() for p in module.parameters())
    return {"parameters": n, "bytes_fp32": 4 * n}


@torch.no_grad()
def ms_per_image(module, side: int = 512, repeats: int = 7) -> float:
    """Fastest of ``repeats`` CPU timings (ms) of encode+decode of one side x side image: the
    minimum is the figure least disturbed by other work on a shared machine."""
    x = torch.rand(1, 3, side, side)
    module.decode(module.encode(x))
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        module.decode(module.encode(x))
        times.append(time.perf_counter() - t)
    return round(1000 * min(times), 1)


def initial_student(teacher: str, level: int, ratio: float, data: RandomCrops):
    """The student before training (pruned, Q fitted on the calibration batch), as a model."""
    from stylize.models.zoo import family_from_checkpoint

    task = make_task("encoder", level=level, teacher=teacher, width_ratio=ratio)
    task.initialise(data.batch(0, CONFIG["batch_size"], stream=1))
    spec, levels = task.export()
    module = family_from_checkpoint({"family": spec, "levels": levels}, "init").build(level)
    for part in ("encoder", "decoder"):
        module.load_named(part, levels[level][part])
    return module


def level_row(teacher_module, enc_module, small_module, init_module, images) -> dict:
    return {
        "psnr_db": {"teacher": reconstruction_psnr(teacher_module, images),
                    "student_pruned_init": reconstruction_psnr(init_module, images),
                    "student_encoder_with_teacher_decoder": reconstruction_psnr(enc_module, images),
                    "student_encoder_with_small_decoder": reconstruction_psnr(small_module, images)},
        "size": {"teacher": size_of(teacher_module), "student": size_of(small_module)},
        "ms_per_512px": {"teacher": ms_per_image(teacher_module), "student": ms_per_image(small_module)},
    }


def side_by_side(images: list[np.ndarray], path: Path) -> None:
    h = max(x.shape[1] for x in images)
    canvas = np.ones((3, h, sum(x.shape[2] for x in images) + 8 * (len(images) - 1)), np.float32)
    x0 = 0
    for x in images:
        canvas[:, : x.shape[1], x0:x0 + x.shape[2]] = x
        x0 += x.shape[2] + 8
    save_image(canvas, path)


def evaluate(out: Path) -> dict:
    data = training_data()
    images = [load_image(h) for h in HELD_OUT[:3]]
    report: dict = {"held_out": HELD_OUT[:3], "threads": torch.get_num_threads(), "vgg19_quarter": {}}
    for k in VGG_STEPS:
        teacher = load_levels("vgg19", (k,))[k]
        enc = load_levels(str(out / f"vgg19_enc{k}.pt"), (k,))[k]
        small = load_levels(str(out / "vgg19_quarter.pt"), (k,))[k]
        report["vgg19_quarter"][f"level{k}"] = level_row(teacher, enc, small, initial_student("vgg19", k, 0.25, data),
                                                         images)
        print(k, report["vgg19_quarter"][f"level{k}"], flush=True)
    k = CD16X_LEVEL
    teacher = load_levels("cd16x", (k,))[k]
    enc = load_levels(str(out / f"cd16x_enc{k}.pt"), (k,))[k]
    small = load_levels(str(out / f"cd16x_small{k}.pt"), (k,))[k]
    report["cd16x_eighth"] = {f"level{k}": level_row(teacher, enc, small, initial_student("cd16x", k, 0.5, data),
                                                     images)}
    print(report["cd16x_eighth"], flush=True)

    content, style = load_image(PAIR[0]), load_image(PAIR[1])
    shots = {}
    for name, model, levels in [("vgg19_teacher_L321", "vgg19", (3, 2, 1)),
                                ("vgg19_quarter_student_L321", str(out / "vgg19_quarter.pt"), (3, 2, 1)),
                                ("cd16x_L3", "cd16x", (3,)),
                                ("cd16x_eighth_student_L3", str(out / f"cd16x_small{k}.pt"), (3,))]:
        shots[name] = stylize(content.copy(), style, Settings(model=model, levels=levels, device="cpu")).image
        save_image(shots[name], out / f"{name}.png")
    side_by_side([content, style, shots["vgg19_teacher_L321"], shots["vgg19_quarter_student_L321"]],
                 out / "compare_vgg19_teacher_vs_quarter_student.png")
    side_by_side([content, style, shots["cd16x_L3"], shots["cd16x_eighth_student_L3"]],
                 out / "compare_cd16x_vs_eighth_student_L3.png")
    report["stylization_psnr_student_vs_teacher_db"] = {
        "vgg19_L321": round(psnr(shots["vgg19_quarter_student_L321"], shots["vgg19_teacher_L321"]), 2),
        "cd16x_L3": round(psnr(shots["cd16x_eighth_student_L3"], shots["cd16x_L3"]), 2)}
    report["files"] = {p.name: p.stat().st_size for p in sorted(out.glob("*.pt"))}
    report["training"] = {}
    for path in sorted(out.glob("*.pt")):  # redraw every curve with the current plotting
        training = torch.load(path, weights_only=True).get("training")
        if training:
            history = training["history"]
            write_curve(history, curve_path(path), f"{training['task']} level {training['meta']['level']}: {path.name}")
            report["training"][path.name] = {"steps": training["step"], "seconds": history[-1]["seconds"],
                                             "first_total": history[0]["total"], "last_total": history[-1]["total"],
                                             "mean_total_first_20": float(np.mean([h["total"] for h in history[:20]])),
                                             "mean_total_last_20": float(np.mean([h["total"] for h in history[-20:]]))}
    (out / "report.json").write_text(json.dumps(report, indent=2))
    return report


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("phase", choices=["train", "evaluate"])
    parser.add_argument("out", type=Path, help="output folder (e.g. out/train_report)")
    args = parser.parse_args()
    os.environ.setdefault("STYLIZE_WEIGHTS_PATH", str(SHARED / "weights"))
    args.out.mkdir(parents=True, exist_ok=True)
    if args.phase == "train":
        train_all(args.out)
    else:
        print(json.dumps(evaluate(args.out), indent=2))


if __name__ == "__main__":
    main()
