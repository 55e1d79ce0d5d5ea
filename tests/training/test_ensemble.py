"""Snapshot ensembles and output corrections (training/ensemble.py) on tiny models and synthetic data."""
import numpy as np
import pytest

keras = pytest.importorskip("keras")

from training.common import export_inference_model  # noqa: E402
from training.ensemble import (average_models, fit_class_shift, fit_platt, fold_class_shift, fold_platt,  # noqa: E402
                               logit, sigmoid_with_platt, softmax_with_shift, two_fold_gain)


def tiny_softmax_model(seed: int):
    keras.utils.set_random_seed(seed)
    inputs = keras.Input((8, 8, 1), name="face")
    x = keras.layers.Flatten()(inputs)
    out = keras.layers.Dense(3, activation="softmax", name="emotion")(x)
    return keras.Model(inputs, out, name="tiny")


def tiny_two_head_model(seed: int):
    keras.utils.set_random_seed(seed)
    inputs = keras.Input((8, 8, 1), name="face")
    x = keras.layers.Flatten()(inputs)
    return keras.Model(inputs, {"age": keras.layers.Dense(1, name="age")(x),
                                "gender": keras.layers.Dense(1, activation="sigmoid", name="gender")(x)}, name="tiny2")


def test_average_models_outputs_the_mean_and_survives_export(tmp_path):
    a, b = tiny_softmax_model(1), tiny_softmax_model(2)
    x = np.random.default_rng(0).random((5, 8, 8, 1), np.float32)
    ensemble = average_models([a, b], "ens")
    expected = 0.5 * (a.predict(x, verbose=0) + b.predict(x, verbose=0))
    np.testing.assert_allclose(ensemble.predict(x, verbose=0), expected, atol=1e-6)
    export_inference_model(ensemble, tmp_path / "ens.keras")
    loaded = keras.models.load_model(tmp_path / "ens.keras", compile=False)
    np.testing.assert_allclose(loaded.predict(x, verbose=0), expected, atol=1e-6)


def test_average_models_keeps_named_outputs_of_two_head_models():
    a, b = tiny_two_head_model(1), tiny_two_head_model(2)
    x = np.random.default_rng(0).random((4, 8, 8, 1), np.float32)
    out = average_models([a, b], "ens").predict(x, verbose=0)
    assert set(out) == {"age", "gender"}
    np.testing.assert_allclose(out["gender"], 0.5 * (a.predict(x, verbose=0)["gender"] +
                                                     b.predict(x, verbose=0)["gender"]), atol=1e-6)


def test_folded_class_shift_equals_the_fitted_correction():
    a, b = tiny_softmax_model(1), tiny_softmax_model(2)
    x = np.random.default_rng(0).random((6, 8, 8, 1), np.float32)
    views = [np.log(m.predict(x, verbose=0)) for m in (a, b)]
    shift = np.array([0.5, -0.2, -0.3])
    ensemble = average_models([a, b], "ens")
    fold_class_shift(ensemble, "emotion", shift)
    np.testing.assert_allclose(ensemble.predict(x, verbose=0), softmax_with_shift(views, shift), atol=1e-5)


def test_folded_platt_scaling_equals_the_fitted_correction():
    a = tiny_two_head_model(3)
    x = np.random.default_rng(1).random((6, 8, 8, 1), np.float32)
    z = logit(a.predict(x, verbose=0)["gender"][:, 0])
    fold_platt(a, "gender", np.array([0.7, 0.4]))
    np.testing.assert_allclose(a.predict(x, verbose=0)["gender"][:, 0], sigmoid_with_platt([z], [0.7, 0.4]), atol=1e-5)


def test_fit_class_shift_recovers_a_prior_mismatch():
    rng = np.random.default_rng(0)
    true_shift = np.array([1.0, 0.0, -1.0])
    logits = rng.normal(size=(4000, 3)) * 2
    y = np.array([rng.choice(3, p=p) for p in softmax_with_shift([logits], true_shift)])
    fitted = fit_class_shift([logits], y)
    np.testing.assert_allclose(fitted, true_shift - true_shift.mean(), atol=0.2)
    check = two_fold_gain(fit_class_shift, softmax_with_shift, np.zeros(3), [logits], y,
                          lambda p, t: float((p.argmax(1) == t).mean()))
    assert check["gain"] > 0


