"""The query API: click series, top ads, billing totals, status and reconciliation.

Every bucket and billing row carries its ``source`` (``batch`` or ``speed``)
and ``is_final``. Invalid parameters get status 400 and a message that states what is
accepted. The OpenAPI schema is at ``/openapi.json``.
"""

from __future__ import annotations

import logging
from contextlib import asynccontextmanager

from fastapi import FastAPI, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse

from serving_layer import queries
from serving_layer.queries import QueryError
from serving_layer.reconcile import ReportError, reconcile_day
from serving_layer.service import ServingService
from shared_logic.time_buckets import GRANULARITIES

logger = logging.getLogger(__name__)


def create_app(service: ServingService, run_ingest: bool = True) -> FastAPI:
    """Build the API over ``service``; with ``run_ingest`` the app starts and stops its ingest thread."""
    settings = service.settings
    store = service.store

    @asynccontextmanager
    async def lifespan(_app: FastAPI):
        if run_ingest:
            service.start()
        logger.info("serving API started on %s:%d with store %s", settings.serving_host, settings.serving_port,
                    store.path)
        yield
        if run_ingest:
            service.stop()
        logger.info("serving API stopped")

    app = FastAPI(title="adclick serving API", version="1", lifespan=lifespan,
                  description="Merged speed and batch click counts. Closed billing days come from batch "
                              "(authoritative), open days from the speed layer (provisional).")

    @app.exception_handler(QueryError)
    async def query_error(_request: Request, exc: QueryError) -> JSONResponse:
        return JSONResponse({"error": "invalid_parameter", "message": str(exc)}, status_code=400)

    @app.exception_handler(RequestValidationError)
    async def validation_error(_request: Request, exc: RequestValidationError) -> JSONResponse:
        problems = "; ".join(f"{'.'.join(str(part) for part in error['loc'][1:])}: {error['msg']}"
                             for error in exc.errors())
        return JSONResponse({"error": "invalid_parameter", "message": problems}, status_code=400)

    @app.get("/healthz")
    def healthz() -> dict:
        return service.health()

    @app.get("/v1/ads/{ad_id}/clicks")
    def ad_clicks(
        ad_id: str,
        start: str = Query(description="start instant, inclusive: ISO-8601 with a zone or epoch milliseconds"),
        end: str = Query(description="end instant, exclusive: ISO-8601 with a zone or epoch milliseconds"),
        granularity: str = Query("minute", description=f"one of {', '.join(GRANULARITIES)}"),
    ) -> dict:
        """Return one ad's clicks per bucket; the range is widened to whole buckets of the billing zone."""
        return queries.series(store, settings, ad_id, granularity, queries.parse_instant_ms("start", start),
                              queries.parse_instant_ms("end", end))

    @app.get("/v1/top")
    def top(
        minutes: int = Query(60, description="how many minutes of event time, ending at the latest minute held"),
        limit: int = Query(10, description="how many ads to return"),
    ) -> dict:
        """Return the ads with the most clicks over the last ``minutes`` of event time."""
        return queries.top_ads(store, settings, minutes, limit)

    @app.get("/v1/billing")
    def billing(
        start_day: str = Query(description="first billing day, YYYY-MM-DD, inclusive"),
        end_day: str = Query(description="last billing day, YYYY-MM-DD, inclusive"),
        ad_id: str | None = Query(None, description="only this ad"),
    ) -> dict:
        """Return billable clicks per ad per billing day, with their source and whether they are final."""
        return queries.billing(store, settings, queries.parse_day("start_day", start_day),
                               queries.parse_day("end_day", end_day), ad_id)

    @app.get("/v1/status")
    def status() -> dict:
        """Return speed-layer freshness, the latest batch run of each day and the closed/open boundary."""
        return queries.status(store, settings, service.health())

    @app.get("/v1/reconciliation")
    def reconciliation(day: str = Query(description="billing day, YYYY-MM-DD")) -> JSONResponse:
        """Return the reconciliation of the speed layer's final counts against batch for one closed day."""
        try:
            report = reconcile_day(store, settings, queries.parse_day("day", day))
        except ReportError as exc:
            return JSONResponse({"error": "not_reconcilable", "message": str(exc)}, status_code=409)
        return JSONResponse(report)

    return app


def run(settings) -> None:
    """Serve the API and run the ingest thread until interrupted."""
    import uvicorn

    service = ServingService(settings)
    uvicorn.run(create_app(service), host=settings.serving_host, port=settings.serving_port,
                log_level="warning", access_log=False)
