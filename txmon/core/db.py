"""The one way txmon opens a PostgreSQL connection."""

from __future__ import annotations

import psycopg
from psycopg_pool import ConnectionPool

APPLICATION_NAME = "txmon"


# A login or a privilege PostgreSQL refuses: a wrong secret or a missing grant, not an outage. Retrying
# cannot help; callers say so at once instead of waiting out an outage budget.
_REFUSED = ("password authentication failed", "no password supplied", "permission denied")


def refused(exc: BaseException) -> bool:
    """Whether a PostgreSQL error is a refused login or privilege (SQLSTATE class 28, 42501)."""
    state = getattr(exc, "sqlstate", None) or ""
    return state.startswith("28") or state == "42501" or any(text in str(exc) for text in _REFUSED)


def _session(purpose: str) -> dict:
    """txmon's session defaults: UTC, a named application, dead servers noticed in about 30 s."""
    return dict(
        application_name=f"{APPLICATION_NAME}:{purpose}" if purpose else APPLICATION_NAME,
        options="-c timezone=UTC",
        connect_timeout=10,
        # A server that vanished (fail-over, network) is noticed in about 30 s, not after the OS's 2 hours.
        keepalives=1,
        keepalives_idle=10,
        keepalives_interval=5,
        keepalives_count=4,
        tcp_user_timeout=30_000,  # ms: data unacknowledged this long (a blackholed server) is a lost connection
    )


def connect(dsn: str, *, autocommit: bool = False, purpose: str = "") -> psycopg.Connection:
    """A psycopg 3 connection with txmon's session defaults (UTC, a named application)."""
    return psycopg.connect(dsn, autocommit=autocommit, **_session(purpose))


def pool(dsn: str, *, size: int, purpose: str) -> ConnectionPool:
    """A pool of up to ``size`` autocommit connections with the same defaults, opened on first use
    (a database that is down does not stop its creator; a request then waits at most its timeout),
    each checked before it is lent."""
    return ConnectionPool(
        dsn,
        min_size=1,
        max_size=size,
        kwargs={"autocommit": True, **_session(purpose)},
        open=False,
        name=purpose,
        reconnect_timeout=30,
        check=ConnectionPool.check_connection,  # a connection a restart or fail-over broke is replaced, not lent
    )