def test_fit_platt_recovers_scale_and_offset():
    rng = np.random.default_rng(0)
    z = rng.normal(size=5000) * 3
    y = (rng.random(5000) < sigmoid_with_platt([z], [0.5, 0.8])).astype(float)
    a, c = fit_platt([z], y)
    assert a == pytest.approx(0.5, abs=0.1) and c == pytest.approx(0.8, abs=0.15)


def labels_with_women_read_as_men(n: int, shift: float, share_female: float = 0.5, seed: int = 0):
    """Gender logits (positive = female) of a classifier whose women's logits sit `shift` lower than men's
    sit higher: at the 0.5 threshold women are read less well than men."""
    rng = np.random.default_rng(seed)
    y = (rng.random(n) < share_female).astype(float)
    z = np.where(y == 1, 1.5 - shift, -1.5) + rng.normal(size=n)
    return [z, z + 0.2 * rng.normal(size=n)], y     # two views of each face


def test_gender_balance_offset_reads_women_and_men_equally_well():
    from training.ensemble import fit_gender_balance, gender_accuracy_gap, gender_balance_check
    logits, y = labels_with_women_read_as_men(6000, shift=1.0)
    before = gender_accuracy_gap(sigmoid_with_platt(logits, [1.0, 0.0]), y)
    offset = fit_gender_balance(logits, y)
    after = gender_accuracy_gap(sigmoid_with_platt(logits, [1.0, offset]), y)
    assert before < -0.1 and offset > 0 and abs(after) < 0.01
    check = gender_balance_check(logits, y)
    assert check["kept"] and check["offset"] == offset and check["gap_with"] < check["gap_without"] - 0.05


def test_gender_balance_is_not_kept_without_a_gap_or_when_it_costs_too_much_accuracy():
    from training.ensemble import gender_balance_check
    even = gender_balance_check(*labels_with_women_read_as_men(6000, shift=0.0))
    assert not even["kept"] and even["offset"] == 0.0
    # few women, read worse: equal accuracy would cost many men their label
    costly = gender_balance_check(*labels_with_women_read_as_men(6000, shift=1.0, share_female=0.1))
    assert costly["gap_with"] < costly["gap_without"] - 0.05
    assert costly["accuracy_without"] - costly["accuracy_with"] > 0.003
    assert not costly["kept"] and costly["offset"] == 0.0


def test_balanced_shipped_model_is_written_with_its_offset_folded_in(tmp_path):
    """evaluate_age_gender --rescore --balance-gender: the offset val keeps, folded into every network's
    gender layer of the file the app loads (here men read as women below a logit of t)."""
    from types import SimpleNamespace
    from training.evaluate_age_gender import balanced_gender
    model = average_models([tiny_two_head_model(1), tiny_two_head_model(2)], "ens")
    x = np.random.default_rng(0).random((600, 8, 8, 1), np.float32)
    z = logit(model.predict(x, verbose=0)["gender"][:, 0])
    y = (z > np.quantile(z, 0.7)).astype(float)
    card = {"file": "age_gender.keras", "serving_setup": {"weights_stored_as": "float32"}}
    served, check = balanced_gender(model, card, SimpleNamespace(flip_average=False, shift_px=0),
                                    {"x": x, "gender": y}, tmp_path)
    assert check["kept"] and check["offset"] < 0 and check["accuracy_with"] > check["accuracy_without"]
    reloaded = keras.models.load_model(tmp_path / "age_gender.keras", compile=False)
    p = reloaded.predict(x, verbose=0)["gender"][:, 0]
    np.testing.assert_allclose(p, served.predict(x, verbose=0)["gender"][:, 0], atol=1e-6)
    assert abs(((p >= 0.5) == (y == 1)).mean() - 1.0) < 0.05


