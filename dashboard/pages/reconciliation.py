"""Reconciliation: the speed layer's final counts against batch for one closed day, flagged ads first."""

from __future__ import annotations

from datetime import date, datetime, timedelta
from zoneinfo import ZoneInfo

import altair as alt
import pandas as pd
import streamlit as st

from dashboard import api
from dashboard.api import DashboardConfig, ServingError, ServingRejected
from dashboard.ui import serving_error_ui

# The parts a difference splits into; they add up to speed_final_clicks - batch_clicks.
REASONS = {
    "late clicks": "late_clicks",
    "clicks after close": "after_close_clicks",
    "duplicates": "duplicates_explained",
    "non-billable": "non_billable_explained",
    "unexplained": "unexplained",
}
# Late clicks lower the speed count, so they explain a negative difference.
NEGATIVE_REASONS = {"late clicks"}
MAX_CHART_ADS = 40
TABLE_COLUMNS = ["flagged", "ad_id", "speed_final_clicks", "batch_clicks", "difference", "difference_pct",
                 "late_clicks", "after_close_clicks", "duplicates_explained", "non_billable_explained",
                 "unexplained", "unexplained_pct", "speed_provisional_minutes", "duplicates_removed",
                 "non_billable_clicks"]


def default_day(config: DashboardConfig) -> date:
    """Return the latest day batch has closed, or yesterday in the billing zone when none is known."""
    try:
        status = api.load_status(config.serving_url, config.request_timeout_s)
    except ServingError:
        status = None
    latest = status["boundary"]["latest_closed_day"] if status else None
    if latest:
        return date.fromisoformat(latest)
    return datetime.now(ZoneInfo(config.billing_timezone)).date() - timedelta(days=1)


def day_ui(config: DashboardConfig) -> date:
    return st.date_input("Billing day", value=default_day(config), key="reconciliation_day")


def totals_ui(report: dict) -> None:
    totals = report["totals"]
    st.caption(f"Batch run {report['run_id']}, billing time zone {report['billing_timezone']}. An ad is "
               f"flagged when its unexplained clicks exceed {report['threshold_clicks']} clicks and "
               f"{report['threshold_pct']} %.")
    columns = st.columns(5)
    columns[0].metric("Ads", f"{totals['ads']:,}")
    columns[1].metric("Flagged ads", f"{totals['flagged_rows']:,}")
    columns[2].metric("Speed final clicks", f"{totals['speed_final_clicks']:,}")
    columns[3].metric("Batch clicks", f"{totals['batch_clicks']:,}")
    columns[4].metric("Unexplained clicks", f"{totals['unexplained']:,}")
    if totals["flagged_rows"]:
        st.warning(f"{totals['flagged_rows']} ads have an unexplained difference over the threshold.")
    else:
        st.success("Every difference is explained within the threshold.")


def sorted_rows(report: dict) -> pd.DataFrame:
    """Return the report's rows, flagged first, then by the size of the unexplained remainder."""
    frame = pd.DataFrame(report["rows"], columns=TABLE_COLUMNS)
    order = frame.assign(size=frame["unexplained"].abs(), unflagged=~frame["flagged"].astype(bool))
    order = order.sort_values(["unflagged", "size", "ad_id"], ascending=[True, False, True])
    return frame.loc[order.index].reset_index(drop=True)


def rows_ui(frame: pd.DataFrame) -> None:
    st.subheader("Ads, flagged first")
    st.dataframe(frame, hide_index=True, key="reconciliation_rows")


def difference_frame(frame: pd.DataFrame) -> pd.DataFrame:
    """Return one row per ad and reason with its signed share of speed minus batch."""
    biggest = frame.reindex(frame["difference"].abs().sort_values(ascending=False).index).head(MAX_CHART_ADS)
    parts = []
    for _, row in biggest.iterrows():
        for reason, column in REASONS.items():
            clicks = int(row[column])
            if clicks:
                parts.append({"ad_id": row["ad_id"], "reason": reason,
                              "clicks": -clicks if reason in NEGATIVE_REASONS else clicks})
    return pd.DataFrame(parts, columns=["ad_id", "reason", "clicks"])


def difference_chart_ui(frame: pd.DataFrame) -> None:
    st.subheader("Speed minus batch, by reason")
    parts = difference_frame(frame)
    if parts.empty:
        st.info("Speed and batch agree for every ad.")
        return
    if len(frame) > MAX_CHART_ADS:
        st.caption(f"The {MAX_CHART_ADS} ads with the largest differences of {len(frame)}.")
    chart = alt.Chart(parts).mark_bar().encode(
        x=alt.X("ad_id:N", title="ad", sort="-y"),
        y=alt.Y("sum(clicks):Q", title="clicks (speed - batch)"),
        color=alt.Color("reason:N", title="reason", scale=alt.Scale(domain=list(REASONS))),
        tooltip=["ad_id:N", "reason:N", "clicks:Q"],
    )
    st.altair_chart(chart, key="difference_chart")


def main() -> None:
    config = api.load_config()
    st.title("Reconciliation")
    day = day_ui(config)
    try:
        report = api.load_reconciliation(config.serving_url, config.request_timeout_s, day.isoformat())
    except ServingRejected as exc:
        st.info(f"No reconciliation for {day}: {exc}")
        return
    except ServingError as exc:
        serving_error_ui(exc, config)
        return
    totals_ui(report)
    frame = sorted_rows(report)
    rows_ui(frame)
    difference_chart_ui(frame)


main()
