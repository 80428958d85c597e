"""The program and the renderer in the venv `pulumi up` uses: requirements.txt only, none of the services' packages.

A latency threshold that is not one of the services' histogram buckets must stop both with the
key, the value and the allowed values, and no Python traceback: the bucket list is read from
`mime_server/buckets.py`, which imports nothing, so the check cannot be skipped for a missing
dependency as it once was.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from config.settings import PROJECT_DIR

REQUIREMENTS = PROJECT_DIR / "requirements.txt"
CACHE = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "observability-tests"
ALLOWED = "0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0"


@pytest.fixture(scope="session")
def program_python() -> str:
    """A venv with requirements.txt alone (cached by its hash, outside the repository)."""
    digest = hashlib.sha256(REQUIREMENTS.read_bytes()).hexdigest()[:12]
    venv = CACHE / f"program-venv-{digest}"
    python = venv / "bin" / "python"
    if not (venv / ".complete").exists():
        shutil.rmtree(venv, ignore_errors=True)
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
        done = subprocess.run([str(python), "-m", "pip", "install", "--quiet", "--disable-pip-version-check",
                               "-r", str(REQUIREMENTS)], capture_output=True, text=True, timeout=1200)
        assert done.returncode == 0, done.stderr[-3000:]
        (venv / ".complete").touch()
    return str(python)


@pytest.fixture()
def project(tmp_path: Path) -> Path:
    """A copy of the project whose dev stack sets an SLO latency threshold no service exposes."""
    copy = tmp_path / "project"
    shutil.copytree(PROJECT_DIR, copy, ignore=shutil.ignore_patterns(
        "venv", ".git", ".pulumi-state", "__pycache__", ".pytest_cache", "out"))
    stack = copy / "Pulumi.dev.yaml"
    stack.write_text(stack.read_text() + '  observability:sloLatencySeconds: "0.3"\n')
    return copy


def test_the_services_packages_are_absent_from_the_program_venv(program_python: str) -> None:
    done = subprocess.run([program_python, "-c", "import prometheus_client"], capture_output=True, text=True)
    assert done.returncode != 0, "the program's venv must not hold the services' dependencies"


def test_render_refuses_a_threshold_that_is_not_a_bucket(program_python: str, project: Path, tmp_path: Path) -> None:
    done = subprocess.run([program_python, "-m", "config.render", "--stack", "dev", "--out", str(tmp_path / "out")],
                          cwd=project, capture_output=True, text=True, timeout=120)
    assert done.returncode == 2
    assert done.stderr.strip() == (f"error: observability:sloLatencySeconds = 0.3: expected a latency bucket bound "
                                   f"the services expose, one of {ALLOWED}")


def test_the_program_stops_on_it_before_any_resource(program_python: str, project: Path) -> None:
    """Under Pulumi mocks, in the program's venv: a RunError (the engine prints its message, no traceback)."""
    script = textwrap.dedent("""
        import pulumi
        from tests.program import harness
        try:
            harness.run_program("dev")
        except pulumi.RunError as exc:
            print("RunError:", exc)
            print("registered:", len(harness.last_monitor.registrations))
    """)
    done = subprocess.run([program_python, "-c", script], cwd=project, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.splitlines() == [
        f"RunError: observability:sloLatencySeconds = 0.3: expected a latency bucket bound the services expose, "
        f"one of {ALLOWED}",
        "registered: 0",
    ]
