"""What every command handler shares: failing a job, reporting its progress.

Errors::

    JobFailed              the command cannot be done; str() is the job's error text
"""

from __future__ import annotations

from agent import publisher as publisher_mod
from shared import messages


class JobFailed(Exception):
    """The command cannot be done; the message is the job's error text (searchable, so make it the real cause)."""


def progress(publisher: publisher_mod.Publisher, job_id: str, phase: str, message: str = "") -> None:
    publisher.emit(messages.EventKind.JOB_PROGRESS, messages.JobProgress(job_id=job_id, phase=phase, message=message))
