"""Write an int8 copy of each model's ONNX copy, calibrated on training faces, checked on validation.

    python -m training.quantize_runtime models/ --utk-dir ../shared/data/utkface --fer-dir ../shared/data/fer2013

Run it after `python -m training.export_runtime models/` (which drops the int8 entry from the cards:
a copy of an old float copy is never served). For each card with a fresh float ONNX copy this:
1. cuts --calibration (500) training faces the way the app cuts them (its default detector, faces turned
   upright), in every test-time view the card averages, and quantizes the float copy with ONNX
   Runtime's static quantization (QDQ; int8 weights per channel, uint8 activations, min-max ranges);
2. reads the whole validation split (UTKFace val; FER2013 PublicTest as crops and as photos) through
   both copies as the app serves them (views, corrections, labels) and keeps the int8 copy only if it
   clears the bars below: accuracy as the float copy's, and each face's answer close to the float
   copy's (an average can hide faces that moved both ways);
3. reads the test split once (UTKFace test; FER2013 PrivateTest) through both copies, and times one
   face (accurate profile, one thread) with each copy in the same run;
4. records it all in the card as "runtime": {"onnx_int8": {...}}, which the app serves first
   (app/pipeline/predict.py; VISAGE_INT8_MODELS=0 serves the float copy).
A card whose int8 copy was made from its current float copy is left as it is; --force makes it again.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

CALIBRATION = 500            # training faces (before views)
SEED = 0
# Bars on val: the int8 copy may lose at most this much accuracy against the float copy ...
MAX_AGE_MAE_LOSS = 0.05      # years
MAX_ACCURACY_LOSS = 0.003    # gender accuracy; emotion PublicTest accuracy (crops and photos)
# ... and per face: 99% of ages within this of the float copy's, labels the same on this share of faces.
# (ONNX Runtime's reduce_range, 7-bit weights, cleared the two bars above and missed these: every age
# 0.8 years lower on average, p99 3.1 years off; on val, 2026-12-03, docs/speed.md.)
MAX_AGE_DIFF_P99 = 1.0       # years
MIN_LABEL_AGREEMENT = 0.99   # gender and emotion labels


def served(model, x: np.ndarray) -> dict[str, np.ndarray]:
    """What the app answers for each face (accurate profile): the age in years, P(female), class probabilities."""
    from app.pipeline.predict import interpret
    out = {}
    # 32 faces (320 views) a call: the anti-aliased trunk keeps full-resolution maps, and 256 faces took 20 GB
    parts = [model(x[i:i + 32], "accurate") for i in range(0, len(x), 32)]
    for name, spec in model.card.outputs.items():
        values = np.concatenate([p[name] for p in parts]).reshape(len(x), -1)
        if spec["kind"] == "regression":
            out[name] = np.array([interpret(name, spec, v)[name] for v in values])
        else:
            out[name] = values
    return out


def utk_inputs(data_dir: Path, items: list, size: int, margin: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(x, age, gender) of the faces the app finds in these UTKFace chips (data_utk.app_path_crop)."""
    from training.data_utk import app_path_crop
    xs, ages, genders = [], [], []
    for item in items:
        x, found = app_path_crop((Path(data_dir) / "UTKFace" / item.filename).read_bytes(), size, margin)
        if found:
            xs.append(x)
            ages.append(item.age)
            genders.append(item.gender)
    return np.stack(xs).astype(np.float32), np.array(ages, float), np.array(genders, int)


def labels(out: dict) -> dict[str, np.ndarray]:
    """Each face's label per classifying output: female (P >= 0.5) for gender, the top class for emotion."""
    return {k: (v[:, 0] >= 0.5) if v.shape[1] == 1 else v.argmax(1) for k, v in out.items() if v.ndim == 2}


def age_gender_scores(model, x, age, gender) -> tuple[dict, dict]:
    """(scores, the served answers they come from)."""
    out = served(model, x)
    return {"faces": int(len(x)), "age_mae": float(np.mean(np.abs(out["age"] - age))),
            "gender_accuracy": float(np.mean(labels(out)["gender"] == (gender == 1)))}, out


