"""Health: whether each service responds, speed-layer freshness and lag, and the latest batch run per day."""

from __future__ import annotations

import time

import pandas as pd
import streamlit as st

from dashboard import api
from dashboard.api import DashboardConfig, Probe, ServingError
from dashboard.ui import format_count, format_ms, serving_error_ui

BATCH_COLUMNS = ["billing_day", "status", "served", "run_id", "started", "ended", "billable_clicks",
                 "duplicates_removed", "non_billable_clicks", "error"]


def probes(config: DashboardConfig) -> list[Probe]:
    timeout_s = config.request_timeout_s
    return [
        api.probe_service("serving API", f"{config.serving_url}/healthz", timeout_s),
        api.probe_service("collector", f"{config.collector_url}/healthz", timeout_s),
        api.probe_service("Kafka, as the collector sees it", f"{config.collector_url}/readyz", timeout_s),
    ]


def services_ui(results: list[Probe], status: dict | None) -> None:
    st.subheader("Services")
    rows = [{"service": probe.service, "responds": "yes" if probe.responds else "no", "detail": probe.detail,
             "url": probe.url} for probe in results]
    if status is not None:
        health = status["health"]
        alive = health["ingest_thread_alive"]
        detail = health["last_error"] or f"{health['records_applied']:,} records applied"
        rows.append({"service": "serving ingest (Kafka and Delta)", "responds": "yes" if alive else "no",
                     "detail": f"status {health['status']}: {detail}", "url": "-"})
    frame = pd.DataFrame(rows, columns=["service", "responds", "detail", "url"])
    st.dataframe(frame, hide_index=True, key="services")
    down = [row["service"] for row in rows if row["responds"] == "no"]
    if down:
        st.warning(f"Not responding: {', '.join(down)}.")
    else:
        st.success("Every service responds.")


def speed_ui(status: dict, zone: str, now_ms: int) -> None:
    speed = status["speed"]
    health = status["health"]
    st.subheader("Speed layer")
    computed = speed["latest_computed_at_ms"]
    freshness = "-" if computed is None else f"{max(0, now_ms - computed) / 1000:,.0f} s"
    columns = st.columns(4)
    columns[0].metric("Age of the latest count", freshness,
                      help="Wall-clock time since the speed layer computed the newest count in the serving store.")
    columns[1].metric("Consumer lag (records)", format_count(health["consumer_lag"]),
                      help="Records in the speed layer's topics that the serving API has not read yet.")
    columns[2].metric("Provisional minute rows", format_count(speed["provisional_minute_rows"]))
    columns[3].metric("Late clicks", format_count(speed["late_clicks"]))
    details = pd.DataFrame([
        {"measure": "latest minute (event time)", "value": format_ms(speed["latest_window_start_ms"], zone)},
        {"measure": "latest final minute ends", "value": format_ms(speed["latest_final_window_end_ms"], zone)},
        {"measure": "latest count computed", "value": format_ms(computed, zone)},
        {"measure": "watermark (latest late click)", "value": format_ms(speed["latest_watermark_ms"], zone)},
        {"measure": "lag measured", "value": format_ms(health["lag_measured_at_ms"], zone)},
        {"measure": "minute rows held", "value": format_count(speed["minute_rows"])},
    ], columns=["measure", "value"])
    st.dataframe(details, hide_index=True, key="speed_details")
    # NOTE: the serving API stores only the watermark carried by late clicks, so
    # this value stays empty until the first late click arrives.
    st.caption("The counts topic carries no watermark; the one shown is the speed layer's watermark when it "
               "routed the latest late click.")


def batch_ui(status: dict, zone: str) -> None:
    st.subheader("Batch layer: latest run of each day")
    rows = [{
        "billing_day": run["billing_day"],
        "status": run["status"],
        "served": "batch" if run["closed"] else "speed",
        "run_id": run["run_id"],
        "started": format_ms(run["started_at_ms"], zone),
        "ended": format_ms(run["ended_at_ms"], zone),
        "billable_clicks": run["billable_clicks"],
        "duplicates_removed": run["duplicates_removed"],
        "non_billable_clicks": run["non_billable_clicks"],
        "error": run["error"],
    } for run in status["batch"]["latest_run_per_day"]]
    frame = pd.DataFrame(rows, columns=BATCH_COLUMNS)
    if frame.empty:
        st.info("No batch run has been loaded yet.")
    st.dataframe(frame, hide_index=True, key="batch_runs")
    failed = frame.loc[frame["status"] == "failed", "billing_day"].tolist()
    if failed:
        st.error(f"The latest batch run failed for {', '.join(failed)}; those days are served from the "
                 "speed layer until a run succeeds.")
    boundary = status["boundary"]
    st.caption(f"Latest closed day: {boundary['latest_closed_day'] or 'none'}. Open days with speed data: "
               f"{', '.join(boundary['open_days_with_speed_data']) or 'none'}.")


def main() -> None:
    config = api.load_config()
    st.title("Pipeline health")
    try:
        status = api.load_status(config.serving_url, config.request_timeout_s)
    except ServingError as exc:
        serving_error_ui(exc, config)
        status = None
    services_ui(probes(config), status)
    if status is None:
        return
    speed_ui(status, config.billing_timezone, int(time.time() * 1000))
    batch_ui(status, config.billing_timezone)


main()
