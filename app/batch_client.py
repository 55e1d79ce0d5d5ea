"""`python -m app.cli photos/ --server URL`: send the photos as one batch to a running Visage server,
show its progress, and write the server's CSV (or JSON Lines). Standard library only.

The multipart body is streamed from the files (its length is known in advance), so a folder of
hundreds of MB is never held in memory.
"""
from __future__ import annotations

import json
import os
import sys
import time
import urllib.error
import urllib.request
import uuid
from pathlib import Path

POLL_S = 1.0
CHUNK = 1 << 16


class ServerError(Exception):
    """The server refused the batch or could not be reached (exit status 2)."""


def multipart(files: list[tuple[str, Path]], fields: dict) -> tuple[str, int, callable]:
    """(content type, length, a function yielding the body) for `photos` files plus text fields."""
    boundary = uuid.uuid4().hex
    parts = []
    for name, value in fields.items():
        parts.append((f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n{value}\r\n'.encode(), None))
    for shown, path in files:
        quoted = shown.replace("\\", "\\\\").replace('"', "%22").replace("\r", " ").replace("\n", " ")
        # A name that is not UTF-8 on disk (Python holds its bytes as surrogates) is sent with "?" for
        # them: the server reads names as UTF-8, and one bad name would make it drop the whole form.
        head = (f'--{boundary}\r\nContent-Disposition: form-data; name="photos"; filename="{quoted}"\r\n'
                f"Content-Type: application/octet-stream\r\n\r\n").encode("utf-8", "replace")
        parts.append((head, path))
    tail = f"--{boundary}--\r\n".encode()
    length = sum(len(head) + (path.stat().st_size + 2 if path else 0) for head, path in parts) + len(tail)

    def body():
        for head, path in parts:
            yield head
            if path:
                with open(path, "rb") as f:
                    while block := f.read(CHUNK):
                        yield block
                yield b"\r\n"
        yield tail
    return f"multipart/form-data; boundary={boundary}", length, body


def call(method: str, url: str, token: str | None, data=None, headers: dict | None = None):
    try:
        request = urllib.request.Request(url, data=data, method=method, headers=dict(headers or {}))
        if token:
            request.add_header("Authorization", f"Bearer {token}")
        with urllib.request.urlopen(request, timeout=600) as response:
            return response.status, dict(response.headers), response.read()
    except urllib.error.HTTPError as e:
        return e.code, dict(e.headers), e.read()
    except (urllib.error.URLError, OSError) as e:
        raise ServerError(f"cannot reach {url}: {getattr(e, 'reason', e)}") from None
    except ValueError as e:          # "http://[::1" (bad IPv6), no scheme, a bad port: not an address
        raise ServerError(f"not a server address: {url} ({e})") from None


def error_text(status: int, body: bytes) -> str:
    try:
        error = json.loads(body)["error"]
        return f"{error['message']} ({error['code']}, HTTP {status})"
    except (ValueError, KeyError, TypeError):
        return f"HTTP {status}"


def shown_names(paths: list[Path], files: list[Path]) -> list[str]:
    """A file's name as the server shows it: relative to the folder it was found in."""
    folders = [p for p in paths if p.is_dir()]
    names = []
    for f in files:
        base = next((d for d in folders if d in f.parents), None)
        names.append(f.relative_to(base).as_posix() if base else f.name)
    return names


def run_on_server(server: str, paths: list[Path], files: list[Path], options: dict, out, as_csv: bool,
                  token: str | None = None) -> int:
    """Submit, poll with a progress bar on stderr, write the results. 0: every photo analysed; 1: some
    rows are errors (or no face); 2: refused or unreachable."""
    from tqdm import tqdm
    server = server.rstrip("/")
    token = token or os.environ.get("VISAGE_TOKEN")
    missing = [f for f in files if not f.is_file()]
    if missing:
        print(f"error: not a file: {missing[0]}", file=sys.stderr)
        return 2
    content_type, length, body = multipart(list(zip(shown_names(paths, files), files)),
                                           {k: v for k, v in options.items() if v is not None})
    try:
        status, headers, answer = call("POST", f"{server}/api/v1/batches", token, data=body(),
                                       headers={"Content-Type": content_type, "Content-Length": str(length)})
        if status != 202:
            raise ServerError(f"the server refused the batch: {error_text(status, answer)}")
        job_url = server + headers.get("Location", "")
        job = json.loads(answer)
        try:
            with tqdm(total=job["total"], desc=f"batch {job['id'][:8]}", unit="photo", file=sys.stderr) as bar:
                while job["status"] in ("queued", "running"):
                    time.sleep(POLL_S)
                    status, _, answer = call("GET", job_url, token)
                    if status != 200:
                        raise ServerError(f"lost the batch: {error_text(status, answer)}")
                    job = json.loads(answer)
                    bar.update((job.get("done") or 0) - bar.n)
        except KeyboardInterrupt:
            call("DELETE", job_url, token)
            print("cancelled", file=sys.stderr)
            return 1
        if job["status"] != "done":
            raise ServerError(f"the batch ended {job['status']}: {(job.get('error') or {}).get('message', '')}")
        if as_csv:
            status, _, csv_bytes = call("GET", server + job["result"]["downloads"]["csv"], token)
            if status != 200:
                raise ServerError(f"could not download the CSV: {error_text(status, csv_bytes)}")
            out.write(csv_bytes.decode("utf-8"))
        else:
            for record in job["result"]["files"]:
                out.write(json.dumps(record) + "\n")
    except ServerError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    summary = job["result"]["summary"]
    print(f"{summary['photos']} photos, {summary['faces']} faces, {summary['no_face']} without a face, "
          f"{summary['failed']} failed; {summary['photos_per_second']} photos/s on {summary['workers']} worker(s)",
          file=sys.stderr)
    return 1 if summary["failed"] or summary["no_face"] else 0
