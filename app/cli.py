"""Analyze image files from the command line, with the same pipeline as the web app.

    python -m app.cli photo.jpg                      # one file: pretty JSON on stdout
    python -m app.cli photos/ more.png -o out.jsonl  # many: JSON Lines, progress bar on stderr
    python -m app.cli photos/ --format csv -o out.csv

A file that cannot be analyzed yields an error record, not a crash. Exit status:
0 all files analyzed, 1 some files failed, 2 the models could not be loaded.
"""
from __future__ import annotations

import argparse
import csv
import json
import sys
from pathlib import Path

from app import settings
from app.pipeline.analyze import analyze_bytes
from app.pipeline.detect import DETECTORS
from app.pipeline.errors import InputError, ModelUnavailable
from app.pipeline.predict import EMOTION_LABELS, PROFILES, load_predictor

CSV_COLUMNS = (["file", "face", "x", "y", "w", "h", "age", "age_low", "age_high", "age_group",
                "gender", "gender_probability", "emotion"] + [f"p_{e}" for e in EMOTION_LABELS]
               + ["error_code", "error_message"])


def parse_args(argv=None):
    p = argparse.ArgumentParser(prog="python -m app.cli", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("paths", nargs="+", type=Path, help="image files or folders (searched recursively)")
    p.add_argument("--detector", choices=DETECTORS, default="haar")
    p.add_argument("--profile", choices=PROFILES, default="accurate",
                   help="accurate: the test-time views each model card names; live: one view (faster)")
    p.add_argument("--format", choices=["jsonl", "csv"], default="jsonl", help="output for several files")
    p.add_argument("--output", "-o", type=Path, help="write here instead of stdout")
    p.add_argument("--models-dir", help="default: $VISAGE_MODELS_DIR or <repo>/models")
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


def analyze_file(path: Path, predictor, detector: str, cfg: dict, profile: str = "accurate") -> dict:
    try:
        data = path.read_bytes()
        answer = analyze_bytes(data, predictor, detector=detector, profile=profile,
                               max_bytes=cfg["VISAGE_MAX_BYTES"], max_pixels=cfg["VISAGE_MAX_PIXELS"])
        return {"file": str(path), **answer}
    except InputError as e:
        return {"file": str(path), "error": {"code": e.code, "message": e.message}}
    except OSError as e:
        return {"file": str(path), "error": {"code": "unreadable", "message": f"{e.strerror or e}"}}


def csv_rows(record: dict):
    """One row per face; a file without faces or with an error still gets one row."""
    if "error" in record:
        yield {"file": record["file"], "error_code": record["error"]["code"],
               "error_message": record["error"]["message"]}
        return
    if not record["faces"]:
        yield {"file": record["file"], "face": 0}
    for i, face in enumerate(record["faces"], 1):
        row = {"file": record["file"], "face": i, **face["box"], "age": face["age"],
               "age_low": face["age_range"][0], "age_high": face["age_range"][1], "age_group": face["age_group"],
               "gender": face["gender"]["label"], "gender_probability": face["gender"]["probability"],
               "emotion": face["emotion"]["label"]}
        row.update({f"p_{e}": p for e, p in face["emotion"]["probabilities"].items()})
        yield row


def main(argv=None) -> int:
    args = parse_args(argv)
    cfg = settings.from_environment()
    try:
        predictor = load_predictor(args.models_dir or cfg["VISAGE_MODELS_DIR"])
    except ModelUnavailable as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    files = list_files(args.paths)
    out = open(args.output, "w", newline="", encoding="utf-8") if args.output else sys.stdout
    failed = 0
    try:
        if len(files) == 1 and not args.paths[0].is_dir():
            record = analyze_file(files[0], predictor, args.detector, cfg, args.profile)
            failed = "error" in record
            out.write(json.dumps(record, indent=2) + "\n")
        else:
            from tqdm import tqdm
            writer = csv.DictWriter(out, CSV_COLUMNS, extrasaction="ignore") if args.format == "csv" else None
            if writer:
                writer.writeheader()
            for path in tqdm(files, desc="analyzing", unit="image", file=sys.stderr):
                record = analyze_file(path, predictor, args.detector, cfg, args.profile)
                failed += "error" in record
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
