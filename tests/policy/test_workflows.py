"""The GitHub workflows: their structure, schema, shell scripts, and the config-diff script run for real."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from config.settings import PROJECT_DIR, STACKS
from tests.tools import pinned

WORKFLOWS = PROJECT_DIR / ".github" / "workflows"
DOC = PROJECT_DIR / "docs" / "review-and-promotion.md"


def load(name: str) -> dict[str, Any]:
    return yaml.safe_load((WORKFLOWS / name).read_text())


def triggers(doc: dict[str, Any]) -> dict[str, Any]:
    return doc.get("on", doc.get(True))  # YAML 1.1 reads a bare `on` key as True


def step(job: dict[str, Any], uses_prefix: str) -> dict[str, Any]:
    [found] = [s for s in job["steps"] if s.get("uses", "").startswith(uses_prefix)]
    return found


def run_step(job: dict[str, Any], name_prefix: str) -> str:
    [found] = [s for s in job["steps"] if s.get("name", "").startswith(name_prefix)]
    return found["run"]


def all_steps() -> list[tuple[str, str, dict[str, Any]]]:
    return [(f.name, job_name, s) for f in sorted(WORKFLOWS.glob("*.yml"))
            for job_name, job in yaml.safe_load(f.read_text())["jobs"].items() for s in job["steps"]]


def test_pull_request_runs_tests_then_a_policy_preview_per_stack() -> None:
    doc = load("pull-request.yml")
    assert list(triggers(doc)) == ["pull_request"]
    assert doc["permissions"] == {"contents": "read"}
    test, preview = doc["jobs"]["test"], doc["jobs"]["preview"]
    installs = " ".join(s.get("run", "") for s in test["steps"])
    assert "bash scripts/tools.sh" in installs and "requirements-dev.txt" in installs
    assert step(test, "actions/setup-go@")["with"]["go-version"] == "${{ env.GO_VERSION }}"
    assert "hashFiles('scripts/tools.sh')" in step(test, "actions/cache@")["with"]["key"]
    assert run_step(test, "Run the tests").strip().endswith(" make test")

    assert preview["needs"] == "test"
    assert preview["strategy"]["matrix"]["stack"] == list(STACKS)
    assert preview["permissions"]["pull-requests"] == "write"
    pulumi = step(preview, "pulumi/actions@")
    assert pulumi["uses"] == "pulumi/actions@v6"
    assert pulumi["with"]["command"] == "preview"
    assert pulumi["with"]["stack-name"] == "${{ matrix.stack }}"
    assert pulumi["with"]["policyPacks"] == "policy"
    assert pulumi["with"]["comment-on-pr"] is True
    assert "policy/requirements.txt" in run_step(preview, "Install")
    for name in ("PULUMI_CONFIG_PASSPHRASE", "PULUMI_BACKEND_URL", "DOCKER_HOST"):
        assert preview["env"][name] == f"${{{{ secrets.{name} }}}}"


def test_pull_request_posts_the_rendered_config_diff() -> None:
    job = load("pull-request.yml")["jobs"]["config-diff"]
    render = run_step(job, "Render")
    assert 'git worktree add --detach "$RUNNER_TEMP/base" "$BASE_SHA"' in render
    assert render.count("python -m config.render --stack") == 2  # head and base
    assert step(job, "actions/checkout@")["with"]["fetch-depth"] == 0
    post = step(job, "actions/github-script@")
    assert "<!-- rendered-config-diff -->" in post["with"]["script"]
    assert "updateComment" in post["with"]["script"] and "createComment" in post["with"]["script"]
    assert job["permissions"]["pull-requests"] == "write"


def test_push_to_main_updates_dev_only() -> None:
    doc = load("deploy-dev.yml")
    assert triggers(doc) == {"push": {"branches": ["main"]}}
    up = doc["jobs"]["up"]
    assert up["needs"] == "test"
    pulumi = step(up, "pulumi/actions@")
    assert (pulumi["with"]["command"], pulumi["with"]["stack-name"], pulumi["with"]["policyPacks"]) == (
        "up", "dev", "policy")
    assert doc["concurrency"]["cancel-in-progress"] is False


def test_every_action_is_pinned_to_a_release() -> None:
    for workflow, job, s in all_steps():
        if "uses" in s:
            assert re.fullmatch(r"[\w.-]+/[\w.-]+@(v\d+(\.\d+){0,2}|[0-9a-f]{40})", s["uses"]), (workflow, job, s)


def test_every_secret_the_workflows_use_is_documented() -> None:
    used = set(re.findall(r"secrets\.([A-Z0-9_]+)", "".join(f.read_text() for f in WORKFLOWS.glob("*.yml"))))
    doc = DOC.read_text()
    assert used - {"GITHUB_TOKEN"} and {s for s in used - {"GITHUB_TOKEN"} if f"`{s}`" not in doc} == set()


def test_workflows_pass_actionlint() -> None:
    """actionlint (the pinned build) checks expressions, contexts, action inputs and runner labels."""
    files = [str(f) for f in sorted(WORKFLOWS.glob("*.yml"))]
    done = subprocess.run([pinned("actionlint"), "-no-color", *files], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr


def test_workflows_match_the_github_workflow_schema() -> None:
    files = [str(f) for f in sorted(WORKFLOWS.glob("*.yml"))]
    done = subprocess.run([sys.executable, "-m", "check_jsonschema", "--builtin-schema", "vendor.github-workflows",
                           *files], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr


@pytest.mark.parametrize("workflow,job,name", [(w, j, s.get("name", "")) for w, j, s in all_steps() if "run" in s])
def test_run_scripts_are_valid_bash(workflow: str, job: str, name: str) -> None:
    [script] = [s["run"] for w, j, s in all_steps() if (w, j, s.get("name", "")) == (workflow, job, name)]
    script = re.sub(r"\$\{\{[^}]*\}\}", "X", script)
    done = subprocess.run(["bash", "-n"], input=script, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr


def test_config_diff_scripts_show_a_stack_file_change(tmp_path: Path) -> None:
    """Runs the job's render and comment scripts on a clone whose head changes dev's scrape interval."""
    repo = tmp_path / "repo"
    subprocess.run(["git", "clone", "-q", str(PROJECT_DIR), str(repo)], check=True)
    git = ["git", "-C", str(repo), "-c", "user.name=t", "-c", "user.email=t@example.invalid"]
    base = subprocess.run([*git, "rev-parse", "HEAD"], capture_output=True, text=True, check=True).stdout.strip()
    stack_file = repo / "Pulumi.dev.yaml"
    stack_file.write_text(stack_file.read_text() + "  observability:scrapeInterval: 30s\n")
    subprocess.run([*git, "commit", "-q", "-am", "dev: scrape every 30s"], check=True)
    head = subprocess.run([*git, "rev-parse", "HEAD"], capture_output=True, text=True, check=True).stdout.strip()

    job = load("pull-request.yml")["jobs"]["config-diff"]
    runner_temp = tmp_path / "runner"
    runner_temp.mkdir()
    env = {**os.environ, "RUNNER_TEMP": str(runner_temp), "BASE_SHA": base, "HEAD_SHA": head,
           "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}"}
    for name in ("Render", "Write the comment"):
        done = subprocess.run(["bash", "-eo", "pipefail", "-c", run_step(job, name)], cwd=repo, env=env,
                              capture_output=True, text=True, timeout=300)
        assert done.returncode == 0, done.stdout + done.stderr

    diff = (runner_temp / "config.diff").read_text()
    assert "+  scrape_interval: 30s" in diff and "-  scrape_interval: 15s" in diff
    assert "head/dev/prometheus/prometheus.yml" in diff
    assert "head/staging/" not in diff and "head/prod/" not in diff  # only dev changed
    comment = (runner_temp / "comment.md").read_text()
    assert comment.startswith("<!-- rendered-config-diff -->\n")
    assert f"base `{base[:7]}` and head `{head[:7]}`" in comment and "+  scrape_interval: 30s" in comment
    shutil.rmtree(runner_temp / "base", ignore_errors=True)
