"""The README's alert-quality tables from a bench result: `python -m bench.alert_quality.table < result.json`.

One row per alert (and burn-window row), with the four columns of the SRE workbook's comparison of
alerting strategies: precision, recall, detection time, reset time; then the same per scenario class.
"""

from __future__ import annotations

import json
import sys
from typing import Any


def _pct(x: float | None) -> str:
    if x is None:
        return "—"
    return f"{x:.0%}" if round(x * 100, 1) == round(x * 100) else f"{x:.1%}"


def _dur(stats: dict[str, float | None]) -> str:
    med, top = stats.get("median"), stats.get("max")
    if med is None or top is None:
        return "—"
    return f"{_human(med)} / {_human(top)}"


def _human(seconds: float) -> str:
    sign = "-" if seconds < 0 else ""
    s = abs(seconds)
    if s < 120:
        return f"{sign}{s:.0f} s"
    if s < 7200:
        return f"{sign}{s / 60:.0f} min"
    return f"{sign}{s / 3600:.1f} h"


def alert_table(result: dict[str, Any]) -> str:
    lines = ["| alert | severity | precision | recall | detection (median / max) | reset (median / max) | fired (firings) |",
             "|---|---|---|---|---|---|---|"]
    for key, a in result["alerts"].items():
        if not a["fired"] and not a["incidents"]:
            continue
        lines.append(f"| {key} | {a['severity']} | {_pct(a['precision'])} ({a['true']}/{a['fired']}) | "
                     f"{_pct(a['recall'])} ({a['incidents']}) | {_dur(a['detection_s'])} | {_dur(a['reset_s'])} | "
                     f"{a['fired']} ({a['firings']}) |")
    return "\n".join(lines)


def class_table(result: dict[str, Any]) -> str:
    lines = ["| class | scenarios | false pages | false tickets | page recall | ticket recall | "
             "page detection (median / max) | page reset (median / max) |",
             "|---|---|---|---|---|---|---|---|"]
    for name, c in result["classes"].items():
        lines.append(f"| {name} | {c['scenarios']} | {c['false_pages']}/{c['pages']} | "
                     f"{c['false_tickets']}/{c['tickets']} | {_pct(c['page_recall'])} ({c['page_incidents']}) | "
                     f"{_pct(c['ticket_recall'])} ({c['ticket_incidents']}) | {_dur(c['page_detection_s'])} | "
                     f"{_dur(c['page_reset_s'])} |")
    return "\n".join(lines)


def overall_line(result: dict[str, Any]) -> str:
    o = result["overall"]
    return (f"false page rate {_pct(o['false_page_rate'])} ({o['false_pages']}/{o['pages']}), on noise "
            f"scenarios {o['noise_pages']} pages; false ticket rate {_pct(o['false_ticket_rate'])} "
            f"({o['false_tickets']}/{o['tickets']}); page recall {_pct(o['page_recall'])} "
            f"({o['page_incidents']} incidents), ticket recall {_pct(o['ticket_recall'])} "
            f"({o['ticket_incidents']}); {result['scenarios_count']} scenarios in {result['run']['seconds']:.0f} s")


def main() -> int:
    result = json.load(sys.stdin)
    print(alert_table(result))
    print()
    print(class_table(result))
    print()
    print(overall_line(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
