"""Faces in scenes, through the API with default options: UTKFace val faces pasted one per scene into
640x480 pictures (a random side of 64-240 px, a random place, every other face turned by 10-30 degrees
of roll either way), sent to POST /api/v1/analyze as JPEG. Per detector: the share found (overall,
upright, turned, per race, ages 0-12 and 60+), false boxes per scene, and the gender accuracy and age
MAE of the faces found, upright against turned.

    python bench/scenes_by_group.py --data-dir ../shared/data/utkface [--limit 600]

Rows: the default path (BlazeFace, faces turned upright by their eyes), the same boxes read without
turning (the models fed the tilted crops: the pipeline's own Predictor.prepare with no rolls), and
detector=haar (no eyes, read as found). The requests go through the Flask app in-process (its test
client: decoding, options, detection, preprocessing, models, JSON), with the shipped models.
Validation split only. Writes reports/scenes_by_group.json. --paired also sends each face in the other pose
(same size, place and backdrop), for upright against turned on the same faces (report key "paired_poses").
"""
from __future__ import annotations

import argparse
import io
import json
import sys
import time
from pathlib import Path

import cv2
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from training.data_utk import RACES, list_items, read_rgb  # noqa: E402

WIDTH, HEIGHT = 640, 480
SIDES = (64, 240)
ROLLS = (10, 30)
DEADBAND = 5.0   # degrees: a variant that leaves faces found within this of upright as they are
BACKGROUNDS = ("coffee", "rocket", "chelsea", "coins", "brick", "grass", "gravel", "hubble_deep_field",
               "immunohistochemistry", "horse", "retina", "clock")   # skimage's pictures without people


def backgrounds() -> list[np.ndarray]:
    from skimage import data
    out = []
    for name in BACKGROUNDS:
        image = getattr(data, name)()
        image = np.stack([image] * 3, -1) if image.ndim == 2 else image[..., :3]
        out.append(np.ascontiguousarray(image.astype(np.uint8)))
    return out


