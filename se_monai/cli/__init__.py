"""Command line interface ``se-monai``.

``se-monai`` or ``se-monai --help`` lists the commands with one-line summaries, ``se-monai COMMAND --help`` shows one
command's arguments (python-fire), ``se-monai --version`` prints the version. Bad input ends with one line
``se-monai: error: <file>: <problem>`` on stderr and exit status 2; so does an unknown command, with the closest one.

The commands live in :mod:`se_monai.cli.commands`. This entry point lists them from that module's source (its
``__all__`` and docstrings) and imports it only to run one, so that help, the version and a mistyped command answer
at once instead of after loading torch and MONAI.
"""

from __future__ import annotations

import ast
import difflib
import functools
import logging
import sys
import warnings
from pathlib import Path
from typing import NoReturn

import fire

from se_monai import __version__
from se_monai.io.files import InputError

__all__ = ["QUIET_WARNINGS", "QUIET_LOGGERS", "command_summaries", "usage", "main"]

#: Exit status of bad input and unknown commands.
EXIT_USAGE = 2
#: Warnings that a user of the command line cannot act on, by category and warning module (a regular expression),
#: hidden unless ``--verbose``; every other warning (se-monai's own, torch's about the user's device) still shows.
QUIET_WARNINGS = (
    (FutureWarning, r"monai\."),  # MONAI announcing changes of its own defaults and arguments
    (DeprecationWarning, r"(monai|ignite|torch)\."),  # the libraries' use of each other's deprecated API
    (UserWarning, r"monai\.data\.image_reader"),  # the optional nvImageCodec DICOM decoder is not installed
)
#: Loggers that warn about optional packages the commands do not use (MONAI's nvImageCodec plugin), silenced below
#: ERROR unless ``--verbose``.
QUIET_LOGGERS = ("monai.data.nvimgcodec_pydicom_plugin",)
_COMMANDS_SOURCE = Path(__file__).with_name("commands.py")


@functools.cache
def command_summaries() -> dict[str, str]:
    """``{command: summary}`` in ``se-monai --help`` order: the names in ``commands.__all__`` (``_`` as ``-``) and the
    first lines of their docstrings, read from the source without importing it."""
    tree = ast.parse(_COMMANDS_SOURCE.read_text())
    names = next(
        ast.literal_eval(node.value)
        for node in tree.body
        if isinstance(node, ast.Assign) and any(getattr(t, "id", None) == "__all__" for t in node.targets)
    )
    docs = {node.name: ast.get_docstring(node) or "" for node in tree.body if isinstance(node, ast.FunctionDef)}
    return {name.replace("_", "-"): docs[name].splitlines()[0] if docs[name] else "" for name in names}


def usage() -> str:
    """The text of ``se-monai --help``: every command with its one-line summary."""
    commands = command_summaries()
    width = max(map(len, commands))
    lines = [
        "usage: se-monai COMMAND [ARGUMENTS] [--FLAG VALUE ...]",
        "",
        "Scale-equivariant 3-D segmentation networks (SE-U-Net) as MONAI components and a MONAI bundle.",
        "",
        "commands:",
        *(f"  {name:<{width}}  {summary}" for name, summary in commands.items()),
        "",
        "se-monai COMMAND --help shows a command's arguments; se-monai --version prints the version.",
    ]
    return "\n".join(lines)


def _fail(message: str) -> NoReturn:
    print(f"se-monai: error: {message}", file=sys.stderr)
    sys.exit(EXIT_USAGE)


def _quiet() -> None:
    """Hide :data:`QUIET_WARNINGS` and :data:`QUIET_LOGGERS` for this process."""
    for category, module in QUIET_WARNINGS:
        warnings.filterwarnings("ignore", category=category, module=module)
    for name in QUIET_LOGGERS:
        logging.getLogger(name).setLevel(logging.ERROR)


def _unknown_command(name: str) -> str:
    commands = list(command_summaries())
    closest = difflib.get_close_matches(name.replace("_", "-"), commands, n=1)
    hint = f"did you mean '{closest[0]}'?" if closest else f"the commands are {', '.join(commands)}"
    return f"unknown command '{name}'; {hint} (se-monai --help describes them)"


def main(argv: list[str] | None = None) -> None:
    """Entry point of the ``se-monai`` command; ``argv`` defaults to ``sys.argv[1:]``."""
    args = sys.argv[1:] if argv is None else list(argv)
    if not args or args[0] in ("-h", "--help", "help"):
        print(usage())
        return
    if args[0] in ("-V", "--version"):
        print(f"se-monai {__version__}")
        return
    name = args[0].replace("_", "-")
    if name not in command_summaries():
        _fail(_unknown_command(args[0]))
    if not any(arg in ("-v", "--verbose", "--verbose=True", "--verbose=true") for arg in args):
        _quiet()
    # the commands load torch and MONAI: imported only now that one runs (see the module docstring)
    from se_monai.cli import commands

    command = getattr(commands, name.replace("-", "_"))
    options = args[1:]
    if options in (["-h"], ["--help"]):
        options = ["--", "--help"]  # fire's help without its note on how it was asked for
    try:
        fire.Fire(command, command=options, name=f"se-monai {name}", serialize=lambda _: None)
    except (InputError, FileNotFoundError) as err:
        _fail(str(err))
