"""podman as the rehearsal drives it: runc, cgroupfs, and rehearsal/containers.conf."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path
from typing import Any

CONTAINERS_CONF = Path(__file__).resolve().parent / "containers.conf"
PODMAN = ["podman", "--runtime", "runc", "--cgroup-manager=cgroupfs"]


class EngineError(RuntimeError):
    """podman refused a command; the message holds the command and podman's own words."""


class Podman:
    """Runs podman commands with the settings this machine needs (no systemd, no default ulimits)."""

    def __init__(self, conf: Path = CONTAINERS_CONF) -> None:
        self.env = os.environ | {"CONTAINERS_CONF": str(conf)}

    def run(self, *args: str, data: bytes | None = None, check: bool = True, timeout: float | None = 300
            ) -> subprocess.CompletedProcess[bytes]:
        done = subprocess.run([*PODMAN, *args], input=data, capture_output=True, env=self.env, timeout=timeout)
        if check and done.returncode != 0:
            raise EngineError(f"podman {' '.join(args)}: exit {done.returncode}: {_clean(done.stderr)}")
        return done

    def text(self, *args: str, **kwargs: Any) -> str:
        return self.run(*args, **kwargs).stdout.decode(errors="replace")

    def inspect(self, kind: str, name: str) -> dict[str, Any] | None:
        done = self.run(kind, "inspect", name, check=False)
        if done.returncode != 0:
            return None
        found = json.loads(done.stdout)
        return found[0] if found else None

    def exists(self, kind: str, name: str) -> bool:
        return self.run(kind, "exists", name, check=False).returncode == 0

    def logs(self, name: str) -> str:
        done = self.run("logs", name, check=False)
        return (done.stdout + done.stderr).decode(errors="replace")

    def popen(self, *args: str) -> subprocess.Popen[bytes]:
        return subprocess.Popen([*PODMAN, *args], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=self.env)


def _clean(stderr: bytes) -> str:
    """podman's stderr without the noise of a machine without systemd or syslog."""
    lines = [line for line in stderr.decode(errors="replace").splitlines()
             if "systemd" not in line and "syslog" not in line]
    return "\n".join(lines).strip()[-2000:]
