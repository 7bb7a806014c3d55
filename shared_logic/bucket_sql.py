"""The time-bucket rules of ``time_buckets`` as DuckDB SQL fragments.

Each fragment takes a column (or expression) of UTC epoch milliseconds and
uses the named parameter ``$billing_timezone``, so pass ``bucket_params``
with the query. The fragments convert through explicit zones only, so the
result does not depend on the DuckDB session ``TimeZone`` or the machine's
``TZ``. They need DuckDB's ICU extension, which the Python wheel bundles.
"""

from __future__ import annotations

ZONE_PARAMETER = "billing_timezone"


def bucket_params(billing_timezone: str) -> dict[str, str]:
    """Return the named parameters that the fragments below expect."""
    return {ZONE_PARAMETER: billing_timezone}


def local_timestamp_sql(epoch_ms_sql: str) -> str:
    """Return SQL for the zone-free local wall-clock TIMESTAMP of an instant."""
    return f"timezone(${ZONE_PARAMETER}, timezone('UTC', epoch_ms(({epoch_ms_sql})::BIGINT)))"


def billing_day_sql(epoch_ms_sql: str) -> str:
    """Return SQL for the billing DATE that contains the instant (``time_buckets.billing_day``)."""
    return f"CAST({local_timestamp_sql(epoch_ms_sql)} AS DATE)"


def hour_start_sql(epoch_ms_sql: str) -> str:
    """Return SQL for the start, in UTC epoch ms, of the local hour that contains the instant.

    The local wall-clock milliseconds past the hour are subtracted from the
    instant, which is ``time_buckets.hour_start_ms`` rearranged. It stays
    right for 30- and 45-minute offsets and for repeated hours when DST ends.
    """
    return f"(({epoch_ms_sql}) - epoch_ms({local_timestamp_sql(epoch_ms_sql)}) % 3600000)"
