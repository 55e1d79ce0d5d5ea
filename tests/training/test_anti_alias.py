"""--arch visage-aa: the visage trunk with every halving low-passed first (Zhang 2019)."""
import numpy as np


def test_blur_downsample_is_a_binomial_low_pass_at_stride_two():
    import keras

    from training.models import blur_downsample
    inputs = keras.Input((8, 8, 1))
    blur = keras.Model(inputs, blur_downsample(inputs))
    impulse = np.zeros((1, 8, 8, 1), np.float32)
    impulse[0, 4, 4, 0] = 16.0
    out = np.asarray(blur(impulse))[0, :, :, 0]
    assert out.shape == (4, 4)
    # output j reads input 2j, 2j+1, 2j+2 as 1, 2, 1 (/4 per axis): the impulse at (4, 4) reaches four outputs
    np.testing.assert_allclose(out[1:3, 1:3], [[1.0, 1.0], [1.0, 1.0]], atol=1e-6)
    assert out.sum() == np.float32(4.0) and out[0].sum() == 0 and out[:, 0].sum() == 0
    impulse = np.roll(impulse, -1, axis=(1, 2))                        # at (3, 3): the middle of output (1, 1)
    assert np.asarray(blur(impulse))[0, 1, 1, 0] == np.float32(4.0)
    flat = np.full((1, 8, 8, 1), 0.7, np.float32)
    np.testing.assert_allclose(np.asarray(blur(flat)), 0.7, atol=1e-6)     # no darkening at the border


def test_anti_aliased_network_takes_a_plain_one_weights_and_answers_alike_in_shape():
    from training import models
    plain = models.AGE_GENDER_ARCHS["visage"](96, age_head="distribution")
    smooth = models.AGE_GENDER_ARCHS["visage-aa"](96, age_head="distribution")
    assert plain.count_params() == smooth.count_params()
    smooth.set_weights(plain.get_weights())
    faces = np.random.default_rng(0).uniform(0, 1, (2, 96, 96, 1)).astype(np.float32)
    out = smooth(faces)
    assert out["age"].shape == (2, 1) and out["gender"].shape == (2, 1)
    assert {layer.__class__.__name__ for layer in smooth.layers} >= {"AveragePooling2D"}


def test_a_picture_moved_by_a_pixel_moves_the_anti_aliased_features_less():
    """One pixel of shift changes a plain max-pool stack's pooled features more, for their spread, than the
    low-passed one's (on a real picture: about half as much)."""
    import keras
    from keras import layers
    from skimage import data, transform

    from training.models import blur_downsample

    def stack(anti_alias):
        inputs = keras.Input((32, 32, 1))
        x = inputs
        for _ in range(3):
            x = blur_downsample(layers.MaxPooling2D(2, strides=1, padding="same")(x)) if anti_alias \
                else layers.MaxPooling2D()(x)
        return keras.Model(inputs, x)

    picture = transform.resize(data.camera() / 255.0, (80, 80), anti_aliasing=True)[20:60, 20:60]
    picture = picture[None, :, :, None].astype(np.float32)
    a, b = picture[:, 4:36, 4:36], picture[:, 4:36, 5:37]     # the same picture moved by one pixel
    change = {}
    for aa in (False, True):
        fa, fb = np.asarray(stack(aa)(a)), np.asarray(stack(aa)(b))
        change[aa] = float(np.abs(fa - fb).mean() / fa.std())
    assert change[True] < 0.7 * change[False]


def test_int8_copies_keep_the_blur_in_float():
    """quantize_runtime leaves the blur's average pools out of int8 (quantized, they moved served ages by
    1.3 years on 1% of val faces); convolutions and global pooling stay int8."""
    from onnx import TensorProto, helper

    from training.quantize_runtime import kept_in_float
    nodes = [helper.make_node("Conv", ["x", "w"], ["c"], name="stem/conv"),
             helper.make_node("AveragePool", ["c"], ["b"], name="stem/blur", kernel_shape=[2, 2], strides=[2, 2]),
             helper.make_node("GlobalAveragePool", ["b"], ["y"], name="head/pool")]
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 1, 8, 8])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 1, 1, 1])],
                              [helper.make_tensor("w", TensorProto.FLOAT, [1, 1, 3, 3], [0.1] * 9)])
    assert kept_in_float(helper.make_model(graph)) == ["stem/blur"]
