"""libpq connection strings as text: built for a role and the password file, shown without a secret."""

from __future__ import annotations

import re
from pathlib import Path
from urllib.parse import parse_qsl, quote, urlencode, urlsplit, urlunsplit

from psycopg.conninfo import conninfo_to_dict, make_conninfo


def query(params: dict[str, str]) -> str:
    """A URL query libpq reads back exactly (spaces as %20: libpq does not decode '+')."""
    return urlencode(params, safe="/", quote_via=quote)


def redact(dsn: str) -> str:
    """``dsn`` with any password masked (URL or key=value form)."""
    if "://" in dsn:
        parts = urlsplit(dsn)
        if parts.password is not None:
            netloc = parts.netloc.replace(f":{parts.password}@", ":***@", 1)
            dsn = urlunsplit(parts._replace(netloc=netloc))
    return re.sub(r"(password=)[^&\s]*", r"\1***", dsn)


def without_password(dsn: str) -> str:
    """``dsn`` with no password in it (URL or key=value form); everything else as it was."""
    if "://" in dsn:
        parts = urlsplit(dsn)
        netloc = parts.netloc
        if parts.password is not None:
            netloc = netloc.replace(f":{parts.password}@", "@", 1)
        pairs = parse_qsl(parts.query, keep_blank_values=True)
        kept = query(dict(pair for pair in pairs if pair[0] != "password")) if pairs else parts.query
        return urlunsplit(parts._replace(netloc=netloc, query=kept))
    params = conninfo_to_dict(dsn)
    return make_conninfo(**{k: str(v) for k, v in params.items() if k != "password"}) if "password" in params else dsn


def where(dsn: str) -> str:
    """host:port/database of a DSN, for messages and as a stable name of the database (no user, no secret)."""
    params = conninfo_to_dict(dsn)
    return f"{params.get('host', 'localhost')}:{params.get('port', 5432)}/{params.get('dbname', '')}"


def with_passfile(dsn: str, passfile: Path) -> str:
    """A configured DSN: without a password of its own, libpq reads ``passfile`` (the admin's line)."""
    params = conninfo_to_dict(dsn)
    if "password" in params or "passfile" in params:
        return dsn
    if "://" in dsn:
        return f"{dsn}{'&' if '?' in dsn else '?'}{query({'passfile': str(passfile)})}"
    return f"{dsn} passfile='{passfile}'"


def as_user(dsn: str, user: str, passfile: Path) -> str:
    """The same database as ``dsn``, connected as ``user`` (its password from ``passfile``)."""
    params = {k: str(v) for k, v in conninfo_to_dict(dsn).items() if k not in ("password", "user")}
    dbname = params.pop("dbname", "")
    host, port = params.get("host", "localhost"), params.get("port", "5432")
    netloc = quote(user, safe="")
    if re.fullmatch(r"[A-Za-z0-9.\-]+", host) and port.isdigit():  # a plain host name or IPv4 address
        netloc += f"@{params.pop('host', 'localhost')}:{params.pop('port', '5432')}"
    else:  # a socket directory, several hosts, IPv6: libpq reads them from the query
        netloc += "@"
    params["passfile"] = str(passfile)
    return urlunsplit(("postgresql", netloc, "/" + quote(dbname, safe=""), query(params), ""))
