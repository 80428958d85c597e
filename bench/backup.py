"""Benchmark of `automation backup`: throughput beside `tar -cf - DIR | gzip -6`, and peak memory at two data sizes.

Prints one JSON object. Data: a mime-storage-like tree of small and large objects, half
incompressible bytes and half log-like text, generated once per run in a temp directory.
"""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
WORDS = "GET POST /v1/files 200 201 404 mime-server image/png application/pdf text/plain latency_ms bytes_in".split()


def make_tree(directory: Path, total_bytes: int, seed: int = 7) -> int:
    """Fill ``directory`` with about ``total_bytes`` of objects (4 KiB-8 MiB); returns the bytes written."""
    rng = random.Random(seed)
    text = "\n".join(
        " ".join(rng.choice(WORDS) + str(rng.randrange(10_000)) for _ in range(12)) for _ in range(60_000)
    ).encode()
    written = 0
    index = 0
    while written < total_bytes:
        size = rng.choice([4 << 10, 16 << 10, 64 << 10, 256 << 10, 1 << 20, 8 << 20])
        size = min(size, total_bytes - written) or 1
        sub = directory / f"{index % 16:02x}" / f"{index % 251:02x}"
        sub.mkdir(parents=True, exist_ok=True)
        if index % 2:
            data = rng.randbytes(size)
        else:
            start = rng.randrange(0, len(text) - 1)
            data = (text[start:] + text)[:size]
            while len(data) < size:
                data += text[: size - len(data)]
        (sub / f"object-{index:06d}").write_bytes(data)
        written += size
        index += 1
    return written


def timed_child(command: list[str] | str, shell: bool = False) -> tuple[float, int]:
    """Run a child to completion: (wall seconds, peak RSS in MiB of that child alone)."""
    started = time.perf_counter()
    child = subprocess.Popen(command, shell=shell, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _pid, status, usage = os.wait4(child.pid, 0)
    elapsed = time.perf_counter() - started
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"benchmark child failed: {command!r}: {child.stderr.read().decode() if child.stderr else ''}")
    return elapsed, usage.ru_maxrss // 1024


def backup_command(source: Path, dest: Path, compression: str) -> list[str]:
    return [sys.executable, "-m", "automation", "backup", "--source", str(source), "--dest", str(dest),
            "--compression", compression, "--no-progress"]


def main() -> None:
    big = int(os.environ.get("BENCH_BACKUP_MB", "256")) << 20
    small = big // 4
    with tempfile.TemporaryDirectory(prefix="bench-backup-") as work:
        base = Path(work)
        large_dir, small_dir, dest = base / "large", base / "small", base / "out"
        size_large = make_tree(large_dir, big)
        size_small = make_tree(small_dir, small, seed=11)
        dest.mkdir()
        subprocess.run(f"tar -C {large_dir} -cf - . > /dev/null", shell=True, check=True)  # warm the page cache

        def best(command: list[str] | str, shell: bool = False, runs: int = 2) -> tuple[float, int]:
            results = []
            for _ in range(runs):
                results.append(timed_child(command, shell))
                for leftover in dest.iterdir():
                    leftover.unlink()
            return min(r[0] for r in results), max(r[1] for r in results)

        tar_gzip, _ = best(f"tar -C {large_dir} -cf - . | gzip -6 > {dest}/reference.tar.gz", shell=True)
        gz, rss_gz_large = best(backup_command(large_dir, dest, "gz"))
        zst, rss_zst_large = best(backup_command(large_dir, dest, "zst"))
        _, rss_gz_small = best(backup_command(small_dir, dest, "gz"), runs=1)

    mb = size_large / 1e6
    print(json.dumps({
        "bench": "backup",
        "data_mb": round(mb, 1),
        "cores": os.cpu_count(),
        "tar_gzip6_mb_s": round(mb / tar_gzip, 1),
        "backup_gz_mb_s": round(mb / gz, 1),
        "backup_zst_mb_s": round(mb / zst, 1),
        "gz_vs_tar_gzip": round(tar_gzip / gz, 2),
        "zst_vs_tar_gzip": round(tar_gzip / zst, 2),
        "peak_rss_mib": {
            f"gz_{round(size_small / 1e6)}mb": rss_gz_small,
            f"gz_{round(mb)}mb": rss_gz_large,
            f"zst_{round(mb)}mb": rss_zst_large,
        },
        "goal": "gz >= 0.9x tar|gzip -6, zst faster, RSS flat as data grows",
    }))


if __name__ == "__main__":
    main()