def test_member_summaries_count_the_whole_warm_start_lineage(tmp_path):
    import json

    from training.common import member_summaries
    first = {"version": "a", "training": {"epochs_run": 28, "wall_time_seconds": 600}}
    (tmp_path / "first.json").write_text(json.dumps(first))
    second = {"version": "b", "training": {"epochs_run": 18, "wall_time_seconds": 300,
                                           "warm_started_from": member_summaries([tmp_path / "first.keras"])}}
    (tmp_path / "second.json").write_text(json.dumps(second))
    summary = member_summaries([tmp_path / "second.keras"])[str(tmp_path / "second.keras")]
    assert summary["epochs_run"] == 18 and summary["epochs_in_all"] == 46
    assert summary["wall_time_seconds_in_all"] == 900
    assert member_summaries([tmp_path / "missing.keras"])[str(tmp_path / "missing.keras")]["card"] is None


def test_member_summaries_sum_up_another_runs_checkpoint_from_its_run_and_not_this_runs_own(tmp_path):
    """A network of another run (no card beside it) counts that run's epochs, seconds and warm start; a
    checkpoint of the run being evaluated is a snapshot of the same training."""
    import json

    from training.common import member_summaries, write_log
    (tmp_path / "shipped.json").write_text(json.dumps({"version": "v1", "training": {"epochs_run": 40,
                                                                                      "wall_time_seconds": 900}}))
    other, this = tmp_path / "other", tmp_path / "this"
    for folder in (other, this):
        folder.mkdir()
        write_log(folder, [{"epoch_seconds": 60.0, "val_loss": 1.0}, {"epoch_seconds": 90.0, "val_loss": 0.9}])
    (other / "warm_start.json").write_text(json.dumps(member_summaries([tmp_path / "shipped.keras"])))
    summary = member_summaries([other / "best.keras", this / "swa.keras"], this_run=this)
    run = summary[str(other / "best.keras")]
    assert run["run"] == "other" and run["epochs_run"] == 2 and run["wall_time_seconds"] == 150
    assert run["warm_started_from"][str(tmp_path / "shipped.keras")]["version"] == "v1"
    assert run["epochs_in_all"] == 42 and run["wall_time_seconds_in_all"] == 1050
    assert summary[str(this / "swa.keras")]["epochs_run"] is None and "run" not in summary[str(this / "swa.keras")]


def test_member_summaries_count_every_network_of_an_earlier_ensemble_once(tmp_path):
    """An earlier model that itself averages networks (its first warm-started from model v1, a second of
    another run warm-started from v1 too, and v1 itself) brings all of their training, v1's once."""
    import json

    from app.card_summary import how_trained
    from training.common import member_summaries
    (tmp_path / "v1.json").write_text(json.dumps({"version": "v1", "training": {"epochs_run": 40,
                                                                                 "wall_time_seconds": 900}}))
    v1 = member_summaries([tmp_path / "v1.keras"])
    other_run = {"card": None, "run": "ws", "networks": 1, "epochs_run": 30, "wall_time_seconds": 600,
                 "warm_started_from": v1, "epochs_in_all": 70, "wall_time_seconds_in_all": 1500}
    v2 = {"version": "v2", "training": {"epochs_run": 30, "wall_time_seconds": 300, "warm_started_from": v1},
          "serving_setup": {"networks": 3, "other_members": {"runs/ws/best.keras": other_run,
                                                              str(tmp_path / "v1.keras"): v1[str(tmp_path / "v1.keras")]}}}
    (tmp_path / "v2.json").write_text(json.dumps(v2))
    summary = member_summaries([tmp_path / "v2.keras"])[str(tmp_path / "v2.keras")]
    assert summary["networks"] == 3 and summary["epochs_run"] == 30
    assert summary["epochs_in_all"] == 40 + 30 + 30 and summary["wall_time_seconds_in_all"] == 900 + 300 + 600
    v3 = {"version": "v3", "architecture": {"arch": "visage"},
          "training": {"epochs_run": 100, "wall_time_seconds": 6000},
          "serving_setup": {"networks": 4, "other_members": {str(tmp_path / "v2.keras"): summary}}}
    assert "the earlier model (100 epochs, 30 min of training behind it)" in how_trained(v3, "val")
    assert how_trained(v3, "val").endswith(f"{(6000 + 1800) / 60:.0f} min of training in all on a 2-core CPU")
    v3["serving_setup"]["chosen_candidate"] = "ensemble without other network 2 of 3"   # --replace-one's choice
    assert "30 min of training behind it; one of its networks left out, its training still counted here)" in how_trained(v3, "val")


