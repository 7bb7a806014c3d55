"""The collector's HTTP API: ``POST /v1/clicks``, ``GET /healthz``, ``GET /readyz``.

A click gets 202 only after Kafka acknowledged it with
``acks=all``. Invalid clicks in a batch are reported by index and written
to the rejected topic; valid ones in the same batch are accepted.
"""

from __future__ import annotations

import json
import logging
import os
import threading
import uuid
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse

from collector.heartbeats import HeartbeatSender
from collector.kafka_writer import ClickWriter, KafkaUnavailable
from collector.parsing import RequestError, media_type, parse_body
from infra.kafka_broker import broker_answers
from shared_logic.clicks import Click, InvalidClick, validate_click
from shared_logic.settings import Settings, load_settings
from shared_logic.timestamps import now_ms

logger = logging.getLogger(__name__)
RETRY_AFTER_S = 5
MAX_REJECTED_PAYLOAD_CHARS = 4096


class Counters:
    def __init__(self):
        self._lock = threading.Lock()
        self.accepted = 0
        self.rejected = 0
        self.failed_requests = 0

    def add(self, accepted: int = 0, rejected: int = 0, failed_requests: int = 0) -> None:
        with self._lock:
            self.accepted += accepted
            self.rejected += rejected
            self.failed_requests += failed_requests

    def snapshot(self) -> dict[str, int]:
        return {"accepted": self.accepted, "rejected": self.rejected, "failed_requests": self.failed_requests}


def _error(status: int, error: str, message: str, request_id: str, **extra: Any) -> JSONResponse:
    headers = {"X-Request-Id": request_id}
    if status == 503:
        headers["Retry-After"] = str(RETRY_AFTER_S)
    return JSONResponse({"error": error, "message": message, "request_id": request_id, **extra},
                        status_code=status, headers=headers)


async def _read_body(request: Request, max_bytes: int) -> bytes:
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > max_bytes:
        raise RequestError(413, "body_too_large",
                           f"the body is {declared} bytes; the maximum is {max_bytes}, so split the batch")
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > max_bytes:
            raise RequestError(413, "body_too_large",
                               f"the body exceeds {max_bytes} bytes; split the batch into smaller requests")
        chunks.append(chunk)
    return b"".join(chunks)


def _rejected_record(payload: Any, index: int | None, error: str, request_id: str, received_at: int) -> dict:
    text = json.dumps(payload, ensure_ascii=False)
    return {
        "request_id": request_id,
        "index": index,
        "error": error,
        "payload": text[:MAX_REJECTED_PAYLOAD_CHARS],
        "received_at_ms": received_at,
    }


def _validate_all(payloads: list[Any], settings: Settings) -> tuple[list[tuple[int, Click]], list[dict]]:
    valid, errors = [], []
    now = now_ms()
    for index, payload in enumerate(payloads):
        try:
            valid.append((index, validate_click(payload, settings, now)))
        except InvalidClick as exc:
            errors.append({"index": index, "field": exc.field, "error": str(exc), "payload": payload})
    return valid, errors


def create_app(settings: Settings, writer: ClickWriter | None = None) -> FastAPI:
    writer = writer or ClickWriter(settings)
    heartbeats = HeartbeatSender(settings, writer)
    counters = Counters()

    @asynccontextmanager
    async def lifespan(_app: FastAPI):
        logger.info("collector started on %s:%d, writing to %s at %s", settings.collector_host,
                    settings.collector_port, settings.topic_clicks, settings.kafka_bootstrap_servers)
        heartbeats.start()
        yield
        await run_in_threadpool(heartbeats.stop)
        await run_in_threadpool(writer.close)
        logger.info("collector stopped; totals %s", counters.snapshot())

    app = FastAPI(title="adclick collector", version="1", lifespan=lifespan)
    app.state.counters = counters

    @app.get("/healthz")
    def healthz() -> dict:
        return {"status": "ok", **counters.snapshot()}

    @app.get("/readyz")
    def readyz() -> JSONResponse:
        if broker_answers(settings.kafka_bootstrap_servers):
            return JSONResponse({"status": "ready"})
        return JSONResponse({"status": "unavailable", "message": "Kafka does not answer"}, status_code=503,
                            headers={"Retry-After": str(RETRY_AFTER_S)})

    @app.post("/v1/clicks", status_code=202)
    async def post_clicks(request: Request) -> JSONResponse:
        request_id = str(uuid.uuid4())
        received_at = now_ms()
        try:
            kind = media_type(request.headers.get("content-type"))
            body = await _read_body(request, settings.collector_max_body_bytes)
            payloads = parse_body(body, kind, settings.collector_max_batch_clicks)
        except RequestError as exc:
            logger.info("request %s rejected with %d: %s", request_id, exc.status, exc.message)
            counters.add(failed_requests=1)
            return _error(exc.status, exc.error, exc.message, request_id)
        return await run_in_threadpool(_accept, payloads, request_id, received_at)

    def _accept(payloads: list[Any], request_id: str, received_at: int) -> JSONResponse:
        valid, errors = _validate_all(payloads, settings)
        records = [(settings.topic_clicks, click.ad_id, click.to_record(received_at)) for _, click in valid]
        records += [
            (settings.topic_clicks_rejected, request_id,
             _rejected_record(error.pop("payload"), error["index"], error["error"], request_id, received_at))
            for error in errors
        ]
        try:
            writer.write(records, request_id)
        except KafkaUnavailable as exc:
            counters.add(failed_requests=1)
            return _error(503, "kafka_unavailable",
                          f"Kafka did not acknowledge every click ({exc}); retry the same body "
                          f"after {RETRY_AFTER_S} s: click ids make the retry safe from double counting", request_id)
        counters.add(accepted=len(valid), rejected=len(errors))
        if valid:
            heartbeats.observe(max(click.event_time_ms for _, click in valid))
        logger.info("request %s: accepted %d, rejected %d", request_id, len(valid), len(errors))
        if not valid:
            return _error(400, "invalid_clicks", "no click in the request is valid; fix the listed fields",
                          request_id, errors=errors)
        clicks = [{"index": index, "click_id": click.click_id, "timestamp": click.timestamp}
                  for index, click in valid]
        return JSONResponse({"request_id": request_id, "accepted": len(valid), "rejected": len(errors),
                             "clicks": clicks, "errors": errors}, status_code=202,
                            headers={"X-Request-Id": request_id})

    return app


def _exit_with_parent() -> None:
    """Ask Linux to send SIGTERM to this worker when its parent dies, even by SIGKILL."""
    import ctypes
    import signal

    pr_set_pdeathsig = 1
    try:
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(pr_set_pdeathsig, signal.SIGTERM)
    except OSError:
        logger.warning("cannot tie the worker's life to its parent; it may outlive a killed collector")


def create_app_from_environment() -> FastAPI:
    """Build the app from ``ADCLICK_*`` variables; uvicorn's worker processes call this."""
    _exit_with_parent()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("kafka").setLevel(logging.CRITICAL)
    return create_app(load_settings())


def run(settings: Settings) -> None:
    """Serve the collector until interrupted, with ``collector_workers`` processes."""
    import uvicorn

    options = {"host": settings.collector_host, "port": settings.collector_port, "log_level": "warning",
               "access_log": False}
    if settings.collector_workers <= 1:
        uvicorn.run(create_app(settings), **options)
        return
    # Worker processes rebuild the settings from the environment, each with its own producer.
    os.environ.update(settings.to_environ())
    uvicorn.run("collector.app:create_app_from_environment", factory=True, workers=settings.collector_workers,
                **options)
