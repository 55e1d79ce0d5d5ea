"""Write an ONNX copy of each model beside its .keras file, for the app's faster model calls.

    python -m training.export_runtime models/      # after every change to a models/*.keras
    python -m training.export_runtime models/ --models emotion     # only that one
    python -m training.export_runtime models/ --force              # every card, fresh copies too

The .keras file stays the source of truth. For each card in the folder this writes <name>.onnx
(tf2onnx, from the same inference function the app traces) and records it in the card:
"runtime": {"onnx": {"file", "source_sha256", ...}}. The app (app/pipeline/predict.py) serves
the ONNX file with ONNX Runtime only while source_sha256 is the .keras file's hash, and falls
back to Keras otherwise, so a retrained model is never answered by a stale copy; the export checks
the copy against Keras on random inputs and refuses to record one that disagrees.
It also drops the card's int8 copy, made from the old float copy: run training.quantize_runtime again.
A card whose copy was made from its current .keras file is left as it is (tf2onnx does not write the same
bytes twice, so exporting it again would only drop its checked int8 copy); --force exports it anyway.
Where the .keras file stores its weights as float16 (training/weights_float16.py), so does the copy.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

OPSET = 17
TOLERANCE = 1e-4   # largest difference to Keras accepted on the check inputs (probabilities)
# With float16 weights: tf2onnx folds each BatchNorm into its convolution, and the folded weights are rounded
# to float16 again (the 3-network emotion model on PublicTest's 3,589 faces, both views: largest difference
# 1.4e-3 in a probability, every label the same; 2.9e-4 on the random check inputs).
TOLERANCE_FLOAT16 = 5e-3
# Age in years: a one-year-bins head reads the age as the sum of 101 probabilities times 0-100 years, which
# scales their rounding up to a hundredfold. The 3-network float16 model of 2026-12-05 (one view): 0.0073
# years on the check inputs; on UTKFace's 2,044 val faces at most 0.165 years, mean 0.016, p99 0.078, and
# val MAE 5.0983 against Keras's 5.0986 (P(female): at most 0.0045, no label changed). The app shows whole years.
TOLERANCE_YEARS = 0.01
TOLERANCE_YEARS_FLOAT16 = 0.25


def has_fresh_copy(card_path: Path) -> bool:
    """Whether the card records an ONNX copy, present on disk, made from its current .keras file."""
    from app.pipeline.predict import file_sha256
    card = json.loads(card_path.read_text())
    entry = (card.get("runtime") or {}).get("onnx") or {}
    return ((card_path.parent / str(entry.get("file", ""))).is_file() and "file" in card
            and entry.get("source_sha256") == file_sha256(card_path.parent / card["file"]))


def export_one(card_path: Path) -> dict:
    import keras
    import numpy as np
    import onnxruntime as ort
    import tensorflow as tf
    import tf2onnx

    from app.pipeline.predict import ModelCard, file_sha256
    from training.weights_float16 import keras_stores_float16, storage_label, store_onnx_float16

    card_json = json.loads(card_path.read_text())
    card = ModelCard.from_dict(card_json)
    keras_path = card_path.parent / card.file
    model = keras.models.load_model(keras_path, compile=False)
    spec = tf.TensorSpec((None, card.size, card.size, 1), tf.float32, name="face")
    fn = tf.function(lambda x: model(x, training=False), input_signature=[spec])
    proto, _ = tf2onnx.convert.from_function(fn, input_signature=[spec], opset=OPSET)
    rename_outputs(proto, list(card.outputs))
    halved = store_onnx_float16(proto) if keras_stores_float16(keras_path) else 0   # as small as the .keras file

    x = np.random.default_rng(0).random((4, card.size, card.size, 1), dtype=np.float32)
    session = ort.InferenceSession(proto.SerializeToString(), providers=["CPUExecutionProvider"])
    got = dict(zip([o.name for o in session.get_outputs()], session.run(None, {session.get_inputs()[0].name: x})))
    want = fn(x)
    want = {k: np.asarray(v) for k, v in want.items()} if isinstance(want, dict) else {card.file: np.asarray(want)}
    if len(want) == 1:
        want = {list(card.outputs)[0]: next(iter(want.values()))}
    diffs = {k: float(np.max(np.abs(got[k] - want[k]))) for k in card.outputs}
    for k, diff in diffs.items():
        tolerance = copy_tolerance(bool(halved), in_years=card.outputs[k].get("unit") == "years")
        if not diff <= tolerance:
            raise SystemExit(f"{keras_path}: the ONNX copy's {k} differs from Keras by {diff:.2g} (> {tolerance}); "
                             "not written")

    onnx_path = keras_path.with_suffix(".onnx")
    onnx_path.write_bytes(proto.SerializeToString())
    card_json["runtime"] = {"onnx": {
        "file": onnx_path.name, "source": card.file, "source_sha256": file_sha256(keras_path),
        "made_by": f"python -m training.export_runtime (tf2onnx {tf2onnx.__version__}, opset {OPSET})",
        "max_abs_diff_to_keras_on_random_inputs": max(diffs.values()),
        "max_abs_diff_to_keras_on_random_inputs_by_output": diffs,
        "weights_stored_as": storage_label(bool(halved))}}
    card_path.write_text(json.dumps(card_json, indent=2) + "\n")
    return card_json["runtime"]["onnx"]


def copy_tolerance(float16: bool, in_years: bool = False) -> float:
    """The largest difference to Keras an ONNX copy may have in an output (a probability, or an age in years),
    its weights stored as float16 or not."""
    if in_years:
        return TOLERANCE_YEARS_FLOAT16 if float16 else TOLERANCE_YEARS
    return TOLERANCE_FLOAT16 if float16 else TOLERANCE


def rename_outputs(proto, names: list[str]) -> None:
    """Name the graph's outputs after the card's outputs (tf2onnx names them after TF tensors)."""
    outputs = list(proto.graph.output)
    if len(outputs) == 1:
        mapping = {outputs[0].name: names[0]}
    else:
        mapping = {}
        for out in outputs:
            hits = [n for n in names if n in out.name]
            if len(hits) != 1:
                raise SystemExit(f"cannot tell which of {names} the ONNX output {out.name!r} is")
            mapping[out.name] = hits[0]
    for node in proto.graph.node:
        node.output[:] = [mapping.get(o, o) for o in node.output]
        node.input[:] = [mapping.get(i, i) for i in node.input]
    for out in outputs:
        out.name = mapping[out.name]


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m training.export_runtime", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("models_dir", type=Path, help="folder with <name>.json cards and their .keras files")
    p.add_argument("--models", default="", help="only these cards (comma-separated names; default: every card)")
    p.add_argument("--force", action="store_true", help="export cards whose copy is already fresh too")
    args = p.parse_args(argv)
    only = set(filter(None, args.models.split(",")))
    cards = sorted(c for c in args.models_dir.glob("*.json") if "file" in json.loads(c.read_text())
                   and (not only or c.stem in only))
    if not cards:
        print(f"no model cards in {args.models_dir}", file=sys.stderr)
        return 1
    for card_path in cards:
        if not args.force and has_fresh_copy(card_path):
            print(f"{card_path}: its ONNX copy was made from this .keras file; left as it is (--force exports it)")
            continue
        written = export_one(card_path)
        print(f"{card_path.parent / written['file']}: from {written['source']} "
              f"(max diff {written['max_abs_diff_to_keras_on_random_inputs']:.2g})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
