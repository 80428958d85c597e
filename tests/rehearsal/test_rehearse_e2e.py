"""End to end: the dev stack rehearsed with podman passes every check (`scripts/rehearse.sh`).

Minutes long and root only, so it runs when asked: `REHEARSE=1 make test` (or `make rehearse`,
which is the same run without pytest around it).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from config.settings import PROJECT_DIR


@pytest.mark.e2e
@pytest.mark.timeout(3600)
@pytest.mark.skipif(os.environ.get("REHEARSE") != "1", reason="set REHEARSE=1 to rehearse the dev stack with podman")
def test_the_dev_stack_rehearses_green() -> None:
    done = subprocess.run(["bash", "scripts/rehearse.sh"], cwd=PROJECT_DIR, capture_output=True, text=True,
                          timeout=3500, env=os.environ | {"PYTHON": sys.executable})
    summary = json.loads(done.stdout)
    failed = {name: check for name, check in summary["checks"].items() if not check["pass"]}
    assert done.returncode == 0 and summary["passed"] and not failed, (failed, done.stderr[-3000:])
    assert {n for n, c in summary["containers"].items() if c["state"] == "left out"} == {"grafana", "loki", "alloy"}
