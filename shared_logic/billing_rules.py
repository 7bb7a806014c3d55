"""Why a deduplicated click is not billable, as plain functions.

The batch layer writes the reason into ``clicks_deduped.non_billable_reason``
(null for a billable click). ``shared_logic.spark_rules`` has the same rule as
a Spark column expression, and the tests check both on the same rows. A click
id seen more than once is not a reason: its extra copies are removed and
counted in ``duplicates_removed``, and the kept copy is judged like any other.
"""

from __future__ import annotations

MISSING_ID = "missing_id"
MISSING_EVENT_TIME = "missing_event_time"
FUTURE_EVENT_TIME = "future_event_time"
# In the order they are checked; a click gets the first reason that applies.
NON_BILLABLE_REASONS = (MISSING_ID, MISSING_EVENT_TIME, FUTURE_EVENT_TIME)


def is_missing_id(value: str | None) -> bool:
    # Only spaces count as blank, as Spark's trim() strips only spaces.
    return value is None or not value.strip(" ")


def non_billable_reason(
    *,
    click_id: str | None,
    ad_id: str | None,
    user_id: str | None,
    event_time_ms: int | None,
    received_at_ms: int | None,
    max_future_skew_s: int,
) -> str | None:
    """Return why a click is not billable, or None when it is billable.

    The event time is compared with ``received_at_ms``, the collector's clock
    when the click arrived, with the same skew the collector allows. A click
    without a receipt time is not checked for a future event time.
    """
    if is_missing_id(click_id) or is_missing_id(ad_id) or is_missing_id(user_id):
        return MISSING_ID
    if event_time_ms is None:
        return MISSING_EVENT_TIME
    if received_at_ms is not None and event_time_ms > received_at_ms + max_future_skew_s * 1000:
        return FUTURE_EVENT_TIME
    return None
