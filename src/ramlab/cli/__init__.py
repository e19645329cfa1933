"""The `ramlab` command: one subcommand per job, each a thin layer over the Python API.

Each module of this package adds its subcommands with `register(subparsers)`; a handler
returns an exit code. A `RamlabError` becomes its message on stderr and exit code 2.
"""

from __future__ import annotations

import argparse
import importlib
import pkgutil
import sys

from ramlab import __version__
from ramlab.device import reuse_freed_memory
from ramlab.errors import RamlabError
from ramlab.files import os_error_message


def command_modules() -> list[str]:
    """Every module of this package, in name order (each registers its subcommands)."""
    return sorted(m.name for m in pkgutil.iter_modules(__path__))


class Parser(argparse.ArgumentParser):
    """argparse's parser, whose usage error is one line and a pointer to --help, not the
    whole usage first (40 lines for `ramlab train ram`, the error last)."""

    def error(self, message: str):  # type: ignore[override]
        self.exit(2, f"{self.prog}: error: {message}\n(`{self.prog} --help` lists its arguments)\n")


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(
        prog="ramlab",
        description="The Recurrent Attention Model versus low-parameter CNNs on MNIST scenes.",
    )
    parser.add_argument("--version", action="version", version=f"ramlab {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name in command_modules():
        importlib.import_module(f"ramlab.cli.{name}").register(sub)
    return parser


# Options and arguments that name a file or folder: an empty one ("" from an unset shell
# variable) would quietly mean "not given" or the current folder.
PATHS = {
    "json": "--json",
    "out": "--out",
    "gif": "--gif",
    "config": "--config",
    "init_from": "--init-from",
    "source": "--from",
    "run": "RUN_DIR",
    "dir": "DIR",
}


def check_no_empty_paths(args: argparse.Namespace) -> None:
    for dest, name in PATHS.items():
        value = getattr(args, dest, None)
        values = value if isinstance(value, list) else [value]
        if any(isinstance(v, str) and not v.strip() for v in values):
            raise RamlabError(f"{name} is empty: give a file or folder (an unset shell variable?)")


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    reuse_freed_memory()
    try:
        check_no_empty_paths(args)
        return int(args.handler(args) or 0)
    except RamlabError as exc:
        print(f"ramlab: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt as exc:  # ramlab's own say what was kept and how to resume
        print(
            f"ramlab: {str(exc) or 'interrupted (finished work is kept; rerun the same command to resume, a run with --resume)'}",
            file=sys.stderr,
        )
        return getattr(exc, "exit_code", 130)
    except OSError as exc:  # the environment: a full disk, a read-only folder, ...
        print(f"ramlab: error: {os_error_message(exc, verb='use')}", file=sys.stderr)
        return 2
    except RuntimeError as exc:
        if not out_of_memory(exc):
            raise
        print(
            f"ramlab: error: out of memory ({str(exc).splitlines()[0][:160]}); lower what multiplies "
            "the batch: --rollouts, --eval-rollouts, --batch-size, --eval-batch-size, --sizes",
            file=sys.stderr,
        )
        return 2


def out_of_memory(exc: BaseException) -> bool:
    """torch's allocation failure: CUDA's OutOfMemoryError, or the CPU allocator's message."""
    return "out of memory" in str(exc).lower() or "can't allocate memory" in str(exc)


if __name__ == "__main__":
    sys.exit(main())
