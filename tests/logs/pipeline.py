"""Simulates a shipper's Docker pipeline and the LogQL the runbook uses, from the parsed config.

Neither Alloy, Promtail nor Loki can be installed on these machines (not in Debian or PyPI), so
the tests read the *rendered* configs back and run their stages here, with the semantics the
Grafana docs give: Docker API label filter, Prometheus relabelling (anchored regex, `$1`,
`__`-labels dropped), `json` stage (JMESPath of top-level keys), `labels` stage. A LogQL subset
evaluates the dashboard queries, including the `_extracted` rule for parsed keys that clash
with stream labels.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from tests.logs.alloy_syntax import Block, Ref, parse


@dataclass(frozen=True)
class Container:
    """A container as the Docker API lists it."""

    name: str
    labels: dict[str, str]


@dataclass(frozen=True)
class Pipeline:
    """What a shipper config does to a container's log lines, normalised across Alloy and Promtail."""

    label_filters: tuple[str, ...]  # Docker API filters `label=<key>=<value>`
    rules: tuple[dict[str, Any], ...]  # relabel rules as Promtail writes them
    stages: tuple[tuple[str, dict[str, str]], ...]  # ("json", expressions) / ("labels", values)
    push_url: str


@dataclass(frozen=True)
class Entry:
    """One log entry as Loki stores it."""

    labels: dict[str, str]
    line: str


# --- reading the configs ----------------------------------------------------------------------------


def _resolve(root: Block, ref: Any, export: str) -> Block:
    assert isinstance(ref, Ref), f"expected a reference to a component's {export}, got {ref!r}"
    *name, label, exported = ref.path.split(".")
    assert exported == export, f"{ref.path}: expected the {export} export"
    return root.component(".".join(name), label)


def alloy_pipeline(text: str) -> Pipeline:
    """The pipeline of a rendered config.alloy, following its component references."""
    root = parse(text)
    [source] = root.children("loki.source.docker")
    discovery = _resolve(root, source.attrs["targets"], "targets")
    assert discovery.name == "discovery.docker" and discovery.attrs["host"] == source.attrs["host"]
    relabel = _resolve(root, source.attrs["relabel_rules"], "rules")
    [forward] = source.attrs["forward_to"]
    process = _resolve(root, forward, "receiver")
    [write_ref] = process.attrs["forward_to"]
    write = _resolve(root, write_ref, "receiver")
    filters = tuple(f"label={v}" for f in discovery.children("filter") if f.attrs["name"] == "label"
                    for v in f.attrs["values"])
    rules = tuple(dict(rule.attrs) for rule in relabel.children("rule"))
    stages = tuple((b.name.removeprefix("stage."), dict(b.attrs["expressions" if b.name == "stage.json"
                                                               else "values"])) for b in process.blocks)
    return Pipeline(filters, rules, stages, write.children("endpoint")[0].attrs["url"])


def promtail_pipeline(doc: dict[str, Any]) -> Pipeline:
    """The pipeline of a parsed promtail.yaml (its single docker scrape config)."""
    [job] = doc["scrape_configs"]
    [sd] = job["docker_sd_configs"]
    filters = tuple(f"label={v}" for f in sd.get("filters", []) if f["name"] == "label" for v in f["values"])
    stages = []
    for stage in job["pipeline_stages"]:
        [(kind, body)] = stage.items()
        stages.append((kind, dict(body["expressions"] if kind == "json" else body)))
    [client] = doc["clients"]
    return Pipeline(filters, tuple(job["relabel_configs"]), tuple(stages), client["url"])


# --- running it -------------------------------------------------------------------------------------


def discovered(containers: Iterable[Container], filters: Sequence[str]) -> list[Container]:
    """Containers the Docker API lists for these `label=key=value` filters (all must match)."""
    wanted = [f.removeprefix("label=").split("=", 1) for f in filters]
    return [c for c in containers if all(c.labels.get(k) == v for k, v in wanted)]


def meta_labels(container: Container) -> dict[str, str]:
    meta = {"__meta_docker_container_name": "/" + container.name}
    for key, value in container.labels.items():
        meta["__meta_docker_container_label_" + re.sub(r"[^a-zA-Z0-9_]", "_", key)] = value
    return meta


def relabel(labels: dict[str, str], rules: Sequence[dict[str, Any]]) -> dict[str, str] | None:
    """Prometheus relabelling (keep/drop/replace); None when the target is dropped."""
    out = dict(labels)
    for rule in rules:
        value = rule.get("separator", ";").join(out.get(s, "") for s in rule.get("source_labels", []))
        match = re.fullmatch(rule.get("regex", "(.*)"), value)
        action = rule.get("action", "replace")
        if action == "keep" and not match:
            return None
        if action == "drop" and match:
            return None
        if action == "replace" and match:
            target = rule["target_label"]
            result = re.sub(r"\$(\d+)|\$\{(\d+)\}", lambda m: match.group(int(m.group(1) or m.group(2))) or "",
                            rule.get("replacement", "$1"))
            if result:
                out[target] = result
            else:
                out.pop(target, None)
    return {k: v for k, v in out.items() if not k.startswith("__")}