def emotion_scores(model, crops, photos) -> tuple[dict, dict]:
    """Accuracy on the split's images as crops, and as photos through the app's path (faces found)."""
    (x, y), (px, found) = crops, photos
    out = {"emotion": np.concatenate([served(model, x)["emotion"], served(model, px[found])["emotion"]])}
    predicted = labels(out)["emotion"]
    return {"images": int(len(x)), "accuracy_crops": float(np.mean(predicted[:len(x)] == y)),
            "faces_found_in_photos": int(found.sum()),
            "accuracy_photos": float(np.mean(predicted[len(x):] == y[found]))}, out


def agreement(float_out: dict, int8_out: dict) -> dict:
    """How closely the int8 copy's answers follow the float copy's, face by face."""
    found = {}
    if "age" in float_out:
        diff = int8_out["age"] - float_out["age"]
        found |= {"age_mean_difference_years": round(float(diff.mean()), 3),
                  "age_abs_difference_p99_years": round(float(np.quantile(np.abs(diff), 0.99)), 3),
                  "age_abs_difference_max_years": round(float(np.abs(diff).max()), 3)}
    a, b = labels(float_out), labels(int8_out)
    return found | {f"{k}_label_agreement": round(float(np.mean(a[k] == b[k])), 4) for k in a}


def scored(score, float_model, int8_model, data) -> tuple[dict, dict]:
    """({"float32": scores, "int8": scores}, agreement) on one split."""
    (f32, f32_out), (i8, i8_out) = score(float_model, *data), score(int8_model, *data)
    return {"float32": f32, "int8": i8}, agreement(f32_out, i8_out)


def model_data(name: str, card, args) -> dict:
    """Calibration inputs and the val and test sets of one model, as the app would cut them."""
    rng = np.random.default_rng(SEED)
    if name == "age_gender":
        from training.data_utk import list_items
        items = list_items(args.utk_dir)
        limit = (lambda s: s[:args.limit]) if args.limit else (lambda s: s)
        train = [items["train"][i] for i in rng.choice(len(items["train"]), min(args.calibration, len(items["train"])),
                                                       replace=False)]
        return {"calibration": utk_inputs(args.utk_dir, train, card.size, card.margin)[0],
                "val": utk_inputs(args.utk_dir, limit(items["val"]), card.size, card.margin),
                "test": lambda: utk_inputs(args.utk_dir, limit(items["test"]), card.size, card.margin)}
    from training import data_fer
    cache_dir = None if args.limit else args.cache_dir
    fer = data_fer.load_fer(args.fer_dir, cache_dir, limit=args.limit, splits=("train", "public"))
    train = fer["train"]
    pick = rng.choice(len(train.paths), min(args.calibration, len(train.paths)), replace=False)
    x, found = data_fer.app_path_inputs(args.fer_dir, data_fer.FerSplit(train.x[pick], train.y[pick],
                                                                        [train.paths[i] for i in pick]), card.margin)

    def split_inputs(split):
        return (split.x, split.y), data_fer.app_path_inputs(args.fer_dir, split, card.margin)

    def test():     # PrivateTest is read only once the int8 copy has cleared its bars
        return split_inputs(data_fer.load_fer(args.fer_dir, cache_dir, limit=args.limit, splits=("private",))["private"])
    return {"calibration": x[found], "val": split_inputs(fer["public"]), "test": test}


def quantize(float_path: Path, out_path: Path, input_name: str, calibration: np.ndarray) -> None:
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    class Reader(CalibrationDataReader):
        def __init__(self):
            self.batches = iter(calibration[i:i + 16] for i in range(0, len(calibration), 16))

        def get_next(self):
            batch = next(self.batches, None)
            return None if batch is None else {input_name: batch}

    import onnx

    from training.weights_float16 import restore_onnx_float32
    with tempfile.TemporaryDirectory() as tmp:
        proto = onnx.load(str(float_path))
        restore_onnx_float32(proto)      # weights stored as float16 are quantized from their float32 values
        float32_path, prepared = Path(tmp) / "float32.onnx", Path(tmp) / "prepared.onnx"
        onnx.save(proto, str(float32_path))
        quant_pre_process(str(float32_path), str(prepared), skip_symbolic_shape=True)
        quantize_static(str(prepared), str(out_path), Reader(), quant_format=QuantFormat.QDQ, per_channel=True,
                        activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8,
                        nodes_to_exclude=kept_in_float(onnx.load(str(prepared))))


