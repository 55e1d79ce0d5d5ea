"""Analyze image files from the command line, with the same pipeline as the web app.

    python -m app.cli photo.jpg                      # one file: pretty JSON on stdout
    python -m app.cli photos/ more.png -o out.jsonl  # many: JSON Lines, progress bar on stderr
    python -m app.cli photos/ --format csv -o out.csv
    python -m app.cli photo.jpg --blur               # also writes photo-blurred.jpg (every face blurred)
    python -m app.cli video.mp4 --fps 5 -o timeline.csv [--annotated out.mp4] [--blur]
                                                     # a video: per-face emotion timelines (docs/video.md)
    python -m app.cli photos/ --server http://host:8000 -o out.csv
                                                     # one batch on a running server and its workers (docs/batch.md)

A file that cannot be analyzed yields an error record, not a crash. Exit status:
0 all files analyzed, 1 some files failed or none was found (--server: or had no face), 2 nothing was
analyzed: the models could not be loaded, or an output (-o, --annotated, --blur-dir) cannot be
written there (checked before any work); --server: the server refused the batch or could not be reached.
"""
from __future__ import annotations

import argparse
import csv
import json
import os
import sys
from pathlib import Path

from app import settings
from app.pipeline.analyze import run_pipeline
from app.pipeline.detect import DETECTORS
from app.pipeline.decode import size_text
from app.pipeline.errors import InputError, ModelUnavailable, TooLarge
from app.pipeline.predict import EMOTION_LABELS, PROFILES, load_predictor
from app.pipeline.video import VIDEO_EXTENSIONS

CSV_COLUMNS = (["file", "face", "x", "y", "w", "h", "age", "age_low", "age_high", "age_group",
                "gender", "gender_probability", "emotion"] + [f"p_{e}" for e in EMOTION_LABELS]
               + ["error_code", "error_message"])


