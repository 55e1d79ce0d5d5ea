"""Model files with float16 weights read back as float32 (training/weights_float16.py)."""
import json

import numpy as np
import pytest

keras = pytest.importorskip("keras")

from training.common import export_inference_model  # noqa: E402
from training.weights_float16 import (keras_stores_float16, restore_onnx_float32, round_to_float16,  # noqa: E402
                                      store_keras_float16, store_onnx_float16)


def small_model(seed: int = 0):
    keras.utils.set_random_seed(seed)
    inputs = keras.Input((12, 12, 1), name="face")
    x = keras.layers.Conv2D(8, 3, name="conv")(inputs)
    x = keras.layers.BatchNormalization(name="bn")(x)
    x = keras.layers.GlobalAveragePooling2D()(x)
    return keras.Model(inputs, keras.layers.Dense(7, activation="softmax", name="emotion")(x), name="small")


def test_a_float16_keras_file_is_smaller_and_gives_back_the_rounded_weights(tmp_path):
    model = small_model()
    export_inference_model(model, tmp_path / "f32.keras")
    export_inference_model(model, tmp_path / "f16.keras", float16=True)
    assert keras_stores_float16(tmp_path / "f16.keras") and not keras_stores_float16(tmp_path / "f32.keras")
    assert (tmp_path / "f16.keras").stat().st_size < (tmp_path / "f32.keras").stat().st_size

    loaded = keras.models.load_model(tmp_path / "f16.keras", compile=False)
    round_to_float16(model)
    for got, want in zip(loaded.get_weights(), model.get_weights()):
        assert got.dtype == np.float32
        np.testing.assert_array_equal(got, want)
    x = np.random.default_rng(0).random((3, 12, 12, 1), np.float32)
    np.testing.assert_allclose(loaded.predict(x, verbose=0), model.predict(x, verbose=0), atol=1e-6)


def test_store_keras_float16_keeps_small_tensors_and_reads_the_same_twice(tmp_path):
    path = tmp_path / "m.keras"
    export_inference_model(small_model(), path, float16=True)
    first = [w.copy() for w in keras.models.load_model(path, compile=False).get_weights()]
    store_keras_float16(path)       # again: nothing left to halve, the same numbers
    for got, want in zip(keras.models.load_model(path, compile=False).get_weights(), first):
        np.testing.assert_array_equal(got, want)


def matmul_graph(weight: np.ndarray, bias: np.ndarray):
    from onnx import TensorProto, helper, numpy_helper
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["x", "w"], ["xw"]), helper.make_node("Add", ["xw", "b"], ["y"])], "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [None, weight.shape[0]])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [None, weight.shape[1]])],
        [numpy_helper.from_array(weight, "w"), numpy_helper.from_array(bias, "b")])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def run(proto, x):
    import onnxruntime as ort
    session = ort.InferenceSession(proto.SerializeToString(), providers=["CPUExecutionProvider"])
    return session.run(None, {"x": x})[0]


def test_an_onnx_graph_stores_its_weights_as_float16_and_gives_them_back():
    pytest.importorskip("onnxruntime")
    from onnx import TensorProto, numpy_helper
    rng = np.random.default_rng(0)
    weight, bias = rng.normal(size=(32, 4)).astype(np.float32), rng.normal(size=4).astype(np.float32)
    x = rng.random((5, 32), dtype=np.float32)
    proto = matmul_graph(weight, bias)
    assert store_onnx_float16(proto) == 1                   # the 4-element bias stays float32
    types = {init.name: init.data_type for init in proto.graph.initializer}
    assert types == {"w__float16": TensorProto.FLOAT16, "b": TensorProto.FLOAT}
    rounded = weight.astype(np.float16).astype(np.float32)
    np.testing.assert_allclose(run(proto, x), x @ rounded + bias, atol=1e-5)

    assert restore_onnx_float32(proto) == 1
    initializers = {init.name: numpy_helper.to_array(init) for init in proto.graph.initializer}
    assert set(initializers) == {"w", "b"} and initializers["w"].dtype == np.float32
    np.testing.assert_array_equal(initializers["w"], rounded)
    assert [node.op_type for node in proto.graph.node] == ["MatMul", "Add"]


def test_export_runtime_halves_the_copy_of_a_float16_model(tmp_path):
    """The ONNX copy of a .keras file with float16 weights stores them so too and answers as Keras."""
    pytest.importorskip("tf2onnx")
    from app.pipeline.predict import load_predictor
    from conftest import write_tiny_models
    from training.export_runtime import main
    folder = write_tiny_models(tmp_path / "models")
    store_keras_float16(folder / "emotion.keras")
    assert main([str(folder), "--models", "emotion"]) == 0
    assert "runtime" not in json.loads((folder / "age_gender.json").read_text())     # only the card asked for
    assert main([str(folder)]) == 0
    entries = {name: json.loads((folder / f"{name}.json").read_text())["runtime"]["onnx"]
               for name in ("emotion", "age_gender")}
    assert entries["emotion"]["weights_stored_as"].startswith("float16")
    assert entries["age_gender"]["weights_stored_as"] == "float32"
    from training.export_runtime import TOLERANCE_FLOAT16
    assert entries["emotion"]["max_abs_diff_to_keras_on_random_inputs"] <= TOLERANCE_FLOAT16
    served = {m.card.name: m.runtime for m in load_predictor(folder).models}
    assert served["emotion"] == "onnxruntime"
