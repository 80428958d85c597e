"""`python -m rehearsal [run|plan-images]`: rehearse a stack with podman, or list the images it needs."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m rehearsal", description=__doc__)
    sub = parser.add_subparsers(dest="command")
    run = sub.add_parser("run", help="start the stack's declared containers with podman and validate them")
    run.add_argument("--stack", default="dev")
    run.add_argument("--keep", action="store_true", help="leave the containers running afterwards")
    run.add_argument("--out", type=Path, help="where the summary, stack outputs and logs go (default out/rehearsal/STACK)")
    plan = sub.add_parser("plan-images", help="the images scripts/images.sh builds, one line each")
    plan.add_argument("--stack", default="dev")
    args = parser.parse_args(argv)

    if args.command == "plan-images":
        from rehearsal.program import declare, image_plan

        print("\n".join(image_plan(declare(args.stack))))
        return 0
    from rehearsal.run import rehearse

    return rehearse(getattr(args, "stack", "dev"), keep=getattr(args, "keep", False), out=getattr(args, "out", None))


if __name__ == "__main__":
    sys.exit(main())
