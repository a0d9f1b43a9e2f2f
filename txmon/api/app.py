"""The FastAPI application: the read-only endpoints of docs/api.md, `/partitions` for the
web page, the page itself at `/`, the OpenAPI document and its interactive docs (served offline)."""

from __future__ import annotations

import base64
import binascii
import json
import logging
import re
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from datetime import date
from pathlib import Path
from typing import Annotated

import psycopg
from fastapi import Depends, FastAPI, Query, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from fastapi.staticfiles import StaticFiles
from fastapi_offline import FastAPIOffline
from prometheus_client import CONTENT_TYPE_LATEST, disable_created_metrics, generate_latest
from psycopg_pool import PoolTimeout
from starlette.exceptions import HTTPException as StarletteHTTPException

from txmon.api.access import Caller, Denied, Keys
from txmon.api.metrics import Metrics
from txmon.api.models import Error, Events, Grant, Health, Partitions, Settlements, SuspiciousPage
from txmon.api.store import Store
from txmon.core import credentials
from txmon.core.settings import Settings

log = logging.getLogger("txmon.api")
STATIC = Path(__file__).with_name("static")
MAX_LIMIT = 1000
IDENTIFIER = 64  # the contract's longest transaction_id / account_id
REASON = re.compile(r"^[a-z][a-z0-9_]{0,63}$")
CURSOR_VERSION = 1


class BadRequest(Exception):
    """A malformed parameter: 400 with its message."""


# ---------------------------------------------------------------------------------- parameters
def parse_day(text: str, name: str = "date") -> date:
    if not re.fullmatch(r"\d{4}-\d{2}-\d{2}", text):
        raise BadRequest(f"{name} must be a day as YYYY-MM-DD, not {text[:40]!r}")
    try:
        day = date.fromisoformat(text)
    except ValueError:
        raise BadRequest(f"{name} {text!r} is not a calendar day") from None
    if day in (date.min, date.max):  # a day's bounds (midnight to midnight) must exist
        raise BadRequest(f"{name} {text} is out of range")
    return day


def identifier(text: str, name: str) -> str:
    """An id looked up verbatim: any text the contract allows (1-64 characters; PostgreSQL stores no NUL)."""
    if not 1 <= len(text) <= IDENTIFIER:
        raise BadRequest(f"{name} must be 1 to {IDENTIFIER} characters")
    if "\x00" in text:
        raise BadRequest(f"{name} may not contain a NUL character")
    return text


def encode_cursor(query: dict, after: tuple[str, str]) -> str:
    payload = json.dumps([CURSOR_VERSION, query, *after], separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(payload).decode().rstrip("=")


def decode_cursor(cursor: str, query: dict, regions: tuple[str, ...]) -> tuple[str, str]:
    """The (region, transaction_id) a cursor resumes after; 400 if this API did not issue it for this query."""
    try:
        version, issued_for, region, after = json.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
    except (ValueError, TypeError, binascii.Error):
        raise BadRequest("cursor is not one this API issued") from None
    if version != CURSOR_VERSION or not isinstance(after, str) or region not in regions or "\x00" in after:
        raise BadRequest("cursor is not one this API issued")
    if issued_for != query:
        raise BadRequest("cursor belongs to another query (date, region and reason must stay the same)")
    return region, after


BEARER = HTTPBearer(auto_error=False, description="an API key from TXMON_API_KEYS (or the local key)")


def caller(request: Request, credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(BEARER)]) -> Caller:
    """The key's holder (401 without a known key)."""
    return request.app.state.keys.caller(f"Bearer {credentials.credentials}" if credentials else None)


def without_validation_responses(app: FastAPI) -> Callable[[], dict]:
    """The OpenAPI document without FastAPI's automatic 422 (a malformed parameter is a 400 here)."""
    generate = app.openapi

    def openapi() -> dict:
        if app.openapi_schema is None:
            schema = generate()
            for path in schema.get("paths", {}).values():
                for operation in path.values():
                    operation.get("responses", {}).pop("422", None)
            for name in ("HTTPValidationError", "ValidationError"):
                schema.get("components", {}).get("schemas", {}).pop(name, None)
            app.openapi_schema = schema
        return app.openapi_schema

    return openapi


