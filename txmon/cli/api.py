"""`txmon api`: the read-only HTTP API and the web page (uvicorn), until SIGINT or SIGTERM; `txmon api-key`: a key
and its line for TXMON_API_KEYS_FILE."""

from __future__ import annotations

import logging
import sys

import click
import psycopg
import uvicorn
from pydantic import ValidationError

from txmon.api.app import create_app
from txmon.cli.common import BadArgument, Failure, pass_settings
from txmon.core import credentials
from txmon.core.settings import MIN_API_KEY_LENGTH, ApiGrant, Role, Settings
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
    if settings.api_keys or settings.api_keys_file:
        return f"keys: {len(credentials.api_keys(settings))} from TXMON_API_KEYS and TXMON_API_KEYS_FILE"
    if show_key:
        return f"local key (analyst, every region): {credentials.local_api_key(settings)}"
    return f"local key (analyst, every region) in {settings.secrets_dir / credentials.API_KEY_FILE}"


@click.command("api")
@click.option("--host", default="127.0.0.1", show_default=True, help="address to listen on")
@click.option("--port", type=click.IntRange(1, 65535), help="port to listen on (default TXMON_API_PORT, 8080)")
@pass_settings
def api(settings: Settings, host: str, port: int | None) -> int:
    port = port or settings.api_port
    credentials.api_keys(settings)  # keys that cannot be used are refused before anything starts
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


@click.command("api-key")
@click.option("--role", type=click.Choice(["regulator", "analyst"]), required=True, help="what the key may read")
@click.option("--regions", default="*", show_default=True, help="comma-separated regions the key may read (*: all)")
@click.option("--stdin", "from_stdin", is_flag=True, help="the digest of a key read from stdin, not of a new one")
@pass_settings
def api_key(settings: Settings, role: str, regions: str, from_stdin: bool) -> int:
    """Print a line for TXMON_API_KEYS_FILE (the key's SHA-256 digest, its role and regions) on stdout; a new key
    itself goes to stderr, once: txmon keeps only its digest."""
    try:
        grant = ApiGrant(role=role, regions=tuple(r.strip() for r in regions.split(",") if r.strip()))  # type: ignore[arg-type]
    except ValidationError:
        raise BadArgument("txmon api-key: --regions names at least one region (or *)") from None
    if unknown := set(grant.regions) - set(settings.regions) - {"*"}:
        raise BadArgument(f"txmon api-key: regions that are not configured: {sorted(unknown)}")
    if from_stdin:
        key = sys.stdin.readline().strip()
        if len(key) < MIN_API_KEY_LENGTH:
            raise BadArgument(f"txmon api-key: the key on stdin is shorter than {MIN_API_KEY_LENGTH} characters")
    else:
        key = credentials.new_api_key()
        click.echo(f"the new key (give it to its holder; it is not stored anywhere): {key}", err=True)
    click.echo(credentials.api_key_line(credentials.api_key_digest(key), grant), nl=False)
    return 0
