"""--mixed-bfloat16: the trunk trains in bfloat16; the heads, the weights and every file stay float32."""
import json

import numpy as np
import pytest


def test_mixed_twin_computes_the_trunk_in_bfloat16_and_the_heads_in_float32_with_the_same_weights():
    from training import models
    from training.precision import float32_config, mixed_twin, policies_in
    network = models.AGE_GENDER_ARCHS["visage-aa"](64, age_head="distribution")
    twin = mixed_twin(network)
    dtypes = {layer.name: layer.compute_dtype for layer in twin.layers if layer.__class__.__name__ != "InputLayer"}
    convs = [n for n in dtypes if twin.get_layer(n).__class__.__name__ == "Conv2D"]
    heads = [n for n in dtypes if twin.get_layer(n).__class__.__name__ in ("Dense", "Rescaling")]
    assert convs and all(dtypes[n] == "bfloat16" for n in convs)
    assert {"age_bins", "age_expectation", "age", "gender"} <= set(heads)
    assert all(dtypes[n] == "float32" for n in heads)
    assert all(v.dtype == "float32" for v in twin.weights)                   # the variables stay float32
    for a, b in zip(network.get_weights(), twin.get_weights()):
        np.testing.assert_array_equal(a, b)
    faces = np.random.default_rng(0).uniform(0, 1, (4, 64, 64, 1)).astype(np.float32)
    exact, rounded = network.predict(faces, verbose=0), twin.predict(faces, verbose=0)
    assert rounded["age"].dtype == np.float32 and rounded["gender"].dtype == np.float32
    np.testing.assert_allclose(rounded["age"], exact["age"], atol=0.5)       # bfloat16 keeps ~3 digits
    assert not np.array_equal(rounded["age"], exact["age"])                  # and it does round
    back = network.__class__.from_config(float32_config(twin.get_config()))
    assert policies_in(back.get_config()) == {"float32"}


def test_auto_uses_bfloat16_only_where_the_cpu_lists_bfloat16_units():
    from training.precision import cpu_has_bfloat16, use_mixed_bfloat16
    amx = "processor\t: 0\nflags\t\t: fpu sse avx2 avx512f amx_bf16 amx_tile\n"
    avx2 = "processor\t: 0\nflags\t\t: fpu sse avx2 fma\n"
    arm = "processor\t: 0\nFeatures\t: fp asimd bf16\n"
    assert cpu_has_bfloat16(amx) and not cpu_has_bfloat16(avx2) and not cpu_has_bfloat16(arm)
    assert use_mixed_bfloat16("on") and not use_mixed_bfloat16("off")
    assert use_mixed_bfloat16("auto") == cpu_has_bfloat16()
    with pytest.raises(ValueError, match="one of auto, on, off"):
        use_mixed_bfloat16("yes")


def test_a_keras_file_written_from_a_mixed_twin_loads_as_float32(tmp_path):
    import keras

    from training import models
    from training.precision import file_policies, mixed_twin, store_keras_float32
    twin = mixed_twin(models.AGE_GENDER_ARCHS["visage"](64))
    twin.compile(optimizer="adam", loss={"age": "mae", "gender": "binary_crossentropy"})
    faces = np.random.default_rng(1).uniform(0, 1, (8, 64, 64, 1)).astype(np.float32)
    twin.fit(faces, {"age": np.full((8, 1), 30.0), "gender": np.ones((8, 1))}, epochs=1, verbose=0)
    twin.save(tmp_path / "last.keras")
    assert "mixed_bfloat16" in file_policies(tmp_path / "last.keras")
    store_keras_float32(tmp_path / "last.keras")
    assert file_policies(tmp_path / "last.keras") == {"float32"}
    loaded = keras.models.load_model(tmp_path / "last.keras")                 # optimizer state and all
    assert all(layer.compute_dtype == "float32" for layer in loaded.layers)
    assert loaded.optimizer.iterations.numpy() == twin.optimizer.iterations.numpy()
    for a, b in zip(loaded.get_weights(), twin.get_weights()):
        np.testing.assert_array_equal(a, b)
    json.dumps(loaded.get_config())


def test_every_emotion_network_keeps_its_softmax_in_float32():
    from training import models
    from training.precision import mixed_twin
    for arch, build in models.EMOTION_ARCHS.items():
        twin = mixed_twin(build())
        assert twin.get_layer("emotion").compute_dtype == "float32", arch
        assert any(layer.compute_dtype == "bfloat16" for layer in twin.layers), arch