def test_candidate_views_are_the_members_prefix_and_their_mirrored_views():
    from training.ensemble import candidate_views
    all_views = ["m1", "m2", "m3", "m1 mirrored", "m2 mirrored", "m3 mirrored"]
    assert candidate_views(all_views, 1, 3, flip=False) == ["m1"]
    assert candidate_views(all_views, 1, 3, flip=True) == ["m1", "m1 mirrored"]
    assert candidate_views(all_views, 3, 3, flip=True) == all_views


def test_views_of_picks_members_on_chosen_input_views():
    from training.ensemble import views_of
    all_views = [f"m{i} on v{v}" for v in range(3) for i in (1, 2)]
    assert views_of(all_views, 1, 2, [0, 2]) == ["m1 on v0", "m1 on v2"]
    assert views_of(all_views, 2, 2, [1]) == ["m1 on v1", "m2 on v1"]


def test_a_shipped_ensemble_joins_a_new_one_as_its_single_networks(tmp_path):
    from training.ensemble import members_of
    a, b, c = tiny_softmax_model(1), tiny_softmax_model(2), tiny_softmax_model(3)
    export_inference_model(average_models([a, b], "shipped"), tmp_path / "shipped.keras")
    shipped = keras.models.load_model(tmp_path / "shipped.keras", compile=False)
    leaves = members_of(shipped)
    assert len(leaves) == 2
    x = np.random.default_rng(0).random((5, 8, 8, 1), np.float32)
    new = average_models([c, *leaves], "ens")
    assert len(members_of(new)) == 3
    expected = np.mean([m.predict(x, verbose=0) for m in (a, b, c)], axis=0)
    np.testing.assert_allclose(new.predict(x, verbose=0), expected, atol=1e-6)
    views = [np.log(m.predict(x, verbose=0)) for m in (c, a, b)]
    shift = np.array([0.3, 0.0, -0.3])
    fold_class_shift(new, "emotion", shift)      # reaches every single network, also those of the shipped one
    np.testing.assert_allclose(new.predict(x, verbose=0), softmax_with_shift(views, shift), atol=1e-5)


def test_ensemble_candidates_add_the_other_networks_one_at_a_time():
    from training.ensemble import ensemble_candidates
    candidates, used = ensemble_candidates("new", [["old1"], ["old2a", "old2b"]])
    assert candidates == {"checkpoint": ["new"],
                          "ensemble with the first 1 of 3 other networks": ["new", "old1"],
                          "ensemble with the first 2 of 3 other networks": ["new", "old1", "old2a"],
                          "ensemble": ["new", "old1", "old2a", "old2b"]}
    assert used == {"checkpoint": 0, "ensemble with the first 1 of 3 other networks": 1,
                    "ensemble with the first 2 of 3 other networks": 2, "ensemble": 2}
    assert ensemble_candidates("new", []) == ({"checkpoint": ["new"]}, {"checkpoint": 0})


def test_replace_one_offers_the_checkpoint_in_place_of_each_network_of_a_several_network_model():
    from training.ensemble import ensemble_candidates, member_positions, views_at
    candidates, used = ensemble_candidates("new", [["solo"], ["a", "b", "c"]], replace_one=True)
    assert candidates["ensemble without other network 2 of 4"] == ["new", "solo", "b", "c"]
    assert candidates["ensemble without other network 3 of 4"] == ["new", "solo", "a", "c"]
    # "solo" is a model of its own (left out, it would still be counted as kept); leaving out "c" is a prefix
    assert "ensemble without other network 1 of 4" not in candidates
    assert "ensemble without other network 4 of 4" not in candidates
    assert used["ensemble without other network 2 of 4"] == 2
    assert set(candidates) - {"ensemble without other network 2 of 4", "ensemble without other network 3 of 4"} \
        == set(ensemble_candidates("new", [["solo"], ["a", "b", "c"]])[0])
    every = candidates["ensemble"]
    assert member_positions(["new", "a", "c"], every) == [0, 2, 4]
    all_views = [f"{m} on v{v}" for v in range(2) for m in every]
    assert views_at(all_views, [0, 4], len(every), [1]) == ["new on v1", "c on v1"]


