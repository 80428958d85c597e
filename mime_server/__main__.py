"""Entry point: ``python -m mime_server --host H --port P --storage DIR`` runs mime-server."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path

from mime_server import MIME_SERVICE
from mime_server.app import DEFAULT_MAX_UPLOAD_BYTES, ServerSettings, create_app
from mime_server.serve import env_default, parse_int, read_secret_file, run
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
    parser.add_argument("--admin-key-file", default=env_default(environ, "MIME_ADMIN_KEY_FILE", None),
                        help="file holding the X-Admin-Key for /admin/faults; without it fault injection is off")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> None:
    args = parse_args(sys.argv[1:] if argv is None else argv, os.environ)
    settings = ServerSettings(storage=Path(args.storage), max_upload_bytes=args.max_upload_bytes,
                              admin_key=read_secret_file(args.admin_key_file))
    provider = tracer_provider_from_env(MIME_SERVICE)
    run(create_app(settings, tracer_provider=provider), args.host, args.port, MIME_SERVICE, provider)


if __name__ == "__main__":
    main()