Who = Annotated[Caller, Depends(caller)]


# ---------------------------------------------------------------------------------- the application
def create_app(settings: Settings) -> FastAPI:
    """The API over ``settings``' databases; its pools open on first use and close with the application."""
    store = Store(settings)
    keys = Keys(credentials.api_keys(settings), settings.regions)
    disable_created_metrics()  # type: ignore[no-untyped-call]  # no *_created series beside each counter
    metrics = Metrics(store)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        yield
        store.close()

    app = FastAPIOffline(
        title="txmon",
        summary="Read-only access to published transaction monitoring marts",
        description=(
            "Suspicious activity and daily settlements that passed every blocking data-quality check, "
            "and (analysts) the landed events behind them. Send `Authorization: Bearer KEY`. Money is a "
            "decimal string, times are RFC 3339 in UTC."
        ),
        version="1",
        lifespan=lifespan,
        responses={400: {"model": Error}, 401: {"model": Error}, 403: {"model": Error}, 503: {"model": Error}},
        static_url="/static-docs",
    )
    app.state.store = store
    app.state.keys = keys
    app.openapi = without_validation_responses(app)  # type: ignore[method-assign]

    def region_param(region: str | None) -> str | None:
        if region is not None and region not in settings.regions:
            raise BadRequest(f"region {region[:40]!r} is not one of {', '.join(settings.regions)}")
        return region

    # -------------------------------------------------------------- errors: one readable line, never a trace
    @app.exception_handler(Denied)
    async def denied(request: Request, exc: Denied) -> JSONResponse:
        headers = {"WWW-Authenticate": "Bearer"} if exc.status == 401 else None
        return JSONResponse({"error": str(exc)}, status_code=exc.status, headers=headers)

    @app.exception_handler(BadRequest)
    async def bad_request(request: Request, exc: BadRequest) -> JSONResponse:
        return JSONResponse({"error": str(exc)}, status_code=400)

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        first = exc.errors()[0]
        name = ".".join(str(part) for part in first["loc"][1:]) or "request"
        return JSONResponse({"error": f"{name}: {first['msg']}"}, status_code=400)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        return JSONResponse({"error": str(exc.detail)}, status_code=exc.status_code, headers=exc.headers)

    @app.exception_handler(PoolTimeout)
    @app.exception_handler(psycopg.OperationalError)
    async def unavailable(request: Request, exc: Exception) -> JSONResponse:
        log.warning("database unavailable: %s", str(exc).splitlines()[0] if str(exc) else type(exc).__name__)
        return JSONResponse({"error": "a database is not answering; try again shortly"}, status_code=503)

    @app.exception_handler(Exception)
    async def internal(request: Request, exc: Exception) -> JSONResponse:
        log.error("%s %s failed", request.method, request.url.path, exc_info=exc)
        return JSONResponse({"error": "internal error (logged by the server)"}, status_code=500)

    # -------------------------------------------------------------- request log: no query values (account ids)
    @app.middleware("http")
    async def record(request: Request, call_next: Callable[[Request], Awaitable[Response]]) -> Response:
        started = time.perf_counter()
        status = 500
        try:
            response = await call_next(request)
            status = response.status_code
            return response
        finally:
            elapsed = time.perf_counter() - started
            route = request.scope.get("route")
            path = getattr(route, "path", "other")
            metrics.requests.labels(path, str(status)).inc()
            metrics.latency.labels(path).observe(elapsed)
            log.info(
                "%s %s %s %.1f ms params=%s",
                request.method,
                request.url.path,
                status,
                elapsed * 1000,
                ",".join(sorted(request.query_params.keys())) or "-",
            )

    # -------------------------------------------------------------- endpoints
    @app.get("/me", response_model=Grant, tags=["published"])
    def me(who: Who) -> dict:
        """The key's role and the regions it may read (the web page builds its filters from it)."""
        return {"role": who.role, "regions": list(who.regions)}

    @app.get("/suspicious", response_model=SuspiciousPage, tags=["published"])
    def suspicious(
        who: Who,
        day: Annotated[str, Query(alias="date", description="the business day (UTC), YYYY-MM-DD")],
        region: Annotated[str | None, Query(description="one region (default: every region of the key)")] = None,
        reason: Annotated[str | None, Query(description="only rows with this reason, e.g. fraud_flag")] = None,
        limit: Annotated[int, Query(ge=1, le=MAX_LIMIT, description="rows per page")] = 100,
        cursor: Annotated[str | None, Query(max_length=512, description="next_cursor of the previous page")] = None,
    ) -> dict:
        """Published suspicious activity of one business day, a page at a time (keyset order: region, transaction)."""
        on = parse_day(day)
        regions = who.scope(region_param(region))
        if reason is not None and not REASON.match(reason):
            raise BadRequest("reason must be a reason's name such as amount_over_threshold or fraud_flag")
        query = {"date": on.isoformat(), "region": region, "reason": reason}
        after = decode_cursor(cursor, query, regions) if cursor else None
        items, last = store.suspicious(who.database_role, on, regions, reason, limit, after)
        return {"items": items, "next_cursor": encode_cursor(query, last) if last else None}

    @app.get("/settlements", response_model=Settlements, tags=["published"])
    def settlements(
        who: Who,
        day: Annotated[str, Query(alias="date", description="the settlement day (UTC), YYYY-MM-DD")],
        region: Annotated[str | None, Query(description="one region (default: every region of the key)")] = None,
    ) -> dict:
        """Published daily settlements of one day: per region and currency, counts and settled volume."""
        on = parse_day(day)
        return {"items": store.settlements(who.database_role, on, who.scope(region_param(region)))}

    @app.get("/partitions", response_model=Partitions, tags=["published"])
    def partitions(
        who: Who,
        day: Annotated[str, Query(alias="date", description="the business day (UTC), YYYY-MM-DD")],
        region: Annotated[str | None, Query(description="one region (default: every region of the key)")] = None,
    ) -> dict:
        """Each published table's latest publication of a day per region: when, how fresh, which checks passed."""
        on = parse_day(day)
        return {"items": store.partitions(who.database_role, on, who.scope(region_param(region)))}

    @app.get("/transactions", response_model=Events, tags=["staging"])
    def transactions(
        who: Who,
        transaction_id: Annotated[str | None, Query(description="every landed event of this transaction")] = None,
        account_id: Annotated[str | None, Query(description="with `date`: this account's events of the day")] = None,
        day: Annotated[str | None, Query(alias="date", description="with `account_id`, YYYY-MM-DD")] = None,
        region: Annotated[str | None, Query(description="one region (default: every region of the key)")] = None,
    ) -> dict:
        """Landed events from staging, each with its Kafka topic/partition/offset (analyst keys only)."""
        who.may("analyst")
        regions = who.scope(region_param(region))
        if transaction_id is not None and account_id is None and day is None:
            return {"items": store.transactions(regions, identifier(transaction_id, "transaction_id"))}
        if account_id is not None and day is not None and transaction_id is None:
            items, cut = store.account_events(regions, identifier(account_id, "account_id"), parse_day(day))
            return {"items": items, "truncated": cut}
        raise BadRequest("give either transaction_id, or account_id and date")

    @app.get("/health", response_model=Health, responses={503: {"model": Health}}, tags=["operations"])
    def health() -> JSONResponse:
        """200 when every database answers, 503 otherwise (no key needed)."""
        answers = store.ping()
        ok = all(answer == "ok" for answer in answers.values())
        body = {"status": "ok" if ok else "unavailable", "databases": answers}
        return JSONResponse(body, status_code=200 if ok else 503)

    @app.get("/metrics", tags=["operations"], response_class=Response)
    def prometheus() -> Response:
        """Prometheus text format: consumer lag per partition, mart freshness per mart and region, requests."""
        return Response(generate_latest(metrics.registry), media_type=CONTENT_TYPE_LATEST)

    # -------------------------------------------------------------- the web page (no build step)
    app.mount("/static", StaticFiles(directory=STATIC), name="static")

    @app.get("/", include_in_schema=False)
    def page() -> FileResponse:
        return FileResponse(STATIC / "index.html")

    return app
