"""The ``automation`` command line: one typer app holding every runbook command."""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Optional

import typer
from rich.markup import escape

from automation.errors import EXIT_USAGE, AutomationError, ConfigError, UsageError
from automation.output import print_json, stderr, table

if TYPE_CHECKING:
    from automation.backup import BackupOptions

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
    stderr.print(f"[bold red]error:[/] {escape(str(error))}", highlight=False, soft_wrap=True)
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
    started = time.monotonic()
    results = health.run_checks(endpoints, policy)
    elapsed = round(time.monotonic() - started, 3)
    code = health.exit_code(results)
    if as_json:
        print_json({"healthy": code == 0, "exit_code": code, "elapsed_s": elapsed, "results": [r.as_dict() for r in results]})
    else:
        rows = [
            (
                r.service,
                f"[green]{r.status}[/]" if r.healthy else f"[red]{r.status}[/]",
                r.http_status,
                None if r.latency_ms is None else f"{r.latency_ms:.1f}",
                r.attempts,
                escape(r.url),
                escape(r.detail),
            )
            for r in results
        ]
        from rich.console import Console

        Console().print(table("health", ["service", "status", "http", "ms", "tries", "url", "detail"], rows))
        if not results:
            stderr.print("no health targets configured")
    raise typer.Exit(code)


_SOURCE = typer.Option(..., "--source", envvar="MIME_STORAGE_DIR", help="Directory to back up.")
_DEST = typer.Option(..., "--dest", envvar="BACKUP_DIR", help="Directory that receives archives.")
_COMPRESSION = typer.Option("gz", "--compression", envvar="BACKUP_COMPRESSION", help="gz, zst or none.")
_LEVEL = typer.Option(None, "--level", help="Compression level (gz 1-9, default 6; zst 1-22, default 3).")
_NAME = typer.Option("backup", "--name", envvar="BACKUP_NAME", help="Archive name prefix.")
_KEEP_LAST = typer.Option(None, "--keep-last", envvar="BACKUP_KEEP_LAST", min=1, help="Keep the newest N archives.")
_MAX_AGE = typer.Option(
    None, "--max-age-days", envvar="BACKUP_MAX_AGE_DAYS", min=0, help="Delete archives older than D days."
)
_EXCLUDE = typer.Option([], "--exclude", help="Glob of names or relative paths to leave out (repeatable).")
_FIRST = typer.Option(
    [], "--first", help="Archive this subdirectory before the rest (repeatable); mime-server storage: objects."
)
_S3_BUCKET = typer.Option(None, "--s3-bucket", envvar="S3_BUCKET", help="Also upload to this bucket.")
_S3_PREFIX = typer.Option("", "--s3-prefix", envvar="S3_PREFIX", help="Key prefix in the bucket.")
_S3_ENDPOINT = typer.Option(None, "--s3-endpoint", envvar="S3_ENDPOINT", help="S3 endpoint URL (MinIO, moto...).")
_PROGRESS = typer.Option(None, "--progress/--no-progress", help="Progress bar on stderr (default: when a terminal).")


def _backup_options(
    source: Path,
    dest: Path,
    compression: str,
    level: Optional[int],
    name: str,
    keep_last: Optional[int],
    max_age_days: Optional[float],
    exclude: list[str],
    first: list[str],
    s3_bucket: Optional[str],
    s3_prefix: str,
    s3_endpoint: Optional[str],
    progress: Optional[bool],
) -> "BackupOptions":
    from automation.backup import BackupOptions

    return BackupOptions(
        source=source,
        dest=dest,
        compression=compression,
        level=level,
        name=name,
        keep_last=keep_last,
        max_age_days=max_age_days,
        excludes=exclude,
        first=first,
        s3_bucket=s3_bucket or None,
        s3_prefix=s3_prefix,
        s3_endpoint=s3_endpoint or None,
        progress=sys.stderr.isatty() if progress is None else progress,
    )


