"""BatchNorm statistics are re-estimated on clean images before each epoch's validation."""
import numpy as np


def _tiny_model():
    import keras
    from keras import layers
    inputs = keras.Input((4,))
    x = layers.BatchNormalization()(inputs)
    x = layers.Dropout(0.5)(x)
    model = keras.Model(inputs, layers.Dense(1)(x))
    model.compile(optimizer="sgd", loss="mse")
    return model


def _fit(model, callbacks):
    rng = np.random.default_rng(0)
    x_train = rng.normal(0.0, 1.0, (64, 4)).astype(np.float32)        # "augmented" inputs: mean 0
    y = np.zeros((64, 1), np.float32)
    model.fit(x_train, y, validation_data=(x_train[:16], y[:16]), epochs=1, batch_size=16,
              callbacks=callbacks, verbose=0)
    return model.layers[1].moving_mean.numpy()


def test_validation_sees_statistics_of_the_clean_images():
    from training.common import BatchNormRecalibration
    x_clean = np.random.default_rng(1).normal(5.0, 0.1, (256, 4)).astype(np.float32)   # clean inputs: mean 5
    recalibrated = _fit(_tiny_model(), [BatchNormRecalibration(x_clean)])
    untouched = _fit(_tiny_model(), [])
    np.testing.assert_allclose(recalibrated, 5.0, atol=0.1)
    assert np.all(np.abs(untouched) < 1.0)