def test_the_new_network_takes_the_place_of_the_network_val_values_least():
    """Room for three networks: the checkpoint beside two of three shipped ones. Val's answers are those of
    the checkpoint with the first and third shipped networks, so replacing the second, not the last, wins."""
    from training.ensemble import ensemble_candidates
    from training.evaluate_age_gender import choose_serving_setup, predict
    new, shipped = tiny_age_gender_model(0), [tiny_age_gender_model(seed) for seed in (1, 2, 3)]
    x = np.random.default_rng(0).random((64, 16, 16, 1), np.float32)
    kept = [predict(m, x) for m in (new, shipped[0], shipped[2])]
    val = {"x": x, "age": np.mean([a for a, _ in kept], axis=0), "gender": (np.mean([p for _, p in kept], axis=0)
                                                                           >= 0.5).astype(np.float32)}
    candidates, _ = ensemble_candidates(new, [shipped], replace_one=True)
    three = 3 * new.count_params() * 4 / 1e6
    setup = choose_serving_setup(candidates, val, corrections=False, max_latency_ms=float("inf"),
                                 max_size_mb=three * 1.01)
    assert setup["members"] == "ensemble without other network 2 of 3" and setup["tta"] == "none"
    assert setup["size_mb"]["ensemble"] > three * 1.01 and setup["within_budgets"]
    assert setup["latency_ms"]["ensemble without other network 2 of 3, views: none"] == \
        setup["latency_ms"]["ensemble with the first 2 of 3 other networks, views: none"]


def test_warm_start_takes_the_first_network_of_a_shipped_ensemble(tmp_path):
    from training.common import warm_start_network
    a, b = tiny_softmax_model(1), tiny_softmax_model(2)
    export_inference_model(average_models([a, b], "shipped"), tmp_path / "shipped.keras")
    export_inference_model(b, tmp_path / "single.keras")
    for got, want in zip(warm_start_network(tmp_path / "shipped.keras").get_weights(), a.get_weights()):
        np.testing.assert_array_equal(got, want)
    for got, want in zip(warm_start_network(tmp_path / "single.keras").get_weights(), b.get_weights()):
        np.testing.assert_array_equal(got, want)


def tiny_age_gender_model(seed: int):
    """The real model's output contract: age = Rescaling(scale, offset) of a Dense unit, P(female) a sigmoid."""
    keras.utils.set_random_seed(seed)
    inputs = keras.Input((16, 16, 1), name="face")
    x = keras.layers.Dense(4, activation="relu")(keras.layers.Flatten()(inputs))
    age = keras.layers.Rescaling(20.0, offset=33.0, name="age")(keras.layers.Dense(1)(x))
    return keras.Model(inputs, {"age": age, "gender": keras.layers.Dense(1, activation="sigmoid", name="gender")(x)})


@pytest.mark.parametrize("networks", [1, 2])
def test_fold_linear_age_changes_the_exported_file_by_exactly_the_fold_through_the_app(tmp_path, networks):
    """alpha * age + beta folded into the Rescaling layer(s), exported, loaded and served by the app's own wrapper
    (with mirrored and shifted views): every age moves by exactly the fold, P(female) not at all."""
    from app.pipeline.predict import LoadedModel, ModelCard
    from training.ensemble import fold_linear_age
    card = ModelCard.from_dict({"name": "age_gender", "file": "m.keras", "version": "t", "input": {"size": 16, "margin": 0},
                                "outputs": {"age": {"kind": "regression"}, "gender": {"kind": "sigmoid"}},
                                "test_time_augmentation": {"horizontal_flip": True, "shift_px": 1}})
    x = np.random.default_rng(0).random((5, 16, 16, 1), np.float32)

    def served(model, name):
        export_inference_model(model, tmp_path / name)
        return LoadedModel(card, keras.models.load_model(tmp_path / name, compile=False))(x)

    model = average_models([tiny_age_gender_model(seed) for seed in range(networks)], "ens")
    before = served(model, "before.keras")
    model.predict(x, verbose=0)            # a predict function traced before the fold must not matter for the file
    alpha, beta = 0.8, 4.0          # fixed point 20 years, far from these ages (about 33)
    fold_linear_age(model, "age", np.array([alpha, beta]))
    after = served(model, "after.keras")
    np.testing.assert_allclose(after["age"], alpha * before["age"] + beta, rtol=1e-5, atol=1e-4)
    np.testing.assert_allclose(after["gender"], before["gender"], atol=1e-6)
    assert np.abs(after["age"] - before["age"]).min() > 0.1     # the fold did reach the file


