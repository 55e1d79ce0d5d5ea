"""Visage's live path beside the `fer` package (emotion alone) on the same 640x480 frames, in the same run.

    python bench/compare_fer.py [--fer-python /tmp/fervenv/bin/python] [--blocks 12] [--block 10]
                                [--threads one,default] [--out reports/fer_comparison.json]

Issue #13's target: one 640x480 frame, all three attributes, live profile, in-process, at most 0.7x
the time `fer` takes for emotion alone on the same frames in the same run; also with 4 faces.
`fer` lives in its own venv (bench/requirements-fer.txt says how to make it), so each package runs
in a worker process of its own and times its own calls with time.perf_counter:
- visage: run_pipeline on the frame's JPEG (q80), as the app runs a live frame: decode, Haar (a full
  scan, or only inside the region hints live.js sends), preprocess, live profile (age, gender,
  emotion). Frames, min_face and region hints come from bench/measure_profiles.py (frame_640x480).
- fer: FER(mtcnn=False).detect_emotions(frame) on the same JPEG decoded to BGR: its defaults, Haar
  on the full frame (min face 50 px) + the quantized TFLite mini-Xception.
After a warm-up, the workers take turns in blocks of --block frames (the order rotates each block),
so both see the same machine load. Threads: "one" = one thread for OpenCV, TensorFlow / ONNX
Runtime and fer's TFLite interpreter; "default" = each library's own default (Visage's ONNX Runtime
keeps its one thread: the app's default).
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
FER_PYTHON = "/tmp/fervenv/bin/python"
VISAGE_SETUPS = ("live, full scan", "live, regions")
FER_SETUP = "fer, emotion only"
WARM_UP = 5
THREAD_ENV = ("TF_NUM_INTRAOP_THREADS", "TF_NUM_INTEROP_THREADS", "VISAGE_OPENCV_THREADS")


# ---------------------------------------------------------------- workers (one process per package)

def visage_worker(frames_dir: Path, models_dir: str):
    sys.path[:0] = [str(ROOT), str(ROOT / "bench")]
    from measure_profiles import LIMITS, frame_setups   # the frames' setups, as bench/measure_profiles.py times them
    from app.pipeline.analyze import run_pipeline
    from app.pipeline.predict import load_predictor
    predictor = load_predictor(models_dir)
    manifest = json.loads((frames_dir / "frames.json").read_text())
    jobs = {}
    for name, meta in manifest.items():
        data = (frames_dir / f"{name}.jpg").read_bytes()
        setups = frame_setups(data, predictor, meta["min_face"])
        jobs.update({(name, setup): (data, meta["min_face"], setups[setup]) for setup in VISAGE_SETUPS})

    def call(name, setup):
        data, min_face, options = jobs[(name, setup)]
        t0 = time.perf_counter()
        answer, _ = run_pipeline(data, predictor, min_face=min_face, **options, **LIMITS)
        ms = (time.perf_counter() - t0) * 1000
        faces = [[*(f["box"][k] for k in "xywh"), f["emotion"]["label"]] for f in answer["faces"]]
        return ms, faces, answer["timing_ms"]["decode"]
    info = {"models": dict(predictor.versions), "opencv": cv2.__version__,
            "setups": {f"{name} / {setup}": job[2] for (name, setup), job in jobs.items()}}
    serve(call, list(jobs), info)


def fer_worker(frames_dir: Path, threads: str):
    import fer
    import tensorflow as tf
    from fer.fer import FER
    if threads == "one":
        cv2.setNumThreads(1)
        # fer builds its TFLite interpreter with the library's default threads; FER reuses the one in
        # its class cache, so put one there built with a single thread.
        model = Path(fer.__file__).parent / "data" / "emotion_model_quantized.tflite"
        interpreter = tf.lite.Interpreter(model_path=str(model), num_threads=1)
        interpreter.allocate_tensors()
        FER._tflite_interpreter_cache = interpreter
    detector = FER(mtcnn=False)
    manifest = json.loads((frames_dir / "frames.json").read_text())
    frames = {name: np.load(frames_dir / f"{name}.npy") for name in manifest}

    def call(name, setup):
        t0 = time.perf_counter()
        found = detector.detect_emotions(frames[name])
        ms = (time.perf_counter() - t0) * 1000
        faces = [[*(int(v) for v in f["box"]), max(f["emotions"], key=f["emotions"].get)] for f in found]
        return ms, faces, None
    info = {"fer": fer.__version__, "tensorflow": tf.__version__, "opencv": cv2.__version__,
            "call": "FER(mtcnn=False).detect_emotions(bgr_frame)"}
    serve(call, [(name, FER_SETUP) for name in frames], info)


def serve(call, jobs, info):
    """Warm up, say ready, then answer {"frame", "setup", "n"} lines with the n calls' times and faces.
    Replies go to a private copy of stdout; anything the libraries print goes to stderr."""
    reply = os.fdopen(os.dup(1), "w", buffering=1)
    os.dup2(2, 1)
    for job in jobs:
        for _ in range(WARM_UP):
            call(*job)
    reply.write(json.dumps({"ready": True, "info": info}) + "\n")
    for line in sys.stdin:
        ask = json.loads(line)
        results = [call(ask["frame"], ask["setup"]) for _ in range(ask["n"])]
        reply.write(json.dumps({"ms": [r[0] for r in results], "faces": [r[1] for r in results],
                                "decode_ms": [r[2] for r in results if r[2] is not None]}) + "\n")


class Worker:
    def __init__(self, python: str, kind: str, frames_dir: Path, threads: str, models_dir: str, log: Path):
        env = {k: v for k, v in os.environ.items() if k not in THREAD_ENV}
        env["TF_CPP_MIN_LOG_LEVEL"] = "2"
        if threads == "one":
            env.update({k: "1" for k in THREAD_ENV})
        self.log, self.log_file = log, open(log, "w")
        self.proc = subprocess.Popen(
            [python, str(Path(__file__).resolve()), "--worker", kind, "--frames-dir", str(frames_dir),
             "--threads", threads, "--models-dir", models_dir],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self.log_file, text=True, env=env, cwd=ROOT)

    def read(self) -> dict:
        line = self.proc.stdout.readline()
        if not line:
            sys.exit(f"worker {self.proc.args[3]} stopped; its log ({self.log}):\n" + self.log.read_text()[-3000:])
        return json.loads(line)

    def run(self, frame: str, setup: str, n: int) -> dict:
        self.proc.stdin.write(json.dumps({"frame": frame, "setup": setup, "n": n}) + "\n")
        self.proc.stdin.flush()
        return self.read()

    def close(self):
        self.proc.stdin.close()
        self.proc.wait(timeout=60)
        self.log_file.close()


# ---------------------------------------------------------------- the run (main venv)

def iou(a, b) -> float:
    ax, ay, aw, ah = a[:4]
    bx, by, bw, bh = b[:4]
    w = max(0, min(ax + aw, bx + bw) - max(ax, bx))
    h = max(0, min(ay + ah, by + bh) - max(ay, by))
    return w * h / (aw * ah + bw * bh - w * h)


def stats(ms: list[float]) -> dict:
    return {"median_ms": round(statistics.median(ms), 2), "p90_ms": round(statistics.quantiles(ms, n=10)[8], 2),
            "calls": len(ms)}


def measure(threads: str, frames_dir: Path, manifest: dict, args) -> dict:
    from app.webcam import LIVE_FULL_SCAN_EVERY as every
    workers = {"visage": Worker(sys.executable, "visage", frames_dir, threads, args.models_dir,
                                frames_dir / f"visage_{threads}.log"),
               "fer": Worker(args.fer_python, "fer", frames_dir, threads, args.models_dir,
                             frames_dir / f"fer_{threads}.log")}
    info = {kind: w.read()["info"] for kind, w in workers.items()}
    jobs = [("visage", setup) for setup in VISAGE_SETUPS] + [("fer", FER_SETUP)]
    out = {"load_average_before": [round(v, 2) for v in os.getloadavg()], "versions": info}
    for name in manifest:
        times = {setup: [] for _, setup in jobs}
        block_medians = {setup: [] for _, setup in jobs}
        decode, faces = [], {}
        for block in range(args.blocks):
            for kind, setup in jobs[block % len(jobs):] + jobs[:block % len(jobs)]:   # rotate who goes first
                answer = workers[kind].run(name, setup, args.block)
                times[setup] += answer["ms"]
                block_medians[setup].append(statistics.median(answer["ms"]))
                decode += answer["decode_ms"]
                faces.setdefault(setup, set()).update(json.dumps(sorted(f)) for f in answer["faces"])
        fer_ms = statistics.median(times[FER_SETUP])
        result = {}
        for _, setup in jobs:
            found = [json.loads(f) for f in sorted(faces[setup])]
            # faces: the counts seen; boxes: each distinct answer, [x, y, w, h, emotion] per face.
            result[setup] = {**stats(times[setup]), "faces": sorted({len(f) for f in found}), "boxes": found}
            if setup != FER_SETUP:
                per_block = [v / f for v, f in zip(block_medians[setup], block_medians[FER_SETUP])]
                result[setup]["ratio_to_fer"] = round(statistics.median(times[setup]) / fer_ms, 3)
                result[setup]["ratio_per_block_min_median_max"] = [round(min(per_block), 3),
                                                                   round(statistics.median(per_block), 3),
                                                                   round(max(per_block), 3)]
        # Which of fer's boxes are faces Visage found too (the rest are its false boxes on this frame).
        visage_boxes, fer_boxes = result["live, full scan"]["boxes"][0], result[FER_SETUP]["boxes"][0]
        result[FER_SETUP]["boxes_matching_visage"] = sum(any(iou(f, v) > 0.3 for v in visage_boxes) for f in fer_boxes)
        # Live mode sends region hints and asks for a full scan every LIVE_FULL_SCAN_EVERY-th frame.
        full, regions = (result[s]["median_ms"] for s in VISAGE_SETUPS)
        mix = (full + (every - 1) * regions) / every
        result[f"live mode (1 full scan in {every}), weighted medians"] = {
            "ms": round(mix, 2), "ratio_to_fer": round(mix / fer_ms, 3)}
        result["visage_decode_median_ms"] = round(statistics.median(decode), 2)
        result["load_average_after"] = [round(v, 2) for v in os.getloadavg()]
        out[name] = result
        print(f"[threads: {threads}] {name}, load average {result['load_average_after']}", flush=True)
        for _, setup in jobs:
            r = result[setup]
            print(f"  {setup:20s} median {r['median_ms']:7.1f} ms  p90 {r['p90_ms']:7.1f} ms  "
                  f"ratio {r.get('ratio_to_fer', 1.0):.2f}  faces {r['faces']}", flush=True)
    for w in workers.values():
        w.close()
    return out


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--fer-python", default=FER_PYTHON, help="python of the venv holding fer (bench/requirements-fer.txt)")
    p.add_argument("--blocks", type=int, default=12, help="turns per package and setup, per frame")
    p.add_argument("--block", type=int, default=10, help="frames per turn")
    p.add_argument("--threads", default="one,default", help="one, default or both (comma-separated)")
    p.add_argument("--models-dir", default=str(ROOT / "models"))
    p.add_argument("--out", type=Path, default=ROOT / "reports" / "fer_comparison.json")
    p.add_argument("--worker", choices=("visage", "fer"), help=argparse.SUPPRESS)
    p.add_argument("--frames-dir", type=Path, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.worker == "visage":
        return visage_worker(args.frames_dir, args.models_dir)
    if args.worker == "fer":
        return fer_worker(args.frames_dir, args.threads)
    if not Path(args.fer_python).exists():
        sys.exit(f"no fer venv at {args.fer_python}: make one as bench/requirements-fer.txt says, or pass --fer-python")

    sys.path[:0] = [str(ROOT), str(ROOT / "bench")]
    from measure_profiles import as_jpeg, camera_frames
    with tempfile.TemporaryDirectory(prefix="visage-fer-") as tmp:
        frames_dir = Path(tmp)
        manifest = {}
        for name, (picture, min_face) in camera_frames().items():
            data = as_jpeg(picture)
            (frames_dir / f"{name}.jpg").write_bytes(data)
            # fer gets the same pixels Visage decodes, as the BGR array OpenCV code passes it.
            np.save(frames_dir / f"{name}.npy", cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR))
            manifest[name] = {"min_face": min_face, "jpeg_bytes": len(data), "shape": list(picture.shape)}
        (frames_dir / "frames.json").write_text(json.dumps(manifest))
        started = time.time()
        runs = {threads: measure(threads, frames_dir, manifest, args) for threads in args.threads.split(",")}

    report = {
        "command": "python bench/compare_fer.py " + " ".join(argv if argv is not None else sys.argv[1:]),
        "what": "median / p90 ms per 640x480 frame in-process, interleaved in blocks; Visage = run_pipeline on "
                "the JPEG (q80; decode included, its median given apart), live profile = age + gender + emotion; "
                "fer = FER(mtcnn=False).detect_emotions on the decoded BGR frame = emotion only. ratio_to_fer = "
                "Visage median / fer median (issue #13 target <= 0.7). four_faces = the frame tiled 2x2 at half size.",
        "frames": manifest, "blocks": args.blocks, "frames_per_block": args.block,
        "cpu_count": os.cpu_count(), "seconds": round(time.time() - started, 1), "threads": runs,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    print(f"→ {args.out}")


if __name__ == "__main__":
    main()
