"""Time the shipped models under TensorFlow (today's tf.function), ONNX Runtime and LiteRT, one thread.

    pip install -r bench/requirements-runtimes.txt    # LiteRT (ONNX Runtime and tf2onnx: requirements.txt)
    python bench/measure_runtimes.py [--repeats 200] [--out reports/model_runtimes.json]

Converts each models/*.keras in memory (tf2onnx for ONNX, TensorFlow's TFLite converter for LiteRT,
both from the same traced function the app serves), checks the outputs agree on random inputs, and
prints median ms per call at batch 1, 4 and 10 (10 = the accurate profile's views of one face),
the three runtimes interleaved so that they share the machine's load.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path

for var in ("TF_NUM_INTRAOP_THREADS", "TF_NUM_INTEROP_THREADS", "OMP_NUM_THREADS"):
    os.environ.setdefault(var, "1")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402


def runners(model, size: int, names: list[str]):
    import tensorflow as tf
    spec = tf.TensorSpec((None, size, size, 1), tf.float32, name="face")
    fn = tf.function(lambda x: model(x, training=False), input_signature=[spec])

    def tf_run(x):
        out = fn(x)
        return {k: np.asarray(v) for k, v in out.items()} if isinstance(out, dict) else {names[0]: np.asarray(out)}

    import onnxruntime as ort
    import tf2onnx
    proto, _ = tf2onnx.convert.from_function(fn, input_signature=[spec], opset=17)
    options = ort.SessionOptions()
    options.intra_op_num_threads = options.inter_op_num_threads = 1
    session = ort.InferenceSession(proto.SerializeToString(), options, providers=["CPUExecutionProvider"])
    onnx_input = session.get_inputs()[0].name
    onnx_outputs = [o.name for o in session.get_outputs()]

    def onnx_run(x):
        values = session.run(None, {onnx_input: x})
        return {match(name, names): v for name, v in zip(onnx_outputs, values)}

    # Through a SavedModel: converting the traced function directly keeps Keras 3's variables as
    # resource reads, which LiteRT leaves uninitialised (NaN outputs).
    import tempfile
    import keras
    from ai_edge_litert.interpreter import Interpreter
    with tempfile.TemporaryDirectory() as folder:
        archive = keras.export.ExportArchive()
        archive.track(model)
        archive.add_endpoint("serve", lambda x: model(x, training=False), input_signature=[spec])
        archive.write_out(folder, verbose=False)
        tflite = tf.lite.TFLiteConverter.from_saved_model(folder).convert()
    runner = Interpreter(model_content=tflite, num_threads=1).get_signature_runner()
    lite_input = list(runner.get_input_details())[0]

    def lite_run(x):
        out = runner(**{lite_input: x})
        return {match(k, names): v for k, v in out.items()}

    return {"tf.function": tf_run, "onnxruntime": onnx_run, "litert": lite_run}, {
        "onnx_bytes": len(proto.SerializeToString()), "tflite_bytes": len(tflite)}


def match(name: str, names: list[str]) -> str:
    """Output tensor name → the card's output name (converters keep it somewhere in the name)."""
    if len(names) == 1:
        return names[0]
    hits = [n for n in names if n in name]
    if len(hits) != 1:
        raise ValueError(f"cannot tell which of {names} the output {name!r} is")
    return hits[0]


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--repeats", type=int, default=200)
    p.add_argument("--models-dir", default=str(ROOT / "models"))
    p.add_argument("--out", type=Path, default=ROOT / "reports" / "model_runtimes.json")
    args = p.parse_args(argv)
    import keras
    report = {"command": "python bench/measure_runtimes.py " + " ".join(argv or sys.argv[1:]),
              "threads": 1, "cpu_count": os.cpu_count(), "models": {}}
    rng = np.random.default_rng(0)
    for name in ("emotion", "age_gender"):
        card = json.loads((Path(args.models_dir) / f"{name}.json").read_text())
        size, names = card["input"]["size"], list(card["outputs"])
        model = keras.models.load_model(Path(args.models_dir) / card["file"], compile=False)
        ways, sizes = runners(model, size, names)
        entry = {"version": card["version"], **sizes, "batches": {}}
        for batch in (1, 4, 10):
            x = rng.random((batch, size, size, 1), dtype=np.float32)
            reference = ways["tf.function"](x)
            diffs = {}
            for way, run in ways.items():
                out = run(x)
                diffs[way] = max(float(np.max(np.abs(out[k] - reference[k]))) for k in names)
                for _ in range(5):
                    run(x)
            times = {way: [] for way in ways}
            for _ in range(args.repeats):
                for way, run in ways.items():
                    t0 = time.perf_counter()
                    run(x)
                    times[way].append((time.perf_counter() - t0) * 1000)
            ms = {way: round(statistics.median(t), 3) for way, t in times.items()}
            entry["batches"][str(batch)] = {
                "median_ms": ms, "ratio_to_tf_function": {w: round(v / ms["tf.function"], 3) for w, v in ms.items()},
                "max_abs_diff_to_tf_function": diffs}
            print(name, batch, ms, diffs, flush=True)
        report["models"][name] = entry
    report["load_average_at_end"] = [round(v, 2) for v in os.getloadavg()]
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
