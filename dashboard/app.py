"""The dashboard's entrypoint: page configuration and navigation.

Run it with ``adclick dashboard``; every page reads the serving API named by
the ``ADCLICK_SERVING_HOST`` and ``ADCLICK_SERVING_PORT`` settings.
"""

from __future__ import annotations

import streamlit as st

from dashboard.api import load_config
from shared_logic.settings import SettingsError


def main() -> None:
    st.set_page_config(page_title="adclick dashboard", layout="wide")
    try:
        config = load_config()
    except SettingsError as exc:
        st.error(f"Invalid dashboard setting: {exc}")
        st.stop()
    page = st.navigation([
        st.Page("pages/live.py", title="Live", default=True),
        st.Page("pages/billing.py", title="Billing"),
        st.Page("pages/reconciliation.py", title="Reconciliation"),
        st.Page("pages/health.py", title="Health"),
    ])
    st.sidebar.caption(f"Serving API: {config.serving_url}")
    st.sidebar.caption(f"Billing time zone: {config.billing_timezone}")
    page.run()


main()
