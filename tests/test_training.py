"""The training module on tiny synthetic images with the real teacher weights (CPU, seconds).

What must hold: every trainer lowers its loss; a resumed run continues the exact curve; a
checkpoint is an engine model (alone or merged); the folded embedding is exact; pruning
keeps the teacher's strongest channels; user mistakes are one line, never a traceback.
"""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image
from typer.testing import CliRunner

from stylize.api import stylize
from stylize.settings import Settings
from stylize.models.training import RandomCrops, TrainConfig, fit
from stylize.models.training.checkpoint import merge_models
from stylize.models.training.cli import app
from stylize.models.training.losses import content_relation_loss
from stylize.models.training.prune import scale_widths
from stylize.models.training.trainers import EncoderDistiller, relu_taps, tap_features
from stylize.models.zoo import CHECKPOINT_FORMAT, get_family, load_levels

TINY = dict(batch_size=2, crop=32, device="cpu", save_every=1000)


def mean(history, key, part):
    values = [h[key] for h in history]
    return float(np.mean(values[:5] if part == "first" else values[-5:]))


@pytest.fixture(scope="module")
def images(tmp_path_factory):
    """Four small textured images of different sizes (one smaller than the crop's resize)."""
    folder = tmp_path_factory.mktemp("images")
    rng = np.random.default_rng(0)
    for i, (h, w) in enumerate([(48, 64), (64, 40), (56, 56), (30, 72)]):
        y, x = np.mgrid[0:h, 0:w]
        rgb = np.stack([128 + 90 * np.sin(x / (4 + i)), 128 + 90 * np.cos(y / (6 - i)), (x * y * (i + 1)) % 255], -1)
        rgb = np.clip(rgb + rng.normal(0, 12, rgb.shape), 0, 255).astype(np.uint8)
        Image.fromarray(rgb).save(folder / f"img{i}.{'png' if i % 2 else 'jpg'}")
    return folder


def _loss_drop(history) -> str:
    return (f"total loss, mean of the first vs the last steps: {mean(history, 'total', 'first'):.4g} -> "
            f"{mean(history, 'total', 'last'):.4g}")


@pytest.fixture(scope="module")
def encoder_run(images, tmp_path_factory):
    path = tmp_path_factory.mktemp("enc") / "enc2.pt"
    history = fit("encoder", images, path, TrainConfig(steps=30, **TINY), level=2, teacher="vgg19")
    return path, history


def test_random_crops_are_a_function_of_seed_and_step(images):
    a, b = RandomCrops.from_folder(images, 32, seed=3), RandomCrops.from_folder(images, 32, seed=3)
    x = a.batch(7, 4)
    assert x.shape == (4, 3, 32, 32) and x.dtype == torch.float32 and 0 <= x.min() and x.max() <= 1
    assert torch.equal(x, b.batch(7, 4))
    assert not torch.equal(x, a.batch(8, 4))
    assert not torch.equal(x, a.batch(7, 4, stream=1))


def test_encoder_distillation_lowers_its_loss(encoder_run, measured):
    _, history = encoder_run
    measured(_loss_drop(history))
    assert set(history[0]) == {"step", "embedding", "pixel", "perceptual", "total", "seconds"}
    assert mean(history, "total", "last") < 0.8 * mean(history, "total", "first")
    assert mean(history, "embedding", "last") < mean(history, "embedding", "first")


def test_decoder_trainer_lowers_its_loss(images, tmp_path, measured):
    history = fit("decoder", images, tmp_path / "dec.pt", TrainConfig(steps=30, lr=1e-3, **TINY),
                  level=2, teacher="vgg19")
    measured(_loss_drop(history))
    assert mean(history, "total", "last") < 0.5 * mean(history, "total", "first")


def test_small_decoder_trainer_lowers_its_loss(images, encoder_run, tmp_path, measured):
    path = tmp_path / "small2.pt"
    history = fit("small-decoder", images, path, TrainConfig(steps=30, **TINY), level=2, encoder=str(encoder_run[0]))
    measured(_loss_drop(history))
    assert mean(history, "total", "last") < 0.8 * mean(history, "total", "first")
    assert torch.load(path, weights_only=True)["training"]["meta"]["weights"] == {"pixel": 1.0, "perceptual": 0.01}
    family = get_family(str(path))
    assert family.decoder_widths is None and family.widths.blocks[:2] == (16, 32)


