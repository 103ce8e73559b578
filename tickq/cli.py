"""`python -m tickq COMMAND`: one subcommand per operation.

A command is a function taking the parsed arguments and returning the exit code; adding one is
adding its parser in `build_parser`. Exit codes: 0 done, 1 failed, 2 bad configuration or usage.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

from tickq.errors import ConfigError, TickqError
from tickq.settings import Settings, load_settings, sqlite_url

EXIT_OK, EXIT_FAILED, EXIT_CONFIG = 0, 1, 2

Command = Callable[[argparse.Namespace], int]


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    command: Command = args.run
    return command(args)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="tickq", description="Durable job processing: payments, NFT mints and messages.")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    serve = commands.add_parser("serve", help="run the HTTP API and the job engine",
                                description="Run the HTTP API and the job engine until SIGTERM "
                                            "or SIGINT. Configuration comes from the environment "
                                            "and ./.env.")
    serve.add_argument("--host", type=_host, help="address to listen on (overrides HOST)")
    serve.add_argument("--port", type=_port, help="port to listen on (overrides PORT)")
    serve.set_defaults(run=cmd_serve)

    version = commands.add_parser("version", help="print the version")
    version.set_defaults(run=cmd_version)
    return parser


def fail(message: str, code: int = EXIT_FAILED) -> int:
    print(f"tickq: {message}", file=sys.stderr)
    return code


def settings_or_exit(**overrides: object) -> Settings | int:
    """The validated settings with command-line overrides, or the exit code after reporting."""
    try:
        settings = load_settings()
    except ConfigError as exc:
        return fail(f"invalid configuration:\n{exc}", EXIT_CONFIG)
    changed = {k: v for k, v in overrides.items() if v is not None}
    return settings.model_copy(update=changed) if changed else settings


# --- serve --------------------------------------------------------------------------------


def cmd_serve(args: argparse.Namespace) -> int:
    from tickq.engine.engine import Engine
    from tickq.http.server import serve
    from tickq.logs import configure_logging
    from tickq.storage import open_store

    settings = settings_or_exit(host=args.host, port=args.port)
    if isinstance(settings, int):
        return settings
    configure_logging(settings.log_level)
    try:
        prepare_data_dir(settings)
        store = open_store(settings.database_url)
    except ConfigError as exc:
        return fail(f"invalid configuration:\n{exc}", EXIT_CONFIG)
    from tickq.engine.limiter import RateLimiter

    engine = Engine(store, shutdown_grace_s=settings.shutdown_grace_s,
                    limiter=RateLimiter(settings.rate_limits()))
    try:
        asyncio.run(serve(settings, engine))
    except TickqError as exc:  # journal in use, port taken, journal unreadable
        return fail(exc.message)
    return EXIT_OK


def prepare_data_dir(settings: Settings) -> None:
    """Development creates the data directory; elsewhere a missing one is a configuration error
    (a volume that failed to mount must not silently become an empty journal)."""
    if settings.is_development:
        settings.data_dir.mkdir(parents=True, exist_ok=True)
        return
    if settings.database_kind != "sqlite":
        return
    from tickq.storage import sqlite_path

    folder = Path(sqlite_path(settings.database_url)).parent
    if not folder.is_dir():
        default = settings.database_url == sqlite_url(settings.data_dir / "tickq.db")
        var = "TICKQ_DATA_DIR" if default else "TICKQ_DATABASE_URL"
        raise ConfigError(f"{var}: the directory {folder} does not exist; create it (only "
                          "TICKQ_ENV=development creates it for you)")


# --- version ------------------------------------------------------------------------------


def cmd_version(args: argparse.Namespace) -> int:
    from tickq import __version__

    print(f"tickq {__version__}")
    return EXIT_OK


# --- argument types -----------------------------------------------------------------------


def _port(text: str) -> int:
    try:
        port = int(text)
    except ValueError:
        port = 0
    if not 1 <= port <= 65535:
        raise argparse.ArgumentTypeError(f"must be a whole number from 1 to 65535, got {text!r}")
    return port


def _host(text: str) -> str:
    if not text.strip():
        raise argparse.ArgumentTypeError("must not be empty")
    return text.strip()
