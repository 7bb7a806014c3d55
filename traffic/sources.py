"""Read click logs: TalkingData CSV exports and the canonical JSON-lines format.

TalkingData (``ip, app, device, os, channel, click_time, ...``) maps to
``ad_id = app:channel`` and ``user_id = ip``; ``click_time`` is UTC without a
zone marker. Quirks of the public sample that are handled here on purpose:

- stray bytes before the header: everything before ``ip,`` on the first line
  is dropped, with a warning naming the bytes;
- rows out of time order: the sample is a random draw, so file order is not
  arrival order; :func:`read_clicks` returns rows sorted by event time;
- an exact duplicate row: it is kept and sent twice, like a client retry, and
  both copies get the same derived click id, so it is billed once and shows
  up as a duplicate in the reports.
"""

from __future__ import annotations

import csv
import io
import json
import logging
import os
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Iterator

from shared_logic.settings import PROJECT_ROOT
from shared_logic.timestamps import TimestampError, parse_timestamp_ms

logger = logging.getLogger(__name__)
TALKINGDATA_COLUMNS = ("ip", "app", "device", "os", "channel", "click_time")


SAMPLE_NAME = "talkingdata_train_sample.csv"


def default_sample_path() -> Path | None:
    """Return the TalkingData sample path, or None when no candidate exists.

    Candidates: ``ADCLICK_SAMPLE_DATA``, then ``shared/data`` beside the
    checkout's parent folder, then ``/work/shared/data`` for clones made elsewhere.
    """
    override = os.environ.get("ADCLICK_SAMPLE_DATA")
    candidates = [Path(override)] if override else [
        PROJECT_ROOT.parent / "shared" / "data" / SAMPLE_NAME,
        Path("/work/shared/data") / SAMPLE_NAME,
    ]
    return next((path for path in candidates if path.exists()), None)


class SourceError(ValueError):
    """A click log that cannot be read."""


@dataclass(frozen=True)
class LoggedClick:
    event_time_ms: int
    ad_id: str
    user_id: str
    click_id: str | None = None
    attributes: dict = field(default_factory=dict)
    line: int = 0


def read_clicks(path: Path) -> list[LoggedClick]:
    """Read every click of a TalkingData CSV or JSON-lines file, sorted by event time."""
    if not path.exists():
        raise SourceError(f"click log {path} not found")
    raw = path.read_bytes()
    first_line = raw.split(b"\n", 1)[0]
    if b"ip," in first_line and b"click_time" in first_line:
        clicks = list(_read_talkingdata(raw))
    else:
        clicks = list(_read_jsonl(raw, path))
    if not clicks:
        raise SourceError(f"click log {path} has no clicks")
    clicks.sort(key=lambda click: click.event_time_ms)
    logger.info("read %d clicks from %s", len(clicks), path)
    return clicks


def _read_talkingdata(raw: bytes) -> Iterator[LoggedClick]:
    start = raw.index(b"ip,")
    if start:
        logger.warning("dropping %d stray bytes before the CSV header: %r", start, raw[:start])
    reader = csv.DictReader(io.StringIO(raw[start:].decode("utf-8")))
    missing = [column for column in TALKINGDATA_COLUMNS if column not in (reader.fieldnames or [])]
    if missing:
        raise SourceError(f"TalkingData header lacks {', '.join(missing)}; found {reader.fieldnames}")
    for line, row in enumerate(reader, start=2):
        try:
            moment = datetime.strptime(row["click_time"], "%Y-%m-%d %H:%M:%S").replace(tzinfo=timezone.utc)
        except (TypeError, ValueError):
            logger.warning("line %d: click_time %r is not YYYY-MM-DD HH:MM:SS; sending it as invalid",
                           line, row.get("click_time"))
            moment = None
        yield LoggedClick(
            event_time_ms=int(moment.timestamp() * 1000) if moment else -1,
            ad_id=f"{row['app']}:{row['channel']}",
            user_id=row["ip"],
            attributes={"device": row["device"], "os": row["os"]},
            line=line,
        )


def _read_jsonl(raw: bytes, path: Path) -> Iterator[LoggedClick]:
    for line, text in enumerate(raw.decode("utf-8").splitlines(), start=1):
        if not text.strip():
            continue
        try:
            record = json.loads(text)
            event_time_ms = parse_timestamp_ms(record["timestamp"])
        except (ValueError, KeyError, TypeError, TimestampError) as exc:
            raise SourceError(f"{path}:{line} is not a canonical click ({exc}); expected "
                              '{"ad_id", "user_id", "timestamp"[, "click_id"]} per line') from None
        attributes = {k: v for k, v in record.items() if k not in ("ad_id", "user_id", "timestamp", "click_id")}
        yield LoggedClick(event_time_ms, str(record["ad_id"]), str(record["user_id"]),
                          record.get("click_id"), attributes, line)