def parse_args(argv=None):
    p = argparse.ArgumentParser(prog="python -m app.cli", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("paths", nargs="+", type=Path, help="image files or folders (searched recursively)")
    p.add_argument("--detector", choices=DETECTORS,
                   help="default: $VISAGE_DEFAULT_DETECTOR or blazeface (--server: the server's default); "
                        "haar: OpenCV's Haar cascade; none: each file is one face")
    p.add_argument("--profile", choices=PROFILES, default="accurate",
                   help="accurate: the test-time views each model card names; live: face and mirror only (faster)")
    p.add_argument("--format", choices=["jsonl", "csv"], default=None,
                   help="output for several files (default jsonl; with --server, csv)")
    p.add_argument("--output", "-o", type=Path, help="write here instead of stdout")
    p.add_argument("--models-dir", help="default: $VISAGE_MODELS_DIR or <repo>/models")
    p.add_argument("--blur", action="store_true",
                   help="photos: also write a copy with every face blurred (NAME-blurred.EXT); "
                        "a video: blur the faces in the annotated MP4 (NAME-blurred.mp4 unless --annotated)")
    p.add_argument("--blur-dir", type=Path, help="where the blurred photos go (default: next to each photo)")
    remote = p.add_argument_group("a batch on a server (docs/batch.md)")
    remote.add_argument("--server", metavar="URL",
                        help="send the photos as one batch to this Visage server and write its CSV (or JSON Lines "
                             "with --format jsonl); the detector is the server's default unless --detector is given")
    remote.add_argument("--token", help="personal access token for a server that requires login "
                                        "(default: $VISAGE_TOKEN)")
    video = p.add_argument_group("video files (" + ", ".join(VIDEO_EXTENSIONS) + ")")
    video.add_argument("--fps", type=float, default=5.0, help="frames analysed per second of video (default 5)")
    video.add_argument("--annotated", type=Path, help="write an MP4 with boxes and smoothed emotion labels here")
    return p.parse_args(argv)


def list_files(paths: list[Path]) -> list[Path]:
    files = []
    for path in paths:
        if path.is_dir():
            files += sorted(f for f in path.rglob("*")
                            if f.is_file() and not any(part.startswith(".") for part in f.relative_to(path).parts))
        else:
            files.append(path)      # a missing file still gets its error record
    return files


def analyze_file(path: Path, predictor, detector: str, cfg: dict, profile: str = "accurate",
                 blur_dir: Path | None = None) -> dict:
    """One photo's record; with blur_dir, also a copy of it with every face blurred (record["blurred"],
    or record["blur_error"] where it could not be written: the analysis is kept)."""
    if is_video(path):
        return {"file": str(path), "error": {"code": "video_file", "message": "A video: analyse it on its own "
                                             f"(python -m app.cli {path}) for its per-face timelines."}}
    try:
        with open(path, "rb") as f:            # no more than the limit, plus a byte to tell it was over
            data = f.read(cfg["VISAGE_MAX_BYTES"] + 1)
        if len(data) > cfg["VISAGE_MAX_BYTES"]:
            raise TooLarge(f"The file is {size_text(path.stat().st_size, cfg['VISAGE_MAX_BYTES'])}.",
                           code="file_too_large")
        answer, image = run_pipeline(data, predictor, detector=detector, profile=profile,
                                     max_bytes=cfg["VISAGE_MAX_BYTES"], max_pixels=cfg["VISAGE_MAX_PIXELS"])
    except InputError as e:
        return {"file": str(path), "error": {"code": e.code, "message": e.message}}
    except OSError as e:
        return {"file": str(path), "error": {"code": "unreadable", "message": f"{e.strerror or e}"}}
    record = {"file": str(path), **answer}
    if blur_dir is not None:
        try:
            record["blurred"] = str(write_blurred(path, image, answer, blur_dir))
        except OSError as e:
            record["blur_error"] = f"the blurred copy could not be written in {blur_dir}: {e.strerror or e}"
    return record


def write_blurred(path: Path, image, answer: dict, folder: Path) -> Path:
    from PIL import Image

    from app.pipeline.blur import blur_faces
    boxes = [tuple(face["box"][k] for k in "xywh") for face in answer["faces"]]
    suffix = path.suffix.lower() if path.suffix.lower() in (".jpg", ".jpeg", ".png", ".webp") else ".png"
    folder.mkdir(parents=True, exist_ok=True)
    out = folder / f"{path.stem}-blurred{suffix}"
    Image.fromarray(blur_faces(image, boxes)).save(out)
    return out


def is_video(path: Path) -> bool:
    return path.suffix.lower() in VIDEO_EXTENSIONS


def run_video(args, cfg: dict) -> int:
    """One video file → timeline JSON (default) or CSV, plus the annotated / blurred MP4 if asked."""
    from tqdm import tqdm

    from app.pipeline.video import analyze_video, render_annotated, video_predictor, write_csv
    path = args.paths[0]
    try:
        predictor = video_predictor(args.models_dir or cfg["VISAGE_MODELS_DIR"])
    except ModelUnavailable as e:
        print(f"error: {e}", file=sys.stderr)
        return 2

    def bar_progress(bar):
        def progress(done: int, total: int) -> None:
            bar.total = total
            bar.update(done - bar.n)
        return progress

    annotated = args.annotated or (path.with_name(f"{path.stem}-blurred.mp4") if args.blur else None)
    for target in (args.output, annotated):
        if target is not None and not can_write(target):
            print(f"error: cannot write {target}: no such folder, or not ours to write in", file=sys.stderr)
            return 2
    try:
        with tqdm(desc="analyzing", unit="frame", file=sys.stderr) as bar:
            result = analyze_video(path, predictor, fps=args.fps, detector=args.detector,
                                   max_seconds=cfg["VISAGE_MAX_VIDEO_SECONDS"],
                                   max_pixels=cfg["VISAGE_MAX_VIDEO_PIXELS"], progress=bar_progress(bar))
    except InputError as e:
        print(f"error: {path}: {e.message} ({e.code})", file=sys.stderr)
        return 1
    except OSError as e:
        print(f"error: {path}: {e.strerror or e}", file=sys.stderr)
        return 1
    if annotated:
        try:
            with tqdm(desc="annotating", unit="frame", file=sys.stderr) as bar:
                render_annotated(path, result, annotated, blur=args.blur, progress=bar_progress(bar))
            result["annotated"] = str(annotated)
        except (InputError, OSError) as e:     # the timelines are written all the same
            result["annotated_error"] = getattr(e, "message", None) or f"{e.strerror or e}"
            print(f"error: {annotated} could not be written: {result['annotated_error']}", file=sys.stderr)
    out = open_output(args.output)
    if out is None:
        print(json.dumps({"file": str(path), **result}), file=sys.stdout)     # the work is not lost
        return 2
    try:
        if output_format(args) == "csv":
            write_csv(result, out)
        else:
            out.write(json.dumps({"file": str(path), **result}, indent=1) + "\n")
    finally:
        if out is not sys.stdout:
            out.close()
    decoding = result["decoding"]
    if not decoding["complete"]:
        print(f"warning: {path}: the video is damaged; {decoding['frames_failed']} frame(s) could not be decoded, "
              f"the rest was analysed", file=sys.stderr)
    return 1 if "annotated_error" in result else 0


def succeeded(record: dict) -> bool:
    """Analysed, and its blurred copy written if one was asked for (else said on stderr)."""
    if "blur_error" in record:
        print(f"error: {record['file']}: {record['blur_error']}", file=sys.stderr)
    return "error" not in record and "blur_error" not in record


def output_format(args) -> str | None:
    """csv or jsonl as asked, else csv for an output file named .csv, else None (the default for the input)."""
    if args.format:
        return args.format
    return "csv" if args.output is not None and args.output.suffix.lower() == ".csv" else None


def can_write(path: Path) -> bool:
    """Whether a file can be written at `path` (checked before a long analysis; nothing is created)."""
    folder = path.parent
    if path.exists():
        return path.is_file() and os.access(path, os.W_OK)
    return folder.is_dir() and os.access(folder, os.W_OK)


def open_output(path: Path | None):
    """stdout, or `path` opened for writing now, before any work: a wrong folder must not cost an
    analysis. None (after saying why) when it cannot be written."""
    if path is None:
        return sys.stdout
    try:
        return open(path, "w", newline="", encoding="utf-8")
    except OSError as e:
        print(f"error: cannot write {path}: {e.strerror or e}", file=sys.stderr)
        return None


def csv_rows(record: dict):
    """One row per face; a file without faces or with an error still gets one row."""
    from app.jobs.batch_intake import spreadsheet_text
    name = spreadsheet_text(record["file"])
    if "error" in record:
        yield {"file": name, "error_code": record["error"]["code"],
               "error_message": spreadsheet_text(record["error"]["message"])}
        return
    if not record["faces"]:
        yield {"file": name, "face": 0}
    for i, face in enumerate(record["faces"], 1):
        row = {"file": name, "face": i, **face["box"], "age": face["age"],
               "age_low": face["age_range"][0], "age_high": face["age_range"][1], "age_group": face["age_group"],
               "gender": face["gender"]["label"], "gender_probability": face["gender"]["probability"],
               "emotion": face["emotion"]["label"]}
        row.update({f"p_{e}": p for e, p in face["emotion"]["probabilities"].items()})
        yield row


def blur_dir(args, path: Path) -> Path | None:
    return (args.blur_dir or path.parent) if args.blur else None


def run_server_batch(args) -> int:
    from app.batch_client import run_on_server
    files = list_files(args.paths)
    as_csv = args.format != "jsonl"
    out = open_output(args.output)
    if out is None:
        return 2
    try:
        return run_on_server(args.server, args.paths, files, {"detector": args.detector, "profile": args.profile},
                             out, as_csv=as_csv, token=args.token)
    finally:
        if out is not sys.stdout:
            out.close()


def main(argv=None) -> int:
    args = parse_args(argv)
    cfg = settings.from_environment()
    if args.server:
        return run_server_batch(args)
    if args.detector is None:
        if cfg["VISAGE_DEFAULT_DETECTOR"] not in DETECTORS:
            print(f"error: VISAGE_DEFAULT_DETECTOR must be one of {', '.join(DETECTORS)}, "
                  f"got {cfg['VISAGE_DEFAULT_DETECTOR']!r}", file=sys.stderr)
            return 1
        args.detector = cfg["VISAGE_DEFAULT_DETECTOR"]
    if any(is_video(path) for path in args.paths):
        if len(args.paths) != 1 or args.paths[0].is_dir():
            print("error: give one video file at a time", file=sys.stderr)
            return 1
        return run_video(args, cfg)
    try:
        predictor = load_predictor(args.models_dir or cfg["VISAGE_MODELS_DIR"])
    except ModelUnavailable as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    files = list_files(args.paths)
    if not files:
        print(f"error: no files in {', '.join(map(str, args.paths))}", file=sys.stderr)
        return 1
    if args.blur_dir and args.blur:
        try:
            args.blur_dir.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            print(f"error: cannot write blurred copies in {args.blur_dir}: {e.strerror or e}", file=sys.stderr)
            return 2
    out = open_output(args.output)
    if out is None:
        return 2
    failed = 0
    form = output_format(args)
    try:
        if len(files) == 1 and not args.paths[0].is_dir() and form is None:
            record = analyze_file(files[0], predictor, args.detector, cfg, args.profile, blur_dir(args, files[0]))
            failed = not succeeded(record)
            out.write(json.dumps(record, indent=2) + "\n")
        else:
            from tqdm import tqdm
            writer = csv.DictWriter(out, CSV_COLUMNS, extrasaction="ignore") if form == "csv" else None
            if writer:
                writer.writeheader()
            for path in tqdm(files, desc="analyzing", unit="image", file=sys.stderr):
                record = analyze_file(path, predictor, args.detector, cfg, args.profile, blur_dir(args, path))
                failed += not succeeded(record)
                if writer:
                    writer.writerows(csv_rows(record))
                else:
                    out.write(json.dumps(record) + "\n")
                out.flush()
    finally:
        if out is not sys.stdout:
            out.close()
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
