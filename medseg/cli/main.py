"""The ``medseg`` command: one typer app; each command lives in its own module.

Errors a user can cause (:class:`medseg.errors.MedsegError`) are printed as one
line on stderr with exit status 1, never as a traceback.
"""

from __future__ import annotations

import logging
import os
import sys

import typer

from medseg.errors import MedsegError

app = typer.Typer(
    name="medseg",
    help="Medical image segmentation: read, pre-process, train, predict, post-process, export.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


@app.callback()
def _root(
    verbose: bool = typer.Option(False, "--verbose", "-v", help="Show progress details and debug logs."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="Only errors."),
) -> None:
    level = logging.DEBUG if verbose else logging.ERROR if quiet else logging.INFO
    logging.basicConfig(level=level, format="%(levelname)s %(name)s: %(message)s", stream=sys.stderr, force=True)


def _register() -> None:
    from medseg.cli import info  # noqa: F401  (commands register themselves on import)

    for name in ("validate", "plan", "train", "predict", "evaluate", "export", "demo"):
        try:
            __import__(f"medseg.cli.{name}")
        except ModuleNotFoundError as exc:
            if exc.name != f"medseg.cli.{name}":
                raise


def main(argv: list[str] | None = None) -> int:
    """Entry point of the console script; returns the exit status."""
    _register()
    try:
        code = app(args=argv, standalone_mode=False)
    except MedsegError as exc:
        typer.secho(f"error: {exc}", fg=typer.colors.RED, err=True)
        return 1
    except (typer.Abort, KeyboardInterrupt):
        typer.secho("aborted", err=True)
        return 130
    except typer.Exit as exc:
        return int(exc.exit_code or 0)
    except OSError as exc:  # a path the user gave cannot be read or written
        typer.secho(f"error: {exc.filename or ''}: {exc.strerror or exc}", fg=typer.colors.RED, err=True)
        return 1
    except Exception as exc:
        import click

        if isinstance(exc, click.ClickException):  # usage errors arrive here in non-standalone mode
            exc.show()
            return exc.exit_code
        if os.environ.get("MEDSEG_TRACEBACK"):
            raise
        typer.secho(
            f"internal error: {type(exc).__name__}: {exc} (a bug in medseg; rerun with MEDSEG_TRACEBACK=1 and report it)",
            fg=typer.colors.RED,
            err=True,
        )
        return 2
    return code if isinstance(code, int) else 0


if __name__ == "__main__":
    sys.exit(main())
