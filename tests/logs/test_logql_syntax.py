"""Every LogQL query on the dashboards and in the README's "Logs" section parses with Grafana's LogQL grammar.

No Loki binary can be installed here, so the syntax check uses `@grafana/lezer-logql` (the
grammar of Grafana's own query editor) under node, installed from the npm registry on first use
into a cache folder outside the repository.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest

from config.grafana import LOKI_UID, dashboards
from config.grafana.panels import panel_queries
from config.settings import load_stack
from tests.grafana.live import substitute

GRAMMAR_DIR = Path(__file__).parent / "logql_grammar"
README = Path(__file__).resolve().parents[2] / "README.md"
RUNBOOK_AS_WRITTEN = '{container="mockup-gateway"} | json level="warn" | stats count()'


@pytest.fixture(scope="module")
def grammar() -> Path:
    """A folder with the pinned grammar installed (npm, once per machine)."""
    for tool in ("node", "npm"):
        assert shutil.which(tool), f"{tool} is needed for the LogQL grammar check: apt-get install nodejs npm"
    spec = json.loads((GRAMMAR_DIR / "package.json").read_text())
    version = spec["dependencies"]["@grafana/lezer-logql"]
    target = Path(tempfile.gettempdir()) / f"logql-grammar-{version}"
    if not (target / "node_modules" / "@grafana" / "lezer-logql").exists():
        target.mkdir(exist_ok=True)
        shutil.copy(GRAMMAR_DIR / "package.json", target / "package.json")
        subprocess.run(["npm", "install", "--no-audit", "--no-fund", "--silent"], cwd=target, check=True,
                       timeout=120)
    shutil.copy(GRAMMAR_DIR / "check.cjs", target / "check.cjs")
    return target


def rejected(grammar: Path, queries: list[str]) -> list[str]:
    """The queries the grammar does not accept."""
    out = subprocess.run(["node", "check.cjs"], cwd=grammar, input=json.dumps(queries), capture_output=True,
                         text=True, check=True, timeout=30)
    return [bad["query"] for bad in json.loads(out.stdout)]


def readme_queries() -> list[str]:
    text = README.read_text()
    blocks = [q.strip() for block in re.findall(r"```logql\n(.*?)```", text, re.S) for q in block.splitlines()]
    cells = [c.replace("\\|", "|") for c in re.findall(r"\| `(\{[^`]*|sum[^`]*)` \|", text)]
    return [q.replace("<trace id>", "0af7651916cd43dd8448eb211c80319c") for q in blocks + cells if q]


def test_dashboard_logql_queries_parse(grammar: Path) -> None:
    queries = [substitute(expr) for doc in dashboards(load_stack("dev")).values()
               for _, uid, expr in panel_queries(doc) if uid == LOKI_UID]
    assert len(queries) >= 6
    assert rejected(grammar, queries) == []


def test_readme_logql_queries_parse(grammar: Path) -> None:
    queries = readme_queries()
    assert len(queries) >= 7, queries
    assert rejected(grammar, queries) == []


def test_grammar_rejects_the_runbook_query_as_written(grammar: Path) -> None:
    # `| stats count()` is not LogQL; `| json level="warn"` alone parses (a parameterised parser).
    assert rejected(grammar, [RUNBOOK_AS_WRITTEN, '{container="mockup-gateway"} | json level="warn"']) == \
        [RUNBOOK_AS_WRITTEN]
