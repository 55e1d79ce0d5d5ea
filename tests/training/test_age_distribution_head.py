"""--age-head distribution: the age is the expectation of a softmax over one-year bins, trained toward a
Gaussian label distribution; the served network still answers with its two outputs."""
import numpy as np
import pytest


def test_label_distribution_is_a_gaussian_around_the_age_that_sums_to_one():
    from training.train_age_gender import AGE_SIGMA, age_distribution_targets
    t = age_distribution_targets(np.array([0.0, 30.0, 116.0]), 101)
    np.testing.assert_allclose(t.sum(axis=1), 1.0, rtol=1e-6)
    assert list(t.argmax(axis=1)) == [0, 30, 100]                 # past the last bin: on it
    np.testing.assert_allclose(t[1] @ np.arange(101), 30.0, atol=1e-3)
    spread = np.sqrt(t[1] @ (np.arange(101) - 30.0) ** 2)
    assert spread == pytest.approx(AGE_SIGMA, rel=0.01)


def test_served_age_is_the_expectation_of_the_bins_and_takes_the_folded_correction():
    import keras

    from training import models
    from training.ensemble import fold_linear_age
    network = models.AGE_GENDER_ARCHS["visage"](64, age_head="distribution")
    assert set(network.output) == {"age", "gender"}
    faces = np.random.default_rng(0).uniform(0, 1, (4, 64, 64, 1)).astype(np.float32)
    bins = keras.Model(network.inputs, network.get_layer("age_bins").output)(faces)
    age = np.asarray(network(faces)["age"])[:, 0]
    np.testing.assert_allclose(age, np.asarray(bins) @ np.arange(models.AGE_BINS), rtol=1e-5)
    assert not network.get_layer("age_expectation").trainable_weights       # the years stay the years

    fold_linear_age(network, "age", np.array([1.1, -2.0]))
    refolded = keras.Model.from_config(network.get_config())
    refolded.set_weights(network.get_weights())
    np.testing.assert_allclose(np.asarray(refolded(faces)["age"])[:, 0], 1.1 * age - 2.0, rtol=1e-4)


def test_trainer_shares_the_networks_layers_and_adds_the_bins_output():
    from training import models
    from training.train_age_gender import distribution_trainer
    network = models.AGE_GENDER_ARCHS["visage"](64, age_head="distribution")
    trainer = distribution_trainer(network)
    assert set(trainer.output) == {"age", "gender", "age_bins"}
    assert {id(w) for w in trainer.weights} == {id(w) for w in network.weights}


def test_consistency_and_distribution_head_are_refused_together():
    from training import train_age_gender
    with pytest.raises(SystemExit, match="pick one"):
        train_age_gender.main(["--data-dir", "x", "--consistency", "1", "--age-head", "distribution"])


def test_warm_start_from_a_regression_network_keeps_its_answers():
    """A one-year-bins network started from a shipped regression one answers as it did (its trunk and gender
    copied, its bins a Gaussian around the regression's age), instead of starting its age from noise."""
    from training import models
    from training.common import transfer_weights
    from training.ensemble import fold_linear_age
    source = models.AGE_GENDER_ARCHS["visage"](64)
    fold_linear_age(source, "age", np.array([0.9, 1.5]))              # a correction folded in travels too
    target = models.AGE_GENDER_ARCHS["visage"](64, age_head="distribution")
    assert transfer_weights(source, target, sigma=2.0) == []          # nothing left to start from noise
    faces = np.random.default_rng(1).uniform(0, 1, (8, 64, 64, 1)).astype(np.float32)
    before, after = source(faces), target(faces)
    np.testing.assert_allclose(np.asarray(after["gender"]), np.asarray(before["gender"]), rtol=1e-6)
    # Within the bins (0-100 years, away from their ends) the expectation is the regression's age.
    np.testing.assert_allclose(np.asarray(after["age"]), np.asarray(before["age"]), atol=0.05)
    assert 10 < float(np.asarray(before["age"]).min()) and float(np.asarray(before["age"]).max()) < 90


def test_warm_start_into_bins_needs_their_width():
    from training import models
    from training.common import transfer_weights
    source = models.AGE_GENDER_ARCHS["visage"](64)
    target = models.AGE_GENDER_ARCHS["visage"](64, age_head="distribution")
    with pytest.raises(SystemExit, match="one-year age bins"):
        transfer_weights(source, target)