@app.command("backup")
def backup(
    source: Path = _SOURCE,
    dest: Path = _DEST,
    compression: str = _COMPRESSION,
    level: Optional[int] = _LEVEL,
    name: str = _NAME,
    keep_last: Optional[int] = _KEEP_LAST,
    max_age_days: Optional[float] = _MAX_AGE,
    exclude: list[str] = _EXCLUDE,
    first: list[str] = _FIRST,
    s3_bucket: Optional[str] = _S3_BUCKET,
    s3_prefix: str = _S3_PREFIX,
    s3_endpoint: Optional[str] = _S3_ENDPOINT,
    progress: Optional[bool] = _PROGRESS,
) -> None:
    """Archive SOURCE as a streamed tar with a sha256 manifest, apply retention, optionally upload; prints JSON."""
    from automation.backup import run_backup

    options = _backup_options(
        source, dest, compression, level, name, keep_last, max_age_days, exclude, first, s3_bucket, s3_prefix,
        s3_endpoint, progress,
    )
    try:
        print_json(run_backup(options))
    except AutomationError as error:
        raise _fail(error) from None


@app.command("backup-schedule")
def backup_schedule(
    source: Path = _SOURCE,
    dest: Path = _DEST,
    every: str = typer.Option("24h", "--every", envvar="BACKUP_EVERY", help="Interval between backups."),
    at: Optional[str] = typer.Option(None, "--at", envvar="BACKUP_AT", help="First run at HH:MM UTC (else now)."),
    once: bool = typer.Option(False, "--once", help="Run one backup and exit (for tests)."),
    compression: str = _COMPRESSION,
    level: Optional[int] = _LEVEL,
    name: str = _NAME,
    keep_last: Optional[int] = _KEEP_LAST,
    max_age_days: Optional[float] = _MAX_AGE,
    exclude: list[str] = _EXCLUDE,
    first: list[str] = _FIRST,
    s3_bucket: Optional[str] = _S3_BUCKET,
    s3_prefix: str = _S3_PREFIX,
    s3_endpoint: Optional[str] = _S3_ENDPOINT,
) -> None:
    """Back up now (or at --at), then every --every until stopped; one JSON summary line per run."""
    from automation.backup import run_backup
    from automation.schedule import run_schedule
    from automation.units import parse_duration

    options = _backup_options(
        source, dest, compression, level, name, keep_last, max_age_days, exclude, first, s3_bucket, s3_prefix,
        s3_endpoint, False,
    )
    try:
        failures = run_schedule(
            lambda: print_json(run_backup(options)),
            parse_duration(every),
            at=at,
            once=once,
            log=lambda line: stderr.print(line, markup=False, highlight=False),
        )
    except AutomationError as error:
        raise _fail(error) from None
    raise typer.Exit(1 if failures and once else 0)


def _local_archive(archive: str, workdir: Path, s3_endpoint: Optional[str]) -> Path:
    if archive.startswith("s3://"):
        from automation.backup import fetch_from_s3

        return fetch_from_s3(archive, workdir, s3_endpoint)
    return Path(archive)


@app.command("restore")
def restore(
    archive: str = typer.Option(..., "--archive", help="Archive file or s3://BUCKET/KEY."),
    target: Path = typer.Option(..., "--target", help="Directory to recreate (missing or empty unless --force)."),
    force: bool = typer.Option(False, "--force", help="Replace a non-empty target once the archive verified."),
    s3_endpoint: Optional[str] = _S3_ENDPOINT,
    progress: Optional[bool] = _PROGRESS,
) -> None:
    """Verify every file against the manifest and recreate the backed-up tree in TARGET (untouched on failure)."""
    import tempfile

    from automation.output import byte_progress
    from automation.restore import restore_archive

    show = sys.stderr.isatty() if progress is None else progress
    try:
        target.absolute().parent.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(prefix=".download-", dir=target.absolute().parent) as workdir:
            local = _local_archive(archive, Path(workdir), s3_endpoint)
            size = local.stat().st_size if local.is_file() else None
            with byte_progress(show) as bar:
                task = bar.add_task(f"restore {local.name}", total=size)
                result = restore_archive(local, target, force, lambda n: bar.advance(task, n))
    except AutomationError as error:
        raise _fail(error) from None
    print_json({"restored": True, "target": str(target), **vars(result), "archive": archive})


@app.command("verify")
def verify(
    archive: str = typer.Option(..., "--archive", help="Archive file or s3://BUCKET/KEY."),
    s3_endpoint: Optional[str] = _S3_ENDPOINT,
) -> None:
    """Check an archive against its manifest (and companion digest) without restoring it."""
    import tempfile

    from automation.restore import verify_archive

    try:
        with tempfile.TemporaryDirectory(prefix="automation-verify-") as workdir:
            result = verify_archive(_local_archive(archive, Path(workdir), s3_endpoint))
    except AutomationError as error:
        print_json({"valid": False, "archive": archive, "error": str(error)})
        raise _fail(error) from None
    print_json({"valid": True, **vars(result), "archive": archive})


