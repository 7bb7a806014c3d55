"""Click identity: the id under which a click is deduplicated and billed.

A click's id is the client's ``click_id`` when one is sent. Otherwise it is
a UUID5 derived from (ad_id, user_id, UTC timestamp in milliseconds), so a
retried identical payload gets the same id and is billed once. Two distinct
clicks by the same user on the same ad within the same millisecond therefore
count as one. Clients that need to tell them apart send a ``click_id``.
"""

from __future__ import annotations

import uuid

# Fixed namespace: changing it would change every derived id and double-bill
# clicks retried across the change.
CLICK_ID_NAMESPACE = uuid.UUID("6f1c7a52-3c1e-5d7b-9a43-0c2f7e4b8d11")
_FIELD_SEPARATOR = "\x1f"


def derive_click_id(ad_id: str, user_id: str, event_time_ms: int) -> str:
    """Return the deterministic id of a click that arrived without ``click_id``."""
    name = _FIELD_SEPARATOR.join((ad_id, user_id, str(event_time_ms)))
    return str(uuid.uuid5(CLICK_ID_NAMESPACE, name))
