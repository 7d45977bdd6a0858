"""``python -m stylize.bench``: the benchmark suite, the same command as ``stylize bench``."""
from .cli import app

app(prog_name="python -m stylize.bench")
