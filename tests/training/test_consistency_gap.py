"""--consistency's gap: between two training-mode answers dropout alone makes one; as served it does not."""
import numpy as np


def _gaps(served_gap: bool) -> dict:
    from training import models
    from training.train_age_gender import consistency_trainer
    network = models.AGE_GENDER_ARCHS["visage"](64)
    face = np.random.default_rng(0).uniform(0, 1, (8, 64, 64, 1)).astype(np.float32)
    out = consistency_trainer(network, served_gap)((face, face), training=True)   # the same face twice
    return {k: np.asarray(out[k]) for k in ("steady_age", "steady_gender")}


def test_served_gap_of_a_face_and_itself_is_zero_while_training():
    served = _gaps(served_gap=True)
    assert served["steady_age"].shape == (8, 1)
    np.testing.assert_array_equal(served["steady_age"], 0.0)
    np.testing.assert_array_equal(served["steady_gender"], 0.0)


def test_training_mode_gap_of_a_face_and_itself_is_dropout_noise():
    noisy = _gaps(served_gap=False)
    assert (noisy["steady_age"] > 0).mean() > 0.5 and (noisy["steady_gender"] > 0).mean() > 0.5
