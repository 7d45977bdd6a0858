"""Ships the weights registry (``weights.toml``, kept at the repository root where people look
for it) inside the package as ``stylize/models/weights.toml``; everything else is in pyproject."""
import shutil
from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py


class BuildWithRegistry(build_py):
    def run(self):
        super().run()
        target = Path(self.build_lib) / "stylize" / "models" / "weights.toml"
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(Path(__file__).parent / "weights.toml", target)


setup(cmdclass={"build_py": BuildWithRegistry})
