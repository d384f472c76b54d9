"""Large ``POST /articles`` batches run as jobs: 202 with a URL to poll, one job at a time, in order.

Embedding is the slow part of a write (seconds per article on two cores), so a request that brings
many articles is not held open: the batch is checked at once (a bad article is still a 4xx with
nothing written), queued, and indexed by one worker thread; ``GET /articles/jobs/{id}`` says where it
is and, when done, what changed. Jobs live in the server's memory (the last ``KEEP`` of them): a
restart forgets queued jobs, and nothing of a job is written before it runs, so posting the batch
again is safe (articles already indexed with the same text are skipped).
"""
from __future__ import annotations

import queue
import secrets
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field

from common.errors import NotFoundError, RagError

KEEP = 200


@dataclass
class Job:
    """One queued write and what became of it."""

    id: str
    articles: int
    status: str = "queued"  # queued, running, done, failed
    submitted: str = field(default_factory=lambda: _now())
    finished: str | None = None
    result: dict | None = None
    error: str | None = None

    def to_dict(self) -> dict:
        return {"id": self.id, "status": self.status, "articles": self.articles, "submitted": self.submitted,
                "finished": self.finished, "result": self.result, "error": self.error,
                "url": f"/articles/jobs/{self.id}"}


class IngestJobs:
    """The queue and the worker; thread-safe."""

    def __init__(self):
        self._jobs: OrderedDict[str, Job] = OrderedDict()
        self._queue: queue.Queue = queue.Queue()
        self._lock = threading.Lock()
        self._worker: threading.Thread | None = None

    def submit(self, articles: int, run: Callable[[], dict]) -> Job:
        """Queue ``run`` (which returns the IngestOut body) and return its job."""
        job = Job(secrets.token_hex(8), articles)
        with self._lock:
            self._jobs[job.id] = job
            while len(self._jobs) > KEEP:
                self._jobs.popitem(last=False)
            if self._worker is None or not self._worker.is_alive():
                self._worker = threading.Thread(target=self._work, name="ingest-jobs", daemon=True)
                self._worker.start()
        self._queue.put((job, run))
        return job

    def get(self, job_id: str) -> Job:
        with self._lock:
            job = self._jobs.get(job_id)
        if job is None:
            raise NotFoundError(f"no job {job_id!r}: it never existed, or the server restarted or forgot it "
                                f"(it keeps the last {KEEP}); post the batch again, unchanged articles are skipped")
        return job

    def wait(self, job_id: str, timeout: float) -> Job:
        """The job once it is done or failed, or as it is after ``timeout`` seconds (for tests and CLIs)."""
        deadline = time.monotonic() + timeout
        while (job := self.get(job_id)).status in ("queued", "running") and time.monotonic() < deadline:
            time.sleep(0.05)
        return job

    def _work(self) -> None:
        while True:
            job, run = self._queue.get()
            job.status = "running"
            try:
                job.result, job.status = run(), "done"
            except RagError as exc:
                job.error, job.status = str(exc), "failed"
            except Exception as exc:  # noqa: BLE001 -- recorded on the job; the worker goes on with the next
                import logging

                logging.getLogger("rag.http").exception("ingest job %s failed", job.id)
                job.error, job.status = f"internal error ({type(exc).__name__}); see the server log", "failed"
            job.finished = _now()


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
