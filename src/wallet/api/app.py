"""The FastAPI application: lifespan (pool), probes, error translation, routes."""

from __future__ import annotations

import importlib.resources
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import asyncpg
import orjson
import structlog
from fastapi import FastAPI, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.openapi.utils import get_openapi
from fastapi.staticfiles import StaticFiles
from starlette.exceptions import HTTPException
from starlette.requests import ClientDisconnect
from starlette.routing import Match, Mount

from wallet import housekeeping, logs
from wallet import metrics as service_metrics
from wallet.api import events, holds, movements, schemas, statements
from wallet.api.auth import KeyCache
from wallet.api.deps import connection, pooled_connection
from wallet.api.middleware import REQUEST_STATUS_SENT_BY_PROTOCOL, InstrumentedFastAPI
from wallet.api.problems import Problem, status_of, unavailable
from wallet.api.routes import router
from wallet.config import Settings, load_settings
from wallet.db import migrate
from wallet.db.database import schema_revision
from wallet.db.errors import UNAVAILABLE_ERRORS, is_unavailable
from wallet.db.pool import create_pool
from wallet.ledger import code
from wallet.ledger.errors import LedgerError
from wallet.ledger.group_commit import GroupCommit
from wallet.web.routes import router as web_router

log = structlog.get_logger("wallet.api")

# The status recorded for a request whose client went away before sending all of it (nginx's 499).
CLIENT_CLOSED_REQUEST = 499
HTTP_METHODS = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "TRACE")
REQUEST_SCHEMAS = (
    schemas.AssetCreate,
    schemas.WalletCreate,
    schemas.MovementRequest,
    schemas.CreditRequest,
    schemas.TransferRequest,
    schemas.JournalRequest,
    schemas.BatchRequest,
    schemas.HoldCreate,
    schemas.HoldCapture,
    schemas.HoldVoid,
    schemas.Reverse,
)


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or load_settings()
    logs.configure(settings.log_level)  # again in each worker process

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        assert settings.database_url is not None, "wallet serve sets the database URL"
        app.state.pool = await create_pool(settings, settings.database_url)
        app.state.key_cache = None
        if settings.api_key_cache and settings.database_pooler == "none":
            router = getattr(app.state.pool, "router", None)
            connect = router.connect if router is not None else asyncpg.connect
            app.state.key_cache = KeyCache(settings, settings.database_url, connect)
        if app.state.key_cache is not None:
            await app.state.key_cache.start()
        app.state.group_commit = GroupCommit(
            lambda: pooled_connection(app.state.pool, settings),
            in_flight_max=settings.group_commit_in_flight_max,
            group_size_max=settings.group_commit_size_max,
            observe_group=service_metrics.GROUP_COMMIT_SIZE.observe,
            observe_waiting_on_locks=service_metrics.GROUP_COMMIT_WAITING_ON_LOCKS.set,
        )
        pool_sampler = service_metrics.start_pool_sampler(app.state.pool)
        purge = housekeeping.start_purge(app.state.pool, settings)
        sweep = housekeeping.start_sweep(app.state.pool, settings)
        events_purge = housekeeping.start_events_purge(app.state.pool, settings)
        sequencer = housekeeping.start_sequencer(app.state.pool, settings)
        try:
            yield
        finally:
            await housekeeping.stop(sequencer)
            await housekeeping.stop(events_purge)
            await housekeeping.stop(sweep)
            await housekeeping.stop(purge)
            await app.state.group_commit.close()
            if app.state.key_cache is not None:
                await app.state.key_cache.stop()
            pool_sampler.cancel()
            await app.state.pool.close()
            service_metrics.worker_stopped(settings.prometheus_multiproc_dir)

    app = InstrumentedFastAPI(
        title="wallet",
        version="1.0.0",
        summary="Double-entry ledger of virtual credits with idempotent money movements.",
        lifespan=lifespan,
        docs_url=None,
        redoc_url=None,
        # No redirect from `/v1/assets/` to `/v1/assets`: Starlette builds its Location from the
        # Host header, before authentication; an unknown path is a 404 problem like any other.
        redirect_slashes=False,
    )
    app.state.settings = settings
    app.state.head_revision = migrate.head_revision()
    _add_probes(app)
    _add_docs(app)
    app.include_router(movements.router)
    app.include_router(holds.router)
    app.include_router(events.router)
    app.include_router(statements.router)
    app.include_router(router)
    app.include_router(web_router)
    _add_error_handlers(app)
    app.openapi = lambda: _openapi(app)  # type: ignore[method-assign]
    return app


def _add_probes(app: FastAPI) -> None:
    @app.get("/healthz", response_model=schemas.Health, tags=["probes"])
    async def healthz() -> Response:
        return Response(b'{"status":"ok"}', media_type="application/json")

    @app.get(
        "/readyz",
        response_model=schemas.Health,
        tags=["probes"],
        responses={503: {"model": schemas.ProblemDocument}},
    )
    async def readyz(request: Request) -> Response:
        """The database answers, its tables are at this code's newest migration, and its ledger
        functions are this code's (the checksum `wallet db migrate` recorded)."""
        async with connection(request) as database:
            revision = await schema_revision(database)
            functions = await code.installed_checksum(database)
        head = request.app.state.head_revision
        if revision != head:
            raise unavailable(f"Database schema is at {revision or 'nothing'}, not {head}.")
        if functions != code.checksum():
            raise unavailable("The database's ledger functions are not this code's: run `wallet db migrate`.")
        return Response(b'{"status":"ready"}', media_type="application/json")

    @app.get("/metrics", tags=["probes"], response_class=Response)
    async def metrics(request: Request) -> Response:
        service_metrics.sample_pool(request.app.state.pool)
        document, media_type = service_metrics.render(request.app.state.settings.prometheus_multiproc_dir)
        return Response(document, media_type=media_type)


