"""The ``cmsgen-tui`` command line.

Each subcommand lives in its own module under ``commands/`` and registers
itself on the typer app. Heavy libraries (torch, uproot) are imported inside
the command functions so that ``--help`` and the app's first paint stay fast.
"""

from __future__ import annotations

import importlib
import logging
import os
import sys
from collections.abc import Callable
from typing import TypeVar

import typer

from cmsgen.engine.errors import EXIT_CODES_HELP, EXIT_FAILURE, EXIT_INTERRUPTED, CmsgenError
from cmsgen.engine.logs import log_path, setup_file_logging

log = logging.getLogger(__name__)

COMMAND_MODULES = (
    "inspect",
    "report",
    "sample",
    "train",
    "runs",
    "generate",
    "validate",
    "demo",
    "app",
)

app = typer.Typer(
    name="cmsgen-tui",
    help=(
        "Generative modelling of older CMS Open Data: inspect legacy files, "
        "train GAN/VAE/flow models, validate and write synthetic events.\n\n"
        "Run without a subcommand to open the terminal app.\n\n" + EXIT_CODES_HELP.replace("\n", "\n\n")
    ),
    no_args_is_help=False,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode="rich",
)

F = TypeVar("F", bound=Callable[..., object])


def error_console_print(message: str) -> None:
    """Print a one-line error message to stderr."""
    typer.secho(f"Error: {message}", err=True, fg=typer.colors.RED)


def handle_errors(function: F) -> F:
    """Wrap a command so that engine errors become a message and an exit code, never a traceback."""
    import functools

    @functools.wraps(function)
    def wrapper(*args: object, **kwargs: object) -> object:
        setup_file_logging()
        try:
            return function(*args, **kwargs)
        except CmsgenError as error:
            log.error("%s failed: %s", function.__name__, error.message, exc_info=True)
            error_console_print(error.message)
            raise typer.Exit(error.exit_code) from None
        except KeyboardInterrupt:
            log.warning("%s interrupted by the user", function.__name__)
            error_console_print("Interrupted.")
            raise typer.Exit(EXIT_INTERRUPTED) from None
        except (typer.Exit, typer.Abort, SystemExit):
            raise
        except BrokenPipeError:
            # The reader of stdout closed it, as `| head` does: stop quietly with code 1, as rich's
            # console does. stdout goes to /dev/null so that the flush at exit does not raise again.
            log.info("%s stopped: the reader closed standard output", function.__name__)
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
            raise typer.Exit(EXIT_FAILURE) from None
        except Exception as error:  # noqa: BLE001 - the last line of defence: log, never show a traceback
            log.exception("%s failed with an unexpected error", function.__name__)
            error_console_print(
                f"unexpected {type(error).__name__}: {error}. The traceback is in {log_path()}; "
                "please report it with that file."
            )
            raise typer.Exit(EXIT_FAILURE) from None

    return wrapper  # type: ignore[return-value]


def _register_commands() -> None:
    for name in COMMAND_MODULES:
        try:
            module = importlib.import_module(f"cmsgen.tui.commands.{name}")
        except ModuleNotFoundError as error:
            if error.name == f"cmsgen.tui.commands.{name}":
                continue  # NOTE: a command module not written yet is skipped
            raise
        module.register(app)


_register_commands()


def main(argv: list[str] | None = None) -> None:
    """Entry point of the ``cmsgen-tui`` and ``cmsgen`` console scripts.

    ``cmsgen-tui [PATH...]`` with no subcommand opens the app, so arguments that
    are not a subcommand name are passed to the ``app`` subcommand.
    """
    args = list(sys.argv[1:] if argv is None else argv)
    command_names = {command.name for command in app.registered_commands}
    if "app" in command_names and (not args or (args[0] not in command_names and not args[0].startswith("-"))):
        args.insert(0, "app")
    app(args=args, prog_name="cmsgen-tui")


if __name__ == "__main__":
    sys.exit(main())
