"""Network definitions, Keras-examples style: one compact build function per model.

The shipped networks are small VGG-style stacks sized for CPU training and
serving; the seed designs are kept as `*_baseline` (trainable with --arch baseline).
"""
from __future__ import annotations

import keras
import numpy as np
from keras import layers


def conv_bn_relu(x, filters: int, kernel: int = 3, stride: int = 1):
    x = layers.Conv2D(filters, kernel, strides=stride, padding="same", use_bias=False)(x)
    x = layers.BatchNormalization()(x)
    return layers.ReLU()(x)


def blur_downsample(x):
    """Halve the resolution through a [1, 2, 1] x [1, 2, 1] / 16 low-pass: two 2x2 means, the second with
    stride 2 (Zhang 2019, "Making convolutional networks shift-invariant again"). Plain striding aliases:
    a face moved by one pixel gives different features. No weights, so a plain network's weights fit."""
    x = layers.AveragePooling2D(2, strides=1, padding="same")(x)
    return layers.AveragePooling2D(2, strides=2)(x)


def vgg_trunk(x, widths, reps, dropout_step: float, stem_stride: int = 1, anti_alias: bool = False):
    """Blocks of `reps[i]` 3x3 conv-BN-ReLU at `widths[i]` filters, each closed by max-pool + dropout.

    stem_stride=2 halves the resolution in the very first conv (cheap on large inputs). anti_alias:
    every halving low-passes first (max-pool and the stem conv at stride 1, then blur_downsample).
    """
    for i, (filters, n) in enumerate(zip(widths, reps)):
        for j in range(n):
            stride = stem_stride if i == j == 0 else 1
            x = conv_bn_relu(x, filters, stride=1 if anti_alias else stride)
            if anti_alias and stride == 2:
                x = blur_downsample(x)
        if anti_alias:
            x = blur_downsample(layers.MaxPooling2D(2, strides=1, padding="same")(x))
        else:
            x = layers.MaxPooling2D()(x)
        x = layers.Dropout(dropout_step * (i + 1))(x)
    return layers.GlobalAveragePooling2D()(x)


def build_emotion_model(size=48, n_classes=7, widths=(24, 48, 96, 192), reps=(1, 2, 2, 2)):
    inputs = keras.Input((size, size, 1), name="face")
    x = vgg_trunk(inputs, widths, reps, dropout_step=0.05)
    x = layers.Dense(128, activation="relu")(x)
    x = layers.Dropout(0.4)(x)
    outputs = layers.Dense(n_classes, activation="softmax", name="emotion")(x)
    return keras.Model(inputs, outputs, name="visage_emotion")


def residual_block(x, filters: int, stride: int = 1):
    """Two 3x3 conv-BN layers with an identity (or 1x1 projection) shortcut, then ReLU."""
    shortcut = x
    y = conv_bn_relu(x, filters, stride=stride)
    y = layers.Conv2D(filters, 3, padding="same", use_bias=False)(y)
    y = layers.BatchNormalization()(y)
    if stride != 1 or x.shape[-1] != filters:
        shortcut = layers.Conv2D(filters, 1, strides=stride, use_bias=False)(x)
        shortcut = layers.BatchNormalization()(shortcut)
    return layers.ReLU()(layers.Add()([y, shortcut]))


def resnet_trunk(x, widths, blocks, stem: int, stem_stride: int = 1):
    """A stem conv (stride `stem_stride`) and a max-pool, then stages of residual blocks, each stage
    after the first halving the resolution; spatial dropout between stages; global average pool."""
    x = conv_bn_relu(x, stem, stride=stem_stride)
    x = layers.MaxPooling2D()(x)
    for i, (filters, n) in enumerate(zip(widths, blocks)):
        for j in range(n):
            x = residual_block(x, filters, stride=2 if (i > 0 and j == 0) else 1)
        x = layers.SpatialDropout2D(0.1 * (i + 1))(x) if i < len(widths) - 1 else x
    return layers.GlobalAveragePooling2D()(x)


def build_emotion_resnet(size=48, n_classes=7, widths=(48, 96, 192), blocks=(2, 2, 2), stem=32):
    """A small ResNet for 48-px faces: a stem at full resolution, then stages at 24, 12 and 6 px.

    The capacity the VGG stacks lack (the wide one still had no train/val gap at epoch 28), with
    shortcuts so that many epochs of training keep improving instead of stalling."""
    inputs = keras.Input((size, size, 1), name="face")
    x = resnet_trunk(inputs, widths, blocks, stem)
    x = layers.Dropout(0.4)(x)
    outputs = layers.Dense(n_classes, activation="softmax", name="emotion")(x)
    return keras.Model(inputs, outputs, name="visage_emotion_res")


