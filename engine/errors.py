"""The one exception type that means "the user asked for something that cannot be done".

Every layer raises subclasses of :class:`UserError` for bad input, settings, files or
hardware requests (``ImageError``, ``WeightsError``, ``SettingsError``, ...). The command line
turns exactly these into one ``error:`` line and exit code 2; anything else is a bug and keeps
its traceback. It lives in the lowest layer so every layer can raise it without importing up.
"""
from __future__ import annotations


class UserError(Exception):
    """A problem the user can fix, stated in one line (the CLI prints it as ``error: ...``)."""
