"""Snakemake logger plugin ``nnstudy`` (``--logger nnstudy``, set in profiles/default): a job's start and end
as one short line each, with a running count and the time left (``nnstudy.console``); every other record
(the plan, errors, a failed job's log, a dry run) as Snakemake's own console prints it."""

from __future__ import annotations

import logging
import os
import sys

from snakemake_interface_logger_plugins.base import LogHandlerBase
from snakemake_interface_logger_plugins.common import LogEvent

#: Snakemake's scheduling chatter, said before every batch of jobs
NOISE = ("Select jobs to execute...", "Execute ")


class LogHandler(LogHandlerBase):
    def __post_init__(self) -> None:
        from nnstudy.console import Progress

        self.progress = Progress()
        self.stream = sys.stdout if self.common_settings.stdout else sys.stderr

    def text(self, record: logging.LogRecord) -> str | None:
        """What to print for ``record`` (None: nothing)."""
        event = getattr(record, "event", None)
        if self.common_settings.dryrun:
            return self.format(record)
        if event == LogEvent.JOB_INFO:
            return self.progress.start(int(record.jobid), record.rule_name, getattr(record, "wildcards", None))
        if event == LogEvent.JOB_FINISHED:
            return self.progress.finish(int(record.job_id))
        if event in (LogEvent.PROGRESS, LogEvent.JOB_STARTED):
            return None  # the end lines carry the count
        if event == LogEvent.RUN_INFO:
            self.progress.planned = {str(k): int(v) for k, v in record.stats.items() if str(k) != "total"}
        if event == LogEvent.RESOURCES_INFO and getattr(record, "cores", None):
            # more cores than the machine has (--cores 8 on 2) run no faster than its CPUs
            self.progress.cores = min(int(record.cores), os.cpu_count() or 1)
        if event is None and isinstance(record.msg, str) and record.msg.startswith(NOISE):
            return None
        return self.format(record)

    def emit(self, record: logging.LogRecord) -> None:
        try:
            text = self.text(record)
            if text:
                self.stream.write(text + "\n")
                self.stream.flush()
        except Exception:
            self.handleError(record)

    @property
    def writes_to_stream(self) -> bool:
        return True

    @property
    def writes_to_file(self) -> bool:
        return False

    @property
    def has_filter(self) -> bool:
        return False  # Snakemake's own filter (the profile's quiet settings)

    @property
    def has_formatter(self) -> bool:
        return False  # Snakemake's own formatter for everything this plugin does not shorten

    @property
    def needs_rulegraph(self) -> bool:
        return False
