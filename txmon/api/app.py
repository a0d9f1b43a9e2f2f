"""The FastAPI application: the read-only endpoints of docs/api.md, `/partitions` for the web page, the page
itself at `/`, the OpenAPI document and its interactive docs (served offline); rate limits per key and per
client address, and the security headers of every response."""

# No `from __future__ import annotations`: the endpoints' parameter types are built from the settings inside
# create_app (the configured regions), where FastAPI could not resolve them from their names.
import copy
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from datetime import date
from pathlib import Path as FilePath
from typing import Annotated, Any

import psycopg
from fastapi import Depends, FastAPI, Path, Query, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from fastapi.staticfiles import StaticFiles
from fastapi_offline import FastAPIOffline
from prometheus_client import CONTENT_TYPE_LATEST, disable_created_metrics
from psycopg_pool import PoolTimeout
from starlette.exceptions import HTTPException as StarletteHTTPException

from txmon.api import health as health_reading
from txmon.api.access import Caller, Denied, Keys
from txmon.api.cache import Cached
from txmon.api.limits import Limited, RateLimit
from txmon.api.metrics import Metrics
from txmon.api.models import Error, Events, Grant, Health, Partitions, Reports, Settlements, SuspiciousPage
from txmon.api.params import (
    MAX_LIMIT,
    BadRequest,
    Cursor,
    Day,
    Identifier,
    Reason,
    decode_cursor,
    encode_cursor,
    region_type,
)
from txmon.api.store import Store
from txmon.core import credentials
from txmon.core.settings import Settings
from txmon.reports import package

log = logging.getLogger("txmon.api")
STATIC = FilePath(__file__).with_name("static")


def policy(**relaxed: str) -> str:
    """The Content-Security-Policy: nothing loaded from elsewhere, no inline script or style, never inside a
    frame; ``relaxed`` directives (``img_src="'self' data:"``) only where a page of the docs needs them."""
    directives = {"default-src": "'self'", **{name.replace("_", "-"): value for name, value in relaxed.items()}}
    directives.update({"base-uri": "'none'", "form-action": "'self'", "frame-ancestors": "'none'"})
    return "; ".join(f"{name} {value}" for name, value in directives.items())


# On every response (errors and the page's files included): the policy, no MIME sniffing, no Referer sent on.
SECURITY_HEADERS = {
    "Content-Security-Policy": policy(),
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
}
# The interactive docs, pages of their libraries: Swagger UI's icons are data: images; ReDoc injects its
# styles and runs its search in a worker of its own. Neither page holds data; the API and the page keep policy().
SWAGGER_UI_POLICY = policy(img_src="'self' data:")
REDOC_POLICY = policy(img_src="'self' data:", style_src="'self' 'unsafe-inline'", worker_src="'self' blob:")

# What /transactions looks up: each set of parameters given together (`region` besides), and nothing else.
TRANSACTION_LOOKUPS = (frozenset({"transaction_id"}), frozenset({"account_id", "date"}))
LOOKUPS_EXTENSION = "x-txmon-lookups"  # marks such an operation for the document (replaced there)

# The error answers an operation may give, as the document declares them.
ERRORS: dict[int, dict[str, Any]] = {
    400: {"description": "A malformed parameter (the message names it)"},
    401: {
        "description": "No key, another scheme than Bearer, or an unknown key",
        "headers": {"WWW-Authenticate": {"required": True, "schema": {"type": "string", "const": "Bearer"}}},
    },
    403: {"description": "A region outside the key's regions, or a path outside its role"},
    404: {"description": "No such report package, or no such file in it"},
    429: {
        "description": "Over the key's or the client address's rate limit",
        "headers": {
            "Retry-After": {
                "description": "seconds until a request is allowed again",
                "required": True,
                "schema": {"type": "integer", "minimum": 1},
            }
        },
    },
    503: {"description": "A database is not answering; try again shortly"},
}


