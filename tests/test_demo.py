"""The README's demo path: the sample pair resolves through the registry and stylizes."""
from PIL import Image

from stylize.cli import main


def test_demo_resolves_sample_pair_and_writes(tmp_path, capsys):
    out = tmp_path / "demo.jpg"
    try:
        main(["demo", "-o", str(out), "--res", "256"])
    except SystemExit as e:
        assert e.code in (0, None)
    im = Image.open(out)
    assert im.size == (256, 144) and im.mode == "RGB"
    assert "wrote" in capsys.readouterr().out
