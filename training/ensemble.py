"""After training: average several checkpoints into one model, and correct output biases on validation data.

Both steps produce a plain Keras model (built-in layers only), so the app
serves the result exactly like a single network: one call per image.

* Snapshot ensemble: the members (e.g. the previously shipped model and the
  end of a warm-restarted run) see the same input; their outputs are averaged.
* Output correction: per-class logit shifts (softmax) or Platt scaling
  (sigmoid), fitted by log-likelihood on the validation split and folded into
  the weights of each member's last Dense layer. It is only kept when it helps
  on held-out halves of that split (2-fold), never by looking at the test split.
"""
from __future__ import annotations

import numpy as np


def renamed_copy(model, name: str):
    """The same network and weights under another name (members of one ensemble need distinct names)."""
    config = model.get_config()
    config["name"] = name
    copy = model.__class__.from_config(config)
    copy.set_weights(model.get_weights())
    return copy


def average_models(members: list, name: str):
    """One functional model whose outputs are the means of the members' outputs (same names)."""
    import keras
    from keras import layers
    if len(members) == 1:
        return members[0]
    inputs = keras.Input(members[0].inputs[0].shape[1:], name="face")
    outs = [renamed_copy(m, f"{name}_member{i + 1}")(inputs) for i, m in enumerate(members)]
    if isinstance(outs[0], dict):
        outputs = {k: layers.Average(name=k)([o[k] for o in outs]) for k in outs[0]}
    else:
        outputs = layers.Average(name=members[0].layers[-1].name)(outs)   # keep the output's name
    return keras.Model(inputs, outputs, name=name)


def members_of(model) -> list:
    """The single networks inside an ensemble made by average_models (or [model] for a single network).

    An ensemble that has an ensemble as a member is flattened: each network is one view to average."""
    import keras
    inner = [layer for layer in model.layers if isinstance(layer, keras.Model)]
    return [leaf for m in inner for leaf in members_of(m)] if inner else [model]


def ensemble_candidates(model, others: list[list], replace_one: bool = False) -> tuple[dict, dict]:
    """The checkpoint alone, then with the other models' networks added one network at a time.

    `others[i]` holds the single networks of the i-th other model (members_of; load_other_members puts
    each model's smallest first), so that a size budget can keep part of a shipped ensemble. Returns
    ({name: members}, {name: how many of the other models it draws on}); each member list but the
    replacements is a prefix of the next, and every candidate is a subset of the longest, so every
    network predicts each image once (member_positions).

    replace_one: also the checkpoint beside all the other networks but one, each network of a several-
    network model left out in turn: where a size budget has room for no more networks, the new one can
    take the place of whichever the validation set values least, not only of the last."""
    candidates, used, members = {"checkpoint": [model]}, {"checkpoint": 0}, [model]
    total = sum(len(networks) for networks in others)
    for i, networks in enumerate(others, 1):
        for net in networks:
            members = members + [net]
            added = len(members) - 1
            name = "ensemble" if added == total else f"ensemble with the first {added} of {total} other networks"
            candidates[name], used[name] = members, i
    if replace_one and total >= 2:
        position = 0
        for networks in others:
            for net in networks:
                position += 1
                # a model left out whole would still be counted among the kept ones (used): not offered;
                # leaving out the last network is the prefix above
                if len(networks) >= 2 and position < total:
                    name = f"ensemble without other network {position} of {total}"
                    candidates[name] = [m for m in members if m is not net]
                    used[name] = len(others)
    return candidates, used


def member_positions(members: list, every: list) -> list[int]:
    """Where each of `members` sits in `every` (the longest candidate), found by identity."""
    return [next(i for i, m in enumerate(every) if m is member) for member in members]


def size_mb(members: list, bytes_per_weight: int = 4) -> float:
    """The weights of a serving setup in MB (4 bytes a weight as float32, 2 stored as float16:
    training/weights_float16.py), about the size of its .keras file."""
    return sum(int(m.count_params()) for m in members) * bytes_per_weight / 1e6


def candidate_views(all_views: list, n_members: int, n_total: int, flip: bool) -> list:
    """The views of the first `n_members` members (and of their mirrored inputs with flip), taken out of
    views computed once for all `n_total` members with flip: [m1..mN on x] + [m1..mN on mirrored x]."""
    return views_of(all_views, n_members, n_total, [0, 1] if flip else [0])


