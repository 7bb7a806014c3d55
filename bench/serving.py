"""Benchmark the serving API: p50 and p99 latency of series, top-N and billing requests.

The store contains 10,000 ads over 30 billing days: 28 closed days of batch
minutes and 2 open days of speed minutes. Each ad has a click count in one
minute out of ``--minute-stride`` (10 by default, so 43.2 million minute
rows); a dense store of all 432 million minutes does not fit the time
budget of one benchmark run. Rows are generated inside DuckDB with the same
tables and bucket rules the loaders write, not read from Kafka or Delta.

Each endpoint is called over HTTP on 127.0.0.1 through uvicorn, one request
at a time, and compared with the same query called in-process, so the ratio
is the cost of HTTP and JSON on top of DuckDB.

Run with ``make bench-serving`` or ``python -m bench.serving``.
"""

from __future__ import annotations

import argparse
import logging
import os
import random
import shutil
import statistics
import tempfile
import threading
import time
from datetime import date, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import requests
import uvicorn

from bench.report import write_result
from serving_layer import queries
from serving_layer.app import create_app
from serving_layer.service import ServingService
from serving_layer.store import ServingStore
from shared_logic.bucket_sql import billing_day_sql, bucket_params, hour_start_sql
from shared_logic.settings import load_settings
from shared_logic.time_buckets import day_bounds_ms

logger = logging.getLogger("bench.serving")

ADS = 10_000
DAYS = 30
OPEN_DAYS = 2
FIRST_DAY = date(2026, 11, 1)


def build_store(path: Path, zone_name: str, stride: int) -> dict:
    """Fill a new store with generated minutes and return its row counts."""
    store = ServingStore(path, zone_name)
    zone = ZoneInfo(zone_name)
    start_ms = day_bounds_ms(FIRST_DAY, zone)[0]
    closed_end_ms = day_bounds_ms(FIRST_DAY + timedelta(days=DAYS - OPEN_DAYS), zone)[0]
    end_ms = day_bounds_ms(FIRST_DAY + timedelta(days=DAYS), zone)[0]
    params = {**bucket_params(zone_name), "ads": ADS, "stride": stride, "start_ms": start_ms,
              "closed_end_ms": closed_end_ms, "end_ms": end_ms}

    generated = f"""
        SELECT 'ad-' || lpad(ad::VARCHAR, 5, '0') AS ad_id, minute_ms,
               1 + hash(ad, minute_ms) % 5 AS clicks
        FROM range($ads) a(ad),
             LATERAL range($start_ms + (ad % $stride) * 60000, $end_ms, $stride * 60000) m(minute_ms)
    """

    # Closed days: batch minutes, their hourly and daily sums and closed_days rows, as close_day writes them.
    with store.write() as cursor:
        cursor.execute(f"""
            INSERT INTO batch_minutes
            SELECT {billing_day_sql('minute_ms')}, ad_id, minute_ms, minute_ms + 60000,
                   {hour_start_sql('minute_ms')}, clicks, 0, 'bench-run'
            FROM ({generated}) WHERE minute_ms < $closed_end_ms
            ORDER BY 1, ad_id, minute_ms
        """, params)
        cursor.execute("""
            INSERT INTO batch_hourly
            SELECT billing_day, ad_id, hour_start_ms, sum(clicks), 'bench-run' FROM batch_minutes
            GROUP BY ALL ORDER BY billing_day, ad_id, hour_start_ms
        """)
        cursor.execute("""
            INSERT INTO batch_daily
            SELECT billing_day, ad_id, sum(clicks), 0, 'bench-run' FROM batch_minutes GROUP BY ALL ORDER BY ALL
        """)
        cursor.execute("""
            INSERT INTO closed_days
            SELECT billing_day, 'bench-run', 0, count(*), sum(clicks) FROM batch_minutes GROUP BY billing_day
        """)

        # Open days: speed minutes.
        cursor.execute(f"""
            INSERT INTO speed_minutes
            SELECT ad_id, minute_ms, minute_ms + 60000, {billing_day_sql('minute_ms')},
                   {hour_start_sql('minute_ms')}, clicks, TRUE, clicks, minute_ms + 70000, 0, 0
            FROM ({generated}) WHERE minute_ms >= $closed_end_ms
            ORDER BY minute_ms, ad_id
        """, params)

        counts = {
            "batch_minute_rows": cursor.execute("SELECT count(*) FROM batch_minutes").fetchone()[0],
            "speed_minute_rows": cursor.execute("SELECT count(*) FROM speed_minutes").fetchone()[0],
        }
    store.close()
    return counts


def percentile(samples: list[float], fraction: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, round(fraction * (len(ordered) - 1)))]