class MirrorAwareMember:
    """A stand-in emotion network: reads each image's index from its first row (plain or mirrored: the
    mirror moves it to the row's other end) and answers noisy probabilities with a strong prior for class 0,
    the noise independent between the face and its mirror."""
    def __init__(self, y: np.ndarray, seed: int = 0, parameters: int = 1_000_000, prior: float = 2.0):
        rng = np.random.default_rng(seed)
        self.logits = {m: np.eye(3)[y] + rng.normal(size=(len(y), 3)) + [prior, 0, 0] for m in (False, True)}
        self.parameters = parameters

    def count_params(self) -> int:
        return self.parameters

    def predict(self, x, batch_size=None, verbose=0):
        mirrored = bool(x[0, 0, -1, 0] > x[0, 0, 0, 0])
        z = self.logits[mirrored][np.rint(x[:, 0, -1 if mirrored else 0, 0] * 1e4).astype(int)]
        e = np.exp(z - z.max(1, keepdims=True))
        return e / e.sum(1, keepdims=True)

    def predict_on_batch(self, x):
        return self.predict(x)


def test_emotion_views_are_chosen_as_served_with_their_class_shift():
    """Plain, the mirror looks worse (the prior mismatch hides its gain); with the class shift, judged on
    held-out halves, it is better, and that is how it would be served: the mirror is chosen."""
    from types import SimpleNamespace

    from training.evaluate_emotion import choose_serving_setup
    y = np.random.default_rng(0).integers(0, 3, 4000)
    x = np.zeros((len(y), 2, 4, 1), np.float32)
    x[:, 0, 0, 0] = np.arange(len(y)) / 1e4 + 1e-5
    setup = choose_serving_setup({"checkpoint": [MirrorAwareMember(y)]}, SimpleNamespace(x=x, y=y), True)
    plain, held_out = setup["public_accuracy_all"], setup["public_accuracy_held_out_with_shift"]
    assert plain["checkpoint, flip False"] > plain["checkpoint, flip True"]
    assert held_out["checkpoint, flip True"] > held_out["checkpoint, flip False"] > plain["checkpoint, flip False"]
    assert setup["flip"] is True and setup["shift"][0] < 0
    no_correction = choose_serving_setup({"checkpoint": [MirrorAwareMember(y)]}, SimpleNamespace(x=x, y=y), False)
    assert no_correction["flip"] is False and not no_correction["shift"].any()


def test_emotion_setups_over_the_size_budget_are_scored_but_not_chosen():
    """Two networks with independent noise (and no class prior) read PublicTest better together; at 8 MB
    (one network: 4 MB) the pair is chosen, at 6 MB the checkpoint alone, with both still scored."""
    from types import SimpleNamespace

    from training.evaluate_emotion import choose_serving_setup
    y = np.random.default_rng(0).integers(0, 3, 4000)
    x = np.zeros((len(y), 2, 4, 1), np.float32)
    x[:, 0, 0, 0] = np.arange(len(y)) / 1e4 + 1e-5
    a, b = MirrorAwareMember(y, 0, prior=0.0), MirrorAwareMember(y, 1, prior=0.0)
    candidates = {"checkpoint": [a], "ensemble": [a, b]}
    public = SimpleNamespace(x=x, y=y)
    roomy = choose_serving_setup(candidates, public, False, max_size_mb=8.0)
    assert roomy["members"] == "ensemble" and roomy["size_mb"] == {"checkpoint": 4.0, "ensemble": 8.0}
    tight = choose_serving_setup(candidates, public, False, max_size_mb=6.0)
    assert tight["members"] == "checkpoint" and "ensemble, flip False" in tight["public_accuracy_all"]


