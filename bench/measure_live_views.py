"""How much each profile's views steady a still webcam face's age: the browser test's clip (the
astronaut swaying by about 2 px, tests/browser/make_clip.py) at live mode's 400-px frame size,
detected as live mode does, the shipped age/gender model averaged over each set of views.

    .venv/bin/python bench/measure_live_views.py      # → reports/live_views.json

Prints mean and standard deviation of the per-frame age per set of views.
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

import cv2
import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "tests" / "browser")]

from make_clip import face_frame, jittered  # noqa: E402

from app.pipeline.analyze import find_faces  # noqa: E402
from app.pipeline.predict import load_predictor  # noqa: E402
from app.pipeline.preprocess import prepare_faces, test_time_views  # noqa: E402

VIEW_SETS = {"face only": (False, 0), "face + mirror (live)": (True, 0), "face + shifts": (False, 3),
             "10 views (accurate)": (True, 3)}


def main() -> None:
    model = next(m for m in load_predictor(ROOT / "models").models if m.card.name == "age_gender")
    frames = [cv2.resize(f, (400, 300), interpolation=cv2.INTER_AREA) for f in jittered(face_frame(), 60)]
    crops = [prepare_faces(f, boxes[:1], model.card.size, model.card.margin)
             for f in frames if (boxes := find_faces(f, "haar", 0.12))]
    report = {"frames": len(frames), "faces_found": len(crops), "model": model.card.version, "views": {}}
    for name, (flip, shift) in VIEW_SETS.items():
        ages = []
        for crop in crops:
            views = test_time_views(crop, flip, shift)
            raw = model._call(np.concatenate(views))       # the network itself, once per view
            age = raw["age"] if isinstance(raw, dict) else raw[list(model.card.outputs).index("age")]
            ages.append(float(np.mean(np.asarray(age))))
        report["views"][name] = {"mean": float(np.mean(ages)), "sd": float(np.std(ages)),
                                 "min": float(np.min(ages)), "max": float(np.max(ages))}
        print(f"{name:22s} age mean {np.mean(ages):5.1f}  s.d. {np.std(ages):4.2f}  ({len(ages)} frames)")
    out = ROOT / "reports" / "live_views.json"
    out.write_text(json.dumps(report, indent=2) + "\n")
    print(f"→ {out}")


if __name__ == "__main__":
    main()
