"""What every ``stylize`` command shares: the settings as options, and how errors are told.

:func:`with_settings` gives a typer command every field of :class:`~stylize.settings.Settings`
as an option, read from the field's own declaration, and hands the command one validated
``settings`` object: ``stylize`` and ``stylize batch`` cannot drift apart, and a new option is
one field. :func:`user_errors` prints a :class:`UserError` as one line (exit 2) and lets
anything else (a bug) keep its traceback, with a line saying it is one.
"""
from __future__ import annotations

import functools
import inspect
import os
import sys
import typing
from contextlib import contextmanager
from dataclasses import MISSING
from typing import Callable, Optional

import typer

from stylize.engine.errors import UserError

from .settings import Settings


def one_line(e: BaseException) -> str:
    """The first line of an error's message (a newline in a file name must not cut it short)."""
    text = str(e).strip()
    return text.replace("\r", " ").replace("\n", " ⏎ ") if text else type(e).__name__


@contextmanager
def user_errors():
    """User mistakes: one line and exit 2. Out of memory: one line with the remedy. A bug: its
    traceback and a line asking for a report. Ctrl-C: exit 130 with nothing written."""
    try:
        yield
    except KeyboardInterrupt:
        typer.echo("interrupted: no output was written", err=True)
        raise typer.Exit(130)
    except UserError as e:
        if os.environ.get("STYLIZE_DEBUG"):
            raise
        typer.echo(f"error: {one_line(e)}", err=True)
        raise typer.Exit(2)
    except MemoryError:
        typer.echo("error: out of memory (lower --max-memory or --tile)", err=True)
        raise typer.Exit(2)
    except RuntimeError as e:  # torch.OutOfMemoryError and allocator failures
        if "out of memory" not in str(e).lower():
            _bug()
            raise
        typer.echo(f"error: {one_line(e)} (lower --max-memory or --tile)", err=True)
        raise typer.Exit(2)
    except (typer.Exit, typer.Abort, SystemExit):
        raise
    except Exception:
        _bug()
        raise


def _bug() -> None:
    print("stylize: internal error (a bug, not a problem with your input); please report it with the "
          "traceback below", file=sys.stderr)


def _option(f, hidden: bool = False) -> inspect.Parameter:
    meta = f.metadata["cli"]
    kind = meta["kind"]
    default = f.default if f.default is not MISSING else None
    if isinstance(default, tuple):
        default = meta.get("default_text", ",".join(map(str, default)))
    annotation = kind if kind is bool or default is not None else Optional[kind]
    option = typer.Option(default, meta["flag"], help=meta["help"], hidden=hidden)
    return inspect.Parameter(f.name, inspect.Parameter.KEYWORD_ONLY, default=option, annotation=annotation)


def with_settings(command: Callable | None = None, *, hidden: tuple[str, ...] = ()) -> Callable:
    """Decorate a typer command whose last parameter is ``settings: Settings``: the command
    gets every settings field as an option and receives them validated, as one object.
    ``hidden`` fields stay accepted (the command says why it refuses them) but out of --help."""
    if command is None:
        return functools.partial(with_settings, hidden=hidden)
    hints = typing.get_type_hints(command)  # the command's own (string) annotations, resolved where it lives
    own = [p.replace(annotation=hints.get(name, p.annotation))
           for name, p in inspect.signature(command).parameters.items() if name != "settings"]
    names = [f.name for f in Settings.options()]

    @functools.wraps(command)
    def wrapper(*args, **kwargs):
        values = {name: kwargs.pop(name) for name in names}
        with user_errors():
            settings = Settings(**values)
        return command(*args, settings=settings, **kwargs)

    params = [p.replace(kind=inspect.Parameter.KEYWORD_ONLY) if p.kind == p.POSITIONAL_OR_KEYWORD else p
              for p in own]
    wrapper.__signature__ = inspect.Signature(params + [_option(f, f.name in hidden) for f in Settings.options()])
    wrapper.__annotations__ = {p.name: p.annotation for p in wrapper.__signature__.parameters.values()}
    del wrapper.__wrapped__
    return wrapper
