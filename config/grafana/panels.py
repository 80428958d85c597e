"""Typed panel helpers over grafana-foundation-sdk: the few panel shapes the dashboards use.

Every dashboard is built with the SDK's builders and encoded by `to_json`, which also gives
panels unique ids and queries their refIds, so no JSON is kept by hand.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from grafana_foundation_sdk.builders import common as common_builders
from grafana_foundation_sdk.builders import dashboard, logs, loki, prometheus, stat, table, timeseries
from grafana_foundation_sdk.cog.builder import Builder
from grafana_foundation_sdk.cog.encoder import JSONEncoder
from grafana_foundation_sdk.models import common
from grafana_foundation_sdk.models import dashboard as models
from grafana_foundation_sdk.models.prometheus import PromQueryFormat

from config.grafana.datasources import LOKI, PROMETHEUS, DatasourceRef

PanelBuilder = Builder[models.Panel]

FULL_WIDTH = 24
HALF = 12
THIRD = 8
QUARTER = 6
HEIGHT = 8


@dataclass(frozen=True)
class Step:
    """A threshold step: from `value` upwards the colour is `color`."""

    value: float
    color: str


@dataclass(frozen=True)
class Query:
    """One query of a panel: the expression, its legend, and how it is run."""

    expr: str
    legend: str = ""
    instant: bool = False
    exemplar: bool = False


def _ref(ds: DatasourceRef) -> models.DataSourceRef:
    return models.DataSourceRef(type_val=ds.type, uid=ds.uid)


def _prom_target(query: Query) -> prometheus.Dataquery:
    target = prometheus.Dataquery().expr(query.expr).datasource(_ref(PROMETHEUS))
    if query.legend:
        target = target.legend_format(query.legend)
    if query.instant:
        target = target.instant()
    else:
        target = target.range()
    if query.exemplar:
        target = target.exemplar(True)
    return target


def _loki_target(query: Query) -> loki.Dataquery:
    target = loki.Dataquery().expr(query.expr).datasource(_ref(LOKI))
    if query.legend:
        target = target.legend_format(query.legend)
    return target


def _thresholds(base: str, steps: Sequence[Step]) -> dashboard.ThresholdsConfig:
    ordered = sorted(steps, key=lambda s: s.value)
    return (dashboard.ThresholdsConfig().mode(models.ThresholdsMode.ABSOLUTE)
            .steps([models.Threshold(value=None, color=base)]
                   + [models.Threshold(value=s.value, color=s.color) for s in ordered]))


def timeseries_panel(title: str, queries: Iterable[Query], unit: str, *, description: str = "",
                     steps: Sequence[Step] = (), base: str = "green", span: int = HALF,
                     height: int = HEIGHT, ds: DatasourceRef = PROMETHEUS) -> timeseries.Panel:
    """A time series; threshold steps (SLO, SLA) are drawn as dashed lines."""
    panel = (timeseries.Panel().title(title).description(description).datasource(_ref(ds)).unit(unit)
             .span(span).height(height).line_width(1).fill_opacity(10))
    for query in queries:
        panel = panel.with_target(_loki_target(query) if ds == LOKI else _prom_target(query))
    if steps:
        panel = (panel.thresholds(_thresholds(base, steps))
                 .thresholds_style(common_builders.GraphThresholdsStyleConfig()
                                   .mode(common.GraphThresholdsStyleMode.DASHED)))
    return panel


def stat_panel(title: str, queries: Iterable[Query], unit: str, *, description: str = "",
               steps: Sequence[Step] = (), base: str = "green", span: int = QUARTER,
               height: int = HEIGHT, decimals: int | None = None) -> stat.Panel:
    """A stat of the last value of each series, coloured by threshold steps."""
    panel = (stat.Panel().title(title).description(description).datasource(_ref(PROMETHEUS)).unit(unit)
             .span(span).height(height).color_mode(common.BigValueColorMode.BACKGROUND)
             .graph_mode(common.BigValueGraphMode.AREA)
             .reduce_options(common_builders.ReduceDataOptions().calcs(["lastNotNull"]))
             .thresholds(_thresholds(base, steps)))
    if decimals is not None:
        panel = panel.decimals(decimals)
    for query in queries:
        panel = panel.with_target(_prom_target(query))
    return panel


def table_panel(title: str, queries: Iterable[Query], *, description: str = "", span: int = FULL_WIDTH,
                height: int = HEIGHT) -> table.Panel:
    """A table of instant query results (one row per series)."""
    panel = (table.Panel().title(title).description(description).datasource(_ref(PROMETHEUS))
             .span(span).height(height))
    for query in queries:
        panel = panel.with_target(_prom_target(Query(query.expr, query.legend, instant=True))
                                  .format(PromQueryFormat.TABLE))
    return panel


def logs_panel(title: str, expr: str, *, description: str = "", span: int = FULL_WIDTH,
               height: int = 10) -> logs.Panel:
    """Log lines of one LogQL query, newest first, with labels and details."""
    return (logs.Panel().title(title).description(description).datasource(_ref(LOKI))
            .span(span).height(height).show_time(True).show_labels(False).enable_log_details(True)
            .wrap_log_message(True).prettify_log_message(False).sort_order(common.LogsSortOrder.DESCENDING)
            .with_target(_loki_target(Query(expr))))


def service_variable(services: Sequence[str]) -> dashboard.CustomVariable:
    """`$service`: one or more of the workload services (default all)."""
    return (dashboard.CustomVariable("service").label("Service").values(",".join(services))
            .multi(True).include_all(True))


def new_dashboard(uid: str, title: str, tags: Sequence[str], description: str) -> dashboard.Dashboard:
    """A dashboard with the stack's common settings (UTC, 30 s refresh, last hour)."""
    return (dashboard.Dashboard(title).uid(uid).tags(list(tags)).description(description).editable()
            .timezone("utc").refresh("30s").time("now-1h", "now").tooltip(models.DashboardCursorSync.CROSSHAIR))


def to_json(board: dashboard.Dashboard) -> dict[str, Any]:
    """The dashboard as JSON data: unique panel ids, refIds A, B, ... per panel."""
    doc: dict[str, Any] = json.loads(json.dumps(board.build(), cls=JSONEncoder))
    for number, panel in enumerate(doc.get("panels", []), start=1):
        panel["id"] = number
        for index, target in enumerate(panel.get("targets", [])):
            target["refId"] = chr(ord("A") + index)
    return doc


def panel_queries(doc: dict[str, Any]) -> list[tuple[str, str, str]]:
    """(panel title, datasource uid, expression) of every query on a dashboard."""
    found: list[tuple[str, str, str]] = []
    for panel in doc.get("panels", []):
        for target in panel.get("targets", []):
            uid = (target.get("datasource") or panel.get("datasource") or {}).get("uid", "")
            found.append((panel.get("title", ""), uid, target.get("expr", "")))
    return found
