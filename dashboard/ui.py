"""Widgets and formatting shared by the dashboard pages."""

from __future__ import annotations

from datetime import datetime, timezone
from zoneinfo import ZoneInfo

import streamlit as st

from dashboard.api import DashboardConfig, ServingError, ServingRejected

FINAL = "final"
PROVISIONAL = "provisional"
# Fixed colours, so final and provisional keep theirs on every refresh.
STATE_DOMAIN = [FINAL, PROVISIONAL]
STATE_COLORS = ["#1f77b4", "#ff7f0e"]


def serving_error_ui(exc: ServingError, config: DashboardConfig) -> None:
    """Show why the serving API gave no data, as a message and never a stack trace."""
    if isinstance(exc, ServingRejected):
        st.error(f"The serving API rejected the request: {exc}")
        return
    st.error(
        f"Serving API unavailable: {exc}. Start it with `adclick serve`, or point the dashboard at the "
        f"running one with ADCLICK_SERVING_HOST and ADCLICK_SERVING_PORT (now {config.serving_url})."
    )


def format_ms(epoch_ms: int | None, zone: str) -> str:
    """Format epoch milliseconds as local time of ``zone``; '-' when there is no value."""
    if epoch_ms is None:
        return "-"
    moment = datetime.fromtimestamp(epoch_ms / 1000, tz=timezone.utc).astimezone(ZoneInfo(zone))
    return moment.strftime("%Y-%m-%d %H:%M:%S %Z")


def format_count(value: int | None) -> str:
    return "unknown" if value is None else f"{value:,}"


def state_of(is_final: bool) -> str:
    return FINAL if is_final else PROVISIONAL