def backdrop(background: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A 640x480 cut of the background, scaled by 1.0-1.6 beyond covering the frame: a scene's canvas."""
    scale = max(WIDTH / background.shape[1], HEIGHT / background.shape[0]) * rng.uniform(1.0, 1.6)
    big = cv2.resize(background, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)
    y0, x0 = rng.integers(0, big.shape[0] - HEIGHT + 1), rng.integers(0, big.shape[1] - WIDTH + 1)
    return big[y0:y0 + HEIGHT, x0:x0 + WIDTH].copy()


def scene(face: np.ndarray, background: np.ndarray, rng: np.random.Generator, turn: bool,
          sides: tuple[int, int] = SIDES, room_for_roll: float = 0.0) -> tuple[np.ndarray, dict]:
    """(640x480 RGB scene, truth: the pasted face's centre, side and roll). The roll is the face's as
    preprocess.eye_roll measures it: positive = turned clockwise on screen. sides: the face's side is
    drawn from this range (pixels, both ends included)."""
    canvas, truth = place(background, rng, turn, sides, room_for_roll)
    return paste(canvas, face, truth), truth


def place(background: np.ndarray, rng: np.random.Generator, turn: bool, sides: tuple[int, int] = SIDES,
          room_for_roll: float = 0.0) -> tuple[np.ndarray, dict]:
    """scene()'s backdrop and where its face goes. room_for_roll: a place where the face would also fit
    turned by this many degrees (--paired pastes it there again in the other pose)."""
    canvas = backdrop(background, rng)
    side = int(rng.integers(sides[0], sides[1] + 1))
    roll = float(rng.uniform(*ROLLS) * rng.choice([-1, 1])) if turn else 0.0
    # The turned chip needs room for its corners: side * (|cos| + |sin|).
    reach = max(reach_of(side, roll), reach_of(side, room_for_roll))
    cx = rng.uniform(reach / 2, WIDTH - reach / 2)
    cy = rng.uniform(reach / 2, HEIGHT - reach / 2)
    return canvas, {"cx": cx, "cy": cy, "side": side, "roll": roll}


def reach_of(side: int, roll: float) -> int:
    return int(np.ceil(side * (abs(np.cos(np.radians(roll))) + abs(np.sin(np.radians(roll))))))


def paste(canvas: np.ndarray, face: np.ndarray, truth: dict) -> np.ndarray:
    """The face at truth's side, centre and roll on (a copy of) the canvas."""
    side, roll, cx, cy = truth["side"], truth["roll"], truth["cx"], truth["cy"]
    chip = cv2.resize(face, (side, side), interpolation=cv2.INTER_AREA if face.shape[0] > side else cv2.INTER_LINEAR)
    # cv2 turns anticlockwise for a positive angle: -roll turns the face clockwise by roll.
    matrix = cv2.getRotationMatrix2D((side / 2, side / 2), -roll, 1.0)
    matrix[:, 2] += (cx - side / 2, cy - side / 2)
    warped = cv2.warpAffine(chip, matrix, (WIDTH, HEIGHT), flags=cv2.INTER_LINEAR)
    mask = cv2.warpAffine(np.ones((side, side), np.float32), matrix, (WIDTH, HEIGHT), flags=cv2.INTER_LINEAR)[..., None]
    return (warped * mask + canvas * (1 - mask)).round().astype(np.uint8)


def is_the_face(box: dict, truth: dict) -> bool:
    """A box is the pasted face when its centre lies within a quarter of the face's side of the
    face's centre and its size is 0.4-1.6 of it (UTKFace chips frame the face loosely)."""
    bx, by = box["x"] + box["w"] / 2, box["y"] + box["h"] / 2
    return (np.hypot(bx - truth["cx"], by - truth["cy"]) <= 0.25 * truth["side"]
            and 0.4 * truth["side"] <= box["w"] <= 1.6 * truth["side"])


def groups_of(item, turned: bool) -> list[str]:
    race = RACES[item.race] if item.race in range(len(RACES)) else "unknown"
    groups = ["all", "turned" if turned else "upright", f"race {race}"]
    if item.age <= 12:
        groups.append("age 0-12")
    if item.age >= 60:
        groups.append("age 60+")
    return groups


def summarise(records: list[dict], key: str) -> dict:
    """Found shares per group, false boxes per scene, gender accuracy and age MAE upright / turned."""
    totals, found = {}, {}
    for r in records:
        for g in r["groups"]:
            totals[g] = totals.get(g, 0) + 1
            found[g] = found.get(g, 0) + (r[key]["face"] is not None)
    out = {"found": {g: round(found[g] / n, 4) for g, n in sorted(totals.items())},
           "faces_per_group": dict(sorted(totals.items())),
           "false_boxes_per_scene": round(float(np.mean([r[key]["false_boxes"] for r in records])), 4),
           "request_ms_median": round(float(np.median([r[key]["ms"] for r in records])), 1) if "ms" in records[0][key] else None}
    for pose in ("upright", "turned", "all"):
        hits = [r for r in records if r[key]["face"] is not None and (pose == "all" or pose in r["groups"])]
        if hits:
            out[pose] = {"n": len(hits),
                         "gender_accuracy": round(float(np.mean([r[key]["face"]["gender"] == r["gender"] for r in hits])), 4),
                         "age_mae": round(float(np.mean([abs(r[key]["face"]["age"] - r["age"]) for r in hits])), 2)}
    return out


def to_jpeg(image: np.ndarray) -> bytes:
    ok, jpeg = cv2.imencode(".jpg", cv2.cvtColor(image, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, 92])
    return jpeg.tobytes()


def read_scene(client, query: str, data: bytes, truth: dict, name: str) -> dict:
    """One scene through POST /api/v1/analyze: the pasted face's reading (or None), false boxes, time."""
    t = time.perf_counter()
    r = client.post(f"/api/v1/analyze{query}", data={"image": (io.BytesIO(data), "scene.jpg")})
    ms = (time.perf_counter() - t) * 1000
    body = r.get_json()
    if r.status_code != 200:
        raise SystemExit(f"{name}: {r.status_code} {body}")
    hits = [f for f in body["faces"] if is_the_face(f["box"], truth)]
    face = hits[0] if hits else None
    return {"face": face and {"age": face["age"], "gender": face["gender"]["label"], "box": face["box"]},
            "false_boxes": len(body["faces"]) - len(hits[:1]), "ms": ms}


def paired_summary(records: list[dict]) -> dict:
    """Upright against turned on the same faces (each sent in both poses, found in both): gender accuracy,
    age MAE, and how often the gender label differs between a face's two poses."""
    pairs = []
    for r in records:
        first, other = r["default"]["face"], r["default_other_pose"]["face"]
        if first is not None and other is not None:
            upright, turned = (other, first) if "turned" in r["groups"] else (first, other)
            pairs.append((r, upright, turned))
    found = [r["default_other_pose"]["face"] is not None for r in records]
    out = {"faces": len(records), "found_in_both_poses": len(pairs), "other_pose_found_share": round(float(np.mean(found)), 4)}
    for pose, i in (("upright", 1), ("turned", 2)):
        out[pose] = {"gender_accuracy": round(float(np.mean([p[i]["gender"] == p[0]["gender"] for p in pairs])), 4),
                     "age_mae": round(float(np.mean([abs(p[i]["age"] - p[0]["age"]) for p in pairs])), 3)}
    out["turned_minus_upright"] = {"gender_points": round(100 * (out["turned"]["gender_accuracy"] - out["upright"]["gender_accuracy"]), 2),
                                   "age_mae_years": round(out["turned"]["age_mae"] - out["upright"]["age_mae"], 3)}
    out["gender_label_differs_share"] = round(float(np.mean([p[1]["gender"] != p[2]["gender"] for p in pairs])), 4)
    out["age_abs_difference_median"] = round(float(np.median([abs(p[1]["age"] - p[2]["age"]) for p in pairs])), 2)
    return out


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data-dir", type=Path, required=True)
    p.add_argument("--models-dir", type=Path, default=Path("models"))
    p.add_argument("--limit", type=int, default=0, help="a random sample of N val faces (default: all)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", type=Path, default=Path("reports/scenes_by_group.json"))
    p.add_argument("--paired", action="store_true",
                   help="also send every face in the other pose (turned if it was upright, upright if turned) at "
                        "the same size and place on the same backdrop: upright against turned on the same faces")
    args = p.parse_args()
    cv2.setNumThreads(1)
    from app import create_app
    from app.pipeline.analyze import locate_faces
    from app.pipeline.decode import decode_image
    from app.pipeline.predict import load_predictor
    client = create_app({"TESTING": True, "VISAGE_MODELS_DIR": str(args.models_dir.resolve())}).test_client()
    predictor = load_predictor(args.models_dir)
    rng = np.random.default_rng(args.seed)
    items = list_items(args.data_dir)["val"]
    order = rng.permutation(len(items))
    items = [items[i] for i in (order[:args.limit] if args.limit else order)]
    pictures = backgrounds()
    pair_rng = np.random.default_rng([args.seed, 1])    # its own stream: the scenes stay those of a run without --paired
    records, started = [], time.time()
    for i, item in enumerate(items):
        turn = i % 2 == 1
        chip = read_rgb(args.data_dir, item)
        other_roll = float(pair_rng.uniform(*ROLLS) * pair_rng.choice([-1, 1]))
        canvas, truth = place(pictures[int(rng.integers(len(pictures)))], rng, turn,
                              room_for_roll=other_roll if args.paired else 0.0)
        data = to_jpeg(paste(canvas, chip, truth))
        record = {"file": item.filename, "age": item.age, "gender": "female" if item.gender == 1 else "male",
                  "groups": groups_of(item, turn), "truth": truth}
        for key, query in (("default", ""), ("haar", "?detector=haar")):
            record[key] = read_scene(client, query, data, truth, item.filename)
        if args.paired:
            other = truth | {"roll": 0.0 if turn else other_roll}
            record["default_other_pose"] = read_scene(client, "", to_jpeg(paste(canvas, chip, other)), other, item.filename)
        # The default path's boxes read without turning the faces upright (same boxes, same models),
        # and turned only where the roll found is at least DEADBAND degrees.
        face = record["default"]["face"]
        unturned = deadband = None
        if face is not None:
            box = tuple(face["box"][k] for k in "xywh")
            decoded = decode_image(data, max_bytes=len(data) + 1, max_pixels=1 << 30)
            boxes, rolls = locate_faces(decoded, "blazeface")
            roll = next((r for b, r in zip(boxes, rolls) if b == box), None)
            out = predictor.predict(predictor.prepare(decoded, [box]), "accurate")[0]
            unturned = {"age": out["age"], "gender": out["gender"]["label"], "box": face["box"]}
            deadband = unturned if roll is not None and abs(roll) < DEADBAND else face
            record["roll_found"] = roll
        record["default_not_turned"] = {"face": unturned, "false_boxes": record["default"]["false_boxes"]}
        record["default_deadband"] = {"face": deadband, "false_boxes": record["default"]["false_boxes"]}
        records.append(record)
        if (i + 1) % 100 == 0:
            print(f"{i + 1}/{len(items)} scenes, {time.time() - started:.0f} s", flush=True)
    rows = {"blazeface, turned upright (default)": "default",
            "blazeface, not turned": "default_not_turned",
            f"blazeface, turned only from {DEADBAND:g} degrees": "default_deadband",
            "haar (detector=haar)": "haar"}
    rolls = [(r["truth"]["roll"], r["roll_found"]) for r in records if r.get("roll_found") is not None]
    errors = np.abs([found - true for true, found in rolls])
    report = {"split": "val", "roll_error_deg": {"median": round(float(np.median(errors)), 2),
                                                 "p90": round(float(np.percentile(errors, 90)), 2)}, "scenes": len(records), "scene": f"{WIDTH}x{HEIGHT}, one face of {SIDES[0]}-{SIDES[1]} px, "
              f"every other one turned by {ROLLS[0]}-{ROLLS[1]} degrees", "seed": args.seed,
              "results": {name: summarise(records, key) for name, key in rows.items()}}
    if args.paired:
        report["paired_poses"] = paired_summary(records)
    print(json.dumps(report["results"] | {"paired_poses": report.get("paired_poses")}, indent=1))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=1))
    print("wrote", args.out)


if __name__ == "__main__":
    main()
