"""The ``medseg`` command: one typer app; each command lives in its own module.

Errors a user can cause (:class:`medseg.errors.MedsegError`, and usage errors such as an
unknown command or option) are printed as one line on stderr, never as a traceback:
exit status 1 for medseg's errors, 2 for usage errors (as click does). Command modules
import their heavy dependencies inside the command, so ``medseg --help`` starts fast.
"""

from __future__ import annotations

import logging
import os
import sys
import warnings

import typer

from medseg.errors import MedsegError

#: The exporters as ``--help`` names them (kept literal so --help stays fast; a test checks it lists every one).
EXPORTER_NAMES = "nifti, nrrd, seg.nrrd, dicom-seg, rtstruct, stl, obj, ply, png, html, stats"

app = typer.Typer(
    name="medseg",
    help="Medical image segmentation: read, pre-process, train, predict, post-process, export.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


class _StderrHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """Writes to ``sys.stderr`` as it is when a record is logged, not as it was when logging was set up (a
    replaced stderr, e.g. a caller capturing it, is followed instead of written to after it closed)."""

    @property  # type: ignore[override]
    def stream(self):  # type: ignore[no-untyped-def]
        return sys.stderr

    @stream.setter
    def stream(self, value) -> None:  # type: ignore[no-untyped-def]
        """The stream is always the current stderr."""


@app.callback()
def _root(
    verbose: bool = typer.Option(False, "--verbose", "-v", help="Show progress details and debug logs."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="Only errors."),
) -> None:
    level = logging.DEBUG if verbose else logging.ERROR if quiet else logging.INFO
    logging.basicConfig(
        level=level, format="%(levelname)s %(name)s: %(message)s", handlers=[_StderrHandler()], force=True
    )
    for chatty in ("highdicom", "pydicom"):  # libraries that log every module they copy; -v shows them
        logging.getLogger(chatty).setLevel(level if verbose else max(level, logging.WARNING))


def _register() -> None:
    """Import the command modules; each adds its command to :data:`app`."""
    from medseg.cli import dataset, demo, evaluate, export, info, listen, model, plan, predict, train, validate  # noqa: F401


def _usage_error_types() -> tuple[type[BaseException], ...]:
    """Usage-error classes: typer's own (it vendors click from 0.2x on) and click's when installed."""
    types: list[type[BaseException]] = []
    if hasattr(typer, "TyperException"):
        types.append(typer.TyperException)
    try:
        import click

        types.append(click.ClickException)
    except ImportError:
        pass
    return tuple(types)


def _usage_line(exc: BaseException) -> str:
    """One line for a usage error: the message (with typer's did-you-mean) and where help is."""
    message = getattr(exc, "format_message", lambda: str(exc))()
    ctx = getattr(exc, "ctx", None)
    path = getattr(ctx, "command_path", None) or "medseg"
    return f"error: {' '.join(str(message).split())} (see '{path} --help')"


def _show_warning(message, category, filename, lineno, file=None, line=None) -> None:  # type: ignore[no-untyped-def]
    """medseg's own warnings as one ``warning: ...`` line (the message names the file); others as Python prints them."""
    from medseg.errors import InputWarning, PluginWarning

    if issubclass(category, (InputWarning, PluginWarning)):
        typer.secho(f"warning: {message}", fg=typer.colors.YELLOW, err=True)
    else:
        _python_showwarning(message, category, filename, lineno, file, line)


_python_showwarning = warnings.showwarning


def main(argv: list[str] | None = None) -> int:
    """Entry point of the console script; returns the exit status."""
    warnings.showwarning = _show_warning
    _register()
    usage_errors = _usage_error_types()
    try:
        code = app(args=argv, standalone_mode=False, prog_name="medseg")
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
    except usage_errors as exc:  # unknown command or option, missing argument, bad value
        typer.secho(_usage_line(exc), fg=typer.colors.RED, err=True)
        return int(getattr(exc, "exit_code", 2) or 2)
    except Exception as exc:
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
