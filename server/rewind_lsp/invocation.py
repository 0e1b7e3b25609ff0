"""How to run this installation of rewind-lsp from the user's shell.

Every command rewind-lsp prints or writes into a settings file must run *this* installation:
a `rewind-lsp` found earlier on PATH may be another release or another virtualenv.
"""

from __future__ import annotations

import os
import shlex
import shutil
import sys
from collections.abc import Sequence

NAME = "rewind-lsp"


def _running_script() -> str | None:
    """The absolute path of the `rewind-lsp` entry point script being run, if that is what runs."""
    if not sys.argv or not sys.argv[0]:
        return None
    script = os.path.abspath(sys.argv[0])
    if os.path.basename(script) not in (NAME, f"{NAME}.exe") or not os.path.isfile(script):
        return None
    return script


def _same_file(a: str, b: str) -> bool:
    try:
        return os.path.samefile(a, b)
    except OSError:
        return False


def self_argv() -> list[str]:
    """The argv that starts this installation: the bare name when PATH finds this very script,
    else the script's absolute path, else this interpreter with `-m rewind_lsp`."""
    script = _running_script()
    if script is None:
        return [sys.executable, "-m", "rewind_lsp"]
    on_path = shutil.which(NAME)
    if on_path is not None and _same_file(on_path, script):
        return [NAME]
    return [script]


def shell_command(argv: Sequence[str]) -> str:
    """The one quoting helper for every printed command (POSIX shell quoting)."""
    return shlex.join(argv)


def command(*args: str) -> str:
    """A shell command line that runs this installation with `args`."""
    return shell_command([*self_argv(), *args])
