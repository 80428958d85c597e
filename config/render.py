"""Writes every rendered config file of a stack, one folder per service: `python -m config.render`.

    python -m config.render --stack dev --out out/dev

The files are what the containers get (minus secret values, which live in separate secret
files this command never writes), so a pull request can show their diff. Stacks whose
alerts need the Slack/PagerDuty secrets are rendered as they will run: with the routes to
Slack and PagerDuty (the secrets themselves are read from files at run time).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from config.registry import enabled_services
from config.settings import (
    ALERT_SECRET_KEYS, GRAFANA_DATABASE_KEY, JAEGER_STORAGE_PASSWORD_KEY, OBJECT_STORE_SECRET_KEYS, PROJECT_DIR,
    SettingsError, StackSettings, defaults, from_values, stack_file_values,
)


def settings_for_render(stack: str, project_dir: Path = PROJECT_DIR) -> StackSettings:
    """The stack's settings; secrets the stack requires count as set (values are never read): the alert
    secrets, and on a cluster the object store's keys, Grafana's database and the trace store's password."""
    values, secrets = stack_file_values(stack, project_dir)
    effective = defaults(project_dir) | values
    if all(str(effective[k]).lower() != "false" for k in ("alertingEnabled", "alertSecretsRequired")):
        secrets = set(secrets) | set(ALERT_SECRET_KEYS)
    if effective["platform"] == "kubernetes":
        if effective["objectStoreBucket"]:
            secrets = set(secrets) | set(OBJECT_STORE_SECRET_KEYS)
        if int(effective["grafanaReplicas"]) > 1:
            secrets = set(secrets) | {GRAFANA_DATABASE_KEY}
        if effective["jaegerStorageUsername"]:
            secrets = set(secrets) | {JAEGER_STORAGE_PASSWORD_KEY}
    return from_values(stack, values, secrets, project_dir)


def render_stack(settings: StackSettings) -> dict[str, str]:
    """Relative path (service folder first) -> file text: the files each enabled service's container gets
    under its config root (e.g. /etc/prometheus/rules/x.yml -> prometheus/rules/x.yml)."""
    files: dict[str, str] = {}
    for service in enabled_services(settings):
        if service.config_root is None:
            continue
        root = service.config_root.rstrip("/") + "/"
        for path, text in service.container(settings).files.items():
            if not path.startswith(root):
                raise ValueError(f"{service.name}: {path} lies outside its config root {root}")
            files[f"{service.name}/{path[len(root):]}"] = text
    return files


def write_files(files: dict[str, str], out: Path) -> list[Path]:
    written = []
    for rel, text in sorted(files.items()):
        path = out / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
        written.append(path)
    return written


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m config.render", description=__doc__.splitlines()[0])
    parser.add_argument("--stack", required=True, help="stack name (dev, staging, prod, k8s)")
    parser.add_argument("--out", required=True, type=Path, help="output directory")
    args = parser.parse_args(argv)
    try:
        settings = settings_for_render(args.stack)
    except SettingsError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    for path in write_files(render_stack(settings), args.out):
        print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