@app.command("replay")
def replay(
    log: Optional[Path] = typer.Option(
        None, "--log", envvar="REPLAY_LOG", help="Gateway JSON access log or request JSONL (none: a synthetic mix)."
    ),
    target: str = typer.Option("http://127.0.0.1:8080", "--target", envvar="REPLAY_TARGET", help="Base URL."),
    speed: Optional[float] = typer.Option(None, "--speed", help="Replay recorded timing X times faster."),
    rate: Optional[float] = typer.Option(None, "--rate", help="Ignore recorded timing; send R requests/s."),
    count: Optional[int] = typer.Option(None, "--count", min=1, help="With --rate: send N requests (cycling the log)."),
    duration: Optional[str] = typer.Option(None, "--duration", help="With --rate: send for this long (e.g. 30s)."),
    service: Optional[str] = typer.Option(None, "--service", help="Replay only log lines of this service."),
    threshold: list[str] = typer.Option([], "--threshold", help="Fail (exit 99) unless e.g. 'p95<500ms', 'error_rate<0.01'."),
    api_key: Optional[str] = typer.Option(None, "--api-key", envvar="REPLAY_API_KEY", help="Sent as X-API-Key."),
    api_key_file: Optional[Path] = typer.Option(None, "--api-key-file", help="File holding the X-API-Key."),
    timeout: str = typer.Option("30s", "--timeout", help="Per-request timeout."),
    max_connections: int = typer.Option(2048, "--max-connections", min=1, help="Cap on open connections."),
) -> None:
    """Replay traffic open-loop (no coordinated omission); table on stderr, JSON on stdout."""
    import asyncio

    from automation import replay as replaying
    from automation import traffic
    from automation.errors import EXIT_THRESHOLDS
    from automation.thresholds import parse_threshold
    from automation.units import parse_duration

    try:
        checks = [parse_threshold(t) for t in threshold]
        if api_key_file is not None:
            try:
                api_key = api_key_file.read_text(encoding="utf-8").strip()
            except OSError as exc:
                raise ConfigError(f"cannot read API key file {str(api_key_file)!r}: {exc.strerror}") from None
        if duration is not None:
            if rate is None:
                raise UsageError("--duration needs --rate")
            count = max(1, int(rate * parse_duration(duration)))
        if log is None:
            rate = rate or 20.0
            plan = traffic.synthetic_plan(rate, parse_duration(duration or "10s"))
            stderr.print(f"no --log given: replaying a synthetic mime-server mix at {rate:g}/s", highlight=False)
        else:
            plan = traffic.load_plan(log, service)
        schedule = traffic.schedule(plan, speed, rate, count)
        options = replaying.ReplayOptions(target, api_key, parse_duration(timeout), max_connections)
        replaying.Origin.parse(target)
        report = asyncio.run(replaying.run_replay(schedule, options))
    except AutomationError as error:
        raise _fail(error) from None
    results = replaying.evaluate(report, checks)
    report = {"target": target, "skipped_lines": plan.skipped_lines, **report, "thresholds": results,
              "passed": all(r["ok"] for r in results)}
    latency, lag = report["latency_ms"], report["send_lag_ms"]
    rows = [
        ("requests", report["requests"]), ("errors", f"{report['errors']} ({report['error_rate']:.2%})"),
        ("target rate /s", report["target_rate"]), ("achieved rate /s", report["achieved_rate"]),
        ("send lag p50 / p99 / max ms", f"{lag['p50']} / {lag['p99']} / {lag['max']}"),
    ] + [(f"latency {k} ms", latency[k]) for k in ("p50", "p90", "p95", "p99", "max")] + [
        (f"threshold {r['threshold']}", ("[green]ok[/]" if r["ok"] else "[red]FAILED[/]") + f" ({r['observed']})")
        for r in results
    ]
    stderr.print(table("replay", ["measure", "value"], rows))
    print_json(report)
    raise typer.Exit(0 if report["passed"] else EXIT_THRESHOLDS)