def docker_api_line(json_file_line: str) -> str:
    """The line the Docker API returns for a json-file record: the `log` field, newline stripped."""
    return str(json.loads(json_file_line)["log"]).rstrip("\n")


def run_stages(labels: dict[str, str], line: str, stages: Sequence[tuple[str, dict[str, str]]]) -> Entry:
    extracted: dict[str, str] = {}
    labels = dict(labels)
    for kind, body in stages:
        if kind == "json":
            try:
                record = json.loads(line)
            except json.JSONDecodeError:
                continue  # the stage logs the failure and passes the line on unchanged
            for name, path in body.items():
                key = path or name
                assert re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", key), f"simulator handles top-level keys only: {key}"
                if isinstance(record, dict) and record.get(key) is not None:
                    value = record[key]
                    extracted[name] = value if isinstance(value, str) else json.dumps(value)
        elif kind == "labels":
            for name, source in body.items():
                if (source or name) in extracted:
                    labels[name] = extracted[source or name]
        else:
            raise AssertionError(f"stage {kind!r} is not simulated")
    return Entry(labels, line)


def ship(pipeline: Pipeline, logs: Sequence[tuple[Container, list[str]]]) -> list[Entry]:
    """Entries Loki receives from these containers' json-file log lines."""
    entries = []
    listed = discovered([container for container, _ in logs], pipeline.label_filters)
    for container, lines in logs:
        labels = relabel(meta_labels(container), pipeline.rules) if container in listed else None
        if labels is None:
            continue
        entries += [run_stages(labels, docker_api_line(raw), pipeline.stages) for raw in lines]
    return entries


# --- a LogQL subset -----------------------------------------------------------------------------------

_MATCHER = re.compile(r'\s*([a-zA-Z_]\w*)\s*(=~|!~|!=|=)\s*"((?:[^"\\]|\\.)*)"\s*,?')


def _label_match(value: str, op: str, want: str) -> bool:
    return {"=": value == want, "!=": value != want,
            "=~": re.fullmatch(want, value) is not None, "!~": re.fullmatch(want, value) is None}[op]


def logql(query: str, entries: Iterable[Entry]) -> list[Entry]:
    """Entries a log query selects: `{matchers} [|= "text"] | json [params] [| label op value]...`."""
    selector, _, rest = query.partition("}")
    matchers = _MATCHER.findall(selector.lstrip("{"))
    assert matchers, f"no stream selector in {query!r}"
    stages = [s.strip() for s in rest.split("|")[1:]]
    line_filters = re.findall(r'\|=\s*"((?:[^"\\]|\\.)*)"', rest)
    stages = [s for s in stages if not s.startswith("=")]
    selected = []
    for entry in entries:
        if not all(_label_match(entry.labels.get(k, ""), op, v) for k, op, v in matchers):
            continue
        if not all(text in entry.line for text in line_filters):
            continue
        labels = dict(entry.labels)
        keep = True
        for stage in stages:
            if stage.startswith("json"):
                labels |= _json_parser(stage.removeprefix("json").strip(), entry.line, entry.labels)
            else:
                keep = keep and _label_filter(stage, labels)
        if keep:
            selected.append(entry)
    return selected


def _json_parser(params: str, line: str, stream: dict[str, str]) -> dict[str, str]:
    try:
        record = json.loads(line)
    except json.JSONDecodeError:
        return {"__error__": "JSONParserErr"}
    if params:  # `| json label="path"`: extracts the named paths only, filters nothing
        pairs = [(label, path) for label, _, path in _MATCHER.findall(params) if path in record]
    else:
        pairs = [(key, key) for key in record]
    out = {}
    for label, path in pairs:
        value = record[path]
        name = f"{label}_extracted" if label in stream else label  # Loki's rule for clashing names
        out[name] = value if isinstance(value, str) else json.dumps(value)
    return out


def _label_filter(stage: str, labels: dict[str, str]) -> bool:
    match = re.fullmatch(r'([a-zA-Z_]\w*)\s*(=|!=|=~|!~)\s*"([^"]*)"', stage)
    if match:
        return _label_match(labels.get(match.group(1), ""), match.group(2), match.group(3))
    match = re.fullmatch(r"([a-zA-Z_]\w*)\s*(>=|<=|>|<)\s*([0-9.]+)", stage)
    assert match, f"label filter {stage!r} is not simulated"
    try:
        value = float(labels.get(match.group(1), "nan"))
    except ValueError:
        return False
    bound = float(match.group(3))
    return {">": value > bound, "<": value < bound, ">=": value >= bound, "<=": value <= bound}[match.group(2)]

