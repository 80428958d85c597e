"""Runbook wrapper: ``python automation/replay-traffic.py [replay options]`` runs ``automation replay``.

Works when run as a script path: the repository root is put on ``sys.path`` first.
Defaults come from REPLAY_LOG, REPLAY_TARGET and REPLAY_API_KEY.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from automation.cli import main  # noqa: E402

if __name__ == "__main__":
    main(["replay", *sys.argv[1:]])
