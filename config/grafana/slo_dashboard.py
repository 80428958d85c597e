"""Dashboard "SLOs and error budget": SLI values against SLO and SLA, budget left and burn rates.

Every query reads a recording rule named in `config.slo` (rendered by `config.rules`), and every
threshold is an objective computed from the stack settings, so the dashboard follows the rules.
"""

from __future__ import annotations

from grafana_foundation_sdk.builders import dashboard

from config.grafana.panels import (FULL_WIDTH, HALF, QUARTER, PanelBuilder, Query, Step, new_dashboard, service_variable, stat_panel,
                                   table_panel, timeseries_panel)
from config.grafana.service_overview import SERVICES
from config.settings import StackSettings
from config.slo import (BURN_WINDOWS, ERROR_BUDGET_REMAINING, SLIS, BurnWindow, Sli,
                        burn_rate_record, error_ratio_record, objective, period_window, sla_compliance_record,
                        window_factor)

UID = "slo-error-budget"
BUDGET_PANEL_TITLE = "Error Budget Remaining"  # the runbook's name for it
SEL = 'service=~"$service"'
# SLO alerts (burn rate, budget, SLA) all carry the `sli` label; other alerts do not.
FIRING_SLO_ALERTS = 'ALERTS{alertstate="firing", sli!=""}'


def sli_value(settings: StackSettings, sli: Sli) -> str:
    """The SLI's good ratio over the SLO period, per service."""
    return f'1 - {error_ratio_record(period_window(settings))}{{sli="{sli.name}", {SEL}}}'


def _sli_panel(settings: StackSettings, sli: Sli) -> PanelBuilder:
    slo_target, sla_target = objective(settings.slo, sli.name), objective(settings.sla, sli.name)
    return stat_panel(
        f"{sli.name} over {period_window(settings)}", [Query(sli_value(settings, sli), "{{service}}")],
        "percentunit", decimals=3, span=FULL_WIDTH // len(SLIS), base="red",
        steps=[Step(sla_target, "orange"), Step(slo_target, "green")],
        description=(f"{sli.description}. Green: meets the SLO ({slo_target:.4%}); orange: meets only the "
                     f"SLA ({sla_target:.4%}); red: SLA broken."))


def _burn_panel(settings: StackSettings, window: BurnWindow) -> PanelBuilder:
    factor = window_factor(window, settings.slo_window_days)
    color = "red" if window.severity == "critical" else "orange"
    return timeseries_panel(
        f"Burn rate {window.long} / {window.short} ({window.severity} above {factor:g}x)",
        [Query(f"{burn_rate_record(window.long)}{{{SEL}}}", f"{{{{service}}}} {{{{sli}}}} {window.long}"),
         Query(f"{burn_rate_record(window.short)}{{{SEL}}}", f"{{{{service}}}} {{{{sli}}}} {window.short}")],
        "short", span=QUARTER, steps=[Step(factor, color)],
        description=(f"Alert when both windows burn faster than {factor:g}x: {window.budget_share:.0%} of the "
                     f"{settings.slo_window_days}-day budget gone within {window.long}."))


def build(settings: StackSettings) -> dashboard.Dashboard:
    """The SLO dashboard for one stack."""
    consumed = settings.error_budget_alert_consumed
    board = (
        new_dashboard(UID, "SLOs and error budget", ["slo", "sla"],
                      f"SLIs of mime-server and mockup-gateway over {period_window(settings)} against the SLO "
                      f"and SLA of stack {settings.stack}; burn rates per alert window.")
        .time("now-24h", "now")
        .with_variable(service_variable(SERVICES))
        .with_row(dashboard.Row(f"SLIs over {period_window(settings)}"))
    )
    for sli in SLIS:
        board = board.with_panel(_sli_panel(settings, sli))
    board = (
        board.with_row(dashboard.Row("Error budget"))
        .with_panel(stat_panel(
            BUDGET_PANEL_TITLE, [Query(f"{ERROR_BUDGET_REMAINING}{{{SEL}}}", "{{service}} {{sli}}")],
            "percentunit", decimals=1, span=HALF, base="red",
            steps=[Step(0.0, "orange"), Step(1 - consumed, "green")],
            description=(f"Share of the {period_window(settings)} error budget left per service and SLI; "
                         f"the ErrorBudgetHalfConsumed alert fires below {1 - consumed:.0%}.")))
        .with_panel(timeseries_panel(
            "Error budget consumed", [Query(f"1 - {ERROR_BUDGET_REMAINING}{{{SEL}}}", "{{service}} {{sli}}")],
            "percentunit", span=HALF, steps=[Step(consumed, "orange"), Step(1.0, "red")]))
        .with_panel(table_panel(
            f"SLA compliance ({period_window(settings)})",
            [Query(f"{sla_compliance_record(settings)}{{{SEL}}}")],
            description="The SLA measure per service and SLI (latency counted against the SLA threshold).",
            span=HALF))
        .with_panel(timeseries_panel(
            "SLI error ratio (5m)", [Query(f"{error_ratio_record('5m')}{{{SEL}}}", "{{service}} {{sli}}")],
            "percentunit", span=HALF))
        .with_row(dashboard.Row("Burn rates"))
    )
    for window in BURN_WINDOWS:
        board = board.with_panel(_burn_panel(settings, window))
    return (board.with_row(dashboard.Row("Alerts"))
            .with_panel(table_panel("Firing SLO alerts", [Query(FIRING_SLO_ALERTS)],
                                    description="SLO alerts firing now (burn rate, budget, SLA).")))
