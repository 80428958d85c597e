"""Promote configuration between stacks: copy image pins (or chosen keys) from one stack file to the next.

`python -m automation promote --from dev --to staging [--keys K ...] [--dry-run]`
(or `python -m automation.promote ...`) reads each key's effective value in the source stack
(its stack file value, else the Pulumi.yaml default), writes the keys whose value differs into
the target stack file with a round-trip YAML editor (comments, order and every other key kept),
and prints the unified diff. It refuses secrets (declared `secret: true` or stored `secure:`)
and fails with a message naming the key when a key is not declared or has no value.
"""

from __future__ import annotations

import difflib
import io
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

import typer

from automation.errors import EXIT_CONFIG, AutomationError


class PromotionError(AutomationError):
    """A key cannot be promoted (unknown, unset, secret, unpinned image) or a stack file is missing."""

    exit_code = EXIT_CONFIG


@dataclass
class Promotion:
    """The outcome of one promotion: what changed in the target file and its diff."""

    source: str
    target: str
    target_file: Path
    changed: dict[str, tuple[Any, Any]] = field(default_factory=dict)  # key -> (old, new)
    unchanged: list[str] = field(default_factory=list)
    diff: str = ""


def default_keys(declared: dict[str, dict[str, Any]]) -> list[str]:
    """The keys promoted when none are named: every image pin (`*Image`) declared in Pulumi.yaml."""
    return [k for k, spec in declared.items() if k.endswith("Image") and not spec.get("secret")]


def _yaml() -> Any:
    from ruamel.yaml import YAML  # imported here so `automation` loads without it; promote says so

    yaml = YAML()
    yaml.preserve_quotes = True
    yaml.width = 4096  # never re-wrap long values or comments
    return yaml


def _stack_file(project_dir: Path, stack: str) -> Path:
    path = project_dir / f"Pulumi.{stack}.yaml"
    if not path.is_file():
        raise PromotionError(f"stack file {path} not found: expected `pulumi stack init {stack}` "
                             f"(e.g. --copy-config-from) to have created it")
    return path


def _bare(key: str) -> str:
    from config.settings import PROJECT

    ns, sep, name = key.partition(":")
    if sep and ns != PROJECT:
        raise PromotionError(f"{key}: only {PROJECT}:* keys are promoted")
    return name if sep else key


def _is_secure(value: Any) -> bool:
    return isinstance(value, dict) and "secure" in value


def _source_value(key: str, declared: dict[str, dict[str, Any]], config: dict[str, Any], stack: str) -> Any:
    from config.settings import PROJECT, image_tag

    spec = declared.get(key)
    if spec is None:
        close = difflib.get_close_matches(key, list(declared), n=3)
        hint = f"did you mean {', '.join(close)}?" if close else "see the config block of Pulumi.yaml"
        raise PromotionError(f"{PROJECT}:{key} is not declared in Pulumi.yaml: expected a declared key; {hint}")
    full = f"{PROJECT}:{key}"
    if spec.get("secret") or _is_secure(config.get(full)):
        raise PromotionError(f"{full} is a secret: refusing to copy it between stacks; set it per stack with "
                             f"`pulumi config set --secret {key} <value> --stack <stack>`")
    if full in config:
        value = config[full]
    elif "default" in spec:
        value = spec["default"]
    else:
        raise PromotionError(f"{full} has no value in Pulumi.{stack}.yaml and no default in Pulumi.yaml")
    if key.endswith("Image"):
        _, tag, digest = image_tag(str(value))
        if digest is None and tag in (None, "latest"):
            raise PromotionError(f"{full} = {value!r} in {stack}: expected an image pinned by tag or digest")
    return value


def promote(source: str, target: str, keys: list[str] | None = None, dry_run: bool = False,
            project_dir: Path | None = None) -> Promotion:
    """Copy `keys` (default: every image pin) from stack `source` to stack `target`."""
    # Imported here, not at module top: every `python -m automation` command loads this module.
    from config.settings import PROJECT, PROJECT_DIR, declared_config

    project_dir = project_dir or PROJECT_DIR
    if source == target:
        raise PromotionError(f"--from and --to are both {source!r}: expected two different stacks")
    declared = declared_config(project_dir)
    names = [_bare(k) for k in keys] if keys else default_keys(declared)
    yaml = _yaml()
    source_doc = yaml.load(_stack_file(project_dir, source).read_text()) or {}
    source_config = dict(source_doc.get("config") or {})
    values = {k: _source_value(k, declared, source_config, source) for k in names}

    target_file = _stack_file(project_dir, target)
    before = target_file.read_text()
    doc = yaml.load(before)
    if doc is None or not hasattr(doc, "setdefault"):
        from ruamel.yaml.comments import CommentedMap

        doc = CommentedMap()
    if doc.get("config") is None:
        doc["config"] = {}
    target_config = doc["config"]

    result = Promotion(source, target, target_file)
    for key, value in values.items():
        full = f"{PROJECT}:{key}"
        current = target_config.get(full)
        if _is_secure(current):
            raise PromotionError(f"{full} is stored as a secret in {target_file.name}: refusing to overwrite it")
        effective = current if full in target_config else declared[key].get("default")
        if effective == value:
            result.unchanged.append(key)
            continue
        target_config[full] = value
        result.changed[key] = (effective, value)

    out = io.StringIO()
    yaml.dump(doc, out)
    after = out.getvalue() if result.changed else before
    result.diff = "".join(difflib.unified_diff(before.splitlines(keepends=True), after.splitlines(keepends=True),
                                               f"a/{target_file.name}", f"b/{target_file.name}"))
    if result.changed and not dry_run:
        target_file.write_text(after)
    return result


def _split(keys: list[str]) -> list[str]:
    return [k.strip() for item in keys for k in item.split(",") if k.strip()]


def promote_command(
    source: str = typer.Option(..., "--from", help="Stack the values come from (e.g. dev)."),
    target: str = typer.Option(..., "--to", help="Stack whose file is updated (e.g. staging)."),
    keys: list[str] = typer.Option([], "--keys", help="Keys to copy (repeatable or comma-separated); "
                                   "default: every *Image key declared in Pulumi.yaml."),
    dry_run: bool = typer.Option(False, "--dry-run", help="Print the diff without writing the file."),
    project_dir: Optional[Path] = typer.Option(None, "--project-dir", help="Folder holding Pulumi.yaml "
                                               "and the stack files (default: this project)."),
) -> None:
    """Copy image pins (or --keys) from one stack file to the next; prints the diff; never copies secrets."""
    try:
        result = promote(source, target, _split(keys) or None, dry_run, project_dir)
    except AutomationError as error:
        typer.echo(f"error: {error}", err=True)
        raise typer.Exit(error.exit_code) from None
    sys.stdout.write(result.diff)
    verb = "would change" if dry_run else "changed"
    if result.changed:
        listed = ", ".join(f"{k} {old!r} -> {new!r}" for k, (old, new) in result.changed.items())
        typer.echo(f"{result.target_file.name}: {verb} {len(result.changed)} key(s) from {source}: {listed}", err=True)
    else:
        typer.echo(f"{result.target_file.name}: already matches {source} for {len(result.unchanged)} key(s)", err=True)


def register(app: typer.Typer) -> None:
    """Add the `promote` command to the automation CLI."""
    app.command("promote")(promote_command)


def main(argv: list[str] | None = None) -> None:
    """`python -m automation.promote ...` without the rest of the CLI."""
    app = typer.Typer(add_completion=False, pretty_exceptions_enable=False)
    app.command()(promote_command)
    app(args=argv, prog_name="python -m automation.promote")


if __name__ == "__main__":
    main()