def _add_docs(app: FastAPI) -> None:
    """Swagger UI at /docs, its assets served by the service itself (no CDN)."""
    assets = importlib.resources.files("fastapi_offline") / "static"
    app.mount("/docs-assets", StaticFiles(directory=str(assets)), name="docs-assets")

    @app.get("/docs", include_in_schema=False)
    async def docs() -> Response:
        return get_swagger_ui_html(
            openapi_url="/openapi.json",
            title="wallet API",
            swagger_js_url="/docs-assets/swagger-ui-bundle.js",
            swagger_css_url="/docs-assets/swagger-ui.css",
            swagger_favicon_url="/docs-assets/favicon.png",
        )


def _add_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(Problem)
    async def problem(request: Request, error: Problem) -> Response:
        return error.to_response()

    @app.exception_handler(LedgerError)
    async def ledger_error(request: Request, error: LedgerError) -> Response:
        return Problem(status_of(error.code), error.code, error.detail).to_response()

    @app.exception_handler(RequestValidationError)
    async def request_invalid(request: Request, error: RequestValidationError) -> Response:
        errors = [{"loc": list(item["loc"]), "msg": item["msg"]} for item in error.errors()]
        return Problem(422, "validation_error", "The request is not valid.", errors=errors).to_response()

    @app.exception_handler(HTTPException)
    async def http_error(request: Request, error: HTTPException) -> Response:
        if error.status_code == 405:
            allow = {"Allow": _allowed_methods(request, error)}
            detail = "This path does not take this method."
            return Problem(405, "method_not_allowed", detail, headers=allow).to_response()
        if error.status_code == 404:
            return Problem(404, "not_found", "No such path.").to_response()
        return Problem(error.status_code, "http_error", str(error.detail)).to_response()

    @app.exception_handler(ClientDisconnect)
    async def client_gone(request: Request, error: ClientDisconnect) -> Response:
        """The connection ended before the request's body did: the client's doing, not a bug.
        This answer is never sent (the connection is gone). Its status, 499 as nginx logs a
        client that left, is what the access line and the metrics record, unless the HTTP
        protocol answered in the application's place (408 when the body did not arrive in time,
        see wallet.api.protocol): then the request middleware records that status."""
        sent = request.scope.get("state", {}).get(REQUEST_STATUS_SENT_BY_PROTOCOL)
        if sent is not None:
            log.info("request_refused_by_protocol", status=sent, path=request.url.path)
        else:
            log.info("client_disconnected", path=request.url.path)
        return Response(status_code=CLIENT_CLOSED_REQUEST)

    async def database_error(request: Request, error: Exception) -> Response:
        """The database not answering (db/errors.py: 503, retry with the same key), or a bug of
        a class that can be either (an InterfaceError, an OSError)."""
        if not is_unavailable(error):
            return internal_error(request)
        log.warning("database_unavailable", error=type(error).__name__, path=request.url.path)
        service_metrics.record_database_error(error)
        detail = "The database is not answering; retry shortly with the same key."
        return unavailable(detail).to_response()

    # Handlers of exception classes answer without re-raising (Starlette's handler of Exception
    # itself would re-raise after answering).
    for error_class in (*UNAVAILABLE_ERRORS, asyncpg.InterfaceError, OSError):
        app.add_exception_handler(error_class, database_error)

    @app.exception_handler(Exception)
    async def unexpected(request: Request, error: Exception) -> Response:
        return internal_error(request)


def internal_error(request: Request) -> Response:
    """A bug: logged with its traceback (called while the exception is handled), answered 500."""
    log.exception("internal_error", path=request.url.path)
    return Problem(500, "internal_error", "An unexpected error; it has been logged.").to_response()


def _allowed_methods(request: Request, error: HTTPException) -> str:
    """The `Allow` header of a 405 (RFC 9110): every method some route takes on this path, not
    only the methods of the route the router happened to try first."""
    methods = {method.strip() for method in (error.headers or {}).get("Allow", "").split(",") if method}
    routes = [route for route in request.app.router.routes if not isinstance(route, Mount)]
    for method in HTTP_METHODS:
        scope = {**request.scope, "method": method}
        if any(route.matches(scope)[0] is Match.FULL for route in routes):
            methods.add(method)
    assert methods, request.url.path
    return ", ".join(sorted(methods))


def _openapi(app: FastAPI) -> dict[str, Any]:
    if app.openapi_schema is None:
        document = get_openapi(title=app.title, version=app.version, summary=app.summary, routes=app.routes)
        components = document.setdefault("components", {}).setdefault("schemas", {})
        for model in REQUEST_SCHEMAS:
            schema = model.model_json_schema(ref_template="#/components/schemas/{model}")
            components.update(schema.pop("$defs", {}))
            components[model.__name__] = schema
        app.openapi_schema = orjson.loads(orjson.dumps(document))
    return app.openapi_schema