@app.command("export-metrics")
def export_metrics(
    prometheus: str = typer.Option(
        "http://127.0.0.1:9090", "--prometheus", envvar="PROMETHEUS_URL", help="Prometheus base URL."
    ),
    query: list[str] = typer.Option([], "--query", help="PromQL, or NAME=PROMQL (repeatable). Default: RED + SLO set."),
    with_defaults: bool = typer.Option(False, "--with-defaults", help="Export the default set besides --query."),
    start: str = typer.Option("-1h", "--start", envvar="EXPORT_START", help="RFC 3339, unix seconds, now or -6h."),
    end: str = typer.Option("now", "--end", envvar="EXPORT_END", help="RFC 3339, unix seconds, now or -5m."),
    step: str = typer.Option("15s", "--step", envvar="EXPORT_STEP", help="Resolution, e.g. 15s, 1m."),
    max_points: int = typer.Option(11_000, "--max-points", min=1, help="Points per series per request (<= 11000)."),
    output: Optional[Path] = typer.Option(None, "--output", "-o", help="Write the CSV here instead of stdout."),
    retries: int = typer.Option(3, "--retries", min=0, help="Retries of a failed chunk request."),
    workers: Optional[int] = typer.Option(None, "--workers", min=1, help="Processes formatting chunks (default: cores)."),
) -> None:
    """Export range queries as CSV on stdout (timestamp,unix,query,metric,labels,value); logs on stderr."""
    from automation import promexport
    from automation.units import parse_duration, parse_time

    try:
        if max_points > promexport.MAX_POINTS:
            raise UsageError(f"--max-points {max_points}: expected at most {promexport.MAX_POINTS} (Prometheus' limit)")
        start_ms = int(parse_time(start).timestamp() * 1000)
        end_ms = int(parse_time(end).timestamp() * 1000)
        step_ms = int(round(parse_duration(step) * 1000))
        client = promexport.PrometheusClient(prometheus, retries=retries)
        try:
            queries = [promexport.Query.parse(q) for q in query]
            if not queries or with_defaults:
                queries += [promexport.Query(n, e) for n, e in promexport.DEFAULT_QUERIES]
                queries += [promexport.Query(n, n) for n in client.recording_rule_names(start_ms, end_ms)]
            handle = open(output, "w", encoding="utf-8", newline="") if output else sys.stdout
            try:
                summary = promexport.export_csv(
                    client, queries, start_ms, end_ms, step_ms, handle, max_points, workers
                )
            finally:
                if output:
                    handle.close()
                else:
                    sys.stdout.flush()
        finally:
            client.close()
    except AutomationError as error:
        raise _fail(error) from None
    stderr.print(f"exported {summary['rows']} rows ({summary['queries']} queries, {summary['chunks']} requests)",
                 highlight=False)


@app.command("fire-test-alert")
def fire_test_alert(
    alertmanager: str = typer.Option(
        "http://127.0.0.1:9093", "--alertmanager", "--url", envvar="ALERTMANAGER_URL", help="Alertmanager base URL."
    ),
    severity: str = typer.Option("critical", "--severity", help="critical or warning."),
    alertname: str = typer.Option("TestAlert", "--alertname", help="alertname label (e.g. MimeServerDown)."),
    service: str = typer.Option("mime-server", "--service", help="service label."),
    label: list[str] = typer.Option([], "--label", help="Extra label KEY=VALUE (repeatable)."),
    resolve: bool = typer.Option(False, "--resolve", help="Resolve the test alert (endsAt = now)."),
) -> None:
    """Post a test alert to Alertmanager's API v2 (labels alertname, severity, service, test="true")."""
    from automation.alert import build_alert, post_alerts

    try:
        extra: dict[str, str] = {}
        for item in label:
            key, sep, value = item.partition("=")
            if not sep or not key:
                raise UsageError(f"invalid --label {item!r}: expected KEY=VALUE")
            extra[key] = value
        alert = build_alert(alertname, severity, service, resolve, extra)
        post_alerts(alertmanager, [alert])
    except AutomationError as error:
        raise _fail(error) from None
    print_json({"sent": True, "alertmanager": alertmanager, "resolved": resolve, "alert": alert})


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
        stderr.print(f"[bold red]error:[/] {escape(str(error))}", soft_wrap=True)
        sys.exit(error.exit_code)
    except KeyboardInterrupt:
        sys.exit(EXIT_USAGE + 128)