def test_split_ensemble_saves_each_network_with_a_card_that_says_which_it_is(tmp_path):
    import json

    from training.common import member_summaries
    from training.split_ensemble import split
    a, b = tiny_two_head_model(1), tiny_two_head_model(2)
    export_inference_model(average_models([a, b], "shipped"), tmp_path / "age_gender.keras")
    (tmp_path / "age_gender.json").write_text(json.dumps({"version": "v1", "serving_setup": {"networks": 2},
                                                          "training": {"epochs_run": 10}}))
    first, second = split(tmp_path / "age_gender.keras", tmp_path / "out")
    x = np.random.default_rng(0).random((5, 8, 8, 1), np.float32)
    for path, net in ((first, a), (second, b)):
        alone = keras.models.load_model(path, compile=False).predict(x, verbose=0)
        want = net.predict(x, verbose=0)
        for key in ("age", "gender"):
            np.testing.assert_allclose(alone[key], want[key], atol=1e-6)
    card = json.loads(second.with_suffix(".json").read_text())
    assert card["member_of"] | {"note": None} == {"model": str(tmp_path / "age_gender.keras"), "version": "v1",
                                                 "network": 2, "of": 2, "note": None}
    assert member_summaries([second])[str(second)]["networks"] == 1     # one network when --ensemble-with offers it


def test_a_shipped_models_networks_keep_their_batchnorm_statistics(tmp_path, monkeypatch):
    """Offered with --ensemble-with, the shipped age/gender model (networks trained on backgrounds and one
    trained on edge-framed faces, under one card) joins as it is served; a run's checkpoint is re-estimated."""
    import shutil
    from pathlib import Path

    from training import common
    models = Path(__file__).resolve().parents[2] / "models"
    shipped = tmp_path / "shipped" / "age_gender.keras"
    shipped.parent.mkdir()
    for suffix in (".keras", ".json"):
        shutil.copy(models / f"age_gender{suffix}", shipped.with_suffix(suffix))
    run_checkpoint = tmp_path / "run" / "last.keras"
    run_checkpoint.parent.mkdir()
    shutil.copy(shipped, run_checkpoint)                       # the same file, but as a run's checkpoint
    seen = []
    monkeypatch.setattr(common, "recalibrate_batchnorm", lambda model, x, **k: seen.append(model.name))
    x = np.zeros((4, 96, 96, 1), np.float32)
    others = common.load_other_members([shipped, run_checkpoint], x)
    assert common.is_shipped(shipped) and not common.is_shipped(run_checkpoint)
    assert len(others[0]) == len(others[1]) >= 2
    assert seen == [net.name for net in others[1]]              # only the run's networks
    for got, want in zip(others[0][0].get_weights(), others[1][0].get_weights()):
        np.testing.assert_array_equal(got, want)


def test_a_run_is_not_evaluated_beside_a_shipped_model_that_already_holds_it(tmp_path, capsys):
    """make models evaluates each model's latest run beside the shipped model: once that run ships, the
    shipped model holds the run's own network, and evaluating again would offer it beside itself."""
    import json

    from training import evaluate_age_gender, evaluate_emotion
    from training.common import shipped_from_run
    run = tmp_path / "runs" / "r"
    run.mkdir(parents=True)
    (run / "run.json").write_text(json.dumps({"arch": "visage", "input_size": 96}))
    shipped = {}
    for name in ("emotion", "age_gender"):
        shipped[name] = tmp_path / "shipped" / f"{name}.keras"
        shipped[name].parent.mkdir(exist_ok=True)
        shipped[name].with_suffix(".json").write_text(json.dumps(
            {"version": "v9", "serving_setup": {"members": [str(run / "best.keras"), "runs/shipped/x.keras"]}}))
    assert shipped_from_run(run, shipped["age_gender"]) == "v9"
    assert shipped_from_run(tmp_path / "runs" / "other", shipped["age_gender"]) is None
    assert shipped_from_run(run, tmp_path / "missing.keras") is None
    common = ["--run-dir", str(run), "--models-dir", str(tmp_path / "models"), "--data-dir", str(tmp_path / "no-data")]
    evaluate_age_gender.main(common + ["--ensemble-with", str(shipped["age_gender"])])
    evaluate_emotion.main(common + ["--ensemble-with", str(shipped["emotion"])])
    out = capsys.readouterr().out
    for name in ("age_gender", "emotion"):
        assert f"{run} already serves in {shipped[name]} (version v9): not offered beside itself" in out
    assert not (tmp_path / "models").exists()