def test_resume_continues_the_same_curve(images, tmp_path):
    """8 steps in one go == 4 steps, then --resume to 8: same losses, same weights, one log."""
    runner = CliRunner()
    common = ["--data", str(images), "--level", "1", "--crop", "32", "--batch-size", "2", "--device", "cpu",
              "--lr", "3e-4", "-q"]
    whole, half = tmp_path / "whole.pt", tmp_path / "half.pt"
    assert runner.invoke(app, ["encoder", *common, "--steps", "8", "-o", str(whole)]).exit_code == 0
    assert runner.invoke(app, ["encoder", *common, "--steps", "4", "-o", str(half)]).exit_code == 0
    result = runner.invoke(app, ["encoder", *common, "--steps", "8", "-o", str(half), "--resume"])
    assert result.exit_code == 0, result.output
    a = torch.load(whole, weights_only=True)["training"]
    b = torch.load(half, weights_only=True)["training"]
    key = ["embedding", "pixel", "perceptual", "total"]
    assert [[h[k] for k in key] for h in a["history"]] == [[h[k] for k in key] for h in b["history"]]
    for name, tensor in a["modules"].items():
        assert torch.equal(tensor, b["modules"][name]), name
    logged = [json.loads(line) for line in open(half.with_suffix(".log.jsonl"))]
    assert [h["step"] for h in logged] == list(range(1, 9))
    assert half.with_suffix(".loss.png").stat().st_size > 0


def test_checkpoints_are_engine_models_alone_and_merged(images, encoder_run, tmp_path):
    level1 = tmp_path / "enc1.pt"
    fit("encoder", images, level1, TrainConfig(steps=2, **TINY), level=1, teacher="vgg19")
    merged = tmp_path / "student.pt"
    merge_models([level1, encoder_run[0]], merged)
    assert "training" not in torch.load(merged, weights_only=True)
    rng = np.random.default_rng(1)
    content, style = rng.random((3, 40, 48), dtype=np.float32), rng.random((3, 36, 36), dtype=np.float32)
    out = stylize(content, style, Settings(model=str(merged), levels=(2, 1), device="cpu")).image
    assert out.shape == content.shape and np.isfinite(out).all()
    assert out.std() > 0.01 and not np.allclose(out, content, atol=0.02)


def test_folded_embedding_is_exact():
    """The stylizing model (student encoder, Q folded into the teacher decoder) equals the
    training-time path teacher_decoder(Q(student(x)))."""
    family = get_family("vgg19")
    task = EncoderDistiller(family, load_levels("vgg19", (2,))[2], width_ratio=0.25)
    torch.manual_seed(0)
    for q in task.embeddings:
        torch.nn.init.normal_(q.weight, std=0.3)
        torch.nn.init.normal_(q.bias, std=0.3)
    spec, levels = task.export()
    module = get_family_module(spec, levels, 2)
    x = torch.rand(1, 3, 24, 32)
    with torch.no_grad():
        expected = task.teacher.decoder(task.embeddings[-1](task.student.encoder(x)))
        got = module.decode(module.encode(x))
    torch.testing.assert_close(got, expected, rtol=1e-4, atol=1e-4)


def get_family_module(spec, levels, level):
    from stylize.models.zoo import family_from_checkpoint

    family = family_from_checkpoint({"format": CHECKPOINT_FORMAT, "family": spec, "levels": levels}, "memory")
    module = family.build(level)
    for part in ("encoder", "decoder"):
        module.load_named(part, levels[level][part])
    return module


def test_pruned_student_keeps_the_strongest_teacher_channels():
    teacher = load_levels("vgg19", (1,))[1]
    task = EncoderDistiller(get_family("vgg19"), teacher, width_ratio=0.25)
    assert task.widths.blocks == (16, 32, 64, 128, 128)
    assert scale_widths(get_family("cd16x").widths, 0.5).first == 12
    x = torch.rand(2, 3, 20, 20)
    with torch.no_grad():
        t = tap_features(teacher.encoder, relu_taps(teacher), x)[0]
        s = tap_features(task.student.encoder, relu_taps(task.student), x)[0]
    norms = teacher.encoder[teacher.enc_index["conv11"]].weight.abs().flatten(1).sum(1)
    kept = torch.topk(norms, 16).indices.sort().values
    torch.testing.assert_close(s, t[:, kept])