def views_of(all_views: list, n_members: int, n_total: int, input_views: list[int]) -> list:
    """The first `n_members` members' predictions on the chosen input views, out of predictions laid out
    view by view: [m1..mN on view 0] + [m1..mN on view 1] + ..."""
    return views_at(all_views, list(range(n_members)), n_total, input_views)


def views_at(all_views: list, positions: list[int], n_total: int, input_views: list[int]) -> list:
    """views_of for any members, given by their positions among the N (member_positions)."""
    return [all_views[v * n_total + i] for v in input_views for i in positions]


# ---- output corrections ------------------------------------------------------------------------

def _softmax(z):
    z = z - z.max(axis=-1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=-1, keepdims=True)


def _sigmoid(z):
    return 0.5 * (1.0 + np.tanh(0.5 * z))     # = 1 / (1 + e^-z), without overflow for a far-off Platt step


def softmax_with_shift(log_probs: list[np.ndarray], shift: np.ndarray) -> np.ndarray:
    """Mean over views (members x flips) of softmax(log p + shift): what the corrected ensemble outputs."""
    return np.mean([_softmax(lp + shift) for lp in log_probs], axis=0)


def sigmoid_with_platt(logits: list[np.ndarray], params: np.ndarray) -> np.ndarray:
    a, c = params
    return np.mean([_sigmoid(a * z + c) for z in logits], axis=0)


def _fit(nll, x0: np.ndarray) -> np.ndarray:
    from scipy.optimize import minimize
    return minimize(nll, x0, method="L-BFGS-B").x


def fit_class_shift(log_probs: list[np.ndarray], y: np.ndarray) -> np.ndarray:
    """Per-class logit shift (mean-centred) that maximizes the likelihood of labels `y`."""
    idx = np.arange(len(y))

    def nll(shift):
        return -np.log(softmax_with_shift(log_probs, shift)[idx, y] + 1e-12).mean()
    shift = _fit(nll, np.zeros(log_probs[0].shape[1]))
    return shift - shift.mean()


def fit_platt(logits: list[np.ndarray], y: np.ndarray) -> np.ndarray:
    """(a, c) of Platt scaling sigmoid(a * logit + c) that maximizes the likelihood of 0/1 labels `y`."""
    def nll(params):
        p = np.clip(sigmoid_with_platt(logits, params), 1e-7, 1 - 1e-7)
        return -(y * np.log(p) + (1 - y) * np.log(1 - p)).mean()
    return _fit(nll, np.array([1.0, 0.0]))


def two_fold_gain(fit, apply, identity, views: list[np.ndarray], y: np.ndarray, accuracy) -> dict:
    """Held-out effect of a fitted correction: fit on one half of the split, score on the other, both ways."""
    halves = [np.arange(len(y)) % 2 == k for k in (0, 1)]
    before, after = [], []
    for fit_on, score_on in (halves, halves[::-1]):
        params = fit([v[fit_on] for v in views], y[fit_on])
        scored = [v[score_on] for v in views]
        before.append(accuracy(apply(scored, identity), y[score_on]))
        after.append(accuracy(apply(scored, params), y[score_on]))
    return {"accuracy_without": float(np.mean(before)), "accuracy_with": float(np.mean(after)),
            "gain": float(np.mean(after) - np.mean(before))}


