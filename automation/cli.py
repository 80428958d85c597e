"""The ``automation`` command line: one typer app holding every runbook command."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Optional

import typer

from automation.errors import EXIT_USAGE, AutomationError
from automation.output import print_json, stderr, table

app = typer.Typer(
    help="Operations of the observability stack: health checks, backups, traffic replay, metrics export, test alerts.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)


@app.callback()
def _root() -> None:
    """Exit codes: 0 success, 1 check failed, 2 usage, 3 configuration or target unknown, 99 thresholds failed."""


def _fail(error: AutomationError) -> typer.Exit:
    stderr.print(f"[bold red]error:[/] {error}", markup=True, highlight=False, soft_wrap=True)
    return typer.Exit(error.exit_code)


@app.command("health-check")
def health_check(
    targets: Optional[Path] = typer.Option(
        None, "--targets", help="JSON/YAML file: service -> health URL, or a whole stack output."
    ),
    stack: Optional[str] = typer.Option(None, "--stack", help="Pulumi stack whose outputs to read."),
    service: list[str] = typer.Option([], "--service", help="Check only this service (repeatable)."),
    timeout: str = typer.Option("2s", "--timeout", help="Budget of one target, retries included."),
    retries: int = typer.Option(2, "--retries", min=0, help="Extra attempts after a fast failure."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON instead of a table."),
) -> None:
    """Check every service's health endpoint concurrently (exit 0 healthy, 1 unhealthy, 3 configuration)."""
    from automation import health
    from automation.targets import load_stack_targets, load_targets_file, select_services
    from automation.units import parse_duration

    try:
        policy = health.CheckPolicy(timeout_s=parse_duration(timeout), retries=retries)
        endpoints = load_targets_file(targets) if targets else load_stack_targets(stack)
        endpoints = select_services(endpoints, service)
    except AutomationError as error:
        if as_json:
            print_json({"healthy": False, "error": str(error), "results": []})
        raise _fail(error) from None
    results = health.run_checks(endpoints, policy)
    code = health.exit_code(results)
    if as_json:
        print_json({"healthy": code == 0, "exit_code": code, "results": [r.as_dict() for r in results]})
    else:
        rows = [
            (
                r.service,
                f"[green]{r.status}[/]" if r.healthy else f"[red]{r.status}[/]",
                r.http_status,
                None if r.latency_ms is None else f"{r.latency_ms:.1f}",
                r.attempts,
                r.url,
                r.detail,
            )
            for r in results
        ]
        from rich.console import Console

        Console().print(table("health", ["service", "status", "http", "ms", "tries", "url", "detail"], rows))
        if not results:
            stderr.print("no health targets configured")
    raise typer.Exit(code)


def _register_plugins() -> None:
    """Commands owned elsewhere plug in here when their module exists."""
    try:
        from automation.promote import register as _reg_promote

        _reg_promote(app)
    except ImportError:
        pass


_register_plugins()


def main(argv: Optional[list[str]] = None) -> None:
    """Run the CLI (``argv`` for tests; defaults to the process arguments)."""
    try:
        app(args=argv, prog_name="automation")
    except AutomationError as error:  # raised by a command outside its own handler
        stderr.print(f"[bold red]error:[/] {error}", soft_wrap=True)
        sys.exit(error.exit_code)
    except KeyboardInterrupt:
        sys.exit(EXIT_USAGE + 128)