def test_content_relation_loss_sees_structure_not_scale(images):
    x = RandomCrops.from_folder(images, 32).batch(0, 2)
    assert content_relation_loss(x, x).item() == pytest.approx(0.0, abs=1e-6)
    assert content_relation_loss(0.5 * x, x).item() == pytest.approx(0.0, abs=1e-5)
    assert content_relation_loss(x.flip(-1), x).item() > 1e-3


def test_relation_term_is_off_by_default_and_trains_when_on(images, tmp_path):
    history = fit("decoder", images, tmp_path / "crd.pt", TrainConfig(steps=2, **TINY), level=1, crd=0.5)
    assert "relation" in history[0] and np.isfinite(history[-1]["relation"])


@pytest.mark.parametrize("args, message", [
    (["--data", "{missing}", "--level", "1"], "data folder not found"),
    (["--data", "{empty}", "--level", "1"], "no images"),
    (["--data", "{images}", "--level", "0"], "level must be 1..5"),
    (["--data", "{images}", "--level", "4"], "vgg19-wct/enc4.pth"),
])
def test_bad_input_is_one_line_and_nonzero(images, tmp_path, monkeypatch, args, message):
    monkeypatch.setenv("STYLIZE_CACHE", str(tmp_path / "cache"))
    (tmp_path / "empty").mkdir()
    paths = {"missing": tmp_path / "nope", "empty": tmp_path / "empty", "images": images}
    args = [a.format(**paths) for a in args]
    result = CliRunner().invoke(app, ["decoder", *args, "--steps", "1", "-o", str(tmp_path / "x.pt")])
    assert result.exit_code == 2
    assert message in result.output and "Traceback" not in result.output
    assert result.output.strip().count("\n") == 0


def test_a_resumed_run_keeps_its_teacher_and_a_different_one_is_one_line(images, tmp_path):
    """Resuming used to take the default teacher (vgg19) whatever the run had been started
    with: a run started against cd16x carried on against vgg19's decoder in silence (equal
    widths) or failed on a state dict (different ones)."""
    runner = CliRunner()
    common = ["--data", str(images), "--level", "1", "--crop", "32", "--batch-size", "2", "--device", "cpu", "-q"]
    run = tmp_path / "run.pt"
    assert runner.invoke(app, ["decoder", *common, "--teacher", "cd16x", "--steps", "2", "-o", str(run)]).exit_code == 0
    result = runner.invoke(app, ["decoder", *common, "--steps", "3", "-o", str(run), "--resume"])
    assert result.exit_code == 0, result.output
    training = torch.load(run, weights_only=True)["training"]
    assert training["meta"]["teacher"] == "cd16x" and training["step"] == 3
    result = runner.invoke(app, ["decoder", *common, "--teacher", "vgg19", "--steps", "4", "-o", str(run), "--resume"])
    assert result.exit_code == 2 and "Traceback" not in result.output
    assert "was trained with --teacher cd16x, not vgg19" in result.output
    assert torch.load(run, weights_only=True)["training"]["step"] == 3


def test_an_output_folder_is_refused_before_training(images, tmp_path, monkeypatch):
    """``-o`` naming a folder trained every step, then failed to save with a traceback and
    left a partial file and a log beside it."""
    import stylize.models.training.recipes as recipes

    monkeypatch.setattr(recipes, "train", lambda *a, **k: pytest.fail("trained"))
    (tmp_path / "out").mkdir()
    result = CliRunner().invoke(app, ["decoder", "--data", str(images), "--level", "1", "--steps", "2",
                                      "-o", str(tmp_path / "out")])
    assert result.exit_code == 2 and "is a folder: -o takes the checkpoint file" in result.output
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]