# An age read from one-year bins (--age-head distribution) is a sum of 101 probabilities times 0-100 years:
# int8 would round each year to steps of 0.79 and each probability to steps of 1/255. Those nodes stay float.
FLOAT_ONLY_LAYERS = ("/age_bins", "/age_expectation")


# The anti-aliased trunk's blur (two 2x2 average pools before each stride, --arch visage-aa): quantized, the
# served ages moved by 1.3 years or more on 1% of val faces (the bar is 1.0); kept in float, 0.4.
FLOAT_ONLY_OPS = ("AveragePool",)


def kept_in_float(proto) -> list[str]:
    return [n.name for n in proto.graph.node
            if n.op_type in FLOAT_ONLY_OPS or any(layer in n.name for layer in FLOAT_ONLY_LAYERS)]


def one_face_ms(model, size: int, calls: int = 200) -> float:
    x = np.random.default_rng(SEED).random((1, size, size, 1), dtype=np.float32)
    model(x, "accurate")
    times = []
    for _ in range(calls):
        start = time.perf_counter()
        model(x, "accurate")
        times.append(time.perf_counter() - start)
    return round(1000 * float(np.median(times)), 3)


def cleared(name: str, f32: dict, i8: dict, agree: dict) -> list[str]:
    """The bars the int8 copy misses on val (empty: it may be served)."""
    missed = [f"{k} {v:.4f} < {MIN_LABEL_AGREEMENT}" for k, v in agree.items()
              if k.endswith("_label_agreement") and v < MIN_LABEL_AGREEMENT]
    if agree.get("age_abs_difference_p99_years", 0) > MAX_AGE_DIFF_P99:
        missed.append(f"ages differ by {agree['age_abs_difference_p99_years']} years or more on 1% of faces "
                      f"(> {MAX_AGE_DIFF_P99})")
    if name == "age_gender":
        if i8["age_mae"] > f32["age_mae"] + MAX_AGE_MAE_LOSS:
            missed.append(f"age MAE {i8['age_mae']:.3f} > {f32['age_mae']:.3f} + {MAX_AGE_MAE_LOSS}")
        if i8["gender_accuracy"] < f32["gender_accuracy"] - MAX_ACCURACY_LOSS:
            missed.append(f"gender {i8['gender_accuracy']:.4f} < {f32['gender_accuracy']:.4f} - {MAX_ACCURACY_LOSS}")
    else:
        for key in ("accuracy_crops", "accuracy_photos"):
            if i8[key] < f32[key] - MAX_ACCURACY_LOSS:
                missed.append(f"{key} {i8[key]:.4f} < {f32[key]:.4f} - {MAX_ACCURACY_LOSS}")
    return missed


def has_fresh_int8_copy(card_path: Path) -> bool:
    """Whether the card records an int8 copy, present on disk, made from its current float ONNX copy, itself
    made from the current .keras file."""
    from app.pipeline.predict import file_sha256
    from training.export_runtime import has_fresh_copy
    runtime = json.loads(card_path.read_text()).get("runtime") or {}
    onnx, int8 = runtime.get("onnx") or {}, runtime.get("onnx_int8") or {}
    int8_path = card_path.parent / str(int8.get("file", ""))
    return (has_fresh_copy(card_path) and int8_path.is_file() and int8.get("source_sha256") == onnx["source_sha256"]
            and int8.get("float_copy_sha256") == file_sha256(card_path.parent / onnx["file"]))