def gender_correct(p_female: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Per face, whether its gender is read right (`y`: 1 = female; labelled female at P(female) >= 0.5)."""
    return (p_female >= 0.5) == (y >= 0.5)


def gender_accuracy(p_female: np.ndarray, y: np.ndarray) -> float:
    return float(gender_correct(p_female, y).mean())


def gender_accuracy_gap(p_female: np.ndarray, y: np.ndarray) -> float:
    """Women's gender accuracy minus men's (`y`: 1 = female; each face labelled at P(female) >= 0.5)."""
    female = y >= 0.5
    correct = gender_correct(p_female, y)
    return float(correct[female].mean() - correct[~female].mean())


def fit_gender_balance(logits: list[np.ndarray], y: np.ndarray, step: float = 0.01, limit: float = 2.0) -> float:
    """The offset added to every view's gender logit that brings women's and men's accuracy on `y` closest
    together (equal recall for both; the smallest offset among equals). It moves the label's threshold
    off the one the likelihood calibrates: P(female) then reads a little high or low on average."""
    offsets = np.arange(-limit, limit + step / 2, step)
    offsets = offsets[np.argsort(np.abs(offsets), kind="stable")]
    gaps = [abs(gender_accuracy_gap(sigmoid_with_platt(logits, np.array([1.0, d])), y)) for d in offsets]
    return float(offsets[int(np.argmin(gaps))])


def gender_balance_check(logits: list[np.ndarray], y: np.ndarray, min_gap_cut: float = 0.005,
                         max_accuracy_cost: float = 0.003) -> dict:
    """fit_gender_balance judged on held-out halves (fit on one half, score the other, both ways): kept
    only if it cuts the women/men accuracy gap by at least `min_gap_cut` and costs overall accuracy at
    most `max_accuracy_cost` (rule fixed 2026-12-05, before it was first scored: docs/training.md)."""
    halves = [np.arange(len(y)) % 2 == k for k in (0, 1)]
    rows = {"gap_without": [], "gap_with": [], "accuracy_without": [], "accuracy_with": []}
    for fit_on, score_on in (halves, halves[::-1]):
        offset = fit_gender_balance([z[fit_on] for z in logits], y[fit_on])
        for label, d in (("without", 0.0), ("with", offset)):
            p = sigmoid_with_platt([z[score_on] for z in logits], np.array([1.0, d]))
            rows[f"gap_{label}"].append(abs(gender_accuracy_gap(p, y[score_on])))
            rows[f"accuracy_{label}"].append(gender_accuracy(p, y[score_on]))
    check = {k: float(np.mean(v)) for k, v in rows.items()}
    kept = (check["gap_without"] - check["gap_with"] >= min_gap_cut
            and check["accuracy_without"] - check["accuracy_with"] <= max_accuracy_cost)
    return check | {"rule": {"min_gap_cut": min_gap_cut, "max_accuracy_cost": max_accuracy_cost},
                    "kept": bool(kept), "offset": fit_gender_balance(logits, y) if kept else 0.0}


def fold_class_shift(model, layer_name: str, shift: np.ndarray) -> None:
    """Add `shift` to the bias of the softmax Dense layer `layer_name` of every member (in place)."""
    for member in members_of(model):
        dense = member.get_layer(layer_name)
        kernel, bias = dense.get_weights()
        dense.set_weights([kernel, bias + shift.astype(bias.dtype)])


def fold_platt(model, layer_name: str, params: np.ndarray) -> None:
    """sigmoid(w.h + b) → sigmoid(a (w.h + b) + c) in the Dense layer `layer_name` of every member."""
    a, c = (float(v) for v in params)
    for member in members_of(model):
        dense = member.get_layer(layer_name)
        kernel, bias = dense.get_weights()
        dense.set_weights([kernel * a, bias * a + c])


def logit(p: np.ndarray) -> np.ndarray:
    p = np.clip(p, 1e-7, 1 - 1e-7)
    return np.log(p / (1 - p))


def linear_age(ages: list[np.ndarray], params: np.ndarray) -> np.ndarray:
    alpha, beta = params
    return np.mean([alpha * a + beta for a in ages], axis=0)


def fit_linear_age(ages: list[np.ndarray], y: np.ndarray) -> np.ndarray:
    """(alpha, beta) of age' = alpha * age + beta with the least mean absolute error on `y`."""
    return _fit(lambda params: np.abs(linear_age(ages, params) - y).mean(), np.array([1.0, 0.0]))


def fold_linear_age(model, layer_name: str, params: np.ndarray) -> None:
    """Rescaling layer `layer_name` (age = scale * z + offset) of every member → alpha * age + beta.

    scale/offset are Python floats, not weights: predict functions traced earlier keep the old values."""
    alpha, beta = (float(v) for v in params)
    for member in members_of(model):
        rescale = member.get_layer(layer_name)
        rescale.scale, rescale.offset = alpha * float(rescale.scale), alpha * float(rescale.offset) + beta
