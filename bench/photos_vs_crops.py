"""UTKFace val faces given as photos through the app's detection path against the same faces given
as ready crops (detector=none), through the API: age MAE and gender accuracy.

    python bench/photos_vs_crops.py --data-dir ../shared/data/utkface [--limit 1000]

Each val chip is sent twice more as a photo: as it is (the 200x200 file) and framed (set in a frame of
its own edge pixels, training.common.framed, as the rest of a photo would be), with default options
(BlazeFace, faces turned upright) and with detector=haar. A photo path's numbers are over the faces
it finds; "crops" gives the same faces' numbers with detector=none, so the difference is what
detection and cutting cost. Validation split only. Writes reports/photos_vs_crops.json.
"""
from __future__ import annotations

import argparse
import io
import json
import sys
from pathlib import Path

import cv2
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from training.common import framed  # noqa: E402
from training.data_utk import list_items, read_rgb  # noqa: E402


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data-dir", type=Path, required=True)
    p.add_argument("--models-dir", type=Path, default=Path("models"))
    p.add_argument("--limit", type=int, default=0, help="a random sample of N val faces (default: all)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", type=Path, default=Path("reports/photos_vs_crops.json"))
    args = p.parse_args()
    cv2.setNumThreads(1)
    from app import create_app
    client = create_app({"TESTING": True, "VISAGE_MODELS_DIR": str(args.models_dir.resolve())}).test_client()
    items = list_items(args.data_dir)["val"]
    if args.limit:
        items = [items[i] for i in np.random.default_rng(args.seed).permutation(len(items))[:args.limit]]

    def largest_face(data: bytes, query: str):
        r = client.post(f"/api/v1/analyze{query}", data={"image": (io.BytesIO(data), "face.jpg")})
        if r.status_code != 200:
            raise SystemExit(f"{r.status_code} {r.get_json()}")
        faces = r.get_json()["faces"]
        return (faces[0]["age"], faces[0]["gender"]["label"]) if faces else None

    paths = {"as it is, default (blazeface)": ("plain", ""), "as it is, haar": ("plain", "?detector=haar"),
             "framed, default (blazeface)": ("framed", ""), "framed, haar": ("framed", "?detector=haar")}
    rows = []
    for i, item in enumerate(items):
        plain = (Path(args.data_dir) / "UTKFace" / item.filename).read_bytes()
        ok, jpeg = cv2.imencode(".jpg", cv2.cvtColor(framed(read_rgb(args.data_dir, item)), cv2.COLOR_RGB2BGR),
                                [cv2.IMWRITE_JPEG_QUALITY, 95])
        photos = {"plain": plain, "framed": jpeg.tobytes()}
        row = {"age": item.age, "gender": "female" if item.gender == 1 else "male",
               "crop": largest_face(plain, "?detector=none")}
        for name, (photo, query) in paths.items():
            row[name] = largest_face(photos[photo], query)
        rows.append(row)
        if (i + 1) % 100 == 0:
            print(f"{i + 1}/{len(items)}", flush=True)

    def scores(readings, rows_) -> dict:
        return {"age_mae": round(float(np.mean([abs(a - r["age"]) for (a, _), r in zip(readings, rows_)])), 3),
                "gender_accuracy": round(float(np.mean([g == r["gender"] for (_, g), r in zip(readings, rows_)])), 4)}

    report = {"split": "val", "faces": len(rows), "crops (detector=none), all faces": scores([r["crop"] for r in rows], rows),
              "paths": {}}
    for name in paths:
        hit = [r for r in rows if r[name] is not None]
        photo, crop = scores([r[name] for r in hit], hit), scores([r["crop"] for r in hit], hit)
        report["paths"][name] = {"found": round(len(hit) / len(rows), 4), "photo": photo, "crops, same faces": crop,
                                 "age_mae_gap": round(photo["age_mae"] - crop["age_mae"], 3),
                                 "gender_accuracy_gap_points": round(100 * (photo["gender_accuracy"] - crop["gender_accuracy"]), 2)}
    print(json.dumps(report, indent=1))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=1))
    print("wrote", args.out)


if __name__ == "__main__":
    main()
