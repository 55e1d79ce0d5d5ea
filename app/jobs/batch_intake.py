"""A batch's uploads → the files a chunk reads, each checked once, before any work starts.

Everything lands in the job's own folder (VISAGE_VIDEO_DIR/batches/<id>/uploads/), under names we
choose (000000, 000001, ...): a name from the request or from a ZIP is only ever shown, never used as
a path, so "../../etc/passwd" in a ZIP cannot write outside the folder. Limits that concern the whole
batch (files, bytes, a ZIP's unpacked size) are a TooLarge (413) before the job exists; what concerns
one file (empty, too large, duplicate, unsafe name, a ZIP in the ZIP) is an error row for that file.
"""
from __future__ import annotations

import hashlib
import json
import lzma
import stat
import zipfile
import zlib
from pathlib import Path, PurePosixPath

from app.jobs.store import write_atomically
from app.pipeline.errors import BadRequest, TooLarge

ZIP_MAGIC = b"PK\x03\x04"
EMPTY_ZIP_MAGIC = b"PK\x05\x06"      # a ZIP of no files is its end record alone
SKIPPED_PARTS = ("__MACOSX",)     # macOS resource forks: not photos, and one per photo
MAX_NAME_CHARS = 255
READ_BLOCK = 1 << 20


def batch_dir(video_dir, job_id: str) -> Path:
    if not job_id.isalnum():                # ids are hex; never let one name another path
        raise KeyError(job_id)
    return Path(video_dir) / "batches" / job_id


def shown_name(name: str) -> str:
    """A file name as the user gave it, for tables and CSV only (control characters out, length capped)."""
    cleaned = "".join(ch if ch.isprintable() else "?" for ch in (name or ""))
    return cleaned[:MAX_NAME_CHARS] or "(no name)"


FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def spreadsheet_text(text: str) -> str:
    """A user's text (a file name) for a CSV cell: where a spreadsheet would run it as a formula (it starts
    with = + - @, a tab or a carriage return), a leading apostrophe keeps it text (OWASP's advice)."""
    return "'" + text if isinstance(text, str) and text.startswith(FORMULA_STARTS) else text


def unsafe_name(name: str) -> bool:
    """A ZIP member name that would climb out of a folder if anyone used it as a path."""
    path = PurePosixPath(name.replace("\\", "/"))
    return path.is_absolute() or ".." in path.parts or (path.parts and ":" in path.parts[0])


def skipped(name: str) -> bool:
    """Hidden files and macOS metadata in a folder or ZIP (as the CLI skips dot files)."""
    parts = PurePosixPath(name.replace("\\", "/")).parts
    return any((part.startswith(".") and part not in (".", "..")) or part in SKIPPED_PARTS for part in parts)


def is_zip(path: Path) -> bool:
    with open(path, "rb") as f:
        return f.read(4) in (ZIP_MAGIC, EMPTY_ZIP_MAGIC)