def measure(call, requests_count: int) -> list[float]:
    """Return the latency in ms of ``requests_count`` calls of ``call(i)``, after 5 warm-up calls."""
    for i in range(5):
        call(i)
    samples = []
    for i in range(requests_count):
        started = time.perf_counter()
        call(i)
        samples.append((time.perf_counter() - started) * 1000)
    return samples


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--minute-stride", type=int, default=10,
                        help="each ad has one minute with clicks in every N minutes (default: 10)")
    parser.add_argument("--requests", type=int, default=200, help="timed requests per endpoint (default: 200)")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")

    workdir = Path(tempfile.mkdtemp(prefix="adclick-bench-serving-"))
    base = load_settings()
    settings = base.replace(data_dir=workdir, serving_port=_free_port())
    try:
        started = time.perf_counter()
        counts = build_store(settings.serving_duckdb_path, settings.billing_timezone, args.minute_stride)
        load_s = time.perf_counter() - started
        logger.info("generated %s in %.1f s", counts, load_s)
        rows = run_requests(settings, args.requests)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    # The machine is shared, so record how busy it was; latencies vary with it.
    load_1m = os.getloadavg()[0]
    notes = (f"{ADS} ads x {DAYS} days, 1 minute in {args.minute_stride} per ad: "
             f"{counts['batch_minute_rows']:,} batch + {counts['speed_minute_rows']:,} speed minute rows; "
             f"sequential requests; 1-minute load average {load_1m:.1f} at the end")
    for row in rows:
        row["notes"] = f"{row['notes']}; {notes}"
    rows.append({"metric": "store build (generated in DuckDB)", "value": round(load_s, 1), "unit": "s",
                 "peer": None, "peer_value": None, "ratio": None, "notes": notes})
    path = write_result("serving", rows, {"fastapi": _version("fastapi"), "uvicorn": _version("uvicorn")})
    print(f"wrote {path}")


def run_requests(settings, requests_count: int) -> list[dict]:
    service = ServingService(settings)
    app = create_app(service, run_ingest=False)
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=settings.serving_port,
                                           log_level="warning", access_log=False))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    base_url = f"http://127.0.0.1:{settings.serving_port}"
    while not server.started:
        time.sleep(0.05)
    session = requests.Session()
    pick = random.Random(7)
    ads = [f"ad-{pick.randrange(ADS):05d}" for _ in range(requests_count + 5)]
    first_day, last_day = FIRST_DAY, FIRST_DAY + timedelta(days=DAYS - 1)
    boundary_ms = day_bounds_ms(FIRST_DAY + timedelta(days=DAYS - OPEN_DAYS), settings.billing_zone)[0]
    day_start_ms = boundary_ms - 12 * 3_600_000
    day_end_ms = boundary_ms + 12 * 3_600_000

    def get(path: str, params: dict) -> None:
        response = session.get(base_url + path, params=params, timeout=60)
        response.raise_for_status()
        response.content

    cases = [
        ("series minute, 24 h across the closed/open boundary",
         lambda i: get(f"/v1/ads/{ads[i]}/clicks", {"granularity": "minute", "start": day_start_ms,
                                                     "end": day_end_ms}),
         lambda i: queries.series(service.store, settings, ads[i], "minute", day_start_ms, day_end_ms)),
        ("series hour, 30 days",
         lambda i: get(f"/v1/ads/{ads[i]}/clicks", {"granularity": "hour", "start": day_bounds_ms(
             first_day, settings.billing_zone)[0], "end": day_bounds_ms(last_day, settings.billing_zone)[1]}),
         lambda i: queries.series(service.store, settings, ads[i], "hour", day_bounds_ms(
             first_day, settings.billing_zone)[0], day_bounds_ms(last_day, settings.billing_zone)[1])),
        ("top 10 over 60 minutes",
         lambda i: get("/v1/top", {"minutes": 60, "limit": 10}),
         lambda i: queries.top_ads(service.store, settings, 60, 10)),
        ("billing one ad, 30 days",
         lambda i: get("/v1/billing", {"start_day": first_day.isoformat(), "end_day": last_day.isoformat(),
                                       "ad_id": ads[i]}),
         lambda i: queries.billing(service.store, settings, first_day, last_day, ads[i])),
        ("billing all ads, 1 open day",
         lambda i: get("/v1/billing", {"start_day": last_day.isoformat(), "end_day": last_day.isoformat()}),
         lambda i: queries.billing(service.store, settings, last_day, last_day)),
    ]
    rows = []
    try:
        for name, over_http, in_process in cases:
            count = requests_count if "all ads" not in name else max(20, requests_count // 10)
            http_ms = measure(over_http, count)
            direct_ms = measure(in_process, count)
            logger.info("%s: p50 %.2f ms, p99 %.2f ms over %d requests", name, percentile(http_ms, 0.5),
                        percentile(http_ms, 0.99), count)
            for label, fraction in (("p50", 0.5), ("p99", 0.99)):
                http_value = percentile(http_ms, fraction)
                direct_value = percentile(direct_ms, fraction)
                rows.append({"metric": f"{name} {label}", "value": round(http_value, 2), "unit": "ms",
                             "peer": "same query in-process", "peer_value": round(direct_value, 2),
                             "ratio": round(http_value / direct_value, 2) if direct_value else None,
                             "notes": f"{count} requests, mean {statistics.fmean(http_ms):.2f} ms"})
    finally:
        server.should_exit = True
        thread.join(timeout=30)
        service.store.close()
    return rows


def _free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _version(name: str) -> str:
    from importlib import metadata

    return metadata.version(name)


if __name__ == "__main__":
    main()
