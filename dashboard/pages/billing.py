"""Billing: daily clicks per ad for a range of billing days, batch (authoritative) or speed (provisional)."""

from __future__ import annotations

from datetime import date, datetime, timedelta
from zoneinfo import ZoneInfo

import pandas as pd
import streamlit as st

from dashboard import api
from dashboard.api import DashboardConfig, ServingError
from dashboard.ui import serving_error_ui

AUTHORITATIVE = "batch (authoritative)"
PROVISIONAL = "speed (provisional)"
COLUMNS = ["billing_day", "ad_id", "clicks", "state", "source", "all_minutes_final", "run_id"]


def range_ui(config: DashboardConfig) -> tuple[date, date, str | None] | None:
    """Return the chosen first day, last day and ad filter, or None after explaining what is wrong."""
    today = datetime.now(ZoneInfo(config.billing_timezone)).date()
    first_col, last_col, ad_col = st.columns(3)
    first_day = first_col.date_input("First billing day", value=today - timedelta(days=6), key="first_day")
    last_day = last_col.date_input("Last billing day", value=today, key="last_day")
    ad_id = ad_col.text_input("Only this ad (empty for every ad)", key="billing_ad").strip() or None
    if first_day > last_day:
        st.warning(f"The first day {first_day} is after the last day {last_day}; pick a first day on or "
                   "before the last one.")
        return None
    day_count = (last_day - first_day).days + 1
    if day_count > config.max_billing_days:
        st.warning(f"The range has {day_count} days; the serving API returns at most "
                   f"{config.max_billing_days} at a time, so pick a shorter range.")
        return None
    return first_day, last_day, ad_id


def billing_frame(billing: dict) -> pd.DataFrame:
    rows = [{
        "billing_day": row["billing_day"],
        "ad_id": row["ad_id"],
        "clicks": row["clicks"],
        "state": AUTHORITATIVE if row["source"] == "batch" else PROVISIONAL,
        "source": row["source"],
        "all_minutes_final": row["is_final"],
        "run_id": row["run_id"],
    } for row in billing["rows"]]
    return pd.DataFrame(rows, columns=COLUMNS)


def totals_ui(frame: pd.DataFrame) -> None:
    total, authoritative, provisional = st.columns(3)
    total.metric("Billable clicks", f"{int(frame['clicks'].sum()):,}")
    authoritative.metric("From batch (authoritative)",
                         f"{int(frame.loc[frame['source'] == 'batch', 'clicks'].sum()):,}")
    provisional.metric("From speed (provisional)",
                       f"{int(frame.loc[frame['source'] == 'speed', 'clicks'].sum()):,}")


def days_ui(billing: dict) -> None:
    """Show which layer each day's counts come from, so a missing row of a closed day reads as zero."""
    frame = pd.DataFrame([{"billing_day": day["billing_day"],
                           "state": AUTHORITATIVE if day["closed"] else PROVISIONAL,
                           "run_id": day["run_id"]} for day in billing["days"]],
                         columns=["billing_day", "state", "run_id"])
    with st.expander("Source of each day"):
        st.dataframe(frame, hide_index=True, key="billing_days")


def table_ui(frame: pd.DataFrame, billing: dict) -> None:
    st.subheader("Daily clicks per ad")
    st.caption(f"Billing days in {billing['billing_timezone']}. Closed days come from the batch layer and are "
               "final; open days come from the speed layer and may still change.")
    if frame.empty:
        st.info(f"No billable clicks from {billing['start_day']} to {billing['end_day']}.")
    st.dataframe(frame, hide_index=True, key="billing_rows")
    st.download_button("Download CSV", data=frame.to_csv(index=False),
                       file_name=f"billing-{billing['start_day']}-{billing['end_day']}.csv", mime="text/csv",
                       on_click="ignore", key="billing_csv")


def main() -> None:
    config = api.load_config()
    st.title("Billing")
    chosen = range_ui(config)
    if chosen is None:
        return
    first_day, last_day, ad_id = chosen
    try:
        billing = api.load_billing(config.serving_url, config.request_timeout_s, first_day.isoformat(),
                                   last_day.isoformat(), ad_id)
    except ServingError as exc:
        serving_error_ui(exc, config)
        return
    frame = billing_frame(billing)
    totals_ui(frame)
    table_ui(frame, billing)
    days_ui(billing)


main()
