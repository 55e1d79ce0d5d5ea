"""What the web app (and the tests) use for batches: take the uploads, queue the chunks, read the batch
(progress counted from the chunks' files), cancel it, read its records.

Batches share the video jobs' store, runner and reaper (app/jobs/service.py): one job id space serves
GET /api/v1/jobs/<id>, the embedded pool or the RQ workers run both kinds of job, and each chunk is a
supervised job of its own (kind "chunk", on VISAGE_BATCH_QUEUE), queued again when its worker dies.
"""
from __future__ import annotations

import json
import shutil
import time
from pathlib import Path

from app.jobs.batch import (batch_ended, chunk_id, chunk_ranges, claim_end, cleanup, end_recorded_late, finish,
                            finish_if_complete, write_lost)
from app.jobs.batch_intake import Intake, batch_dir
from app.jobs.store import FINISHED, KEEP_SECONDS, new_job_id

PUBLIC_OPTIONS = ("detector", "min_face", "profile", "thumbnails", "blur")


class BatchJobs:
    def __init__(self, config: dict, video_jobs):
        self.config, self.jobs = config, video_jobs
        self.store, self.runner, self.where = video_jobs.store, video_jobs.runner, video_jobs.where
        self.root = video_jobs.video_dir / "batches"
        self.root.mkdir(parents=True, exist_ok=True)

    # ------------------------------------------------------------------ submitting

    def new_batch(self) -> tuple[str, Intake]:
        """A job id and the intake that receives its files into the job's own folder."""
        self.prune()
        self.jobs.prune()             # job records (the batches' and their chunks') as old as the folders
        job_id = new_job_id()
        cfg = self.config
        return job_id, Intake(batch_dir(self.root.parent, job_id), max_files=cfg["VISAGE_MAX_BATCH_FILES"],
                              max_bytes=cfg["VISAGE_MAX_BATCH_BYTES"], max_file_bytes=cfg["VISAGE_MAX_BYTES"])

    def discard(self, job_id: str) -> None:
        """A batch refused before it started: nothing of it stays on disk."""
        shutil.rmtree(batch_dir(self.root.parent, job_id), ignore_errors=True)

    def submit(self, job_id: str, intake: Intake, options: dict, filename: str = "") -> str:
        entries = intake.finish()
        cfg = self.config
        size = max(1, int(cfg["VISAGE_BATCH_CHUNK"]))
        chunks = chunk_ranges(len(entries), size)
        now = time.time()
        self.store.create(job_id, {"id": job_id, "kind": "batch", "status": "queued", "progress": 0.0, "error": None,
                                   "result": None, "filename": filename, "total": len(entries), "chunk_size": size,
                                   "chunks": len(chunks), "options": {k: options[k] for k in PUBLIC_OPTIONS if k in options},
                                   "created_at": now, "updated_at": now})
        job_options = {**options, "store": self.store.spec(), "models_dir": str(cfg["VISAGE_MODELS_DIR"]),
                       "video_dir": str(self.root.parent), "chunks": len(chunks), "max_bytes": cfg["VISAGE_MAX_BYTES"],
                       "max_pixels": cfg["VISAGE_MAX_PIXELS"], "analysis_timeout": cfg["VISAGE_ANALYSIS_TIMEOUT"]}
        try:
            for n, (start, stop) in enumerate(chunks):
                # A supervised job of its own: its worker dies → queued again, then chunk_lost's rows.
                chunk = {"kind": "chunk", "batch": job_id, "chunk": n, "on_lost": "app.jobs.batch.chunk_lost",
                         "still_wanted": "app.jobs.batch.chunk_still_wanted"}
                self.jobs.start(chunk, "app.jobs.batch.run_batch_chunk", [job_id, n, start, stop, job_options],
                                job_id=chunk_id(job_id, n), queue=cfg["VISAGE_BATCH_QUEUE"])
        except Exception as e:
            self.store.update(job_id, status="failed", finished_at=time.time(), error={
                "code": "queue_unavailable", "message": f"The job queue is unavailable ({e})."})
            if claim_end(self.folder(job_id)):
                cleanup(self.folder(job_id), keep_result=False)
            raise
        return job_id

    def folder(self, job_id: str) -> Path:
        return batch_dir(self.root.parent, job_id)

    # ------------------------------------------------------------------ reading

    def get(self, job_id: str) -> dict | None:
        """The record, with progress counted from the chunks (done, total, rate, time left)."""
        try:
            record = self.store.get(job_id)
        except KeyError:
            return None
        if record is None or record.get("kind") != "batch":
            return record
        if record["status"] == "running":
            record = self._running(record)
        if record["status"] == "done" and not (self.folder(job_id) / "result.json").exists():
            return None               # its files were pruned (older than a day): expired, as its record soon is
        total = record.get("total") or 0
        if record["status"] == "done":
            record["done"] = total
        record.setdefault("done", 0)
        return record

    def _running(self, record: dict) -> dict:
        job_id, folder, now = record["id"], self.folder(record["id"]), time.time()
        beats = {}
        for path in (folder / "progress").glob("[0-9]*"):
            try:
                beats[int(path.name)] = (int(path.read_text() or 0), path.stat().st_mtime)
            except (OSError, ValueError):
                continue
        finished = {n for n in range(record["chunks"]) if (folder / "chunks" / f"{n}.json").exists()}
        self._check_chunks(record, folder, beats, finished, now)
        fresh = self.store.get(job_id) or record
        if fresh["status"] != "running":
            return fresh
        done = sum(count for count, _ in beats.values())
        total = record["total"]
        elapsed = max(now - (record.get("started_at") or now), 1e-6)
        rate = done / elapsed if done else 0.0
        record.update(done=done, progress=round(done / total, 4) if total else 0.0,
                      rate=round(rate, 2), eta_s=round((total - done) / rate, 1) if rate else None)
        return record

    def _check_chunks(self, record, folder: Path, beats: dict, finished: set, now: float) -> None:
        """A read of a running batch looks after its chunks, so it ends even with no sweeping worker left:
        a started chunk whose worker died goes to the reaper (queued again, or worker_lost rows by its
        on_lost). Last resort, a chunk nobody runs or will run (its record expired, or ended without a
        file) gets worker_lost rows here once it, or the whole batch if it never started, has been silent
        for VISAGE_BATCH_STALE_SECONDS. The reaper writes rows only while the record is queued or running,
        and this only when it is not, so the two never both write a chunk."""
        job_id = record["id"]
        if batch_ended(folder):                  # ended, but the record did not say so: say it now
            end_recorded_late(self.store, job_id, folder)
            return
        if len(finished) == record["chunks"]:   # every chunk written, but the last writer missed it (a race
            finish(self.store, job_id, folder)   # with a lost chunk's rows): end it here, once
            return
        stale = self.config["VISAGE_BATCH_STALE_SECONDS"]
        quiet = max([record.get("started_at") or record.get("created_at") or now]
                    + [mtime for _, mtime in beats.values()])        # the batch's last sign of life
        lost = []
        for n in sorted(set(range(record["chunks"])) - finished):
            last = beats[n][1] if n in beats else quiet
            if n not in beats and now - last <= stale:
                continue                 # queued while the batch moves on: the reaper's sweeps watch it
            chunk = self.jobs.get(chunk_id(job_id, n))         # reaps it if its worker is gone
            if now - last > stale and (chunk is None or chunk["status"] in FINISHED) \
                    and not (folder / "chunks" / f"{n}.json").exists():      # the reaper may have just written it
                lost.append(n)
        if not lost or (folder / "finished").exists():
            return
        manifest = json.loads((folder / "manifest.json").read_text())["files"]
        size = record["chunk_size"]
        for n in lost:
            write_lost(folder, n, manifest[n * size:(n + 1) * size])
        finish_if_complete(self.store, job_id, folder, record["chunks"])

    def records(self, job_id: str) -> list[dict]:
        """Every photo's record of a done batch, in upload order."""
        return json.loads((self.folder(job_id) / "result.json").read_text())["files"]

    # ------------------------------------------------------------------ cancelling, forgetting

    def cancel(self, job_id: str) -> dict | None:
        record = self.get(job_id)
        if record is None or record["status"] in FINISHED:
            return record
        self.store.request_cancel(job_id)         # a running chunk stops at its next photo
        folder = self.folder(job_id)
        if claim_end(folder):
            cleanup(folder, keep_result=False)
            self.store.update(job_id, status="cancelled", finished_at=time.time())
        for n in range(record["chunks"]):          # attempts still queued would only find the flag
            self.jobs.cancel(chunk_id(job_id, n))
        return self._ended(job_id)

    def _ended(self, job_id: str, timeout: float = 5.0) -> dict | None:
        """The record once whoever claimed the end (this cancel, a chunk that saw the flag first, or the
        last chunk finishing) has written it, so that DELETE answers the final status."""
        deadline = time.monotonic() + timeout
        record = self.get(job_id)
        while record is not None and record["status"] not in FINISHED and time.monotonic() < deadline:
            time.sleep(0.02)
            record = self.get(job_id)
        return record

    def prune(self, older_than: float = KEEP_SECONDS) -> None:
        """Batch folders older than the job records (a day): their results go with the record."""
        cutoff = time.time() - older_than
        for folder in self.root.iterdir():
            try:
                if folder.stat().st_mtime < cutoff and (folder / "finished").exists() \
                        or folder.stat().st_mtime < cutoff - older_than:
                    shutil.rmtree(folder, ignore_errors=True)
            except OSError:
                pass