def quantize_one(card_path: Path, args) -> dict | None:
    import onnxruntime as ort

    from app.pipeline.predict import LoadedModel, ModelCard, file_sha256, session_options
    from training.export_runtime import has_fresh_copy

    card_json = json.loads(card_path.read_text())
    name, card = card_json["name"], ModelCard.from_dict(card_json)
    entry = (card_json.get("runtime") or {}).get("onnx")
    if not has_fresh_copy(card_path):
        raise SystemExit(f"{card_path}: no fresh float ONNX copy; run python -m training.export_runtime first")
    float_path = card_path.parent / entry["file"]
    int8_path = float_path.with_name(f"{float_path.stem}.int8.onnx")
    float_model = LoadedModel(card, None, ort.InferenceSession(str(float_path), session_options(),
                                                               providers=["CPUExecutionProvider"]))
    data = model_data(name, card, args)
    calibration = np.concatenate(float_model.views(data["calibration"], "accurate"))
    with tempfile.TemporaryDirectory() as tmp:
        candidate = Path(tmp) / int8_path.name
        quantize(float_path, candidate, float_model._input_name, np.ascontiguousarray(calibration, np.float32))
        int8_model = LoadedModel(card, None, ort.InferenceSession(str(candidate), session_options(),
                                                                  providers=["CPUExecutionProvider"]))
        score = age_gender_scores if name == "age_gender" else emotion_scores
        val, val_agreement = scored(score, float_model, int8_model, data["val"])
        print(f"{name} val: {json.dumps(val)}; int8 against float32, face by face: {json.dumps(val_agreement)}")
        missed = cleared(name, val["float32"], val["int8"], val_agreement)
        if missed:
            print(f"{name}: the int8 copy misses its bars on val ({'; '.join(missed)}): not written, not served")
            if card_json["runtime"].pop("onnx_int8", None):      # an earlier copy goes too: this one decides
                card_path.write_text(json.dumps(card_json, indent=2) + "\n")
            int8_path.unlink(missing_ok=True)
            return None
        test, test_agreement = scored(score, float_model, int8_model, data["test"]())
        print(f"{name} test (read once): {json.dumps(test)}; face by face: {json.dumps(test_agreement)}")
        latency = {"float32": one_face_ms(float_model, card.size), "int8": one_face_ms(int8_model, card.size)}
        int8_path.write_bytes(candidate.read_bytes())
    card_json.setdefault("runtime", {})["onnx_int8"] = {
        "file": int8_path.name, "source": float_path.name, "source_sha256": entry["source_sha256"],
        "float_copy_sha256": file_sha256(float_path),
        "made_by": f"python -m training.quantize_runtime (onnxruntime {ort.__version__} static "
                   "quantization: QDQ, int8 weights per channel, uint8 activations)",
        "calibration": f"{len(data['calibration'])} training-split faces cut by the app's default path, in every view the card "
                       f"averages ({len(calibration)} inputs; seed {SEED})",
        "bars_on_val": {"max_age_mae_loss_years": MAX_AGE_MAE_LOSS, "max_accuracy_loss": MAX_ACCURACY_LOSS,
                        "max_age_abs_difference_p99_years": MAX_AGE_DIFF_P99,
                        "min_label_agreement": MIN_LABEL_AGREEMENT},
        "val": val, "test": test, "agreement_with_float_copy": {"val": val_agreement, "test": test_agreement},
        "latency_ms_single_face_accurate_one_thread": latency | {
            "int8_vs_float32": round(latency["int8"] / latency["float32"], 3)},
    }
    card_path.write_text(json.dumps(card_json, indent=2) + "\n")
    return card_json["runtime"]["onnx_int8"]


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m training.quantize_runtime", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("models_dir", type=Path)
    p.add_argument("--utk-dir", type=Path, required=True, help="UTKFace with splits.csv (age_gender)")
    p.add_argument("--fer-dir", type=Path, required=True, help="FER2013 (emotion)")
    p.add_argument("--cache-dir", type=Path, default=Path("cache"), help="training's FER2013 array cache")
    p.add_argument("--models", default="age_gender,emotion")
    p.add_argument("--limit", type=int, default=0, help="about N val and test images per split (smoke tests)")
    p.add_argument("--calibration", type=int, default=CALIBRATION, help="training faces to calibrate on")
    p.add_argument("--force", action="store_true", help="quantize cards whose int8 copy is already fresh too")
    args = p.parse_args(argv)
    for name in args.models.split(","):
        if not args.force and has_fresh_int8_copy(args.models_dir / f"{name}.json"):
            print(f"{args.models_dir / name}.json: its int8 copy was made from its current float copy; "
                  "left as it is (--force makes it again)")
            continue
        written = quantize_one(args.models_dir / f"{name}.json", args)
        if written:
            t = written["latency_ms_single_face_accurate_one_thread"]
            print(f"{args.models_dir / written['file']}: one face {t['int8']} ms against {t['float32']} ms "
                  f"({t['int8_vs_float32']}x)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
