"""The ``tinyfront`` command line.

Each sub-command lives in ``explorer/commands/<name>.py`` and exposes
``register(subparsers) -> None``; the parser calls ``args.run(args) -> int``. No TensorFlow is
imported until a command that needs it runs. Every :class:`TinyfrontError` becomes one line on
stderr and exit status 1, and so do a file-system error (an export to a folder it cannot write) and
a storage fault (:func:`search.storage.is_storage_fault`). A bad, missing or unknown argument is one
line too, ``tinyfront <command>: error: <argparse's message> (see tinyfront <command> --help)``, and
exit status 1 (not argparse's usage block and 2); ``--help`` prints the help and exits 0. Ctrl-C
prints ``tinyfront: interrupted`` and exits 130.

A command given no ``--storage`` uses ``$TINYFRONT_STORAGE`` when set
(:func:`explorer.commands._args.resolve_storage`).
"""

from __future__ import annotations

import argparse
import importlib
import sys
import threading
from collections.abc import Sequence

from explorer.commands._args import resolve_storage
from search.errors import OneLineParser, TinyfrontError

_COMMAND_MODULES: tuple[str, ...] = (
    "explorer.commands.targets",
    "explorer.commands.measure",
    "explorer.commands.evaluate",
    "explorer.commands.search",
    "explorer.commands.worker",
    "explorer.commands.front",
    "explorer.commands.recheck",
    "explorer.commands.export",
    "explorer.commands.calibrate",
    "explorer.commands.app",
)


def build_parser() -> argparse.ArgumentParser:
    parser = OneLineParser(
        prog="tinyfront",
        description="Search, measure and export small neural networks for microcontrollers and Linux boards.",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    for name in _COMMAND_MODULES:
        importlib.import_module(name).register(sub)
    for command in sub.choices.values():
        command.set_defaults(_parser=command)  # the sub-command's own parser reports its errors
    return parser


def _thread_excepthook(args: threading.ExceptHookArgs) -> None:
    """A storage fault in a background thread (Optuna's heartbeat) is reported once, by the main
    thread, as one line; anything else keeps Python's default report."""
    from search.storage import is_storage_fault

    if args.exc_value is not None and is_storage_fault(args.exc_value):
        return
    threading.__excepthook__(args)


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args, unknown = parser.parse_known_args(argv)
    if unknown:  # argparse would report these from the top-level parser, without the sub-command's name
        args._parser.error(f"unrecognized arguments: {' '.join(unknown)}")
    previous_hook, threading.excepthook = threading.excepthook, _thread_excepthook
    try:
        return _run(args)
    finally:
        threading.excepthook = previous_hook


def _run(args: argparse.Namespace) -> int:
    """``args.run(args)`` with every expected failure turned into one line and an exit status."""
    try:
        resolve_storage(args)
        return int(args.run(args))
    except TinyfrontError as exc:
        print(f"tinyfront: error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("tinyfront: interrupted", file=sys.stderr)
        return 130
    except OSError as exc:  # a file or folder the command cannot read or write
        where = f": {exc.filename}" if exc.filename else ""
        print(f"tinyfront: error: {exc.strerror or one_line(exc)}{where}", file=sys.stderr)
        return 1
    except Exception as exc:
        from search.storage import is_storage_fault, storage_fault

        if not is_storage_fault(exc):
            raise
        print(
            f"tinyfront: error: {storage_fault(exc, getattr(args, 'storage', None) or 'the storage')}", file=sys.stderr
        )
        return 1


def one_line(exc: BaseException) -> str:
    """``Type: message`` on one line."""
    return f"{type(exc).__name__}: {' '.join(str(exc).split())}"


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
