"""Entry point: ``python -m mime_server --host H --port P --storage DIR`` runs mime-server."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path

from mime_server import MIME_SERVICE
from mime_server.app import DEFAULT_MAX_UPLOAD_BYTES, ServerSettings, create_app
from mime_server.limits import MIME_LIMITS, UPLOAD_MEMORY_BUDGET_BYTES, add_limit_arguments, limits_from_args
from mime_server.options import env_default, parse_int, read_secret_file
from mime_server.serve import run
from mime_server.tracing import tracer_provider_from_env


def parse_args(argv: Sequence[str], environ: Mapping[str, str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m mime_server", description="Detect, store and serve files.")
    parser.add_argument("--host", default=env_default(environ, "MIME_HOST", "127.0.0.1"))
    parser.add_argument("--port", type=parse_int("--port"), default=env_default(environ, "MIME_PORT", "8080"))
    storage = env_default(environ, "MIME_STORAGE", None)
    parser.add_argument("--storage", required=storage is None, default=storage,
                        help="storage directory (env MIME_STORAGE)")
    parser.add_argument("--max-upload-bytes", type=parse_int("--max-upload-bytes"),
                        default=env_default(environ, "MIME_MAX_UPLOAD_BYTES", str(DEFAULT_MAX_UPLOAD_BYTES)))
    parser.add_argument("--upload-memory-budget-bytes", type=parse_int("--upload-memory-budget-bytes"),
                        default=env_default(environ, "MIME_UPLOAD_MEMORY_BUDGET_BYTES", str(UPLOAD_MEMORY_BUDGET_BYTES)),
                        help="bytes of upload bodies all uploads together hold in memory; past it they spill to "
                             "disk (env MIME_UPLOAD_MEMORY_BUDGET_BYTES)")
    parser.add_argument("--admin-key-file", default=env_default(environ, "MIME_ADMIN_KEY_FILE", None),
                        help="file holding the X-Admin-Key for /admin/faults; without it fault injection is off")
    add_limit_arguments(parser, environ, "MIME", MIME_LIMITS)
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> None:
    args = parse_args(sys.argv[1:] if argv is None else argv, os.environ)
    settings = ServerSettings(storage=Path(args.storage), max_upload_bytes=args.max_upload_bytes,
                              admin_key=read_secret_file(args.admin_key_file),
                              upload_memory_budget=args.upload_memory_budget_bytes)
    provider = tracer_provider_from_env(MIME_SERVICE)
    app = create_app(settings, tracer_provider=provider)
    run(app, args.host, args.port, MIME_SERVICE, provider, limits_from_args(args), app.state.access)


if __name__ == "__main__":
    main()
