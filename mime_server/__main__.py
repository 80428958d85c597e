"""Entry point: ``python -m mime_server --host H --port P --storage DIR`` runs mime-server (files in a
directory); ``--storage-backend s3 --s3-bucket B [--s3-prefix P] [--s3-endpoint URL]`` keeps them in
an S3-compatible bucket instead (region from ``AWS_REGION``, credentials from boto3's chain, e.g.
``AWS_SHARED_CREDENTIALS_FILE``)."""

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
from mime_server.storage import S3Location, StorageConfigError
from mime_server.tracing import tracer_provider_from_env


def parse_args(argv: Sequence[str], environ: Mapping[str, str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m mime_server", description="Detect, store and serve files.")
    parser.add_argument("--host", default=env_default(environ, "MIME_HOST", "127.0.0.1"))
    parser.add_argument("--port", type=parse_int("--port"), default=env_default(environ, "MIME_PORT", "8080"))
    parser.add_argument("--storage-backend", choices=BACKENDS,
                        default=env_default(environ, "MIME_STORAGE_BACKEND", "filesystem"),
                        help="where files are kept: a directory, or an S3-compatible bucket shared by replicas "
                             "(env MIME_STORAGE_BACKEND)")
    parser.add_argument("--storage", default=None,
                        help="storage directory of the filesystem backend (env MIME_STORAGE)")
    parser.add_argument("--s3-bucket", default=env_default(environ, "MIME_S3_BUCKET", None),
                        help="bucket of the s3 backend (env MIME_S3_BUCKET)")
    parser.add_argument("--s3-prefix", default=env_default(environ, "MIME_S3_PREFIX", None),
                        help="key prefix under which the s3 backend keeps objects/, empty or ending in '/' "
                             "(env MIME_S3_PREFIX)")
    parser.add_argument("--s3-endpoint", default=env_default(environ, "MIME_S3_ENDPOINT", None),
                        help="URL of an S3-compatible store; unset: AWS S3 (env MIME_S3_ENDPOINT)")
    parser.add_argument("--max-upload-bytes", type=parse_int("--max-upload-bytes"),
                        default=env_default(environ, "MIME_MAX_UPLOAD_BYTES", str(DEFAULT_MAX_UPLOAD_BYTES)))
    parser.add_argument("--upload-memory-budget-bytes", type=parse_int("--upload-memory-budget-bytes"),
                        default=env_default(environ, "MIME_UPLOAD_MEMORY_BUDGET_BYTES", str(UPLOAD_MEMORY_BUDGET_BYTES)),
                        help="bytes of upload bodies all uploads together hold in memory; past it they spill to "
                             "disk (env MIME_UPLOAD_MEMORY_BUDGET_BYTES)")
    parser.add_argument("--admin-key-file", default=env_default(environ, "MIME_ADMIN_KEY_FILE", None),
                        help="file holding the X-Admin-Key for /admin/faults; without it fault injection is off")
    add_limit_arguments(parser, environ, "MIME", MIME_LIMITS)
    args = parser.parse_args(argv)
    _check_storage_options(parser, args, environ)
    return args


BACKENDS = ("filesystem", "s3")
S3_OPTIONS = ("s3_bucket", "s3_prefix", "s3_endpoint")


def _check_storage_options(parser: argparse.ArgumentParser, args: argparse.Namespace,
                           environ: Mapping[str, str]) -> None:
    """Each backend takes its own options only; a wrong combination stops with the option's name."""
    args.s3 = None
    if args.storage_backend == "filesystem":
        for name in S3_OPTIONS:
            if getattr(args, name) is not None:
                option = "--" + name.replace("_", "-")
                parser.error(f"{option} (env MIME_{name.upper()}) is an option of --storage-backend s3, "
                             f"not of filesystem")
        # The image sets MIME_STORAGE=/data, so it is the directory's default only for this backend.
        args.storage = args.storage or env_default(environ, "MIME_STORAGE", None)
        if args.storage is None:
            parser.error("--storage (env MIME_STORAGE) is required with --storage-backend filesystem")
        return
    if args.storage is not None:
        parser.error("--storage is the filesystem backend's directory: not used with --storage-backend s3")
    if not args.s3_bucket:
        parser.error("--s3-bucket (env MIME_S3_BUCKET) is required with --storage-backend s3")
    try:
        args.s3 = S3Location(args.s3_bucket, args.s3_prefix or "", args.s3_endpoint or None,
                             environ.get("AWS_REGION") or None)
    except StorageConfigError as exc:
        parser.error(str(exc))


def main(argv: Sequence[str] | None = None) -> None:
    args = parse_args(sys.argv[1:] if argv is None else argv, os.environ)
    settings = ServerSettings(storage=None if args.s3 else Path(args.storage), s3=args.s3,
                              max_upload_bytes=args.max_upload_bytes, admin_key=read_secret_file(args.admin_key_file),
                              upload_memory_budget=args.upload_memory_budget_bytes)
    provider = tracer_provider_from_env(MIME_SERVICE)
    try:
        app = create_app(settings, tracer_provider=provider)
    except StorageConfigError as exc:  # a bucket that is missing or refuses us: no use retrying
        sys.exit(f"mime-server: {exc}")
    run(app, args.host, args.port, MIME_SERVICE, provider, limits_from_args(args), app.state.access)


if __name__ == "__main__":
    main()
