"""Dashboard "Logs": the runbook's LogQL queries as panels, plus errors by service and gateway warnings.

The runbook writes `{container="mockup-gateway"} | json level="warn" | stats count()`. In LogQL,
`| json level="warn"` is the *parameterised* json parser: it extracts the JSON path `warn` into
a label `level` (empty here) and filters nothing, and `| stats count()` is not LogQL at all. The
intended query is `| json | level="warn"` (parse, then filter), counted with `count_over_time`.
"""

from __future__ import annotations

from grafana_foundation_sdk.builders import dashboard

from config.grafana.datasources import LOKI
from config.grafana.panels import HALF, Query, logs_panel, new_dashboard, timeseries_panel
from config.settings import StackSettings
from config.slo import GATEWAY, MIME_SERVER

UID = "logs"
RANGE = " [$__auto]"

# The runbook's two queries, in valid LogQL.
MIME_SERVER_ERRORS = f'{{service="{MIME_SERVER}"}} | json | status="error"'
GATEWAY_WARNINGS = f'{{container="{GATEWAY}"}} | json | level="warn"'


def stack_selector(settings: StackSettings) -> str:
    """All streams of this stack (LogQL needs at least one matcher that is not empty-compatible)."""
    return f'{{env="{settings.stack}"}}'


def errors_by_service(settings: StackSettings) -> str:
    return f'sum by (service) (count_over_time({{env="{settings.stack}", level="error"}}{RANGE}))'


def errors_by_route(settings: StackSettings) -> str:
    return (f'sum by (service, route) (count_over_time({stack_selector(settings)} | json | status="error"'
            f' | __error__=""{RANGE}))')


def gateway_warnings_count() -> str:
    return f"sum(count_over_time({GATEWAY_WARNINGS}{RANGE}))"


def slow_requests(settings: StackSettings) -> str:
    """Requests slower than the SLO latency threshold (from settings), newest first."""
    threshold_ms = settings.slo_latency_seconds * 1000
    return f"{stack_selector(settings)} | json | duration_ms > {threshold_ms:g}"


def trace_logs(trace_id: str = "$trace_id") -> str:
    """Every line of one trace, across both services."""
    return f'{{service=~"{MIME_SERVER}|{GATEWAY}"}} |= "{trace_id}" | json | trace_id="{trace_id}"'


def build(settings: StackSettings) -> dashboard.Dashboard:
    """The logs dashboard for one stack."""
    return (
        new_dashboard(UID, "Logs", ["logs", "loki"],
                      f"JSON logs of stack {settings.stack} from Loki. Lines carrying a trace_id link to Jaeger.")
        .with_variable(dashboard.TextBoxVariable("trace_id").label("Trace id"))
        .with_row(dashboard.Row("Counts"))
        .with_panel(timeseries_panel("Errors by service", [Query(errors_by_service(settings), "{{service}}")],
                                     "short", span=HALF, ds=LOKI))
        .with_panel(timeseries_panel("Gateway warnings (count)", [Query(gateway_warnings_count(), "warnings")],
                                     "short", span=HALF, ds=LOKI))
        .with_panel(timeseries_panel("Errors by route", [Query(errors_by_route(settings),
                                                               "{{service}} {{route}}")],
                                     "short", span=24, ds=LOKI))
        .with_row(dashboard.Row("Lines"))
        .with_panel(logs_panel("mime-server errors", MIME_SERVER_ERRORS,
                               description="Runbook query: mime-server lines whose status is error."))
        .with_panel(logs_panel("Gateway warnings", GATEWAY_WARNINGS,
                               description="Runbook query, valid form: `| json | level=\"warn\"`."))
        .with_panel(logs_panel(f"Slow requests (over {settings.slo_latency_seconds:g} s)", slow_requests(settings)))
        .with_panel(logs_panel("One trace's logs", trace_logs(),
                               description="Enter a trace id above (or follow a link from Jaeger)."))
    )
