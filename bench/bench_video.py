"""Benchmark video analysis: video-seconds analysed per wall-second, and the cost of each extra face.

Builds 640x480, 30 fps clips of 1, 2 and 3 astronaut faces (tests/video_clips.py) and runs the
job's own analysis (app.pipeline.video.analyze_video, real models from models/) at 5 sampled fps,
one TensorFlow/OpenCV thread as in `make run`. Also times a decode-only pass (PyAV, every frame
decoded, sampled ones converted to RGB) and, as a load reference measured in the same run, one
photo analysis (the astronaut, run_pipeline). On a loaded machine read the ratios, not the absolute numbers.

    python bench/bench_video.py                      # writes reports/video_benchmark.json
    python bench/bench_video.py --seconds 20 --repeats 3
"""
from __future__ import annotations

import argparse
import json
import math
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

for var in ("TF_NUM_INTRAOP_THREADS", "TF_NUM_INTEROP_THREADS", "OMP_NUM_THREADS"):
    os.environ.setdefault(var, "1")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(1, str(ROOT / "tests"))   # tests/conftest.py imports its helpers as top-level modules

import cv2  # noqa: E402

cv2.setNumThreads(1)

from app import settings  # noqa: E402
from app.pipeline.analyze import run_pipeline  # noqa: E402
from app.pipeline.video import (ANALYSIS_MAX_SIDE, DecodeStats, analyze_video, probe,  # noqa: E402
                                render_annotated, sampled_frames, video_predictor)
from tests.video_clips import scene, write_clip  # noqa: E402

LAYOUTS = {   # (x, y, portrait width) per face in a 640x480 frame; each found by Haar (checked below)
    1: [(200, 60, 240)],
    2: [(20, 80, 200), (340, 80, 200)],
    3: [(0, 120, 170), (220, 60, 170), (440, 120, 170)],
}


def make_clip(path: Path, faces: int, seconds: float, fps: int) -> Path:
    n = int(seconds * fps)
    sway = [int(20 * math.sin(2 * math.pi * i / (2 * fps))) for i in range(n)]   # a talking head's motion
    frames = (scene(640, 480, [(x + sway[i] + 20, y, w) for x, y, w in LAYOUTS[faces]]) for i in range(n))
    return write_clip(path, frames, fps)


def timed(fn, repeats: int) -> tuple[float, object]:
    times, out = [], None
    for _ in range(repeats):
        start = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times), out


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--seconds", type=float, default=10.0, help="clip length (video seconds)")
    p.add_argument("--fps", type=float, default=5.0, help="sampled frames per video second")
    p.add_argument("--repeats", type=int, default=2)
    p.add_argument("--models-dir", default=settings.DEFAULTS["VISAGE_MODELS_DIR"])
    p.add_argument("--output", type=Path, default=ROOT / "reports" / "video_benchmark.json")
    args = p.parse_args()

    predictor = video_predictor(args.models_dir)
    from skimage import data as skdata
    from tests.conftest import encode
    photo = encode(skdata.astronaut())
    photo_s, _ = timed(lambda: run_pipeline(photo, predictor, max_bytes=10**8, max_pixels=10**8), 5)

    report = {"machine": {"cpus": os.cpu_count(), "load_average_1m": os.getloadavg()[0],
                          "python": platform.python_version(), "note": "shared 2-core machine, loaded by a "
                          "training run and other engineers' work: compare ratios, not absolute times"},
              "clip": {"size": "640x480", "source_fps": 30, "seconds": args.seconds, "sampled_fps": args.fps},
              "models": dict(predictor.versions),
              "reference_photo_analysis_ms": round(photo_s * 1000, 1), "runs": {}}
    with tempfile.TemporaryDirectory() as tmp:
        for faces in LAYOUTS:
            clip = make_clip(Path(tmp) / f"{faces}.mp4", faces, args.seconds, 30)
            info = probe(clip, max_seconds=10**6, max_pixels=10**9)

            def decode_only():
                return sum(1 for _ in sampled_frames(clip, info, args.fps, ANALYSIS_MAX_SIDE, DecodeStats(), 10**6))

            decode_s, _ = timed(decode_only, args.repeats)
            analyse_s, result = timed(lambda: analyze_video(clip, predictor, fps=args.fps), args.repeats)
            found = [len(t["timeline"]) for t in result["tracks"]]
            render_s, _ = timed(lambda: render_annotated(clip, result, Path(tmp) / "a.mp4"), 1)
            samples = result["sampling"]["samples"]
            report["runs"][faces] = {
                "tracks": len(result["tracks"]), "detections_per_track": found,
                "samples": samples, "decode_only_s": round(decode_s, 3), "analysis_s": round(analyse_s, 3),
                "video_seconds_per_wall_second": round(args.seconds / analyse_s, 2),
                "ms_per_sample": round(1000 * analyse_s / samples, 1),
                "ms_per_sample_in_photo_analyses": round(analyse_s / samples / photo_s, 2),
                "annotated_render_s": round(render_s, 3),
                "annotated_video_seconds_per_wall_second": round(args.seconds / render_s, 2)}
            print(f"{faces} face(s): {args.seconds / analyse_s:.2f} video-s per wall-s "
                  f"({1000 * analyse_s / samples:.0f} ms per sample; decode alone {decode_s:.2f} s); "
                  f"annotated MP4 {args.seconds / render_s:.2f}x real time; tracks {found}", flush=True)
    runs = report["runs"]
    extra = [(runs[n]["ms_per_sample"] - runs[1]["ms_per_sample"]) / (n - 1) for n in runs if n > 1]
    report["extra_face_ms_per_sample"] = round(statistics.mean(extra), 1)
    report["extra_face_share_of_one_face_time"] = round(statistics.mean(extra) / runs[1]["ms_per_sample"], 2)
    report["load_average_1m_after"] = os.getloadavg()[0]
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(report, indent=1) + "\n")
    print(f"extra face: +{report['extra_face_ms_per_sample']} ms per sample "
          f"({100 * report['extra_face_share_of_one_face_time']:.0f}% of one face's); "
          f"reference photo analysis {report['reference_photo_analysis_ms']} ms; wrote {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
