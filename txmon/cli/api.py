"""`txmon api`: the read-only HTTP API and the web page (uvicorn), until SIGINT or SIGTERM."""

from __future__ import annotations

import logging

import click
import psycopg
import uvicorn

from txmon.api.app import create_app
from txmon.cli.common import Failure, pass_settings
from txmon.core import credentials
from txmon.core.settings import Role, Settings
from txmon.core.warehouse import require_migrated

log = logging.getLogger("txmon.api")


def check_databases(settings: Settings) -> None:
    """Refuse a database that lacks a migration; one that is down is reported by /health, not fatal."""
    for dsn in settings.databases():
        try:
            require_migrated(settings.as_role(dsn, Role.API_MONITOR))
        except psycopg.OperationalError as exc:
            log.warning("a database is not answering yet (/health says 503 until it does): %s", str(exc).strip())


def key_line(settings: Settings, *, show_key: bool = False) -> str:
    """How to authenticate: where the keys come from; the local key itself only when ``show_key`` (a
    person's terminal, never a log: `txmon api`'s output often goes to one)."""
    if settings.api_keys:
        return f"keys: {len(settings.api_keys)} from TXMON_API_KEYS"
    if show_key:
        return f"local key (analyst, every region): {credentials.local_api_key(settings)}"
    return f"local key (analyst, every region) in {settings.secrets_dir / credentials.API_KEY_FILE}"


@click.command("api")
@click.option("--host", default="127.0.0.1", show_default=True, help="address to listen on")
@click.option("--port", type=click.IntRange(1, 65535), help="port to listen on (default TXMON_API_PORT, 8080)")
@pass_settings
def api(settings: Settings, host: str, port: int | None) -> int:
    port = port or settings.api_port
    check_databases(settings)
    app = create_app(settings)
    logging.getLogger("psycopg.pool").setLevel(logging.ERROR)  # a database that is down: /health says so
    click.echo(f"txmon API and web page: http://{host}:{port}/  (OpenAPI: /docs; {key_line(settings)})")
    try:
        # No access log: its lines carry query strings (account ids); the API logs requests without them.
        uvicorn.run(app, host=host, port=port, access_log=False, log_config=None, log_level="info")
    except SystemExit as exc:  # uvicorn exits 1 when it cannot bind
        raise Failure(f"txmon api: cannot listen on {host}:{port} (in use?)") from exc
    return 0
