"""Where the speed job keeps its checkpoints, and which one a restart resumes from."""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlparse

from shared_logic.settings import Settings

logger = logging.getLogger(__name__)

_CHECKPOINT_DIR = re.compile(r"chk-(\d+)$")


@dataclass(frozen=True)
class RetainedCheckpoint:
    path: Path
    checkpoint_id: int
    completed_at_s: float

    @property
    def uri(self) -> str:
        return self.path.as_uri()


def checkpoint_uri(settings: Settings) -> str:
    """Return the checkpoint storage URI of this job; Flink adds a folder per job id below it."""
    base = settings.speed_checkpoint_uri or settings.path("flink", "checkpoints").as_uri()
    return f"{base.rstrip('/')}/{settings.speed_job_name}"


def local_checkpoint_dir(settings: Settings) -> Path | None:
    """Return the checkpoint folder when it is on a local file system, else None."""
    parsed = urlparse(checkpoint_uri(settings))
    if parsed.scheme not in ("", "file"):
        return None
    return Path(parsed.path)


def latest_checkpoint(directory: Path) -> RetainedCheckpoint | None:
    """Return the most recently completed checkpoint below ``directory``.

    Flink writes ``<job id>/chk-<n>/_metadata`` and writes ``_metadata`` last,
    so a folder without it is an incomplete checkpoint and is skipped. Each
    run of the job has a new job id, so the newest ``_metadata`` over all job
    folders is the latest completed checkpoint.
    """
    latest: RetainedCheckpoint | None = None
    for metadata in directory.glob("*/chk-*/_metadata"):
        match = _CHECKPOINT_DIR.search(metadata.parent.name)
        if match is None:
            continue
        completed_at_s = metadata.stat().st_mtime
        if latest is None or completed_at_s > latest.completed_at_s:
            latest = RetainedCheckpoint(metadata.parent, int(match.group(1)), completed_at_s)
    return latest
