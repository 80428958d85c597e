"""End to end: the dev stack rehearsed with podman passes every check (`scripts/rehearse.sh`).

Minutes long and root only (rootful podman); `make rehearse` is the same run without pytest
around it. Deselect it with `-m "not rehearsal"` on a machine that cannot run podman as root:
it fails there, with the reason, rather than pass unrun.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from config.settings import PROJECT_DIR


@pytest.mark.e2e
@pytest.mark.rehearsal
@pytest.mark.timeout(3600)
def test_the_dev_stack_rehearses_green() -> None:
    done = subprocess.run(["bash", "scripts/rehearse.sh"], cwd=PROJECT_DIR, capture_output=True, text=True,
                          timeout=3500, env=os.environ | {"PYTHON": sys.executable})
    assert done.stdout.strip(), f"the rehearsal printed no summary (exit {done.returncode}):\n{done.stderr[-3000:]}"
    summary = json.loads(done.stdout)
    failed = {name: check for name, check in summary["checks"].items() if not check["pass"]}
    assert done.returncode == 0 and summary["passed"] and not failed, (failed, done.stderr[-3000:])
    assert {n for n, c in summary["containers"].items() if c["state"] == "left out"} == {"grafana", "loki", "alloy"}