def errors(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """The ``responses`` of an operation that may answer ``statuses`` (copies: FastAPI edits them)."""
    return {status: {"model": Error, **copy.deepcopy(ERRORS[status])} for status in statuses}


BEARER = HTTPBearer(auto_error=False, description="an API key from TXMON_API_KEYS (or the local key)")


def caller(request: Request, credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(BEARER)]) -> Caller:
    """The key's holder (401 without a known key, 429 over its rate limit)."""
    found: Caller = request.app.state.keys.caller(f"Bearer {credentials.credentials}" if credentials else None)
    request.app.state.key_limit.take(found.digest)
    return found


Who = Annotated[Caller, Depends(caller)]


def too_many(exc: Limited) -> JSONResponse:
    return JSONResponse({"error": str(exc)}, status_code=429, headers={"Retry-After": str(exc.retry_after)})


def secured(response: Response) -> Response:
    """``response`` with the security headers (a policy of its own, a docs page's, is kept)."""
    for name, value in SECURITY_HEADERS.items():
        response.headers.setdefault(name, value)
    return response


# ---------------------------------------------------------------------------------- the document
def document(app: FastAPI) -> Callable[[], dict]:
    """The OpenAPI document as the API enforces it: no automatic 422 (a malformed parameter is a 400 here); an
    optional query parameter absent rather than null (a query string has no null); an operation marked with
    LOOKUPS_EXTENSION takes its lookups as one object of query parameters, exactly one lookup of them."""
    generate = app.openapi

    def openapi() -> dict:
        if app.openapi_schema is None:
            schema = generate()
            for path in schema.get("paths", {}).values():
                for operation in path.values():
                    operation.get("responses", {}).pop("422", None)
                    for parameter in operation.get("parameters", []):
                        parameter["schema"] = not_null(parameter["schema"])
                    if LOOKUPS_EXTENSION in operation:
                        one_of_lookups(operation, operation.pop(LOOKUPS_EXTENSION))
            for name in ("HTTPValidationError", "ValidationError"):
                schema.get("components", {}).get("schemas", {}).pop(name, None)
            app.openapi_schema = schema
        return app.openapi_schema

    return openapi


def not_null(schema: dict) -> dict:
    """``{"anyOf": [S, {"type": "null"}], ...}`` -> ``S`` with the rest (title, default)."""
    branches = [each for each in schema.get("anyOf", []) if each != {"type": "null"}]
    if "anyOf" not in schema or len(branches) != 1:
        return schema
    rest = {key: value for key, value in schema.items() if key != "anyOf"}
    return {**branches[0], **rest}


def one_of_lookups(operation: dict, lookups: list[list[str]]) -> None:
    """The operation's query parameters as one form-exploded object: one branch per lookup, its parameters
    required, the other lookups' absent, the remaining parameters (``region``) optional in each."""
    query = {p["name"]: p for p in operation["parameters"] if p["in"] == "query"}
    looked_up = {name for names in lookups for name in names}
    common = [name for name in query if name not in looked_up]

    def declared(name: str) -> dict:
        return {**query[name]["schema"], "description": query[name].get("description", "")}

    branches = [
        {
            "type": "object",
            "title": " and ".join(names),
            "properties": {name: declared(name) for name in [*names, *common]},
            "required": names,
            "not": {"anyOf": [{"required": [other]} for other in sorted(looked_up - set(names))]},
        }
        for names in lookups
    ]
    described = "; or ".join(" and ".join(names) for names in lookups)
    operation["parameters"] = [p for p in operation["parameters"] if p["in"] != "query"] + [
        {
            "name": "lookup",
            "in": "query",
            "required": True,
            "style": "form",
            "explode": True,
            "description": f"one lookup, its parameters side by side in the query string: {described}",
            "schema": {"oneOf": branches},
        }
    ]