def test_sixteen_bit_and_oversized_training_images(tmp_path):
    """A 16-bit grey ramp is a ramp (convert("RGB") had clipped it: 99 % white), and a PNG whose
    header claims 20000x20000 is one DataError line, not Pillow's DecompressionBombError."""
    from stylize.models.training import DataError

    ramp = np.linspace(0, 65535, 64 * 256).reshape(64, 256).astype(np.uint16)
    Image.fromarray(ramp).save(tmp_path / "ramp.png")
    got = RandomCrops([tmp_path / "ramp.png"], 16, resize=64).image(0)[..., 0].astype(int)
    want = np.round(ramp / 257.0).astype(int)
    assert np.abs(got - want).max() <= 1
    header = b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\x00\x00N \x00\x00N \x08\x02\x00\x00\x00l\x12\xd1n"
    (tmp_path / "big.png").write_bytes(header + b"\x00\x00\x00\x00IEND\xaeB`\x82")
    with pytest.raises(DataError, match="cannot read training image .*big.png: Image size"):
        RandomCrops([tmp_path / "big.png"], 16).image(0)


def test_training_never_writes_over_its_inputs_and_checks_every_image_first(images, tmp_path, monkeypatch):
    """`-o tdata/a.jpg` trained and wrote a checkpoint over a training photo (its curve became
    a training image), merge wrote over its own input, and a broken file in --data stopped a
    run at the step that first sampled it. All are one line before any step now."""
    import shutil

    import stylize.models.training.recipes as recipes

    monkeypatch.setattr(recipes, "train", lambda *a, **k: pytest.fail("trained"))
    data = tmp_path / "data"
    shutil.copytree(images, data)
    runner = CliRunner()
    common = ["--data", str(data), "--level", "1", "--steps", "2"]
    for out, message in [(data / "img0.jpg", "a checkpoint is a .pt or .pth file"),
                         (data / "new.pt", "is inside the data folder"),
                         (tmp_path / "photo.jpg", "a checkpoint is a .pt or .pth file")]:
        result = runner.invoke(app, ["decoder", *common, "-o", str(out)])
        assert result.exit_code == 2 and message in result.output, result.output
    (data / "zz_notes.jpg").write_text("not an image")
    result = runner.invoke(app, ["decoder", *common, "-o", str(tmp_path / "d.pt")])
    assert result.exit_code == 2 and "cannot read training image" in result.output and "zz_notes.jpg" in result.output
    ckpt = tmp_path / "m.pt"
    ckpt.write_bytes(b"x")
    result = runner.invoke(app, ["merge", str(ckpt), "-o", str(ckpt)])
    assert result.exit_code == 2 and "is one of the checkpoints to merge" in result.output
    assert ckpt.read_bytes() == b"x"


def test_a_fresh_run_over_a_checkpoint_keeps_its_log_until_it_saves(images, tmp_path, monkeypatch):
    """A new run with ``-o`` onto an earlier checkpoint emptied that checkpoint's log at its
    start: stopped before its first save, it left the old checkpoint with a log of other steps."""
    import stylize.models.training.trainers as trainers

    run = tmp_path / "run.pt"
    fit("decoder", images, run, TrainConfig(steps=3, **TINY), level=1, teacher="vgg19")
    before = run.with_suffix(".log.jsonl").read_text()
    assert [json.loads(line)["step"] for line in before.splitlines()] == [1, 2, 3]
    calls = []
    real = trainers.DecoderTrainer.losses

    def stopped(self, batch):  # a crash (or Ctrl-C) at the second step, before any save
        calls.append(1)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return real(self, batch)

    monkeypatch.setattr(trainers.DecoderTrainer, "losses", stopped)
    with pytest.raises(KeyboardInterrupt):
        fit("decoder", images, run, TrainConfig(steps=5, **TINY), level=1, teacher="vgg19")
    assert run.with_suffix(".log.jsonl").read_text() == before
    assert torch.load(run, weights_only=True)["training"]["step"] == 3
    monkeypatch.setattr(trainers.DecoderTrainer, "losses", real)
    fit("decoder", images, run, TrainConfig(steps=2, **dict(TINY, save_every=1)), level=1, teacher="vgg19")
    logged = [json.loads(line) for line in run.with_suffix(".log.jsonl").read_text().splitlines()]
    assert [h["step"] for h in logged] == [1, 2]  # the new run's own log once it saved