class Intake:
    """Collects a batch's files into `folder`/uploads and writes `folder`/manifest.json."""

    def __init__(self, folder: Path, *, max_files: int, max_bytes: int, max_file_bytes: int):
        self.folder = Path(folder)
        self.uploads = self.folder / "uploads"
        self.uploads.mkdir(parents=True, exist_ok=True)
        self.max_files, self.max_bytes, self.max_file_bytes = max_files, max_bytes, max_file_bytes
        self.entries: list[dict] = []
        self.seen: dict[str, str] = {}       # sha256 → the first file's name
        self.unpacked = 0                    # bytes written from ZIPs
        self._next = 0

    def new_path(self) -> Path:
        """Where the next file goes (an upload being received, or a ZIP member)."""
        path = self.uploads / f"{self._next:06d}"
        self._next += 1
        return path

    # ------------------------------------------------------------------ adding files

    def add_upload(self, name: str, path: Path) -> None:
        """A file received from the request (already at `path`): a photo, or a ZIP of photos (by its
        first bytes, or by its name: a ".zip" that is not one is refused, not read as a photo)."""
        size = path.stat().st_size
        # A form's file field left empty sends a part with no name and no bytes: nothing was chosen.
        if skipped(name) or (not name and size == 0):
            path.unlink(missing_ok=True)
            return
        if (size >= 4 and is_zip(path)) or name.lower().endswith(".zip"):
            try:
                self.add_zip(name, path)
            finally:
                path.unlink(missing_ok=True)
            return
        self._add_file(name, path, size, self._sha256(path) if 0 < size <= self.max_file_bytes else None)

    def add_zip(self, zip_name: str, path: Path) -> None:
        try:
            archive = zipfile.ZipFile(path)
        except (zipfile.BadZipFile, OSError, UnicodeDecodeError) as e:    # the last: a bad UTF-8 name
            raise BadRequest(f"{shown_name(zip_name)} is not a readable ZIP file ({e}).", code="bad_zip") from None
        with archive:
            members = [m for m in archive.infolist() if not m.is_dir() and not skipped(m.filename)]
            self._check_count(len(self.entries) + len(members))
            declared = sum(m.file_size for m in members if m.file_size <= self.max_file_bytes)
            if self.unpacked + declared > self.max_bytes:
                raise TooLarge(f"{shown_name(zip_name)} unpacks to {declared / 1e6:.0f} MB; a batch may hold "
                               f"{self.max_bytes / 1e6:.0f} MB.", code="zip_too_large")
            for member in members:
                self._add_member(archive, member)

    def _add_member(self, archive: zipfile.ZipFile, member: zipfile.ZipInfo) -> None:
        name = member.filename
        if unsafe_name(name):
            return self._error(name, "unsafe_name", "The name in the ZIP points outside the ZIP's folders; "
                                                    "it was not unpacked.")
        if stat.S_ISLNK(member.external_attr >> 16):
            return self._error(name, "not_a_file", "A link in the ZIP, not a photo; it was not unpacked.")
        if member.file_size > self.max_file_bytes:
            return self._too_large(name, member.file_size)
        if member.filename.lower().endswith(".zip"):
            return self._error(name, "nested_zip", "A ZIP inside the ZIP; send the photos in one ZIP.")
        path = self.new_path()
        digest, written = hashlib.sha256(), 0
        try:
            with archive.open(member) as source, open(path, "wb") as out:
                while block := source.read(READ_BLOCK):
                    written += len(block)
                    # The header's size is what zipfile reads up to; these caps hold even if it lied.
                    if written > self.max_file_bytes or self.unpacked + written > self.max_bytes:
                        raise TooLarge("unpacks to more than its header says")
                    digest.update(block)
                    out.write(block)
        except TooLarge:
            path.unlink(missing_ok=True)
            return self._error(name, "bad_zip_member", "This file unpacks to more bytes than the ZIP declares; "
                                                       "it was not analysed.")
        except (zipfile.BadZipFile, zlib.error, lzma.LZMAError, RuntimeError, NotImplementedError, OSError,
                EOFError) as e:
            path.unlink(missing_ok=True)     # corrupt, encrypted or an unknown compression method
            return self._error(name, "bad_zip_member", f"This file could not be unpacked ({unpack_reason(e)}).")
        self.unpacked += written
        if written >= 4 and is_zip(path):
            path.unlink(missing_ok=True)
            return self._error(name, "nested_zip", "A ZIP inside the ZIP; send the photos in one ZIP.")
        self._add_file(name, path, written, digest.hexdigest())

    def _add_file(self, name: str, path: Path, size: int, sha256: str | None) -> None:
        if size == 0:
            path.unlink(missing_ok=True)
            return self._error(name, "empty_file", "The file is empty (0 bytes).")
        if size > self.max_file_bytes:
            path.unlink(missing_ok=True)
            return self._too_large(name, size)
        first = self.seen.get(sha256)
        if first is not None:
            path.unlink(missing_ok=True)
            return self._error(name, "duplicate", f"The same bytes as {first}; analysed once, there.")
        self.seen[sha256] = shown_name(name)
        self._append({"name": shown_name(name), "path": path.relative_to(self.folder).as_posix(), "size": size,
                      "error": None})

    def _too_large(self, name: str, size: int) -> None:
        self._error(name, "too_large", f"The photo is {size / 1e6:.1f} MB; the limit per photo is "
                                       f"{self.max_file_bytes / 1e6:.0f} MB.")

    def _error(self, name: str, code: str, message: str) -> None:
        self._append({"name": shown_name(name), "path": None, "size": None,
                      "error": {"code": code, "message": message}})

    def _append(self, entry: dict) -> None:
        self._check_count(len(self.entries) + 1)
        self.entries.append({"index": len(self.entries), **entry})

    def _check_count(self, count: int) -> None:
        if count > self.max_files:
            raise TooLarge(f"A batch may hold {self.max_files} files; this one has more.", code="too_many_files")

    @staticmethod
    def _sha256(path: Path) -> str:
        digest = hashlib.sha256()
        with open(path, "rb") as f:
            while block := f.read(READ_BLOCK):
                digest.update(block)
        return digest.hexdigest()

    # ------------------------------------------------------------------ the result

    def finish(self) -> list[dict]:
        """Write the manifest (what the chunks read); no file at all is a 400."""
        if not self.entries:
            raise BadRequest("The batch has no photos (send files in the form field 'photos', or one ZIP).",
                             code="no_photos")
        write_json(self.folder / "manifest.json", {"files": self.entries})
        return self.entries


def unpack_reason(e: Exception) -> str:
    """zipfile's message for a member it cannot unpack, without the <ZipInfo ...> dump some of them carry."""
    message = str(e)
    return "the file is encrypted" if "encrypted" in message else (message.split(" <ZipInfo")[0] or type(e).__name__)


def write_json(path: Path, value) -> None:
    """Atomically (store.write_atomically): a reader on another machine never sees half a file."""
    write_atomically(path, json.dumps(value))