# ---------------------------------------------------------------------------------- the application
def create_app(settings: Settings) -> FastAPI:
    """The API over ``settings``' databases; its pools open on first use and close with the application."""
    store = Store(settings)
    keys = Keys(credentials.api_keys(settings), settings.regions)
    disable_created_metrics()  # type: ignore[no-untyped-call]  # no *_created series beside each counter
    metrics = Metrics(store, settings.api_status_cache_seconds)
    health_status = Cached(settings.api_status_cache_seconds, lambda: health_reading.read(store), "health")
    address_limit = RateLimit(settings.api_address_requests_per_minute, "this address")
    # A type built from the settings (the configured regions): a variable to mypy, a type to FastAPI.
    Region = region_type(settings.regions)
    OneRegion = Annotated[Region | None, Query(description="one region (default: every region of the key)")]  # type: ignore[valid-type]

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        yield
        metrics.close()
        health_status.close()
        store.close()

    app = FastAPIOffline(
        title="txmon",
        summary="Read-only access to published transaction monitoring marts",
        description=(
            "Suspicious activity and daily settlements that passed every blocking data-quality check, "
            "and (analysts) the landed events behind them. Send `Authorization: Bearer KEY`. Money is a "
            "decimal string, times are RFC 3339 in UTC. Each key and each client address has a rate limit "
            "(429 with `Retry-After` beyond it)."
        ),
        version="1",
        lifespan=lifespan,
        static_url="/static-docs",
        docs_url=None,  # served below, from files: the security policy allows no inline script
        redoc_url=None,
    )
    app.state.store = store
    app.state.keys = keys
    app.state.key_limit = RateLimit(settings.api_key_requests_per_minute, "this key")
    app.openapi = document(app)  # type: ignore[method-assign]

    # -------------------------------------------------------------- errors: one readable line, never a trace
    @app.exception_handler(Denied)
    async def denied(request: Request, exc: Denied) -> JSONResponse:
        headers = {"WWW-Authenticate": "Bearer"} if exc.status == 401 else None
        return JSONResponse({"error": str(exc)}, status_code=exc.status, headers=headers)

    @app.exception_handler(Limited)
    async def limited(request: Request, exc: Limited) -> JSONResponse:
        return too_many(exc)

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
    async def internal(request: Request, exc: Exception) -> Response:
        # Answered outside the middleware below (Starlette's outermost layer): the headers are set here.
        log.error("%s %s failed", request.method, request.url.path, exc_info=exc)
        return secured(JSONResponse({"error": "internal error (logged by the server)"}, status_code=500))

    # -------------------------------------------------------------- every request: the address's limit, the
    # security headers, the request log (no query values: account ids) and the request metrics
    @app.middleware("http")
    async def guard(request: Request, call_next: Callable[[Request], Awaitable[Response]]) -> Response:
        started = time.perf_counter()
        status = 500
        try:
            try:
                address_limit.take(request.client.host if request.client else "")
            except Limited as exc:
                response: Response = too_many(exc)
            else:
                response = await call_next(request)
            status = response.status_code
            return secured(response)
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
    @app.get("/me", response_model=Grant, tags=["published"], responses=errors(401, 429))
    def me(who: Who) -> dict:
        """The key's role and the regions it may read (the web page builds its filters from it)."""
        return {"role": who.role, "regions": list(who.regions)}

    @app.get(
        "/suspicious", response_model=SuspiciousPage, tags=["published"], responses=errors(400, 401, 403, 429, 503)
    )
    def suspicious(
        who: Who,
        day: Annotated[Day, Query(alias="date", description="the business day (UTC), YYYY-MM-DD")],
        region: OneRegion = None,
        reason: Annotated[Reason | None, Query(description="only rows with this reason, e.g. fraud_flag")] = None,
        limit: Annotated[int, Query(ge=1, le=MAX_LIMIT, description="rows per page")] = 100,
        cursor: Annotated[
            Cursor | None,
            Query(description="`next_cursor` of the previous page of the same date, region and reason"),
        ] = None,
    ) -> dict:
        """Published suspicious activity of one business day, a page at a time (keyset order: region, transaction)."""
        regions = who.scope(region)
        query = {"date": day.isoformat(), "region": region, "reason": reason}
        after = decode_cursor(cursor, query, regions) if cursor else None
        items, last = store.suspicious(who.database_role, day, regions, reason, limit, after)
        return {"items": items, "next_cursor": encode_cursor(query, last) if last else None}

    @app.get("/settlements", response_model=Settlements, tags=["published"], responses=errors(400, 401, 403, 429, 503))
    def settlements(
        who: Who,
        day: Annotated[Day, Query(alias="date", description="the settlement day (UTC), YYYY-MM-DD")],
        region: OneRegion = None,
    ) -> dict:
        """Published daily settlements of one day: per region and currency, counts and settled volume."""
        return {"items": store.settlements(who.database_role, day, who.scope(region))}

    @app.get("/partitions", response_model=Partitions, tags=["published"], responses=errors(400, 401, 403, 429, 503))
    def partitions(
        who: Who,
        day: Annotated[Day, Query(alias="date", description="the business day (UTC), YYYY-MM-DD")],
        region: OneRegion = None,
    ) -> dict:
        """Each published table's latest publication of a day per region: when, how fresh, which checks passed."""
        return {"items": store.partitions(who.database_role, day, who.scope(region))}

    @app.get(
        "/transactions",
        response_model=Events,
        tags=["staging"],
        responses=errors(400, 401, 403, 429, 503),
        openapi_extra={LOOKUPS_EXTENSION: [sorted(names) for names in TRANSACTION_LOOKUPS]},
    )
    def transactions(
        who: Who,
        transaction_id: Annotated[
            Identifier | None, Query(description="every landed event of this transaction")
        ] = None,
        account_id: Annotated[
            Identifier | None, Query(description="with `date`: this account's events of the day")
        ] = None,
        day: Annotated[Day | None, Query(alias="date", description="with `account_id`, YYYY-MM-DD")] = None,
        region: OneRegion = None,
    ) -> dict:
        """Landed events from staging, each with its Kafka topic/partition/offset (analyst keys only): give either
        `transaction_id`, or `account_id` and `date`."""
        who.may("analyst")
        regions = who.scope(region)
        given = {"transaction_id": transaction_id, "account_id": account_id, "date": day}
        if frozenset(name for name, value in given.items() if value is not None) not in TRANSACTION_LOOKUPS:
            raise BadRequest("give either transaction_id, or account_id and date")
        if transaction_id is not None:
            return {"items": store.transactions(regions, transaction_id)}
        assert account_id is not None and day is not None  # the other lookup
        items, cut = store.account_events(regions, account_id, day)
        return {"items": items, "truncated": cut}

    @app.get(
        "/health",
        response_model=Health,
        responses={503: {"model": Health, "description": "A database is not answering"}, **errors(429)},
        tags=["operations"],
    )
    async def health() -> JSONResponse:
        """200 when every database answers, 503 otherwise; which database (by its regions) and whether Kafka
        answers, never why not (no key needed; read at most every TXMON_API_STATUS_CACHE_SECONDS)."""
        status, body = await health_status.get()
        return JSONResponse(body, status_code=status)

    @app.get(
        "/metrics",
        tags=["operations"],
        response_class=Response,
        responses={
            200: {"description": "Prometheus' text format", "content": {"text/plain": {"schema": {"type": "string"}}}},
            **errors(429),
        },
    )
    async def prometheus() -> Response:
        """Prometheus text format: consumer lag per partition, mart freshness per mart and region (read at most
        every TXMON_API_STATUS_CACHE_SECONDS), the API's requests (no key needed)."""
        return Response(await metrics.exposition(), media_type=CONTENT_TYPE_LATEST)

    # -------------------------------------------------------------- report packages (docs/reports.md)
    def report_url(region: str, day: date, version: int, name: str) -> str:
        return f"/reports/{region}/{day.isoformat()}/{version}/{name}"

    @app.get("/reports", response_model=Reports, tags=["reports"], responses=errors(400, 401, 403, 429))
    def reports(
        who: Who,
        day: Annotated[Day, Query(alias="date", description="the business day (UTC), YYYY-MM-DD")],
        region: OneRegion = None,
    ) -> dict:
        """The report packages of a day, every version, per region of the key: what each holds and was built from,
        where to download its files, and whether its signature and files verify."""
        items = []
        for name in who.scope(region):
            for found in package.listing(settings, day, name):
                manifest, folder = found["manifest"] or {}, found["folder"]
                version = int(folder.name[1:])
                items.append(
                    {
                        "region": name,
                        "date": day,
                        "version": version,
                        "supersedes": (manifest.get("supersedes") or {}).get("version"),
                        "publication_ids": {t: p["publication_id"] for t, p in manifest.get("publication", {}).items()},
                        "rows": manifest.get("rows", {}),
                        "control_totals": manifest.get("control_totals", {}),
                        "files": [
                            {**f, "url": report_url(name, day, version, f["name"])} for f in manifest.get("files", [])
                        ],
                        "manifest_url": report_url(name, day, version, package.MANIFEST),
                        "signature_url": report_url(name, day, version, package.SIGNATURE),
                        "verified": not found["problems"],
                        "problems": found["problems"],
                    }
                )
        return {"items": items, "public_key_url": "/reports/public-key"}

    @app.get(
        "/reports/public-key",
        tags=["reports"],
        response_class=Response,
        responses={
            200: {"content": {"application/x-pem-file": {}}, "description": "the Ed25519 public key (PEM)"},
            **errors(404, 429),
        },
    )
    def report_public_key() -> Response:
        """The public key every package's signature verifies with, as published beside them (no key needed)."""
        try:
            return Response(package.published_public_key(settings), media_type="application/x-pem-file")
        except package.PackageError as exc:
            raise Denied(404, str(exc)) from None

    @app.get(
        "/reports/{region}/{day}/{version}/{name}",
        tags=["reports"],
        response_class=Response,
        responses={
            200: {
                "content": {media: {} for media in sorted(set(package.MEDIA_TYPES.values()))},
                "description": "the file, as the manifest names it",
            },
            **errors(400, 401, 403, 404, 429),
        },
    )
    def report_file(
        who: Who,
        region: Annotated[Region, Path(description="the package's region")],  # type: ignore[valid-type]
        day: Annotated[Day, Path(description="its business day (UTC), YYYY-MM-DD")],
        version: Annotated[int, Path(ge=1, le=100_000, description="its version")],
        name: Annotated[package.FileName, Path(description="one of its files")],
    ) -> Response:
        """One file of a report package (region-scoped like the other endpoints)."""
        who.scope(region)
        path = settings.report_dir(region) / day.isoformat() / f"v{version}" / name.value
        if not path.is_file():
            raise Denied(404, f"no {name.value} in a version {version} package of {day.isoformat()}|{region}")
        return FileResponse(path, media_type=package.MEDIA_TYPES[name.value], filename=name.value)

    # -------------------------------------------------------------- the web page and the docs (no build step)
    app.mount("/static", StaticFiles(directory=STATIC), name="static")

    @app.get("/", include_in_schema=False)
    def page() -> FileResponse:
        return FileResponse(STATIC / "index.html")

    @app.get("/docs", include_in_schema=False)
    def swagger_ui() -> FileResponse:
        return FileResponse(STATIC / "docs.html", headers={"Content-Security-Policy": SWAGGER_UI_POLICY})

    @app.get("/redoc", include_in_schema=False)
    def redoc() -> FileResponse:
        return FileResponse(STATIC / "redoc.html", headers={"Content-Security-Policy": REDOC_POLICY})

    return app