def build_emotion_baseline(size=48, n_classes=7):
    """The seed 'Mood Prediction Model' (documented baseline; ~10x the compute of the shipped one)."""
    inputs = keras.Input((size, size, 1), name="face")
    x = conv_bn_relu(inputs, 32)
    x = conv_bn_relu(x, 64)
    x = layers.MaxPooling2D()(x)
    x = layers.Dropout(0.25)(x)
    for filters, kernel in ((128, 5), (512, 3), (512, 3)):
        x = conv_bn_relu(x, filters, kernel)
        x = layers.MaxPooling2D()(x)
        x = layers.Dropout(0.25)(x)
    x = layers.Flatten()(x)
    for units in (256, 512):
        x = layers.Dense(units, use_bias=False)(x)
        x = layers.BatchNormalization()(x)
        x = layers.ReLU()(x)
        x = layers.Dropout(0.25)(x)
    outputs = layers.Dense(n_classes, activation="softmax", name="emotion")(x)
    return keras.Model(inputs, outputs, name="mood_baseline")


# Ages are predicted as offset + scale * z so that the linear unit starts near typical ages.
AGE_OFFSET, AGE_SCALE = 33.0, 20.0


# --age-head distribution: one class per year of age, 0 to AGE_BINS - 1 (UTKFace's few older faces are
# trained toward the last bin; the L1 term still sees their true age).
AGE_BINS = 101


def age_gender_heads(features, age_head: str = "regression"):
    """age in years and P(female). age_head "distribution": age is the expectation of a softmax over
    one-year bins (named age_bins, which training also fits to a label distribution: DLDL-v2, Gao et al.
    2018); the served outputs stay the same two, and the final Rescaling keeps the place where the
    evaluation folds its linear age correction."""
    x = layers.Dense(128, activation="relu")(features)
    x = layers.Dropout(0.3)(x)
    if age_head == "distribution":
        bins = layers.Dense(AGE_BINS, activation="softmax", name="age_bins")(x)
        years = keras.initializers.Constant(np.arange(AGE_BINS, dtype="float32")[:, None])
        age = layers.Dense(1, use_bias=False, kernel_initializer=years, trainable=False, name="age_expectation")(bins)
        age = layers.Rescaling(1.0, offset=0.0, name="age")(age)
    else:
        age = layers.Dense(1)(x)
        age = layers.Rescaling(AGE_SCALE, offset=AGE_OFFSET, name="age")(age)
    gender = layers.Dense(1, activation="sigmoid", name="gender")(x)   # P(female)
    return {"age": age, "gender": gender}


def build_age_gender_model(size=64, widths=(32, 64, 128, 256), reps=(1, 2, 2, 2), stem_stride=2,
                           age_head: str = "regression", anti_alias: bool = False):
    """One trunk, two heads: age in years (regression) and P(female)."""
    inputs = keras.Input((size, size, 1), name="face")
    features = vgg_trunk(inputs, widths, reps, dropout_step=0.05, stem_stride=stem_stride, anti_alias=anti_alias)
    return keras.Model(inputs, age_gender_heads(features, age_head), name="visage_age_gender")


def build_age_gender_resnet(size=128, widths=(48, 96, 192), blocks=(2, 2, 2), stem=32, age_head: str = "regression"):
    """The emotion ResNet's trunk for the 128-px faces of the original design: a stride-2 stem, so its
    stages work at 32, 16 and 8 px (about 1.8x the emotion net's compute per face), and the two heads."""
    inputs = keras.Input((size, size, 1), name="face")
    features = resnet_trunk(inputs, widths, blocks, stem, stem_stride=2)
    return keras.Model(inputs, age_gender_heads(features, age_head), name="visage_age_gender_res")


def build_age_gender_baseline(size=128, age_head: str = "regression"):
    """The seed 'Age Prediction Model' trunk (Conv 32-64-128 → dense head), with the same two heads."""
    inputs = keras.Input((size, size, 1), name="face")
    x = inputs
    for filters in (32, 64, 128):
        x = layers.Conv2D(filters, 3, activation="relu")(x)
        x = layers.MaxPooling2D()(x)
    x = layers.Flatten()(x)
    x = layers.Dense(256, activation="relu")(x)
    x = layers.Dropout(0.3)(x)
    return keras.Model(inputs, age_gender_heads(x, age_head), name="age_baseline")


# --arch choices. "wide" (emotion: 4/3 the channels, ~1.8x the compute) and "hires" (age/gender: no stride
# in the stem, same weights, ~4x the compute) are the larger variants; "visage-aa" (age/gender) the same
# weights with anti-aliased halvings (about 1.3x the training time); "res" the residual nets (emotion at
# 48 px, age/gender at 128 px); "baseline" is the seed design.
EMOTION_ARCHS = {
    "visage": build_emotion_model,
    "wide": lambda: build_emotion_model(widths=(32, 64, 128, 256)),
    "res": build_emotion_resnet,
    "baseline": build_emotion_baseline,
}
AGE_GENDER_ARCHS = {
    "visage": build_age_gender_model,
    "hires": lambda size, **heads: build_age_gender_model(size, stem_stride=1, **heads),
    "visage-aa": lambda size, **heads: build_age_gender_model(size, anti_alias=True, **heads),
    "res": build_age_gender_resnet,
    "baseline": build_age_gender_baseline,
}
