"""Live: the top ads of the last minutes of event time and one ad's minute chart, refreshed by itself."""

from __future__ import annotations

import altair as alt
import pandas as pd
import streamlit as st

from dashboard import api
from dashboard.api import DashboardConfig, ServingError
from dashboard.ui import STATE_COLORS, STATE_DOMAIN, format_count, format_ms, serving_error_ui, state_of

MINUTE_MS = 60_000
HOUR_MS = 3_600_000
MAX_CHART_HOURS = 24
TOP_LIMIT_CHOICES = [5, 10, 20, 50]


def controls_ui(config: DashboardConfig) -> tuple[int, int, int]:
    """Return the top window in minutes, the top size and the chart span in hours."""
    left, middle, right = st.columns(3)
    minutes = left.number_input("Top ads over the last minutes of event time", min_value=1,
                                max_value=config.max_top_minutes, value=60, step=5, key="top_minutes")
    limit = middle.selectbox("Ads in the top list", TOP_LIMIT_CHOICES, index=1, key="top_limit")
    hours = right.number_input("Minute chart over the last hours", min_value=1, max_value=MAX_CHART_HOURS,
                               value=3, step=1, key="chart_hours")
    return int(minutes), int(limit), int(hours)


def click_counts_ui(status: dict) -> None:
    """Show the late, duplicate and rejected click counts the serving API reports."""
    speed = status["speed"]
    batch = status["batch"]
    health = status["health"]
    late, duplicates, rejected = st.columns(3)
    late.metric("Late clicks (speed layer)", format_count(speed["late_clicks"]),
                help="Distinct clicks the speed layer routed to the late-clicks topic because they arrived "
                     "after their minute was closed.")
    duplicates.metric("Duplicates removed (batch)", format_count(batch["duplicates_removed"]),
                      help="Duplicate clicks the batch layer removed on the days it has closed. The speed "
                           "layer's own deduplication is not reported by the serving API.")
    rejected.metric("Rejected clicks (in topic)", format_count(health.get("rejected_clicks_in_topic")),
                    help="Records the collector's rejected-clicks topic retains; 'unknown' until the serving "
                         "API has measured it.")


def top_ads_ui(top: dict, zone: str) -> None:
    st.subheader("Top ads")
    if top["end_ms"] is None:
        st.info("The serving store holds no clicks yet, so there is no top list and no chart.")
        return
    st.caption(f"{top['minutes']} minutes of event time: {format_ms(top['start_ms'], zone)} to "
               f"{format_ms(top['end_ms'], zone)}, ending at the latest minute the store holds.")
    frame = pd.DataFrame([{"rank": ad["rank"], "ad_id": ad["ad_id"], "clicks": ad["clicks"],
                           "state": state_of(ad["is_final"]), "sources": ", ".join(ad["sources"])}
                          for ad in top["ads"]], columns=["rank", "ad_id", "clicks", "state", "sources"])
    st.dataframe(frame, hide_index=True, key="top_ads")


def local_time(epoch_ms: int, zone: str) -> pd.Timestamp:
    """Return the wall-clock time of ``zone`` without an offset, which Vega-Lite draws as it is."""
    return pd.Timestamp(epoch_ms, unit="ms", tz="UTC").tz_convert(zone).tz_localize(None)


def minute_frame(series: dict, zone: str) -> pd.DataFrame:
    """Turn the API's minute buckets into one row per minute, in the billing zone's wall-clock time."""
    rows = [{
        "minute": local_time(bucket["bucket_start_ms"], zone),
        "minute_end": local_time(bucket["bucket_end_ms"], zone),
        "clicks": bucket["clicks"],
        "state": state_of(bucket["is_final"]),
        "source": bucket["source"],
    } for bucket in series["buckets"]]
    return pd.DataFrame(rows, columns=["minute", "minute_end", "clicks", "state", "source"])


def minute_chart_ui(series: dict, hours: int, zone: str) -> None:
    st.subheader(f"Clicks per minute of {series['ad_id']}, last {hours} h")
    frame = minute_frame(series, zone)
    if frame.empty:
        st.info(f"Ad {series['ad_id']} has no clicks in the last {hours} hours of event time.")
        return
    chart = alt.Chart(frame).mark_bar().encode(
        # Each bar spans its minute, over the whole requested span, so gaps read as minutes without clicks.
        x=alt.X("minute:T", title=f"minute ({zone})",
                scale=alt.Scale(domain=[local_time(series["start_ms"], zone).isoformat(),
                                        local_time(series["end_ms"], zone).isoformat()]),
                axis=alt.Axis(format="%d %b %H:%M", tickMinStep=MINUTE_MS)),
        x2="minute_end:T",
        y=alt.Y("clicks:Q", title="clicks"),
        y2=alt.datum(0),
        color=alt.Color("state:N", title="state", scale=alt.Scale(domain=STATE_DOMAIN, range=STATE_COLORS)),
        tooltip=[alt.Tooltip("minute:T", format="%Y-%m-%d %H:%M"), "clicks:Q", "state:N", "source:N"],
    )
    st.altair_chart(chart, key="minute_chart")
    final = int(frame.loc[frame["state"] == "final", "clicks"].sum())
    provisional = int(frame.loc[frame["state"] == "provisional", "clicks"].sum())
    st.caption(f"{final:,} clicks in final minutes, {provisional:,} in provisional minutes that the "
               "speed layer may still update.")
    with st.expander("Minute counts"):
        st.dataframe(frame, hide_index=True, key="minute_counts")


def live_data_ui(config: DashboardConfig, minutes: int, limit: int, hours: int) -> None:
    """Load and show everything that refreshes; runs as a fragment on the refresh interval."""
    try:
        status = api.load_status(config.serving_url, config.request_timeout_s)
        top = api.load_top(config.serving_url, config.request_timeout_s, minutes, limit)
    except ServingError as exc:
        serving_error_ui(exc, config)
        return
    click_counts_ui(status)
    top_ads_ui(top, config.billing_timezone)
    if not top["ads"]:
        return
    ad_id = st.selectbox("Ad of the minute chart", [ad["ad_id"] for ad in top["ads"]], key="chart_ad")
    end_ms = top["end_ms"]
    try:
        series = api.load_series(config.serving_url, config.request_timeout_s, ad_id, "minute",
                                 end_ms - hours * HOUR_MS, end_ms)
    except ServingError as exc:
        serving_error_ui(exc, config)
        return
    minute_chart_ui(series, hours, config.billing_timezone)


def main() -> None:
    config = api.load_config()
    st.title("Live clicks")
    st.caption(f"Refreshes every {config.refresh_interval_s:g} s. Final minutes no longer change in the speed "
               "layer; provisional ones may.")
    minutes, limit, hours = controls_ui(config)
    refreshing = st.fragment(live_data_ui, run_every=config.refresh_interval_s)
    refreshing(config, minutes, limit, hours)


main()
