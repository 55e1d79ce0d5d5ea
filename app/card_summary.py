"""Model cards (models/*.json) as plain data a person can read: headline numbers, tables, data licences,
failure modes and uses. The Models page (app/model_cards.py), docs/models.md (training/models_doc.py) and
the README's models block (training/readme_models.py) all build on these functions. No Flask here.

Cards change as the evaluators grow, so everything is read defensively: a missing field drops its line or
table, and measurements this module does not know are still shown, as generic tables.
"""
from __future__ import annotations

import json
import logging
from pathlib import Path

log = logging.getLogger(__name__)

CARD_ORDER = ("emotion", "age_gender")         # the page's order; other cards follow by name
TITLES = {"emotion": "Emotion", "age_gender": "Age and gender"}


# --- small formatters, shared with the README block -------------------------------------------------------

def pct(v) -> str:
    return f"{100 * v:.1f}%"


def on_off(flag) -> str:
    return "on" if flag else "off"


def lineage(members: list[dict]) -> tuple[int, float]:
    """Epochs and minutes of training behind earlier models (training.common.member_summaries)."""
    epochs = sum(m.get("epochs_in_all", m["epochs_run"]) or 0 for m in members)
    minutes = sum(m.get("wall_time_seconds_in_all", m["wall_time_seconds"]) or 0 for m in members) / 60
    return epochs, minutes


def members_by_kind(card: dict) -> tuple[dict, dict, list]:
    """A card's other ensemble members by what they are: another run's checkpoint (training.common.
    member_summaries names its run), an earlier model with a card, or, with neither, a checkpoint saved
    earlier in this same run (whose training is the card's own)."""
    others = card.get("serving_setup", {}).get("other_members", {})
    runs = {path: m for path, m in others.items() if m.get("run")}
    carded = {path: m for path, m in others.items() if path not in runs and (m.get("card") or m.get("epochs_run"))}
    snapshots = [path for path in others if path not in runs and path not in carded]
    return runs, carded, snapshots


def training_in_all(card: dict) -> tuple[int, float]:
    """Epochs and seconds of training behind a whole model: its own network's, the other runs' networks
    averaged with it, and every earlier model they started from or include. An earlier model behind
    several members (two networks warm-started from one model) is counted once."""
    t = card["training"]
    runs, carded, _ = members_by_kind(card)
    behind_models = {}
    for path, m in [*t.get("warm_started_from", {}).items(), *carded.items(),
                    *(item for r in runs.values() for item in r.get("warm_started_from", {}).items())]:
        behind_models.setdefault(m.get("version") or path, m)
    epochs, minutes = lineage(list(behind_models.values()))
    return (int(t.get("epochs_run") or 0) + epochs + sum(m.get("epochs_run") or 0 for m in runs.values()),
            float(t.get("wall_time_seconds") or 0) + 60 * minutes
            + sum(m.get("wall_time_seconds") or 0 for m in runs.values()))


def how_trained(card: dict, selected_on: str) -> str:
    """Epochs and CPU time, for one network (maybe warm-started) or for an ensemble (training/ensemble.py)."""
    t = card["training"]
    minutes = t["wall_time_seconds"] / 60
    setup = card.get("serving_setup", {})
    others = setup.get("other_members", {})
    earlier = t.get("warm_started_from", {})
    runs, carded, snapshots = members_by_kind(card)
    snapshots = [f"`{Path(path).name}`" for path in snapshots]
    def model_of(path, m):      # one earlier model, whichever of its files a member names
        return m.get("version") or path
    in_all = training_in_all(card)[1] / 60
    if earlier:
        e_epochs, e_minutes = lineage(list(earlier.values()))
        this_run = (f"a network warm-started from earlier training ({e_epochs} epochs, {e_minutes:.0f} min) and "
                    f"trained {t['epochs_run']} more epochs (best chosen on {selected_on}, {minutes:.0f} min)")
    else:
        this_run = (f"a `{card['architecture'].get('arch') or 'visage'}` network trained from scratch "
                    f"({t['epochs_run']} epochs, best chosen on {selected_on}, {minutes:.0f} min)")
    if others:
        networks = setup.get("networks", 1 + sum(m.get("networks") or 1 for m in others.values()))
        parts = [this_run]
        for path, m in runs.items():
            start = "warm-started from earlier training" if m.get("warm_started_from") else "from scratch"
            parts.append(f"a network of the run `{m['run']}` ({m['epochs_run']} epochs {start}, its "
                         f"`{Path(path).name}`, {(m.get('wall_time_seconds') or 0) / 60:.0f} min)")
        if carded:
            o_epochs, o_minutes = lineage(list(carded.values()))
            itself = {model_of(*item) for item in carded.items()} <= {model_of(*item) for item in earlier.items()}
            # the new network took one's place; member summaries are per model, so its training still counts
            left_out = " without" in str(setup.get("chosen_candidate", ""))
            note = "; one of its networks left out, its training still counted here" if left_out else ""
            parts.append(f"the earlier model{'s' if len(carded) > 1 else ''}{' itself' if itself else ''} "
                         f"({o_epochs} epochs, {o_minutes:.0f} min of training behind "
                         f"{'them' if len(carded) > 1 else 'it'}{note})")
        if snapshots:
            parts.append(f"an earlier checkpoint of the same run ({', '.join(snapshots)})")
        return (f"the average of {networks} networks, kept because it scored better on {selected_on}: "
                f"{', and '.join(parts)}; {in_all:.0f} min of training in all on a 2-core CPU")
    if earlier:
        return f"{this_run}; {in_all:.0f} min of training in all on a 2-core CPU"
    return f"{this_run} on a 2-core CPU"


# --- reading cards -----------------------------------------------------------------------------------------

def dig(tree, *keys, default=None):
    """tree[k1][k2]…, or default where a key is missing or a level is not a dict."""
    for key in keys:
        if not isinstance(tree, dict) or key not in tree:
            return default
        tree = tree[key]
    return tree


def read_cards(folder) -> dict[str, dict]:
    """Every model card in a models folder (name → card), emotion and age_gender first. A card that cannot be
    read is returned as {"unreadable": reason}, so the page says so instead of failing."""
    paths = sorted(Path(folder).glob("*.json"),
                   key=lambda p: (CARD_ORDER.index(p.stem) if p.stem in CARD_ORDER else len(CARD_ORDER), p.stem))
    cards = {}
    for path in paths:
        try:
            card = json.loads(path.read_text())
        except (OSError, ValueError) as e:
            cards[path.stem] = {"unreadable": f"{path.name}: {e}"}
            continue
        if isinstance(card, dict) and ("outputs" in card or "metrics" in card):   # skip JSON that is no card
            cards[path.stem] = card
    return cards


# --- number formatting for generic values ------------------------------------------------------------------

LABELS = {"mae": "MAE (years)", "cs5": "CS@5 (share within 5 years)", "ece": "calibration error (ECE)",
          "f1": "F1", "macro_f1": "macro-F1", "n": "n", "support": "n", "age_mae": "age MAE (years)",
          "gender_accuracy": "gender accuracy", "median": "median", "p90": "90th percentile"}
SHARE_WORDS = ("accuracy", "coverage", "recall", "precision", "cs5", "rate", "share", "observed", "predicted")


def label(key: str) -> str:
    return LABELS.get(key, str(key).replace("_", " "))


def is_scalar(v) -> bool:
    return v is None or isinstance(v, (str, int, float, bool))


def fmt(key: str, v) -> str:
    """A value as a person reads it: shares as %, milliseconds with their unit, counts with separators."""
    if v is None:
        return "–"
    if isinstance(v, bool):
        return "yes" if v else "no"
    if isinstance(v, int):
        return f"{v:,}"
    if isinstance(v, float):
        k = str(key).lower()
        if any(w in k for w in SHARE_WORDS) and 0 <= v <= 1:
            return pct(v)
        if k == "ms" or k.endswith("_ms") or "_ms_" in k:
            return f"{v:.1f} ms"
        return f"{v:.2f}" if abs(v) >= 1 else f"{v:.3g}"
    if isinstance(v, (list, tuple)) and all(is_scalar(x) for x in v):
        return ", ".join(fmt(key, x) for x in v)
    return str(v) if isinstance(v, str) else json.dumps(v)


def table(title: str, columns: list[str], rows: list[list[str]], note: str = "") -> dict:
    return {"title": title, "columns": columns, "rows": rows, "note": note}


def generic_tables(title: str, value, depth: int = 0) -> list[dict]:
    """Tables for a card block this module has no special layout for (a new evaluator field, say).
    Scalars → one measure/value table; a dict of same-shaped dicts → one row each; deeper → recursion."""
    if is_scalar(value) or depth > 5:
        return [table(title, ["measure", "value"], [[label(title), fmt(title, value)]])]
    if isinstance(value, list):
        if value and all(isinstance(x, dict) and all(is_scalar(v) or isinstance(v, list) for v in x.values())
                         for x in value):
            cols = list(dict.fromkeys(k for x in value for k in x))
            return [table(title, [label(c) for c in cols], [[fmt(c, x.get(c)) for c in cols] for x in value])]
        return [table(title, ["measure", "value"], [[label(title), fmt(title, value)]])]
    if not isinstance(value, dict):
        return []
    flat = {k: v for k, v in value.items() if is_scalar(v) or (isinstance(v, list) and all(is_scalar(x) for x in v))}
    row_dicts = {k: v for k, v in value.items()
                 if k not in flat and isinstance(v, dict) and v and all(is_scalar(x) for x in v.values())}
    out, done = [], set(flat)
    if flat:
        out.append(table(title, ["measure", "value"], [[label(k), fmt(k, v)] for k, v in flat.items()]))
    if len(row_dicts) >= 2:
        cols = list(dict.fromkeys(c for row in row_dicts.values() for c in row))
        out.append(table(title, [""] + [label(c) for c in cols],
                         [[str(k)] + [fmt(c, row.get(c)) for c in cols] for k, row in row_dicts.items()]))
        done |= set(row_dicts)
    for k, v in value.items():
        if k not in done:
            out += generic_tables(f"{title} · {label(k)}", v, depth + 1)
    return out


# --- what a person needs to know about each model ------------------------------------------------------------

LABEL_SOURCES = {"fer": "the original FER2013 labels",
                 "ferplus": "the FER+ vote distribution of 10 annotators",
                 "blend": "the mean of the FER+ vote distribution (10 annotators) and the original FER2013 label"}

INTENDED_USES = [
    "Trying out and teaching what face-analysis models estimate, and how often they are wrong.",
    "People looking at estimates of their own photos, with their consent, as a rough guess with an error bar.",
    "Research on models like these (their errors and their bias), within the datasets' non-commercial licences.",
]
UNSUITABLE_USES = [
    "Any decision about a person: hiring, admission, policing, security or access control, insurance, credit, "
    "medical or legal matters.",
    "Age verification or enforcing an age limit: one estimate can be many years off.",
    "Reading someone's gender identity or feelings: the outputs are labels of appearance learnt from web photos.",
    "Identifying or tracking people (Visage does no recognition), or analyzing people who have not agreed to it.",
    "Commercial use: the training images are licensed for non-commercial research only.",
]

# Card fields this module lays out itself; any other top-level field is shown generically.
KNOWN_FIELDS = {"name", "file", "version", "date", "task", "input", "outputs", "test_time_augmentation",
                "serving_setup", "data", "architecture", "training", "metrics", "note",
                "intended_uses", "unsuitable_uses", "known_failure_modes"}


def licences(card: dict) -> list[list[str]]:
    """[dataset, licence] rows: the card's own `data.licences` ({dataset: licence}) if it has one, else what
    is known of the datasets Visage trains on (data/README.md, FERPLUS_LABELS_LICENSE.md)."""
    data = card.get("data") or {}
    if isinstance(data.get("licences"), dict):
        return [[str(k), str(v)] for k, v in data["licences"].items()]
    dataset = str(data.get("dataset") or "")
    rows = []
    if "FER2013" in dataset.upper():
        rows.append(["FER2013 images (ICML 2013 challenge)", "research and non-commercial use only"])
        if data.get("labels") in ("ferplus", "blend"):
            rows.append(["FER+ labels (Microsoft FERPlus votes)", "MIT licence"])
    elif "UTKFACE" in dataset.upper():
        rows.append(["UTKFace", "non-commercial research use only; the photos' copyright stays with their owners"])
    elif dataset:
        rows.append([dataset, "not stated in the card"])
    return rows


def describe_outputs(card: dict) -> str:
    """What the model estimates, in words, from its outputs."""
    parts = []
    for name, out in (card.get("outputs") or {}).items():
        if not isinstance(out, dict):
            continue
        kind = out.get("kind")
        if kind == "softmax" and out.get("labels"):
            parts.append(f"{name}: one of {len(out['labels'])} labels ({', '.join(out['labels'])}), "
                         "with a probability for each")
        elif kind == "regression":
            text = f"{name} in {out.get('unit', 'units')}"
            iv = out.get("interval") or {}
            if {"coverage", "below", "above"} <= set(iv):
                text += (f", with a range meant to hold the true {name} {iv['coverage']:.0%} of the time "
                         f"(−{iv['below']:.1f} / +{iv['above']:.1f} {out.get('unit', '')})").replace(" )", ")")
            parts.append(text)
        elif kind == "sigmoid":
            parts.append(f"{name}: {out.get('positive_label', 'yes')} or {out.get('negative_label', 'no')}, "
                         "with the probability of that label")
        else:
            parts.append(name)
    size = dig(card, "input", "size")
    margin = dig(card, "input", "margin", default=0) or 0
    source = (f", from a {size}×{size} grayscale crop of each face the detector finds"
              f" (its box plus a {100 * margin:.2g}% margin)") if size else ""
    return ("Estimates " + "; ".join(parts) + source + ".") if parts else ""


def data_rows(card: dict) -> list[list[str]]:
    data = card.get("data") or {}
    rows = []
    if data.get("dataset"):
        rows.append(["dataset", str(data["dataset"])])
    train = data.get("train") or (f"the train part of {data['split']}" if data.get("split") else "")
    if data.get("train_images") or train:
        images = f"{data['train_images']:,} images" if isinstance(data.get("train_images"), int) else ""
        rows.append(["trained on", ", ".join(x for x in (str(train or ""), images) if x)])
    if data.get("labels"):
        rows.append(["training labels", LABEL_SOURCES.get(data["labels"], str(data["labels"]))])
    if data.get("selection"):
        rows.append(["model chosen on", str(data["selection"])])
    if data.get("benchmark"):
        rows.append(["measured on", str(data["benchmark"])])
    return rows


def safe_how_trained(card: dict, selected_on: str) -> str | None:
    try:
        return how_trained(card, selected_on)
    except (KeyError, TypeError, AttributeError, ValueError):
        return None


def latency_row(metrics: dict) -> list[list[str]]:
    lat = dig(metrics, "latency_ms_single_face")
    if not isinstance(lat, dict) or lat.get("median") is None:
        return []
    text = f"{lat['median']:.1f} ms median"
    if lat.get("p90") is not None:
        text += f", {lat['p90']:.1f} ms at the 90th percentile"
    return [["time per face (one face, CPU)", text]]


INT8_NUMBERS = {"age_mae": ("age MAE", "mae"), "gender_accuracy": ("gender", "accuracy"),
                "accuracy_crops": ("accuracy", "accuracy"), "accuracy_photos": ("as photos", "accuracy")}


def int8_row(card: dict) -> list[list[str]]:
    """The int8 copy the app serves (training/quantize_runtime.py): its test numbers, the float copy's beside them."""
    test, lat = dig(card, "runtime", "onnx_int8", "test"), dig(card, "runtime", "onnx_int8",
                                                             "latency_ms_single_face_accurate_one_thread")
    if not isinstance(test, dict) or not isinstance(test.get("int8"), dict):
        return []
    shown = [f"{name} {fmt(kind, test['int8'][key])} ({fmt(kind, dig(test, 'float32', key))})"
             for key, (name, kind) in INT8_NUMBERS.items() if key in test["int8"]]
    if isinstance(lat, dict) and lat.get("int8_vs_float32") is not None:
        shown.append(f"{lat['int8_vs_float32']:.2f}x the float copy's time per face")
    return [["int8 copy, served on CPUs with VNNI (VISAGE_INT8_MODELS): test numbers (float copy's)", "; ".join(shown)]]


def common_failure_modes(card: dict) -> list[str]:
    size = dig(card, "input", "size")
    return [
        "Profile and turned faces: the default detector (BlazeFace) finds faces tilted in the picture and turns "
        "them upright by their eyes (99.4% of faces tilted 10–30° found in the speed.md scenes); the Haar cascade "
        "(detector=haar) misses about half of those and reads them as found. Faces turned sideways are found less "
        "often by both, and the training photos are mostly frontal, so such a face gets a less reliable estimate.",
        "Small faces: with small faces too ticked (a class photo), faces under about 25 px are not found "
        "(BlazeFace on tiles; Haar: 24 px on its working copy); without it, the smallest found are larger"
        + (f"; a small face is enlarged to the network's {size}×{size} px input, which adds no detail."
           if size else "."),
        "Lighting: dark, back-lit or half-shadowed faces. Histogram equalization evens out overall brightness, "
        "not shadows; this is not measured separately.",
        "Covered faces (masks, sunglasses, hands, hair) and blurred faces are not measured separately either.",
    ]


# --- emotion ----------------------------------------------------------------------------------------------

def emotion_split_tables(title: str, split: dict) -> list[dict]:
    out = []
    per_class = split.get("per_class")
    if isinstance(per_class, dict) and per_class:
        out.append(table(f"{title}: per class", ["class", "precision", "recall", "F1", "n"],
                         [[k, fmt("precision", dig(v, "precision")), fmt("recall", dig(v, "recall")),
                           fmt("f1", dig(v, "f1")), fmt("n", dig(v, "support"))] for k, v in per_class.items()]))
    cm = split.get("confusion_matrix") or {}
    labels, rows = cm.get("labels"), cm.get("rows_true_cols_pred")
    if labels and rows and len(rows) == len(labels):
        out.append(table(f"{title}: confusion matrix", ["true ↓ / predicted →"] + list(labels),
                         [[labels[i]] + [fmt("n", x) for x in row] for i, row in enumerate(rows)],
                         "Each row is the faces that carry that label; the columns are what the model said."))
    return out


def emotion_summary(card: dict, s: dict) -> None:
    metrics = card.get("metrics") or {}
    splits = {k: v for k, v in metrics.items() if isinstance(v, dict) and "accuracy" in v}
    bench_key = "private_test" if "private_test" in splits else next(iter(splits), None)
    bench_name = {"private_test": "FER2013 PrivateTest", "public_test": "FER2013 PublicTest"}
    consumed = {"latency_ms_single_face"}
    if bench_key:
        m = splits[bench_key]
        name = bench_name.get(bench_key, label(bench_key))
        s["headline"] += [[f"accuracy on {name}", fmt("accuracy", m.get("accuracy"))]]
        if m.get("macro_f1") is not None:
            s["headline"] += [["macro-F1 (mean over the 7 classes)", fmt("f1", m["macro_f1"])]]
        s["tables"] += emotion_split_tables(name, m)
        consumed.add(bench_key)
        s["failure_modes"] += weak_classes(m, name)
    app = metrics.get("private_test_app_path")
    if isinstance(app, dict) and app.get("accuracy") is not None:
        # The same faces as photos through the default detector and crop: what a user gets.
        s["headline"] += [["the same faces as photos, through the app's detector: faces found / accuracy",
                           f"{fmt('recall', app.get('detection_recall'))} / {fmt('accuracy', app['accuracy'])}"]]
    s["headline"] += latency_row(metrics)
    for key, m in splits.items():
        if key not in consumed:
            # Another evaluation shaped like the benchmark (another view profile, say): same tables, in full view.
            s["tables"] += generic_tables(bench_name.get(key, label(key)),
                                          {k: v for k, v in m.items() if k not in ("per_class", "confusion_matrix")})
            s["tables"] += emotion_split_tables(bench_name.get(key, label(key)), m)
            consumed.add(key)
    s["other_metrics"] = {k: v for k, v in metrics.items() if k not in consumed}
    tta, setup = card.get("test_time_augmentation") or {}, card.get("serving_setup") or {}
    served = [f"mirrored view averaged in: {'yes' if tta.get('horizontal_flip') else 'no'}"]
    if setup.get("members"):
        served.append(f"networks averaged: {len(setup['members'])}")
    if "class_logit_shift" in setup:
        served.append("class-prior correction fitted on PublicTest: "
                      f"{'yes' if any((setup.get('class_logit_shift') or {}).values()) else 'no'}")
    s["served"] = "; ".join(served)
    s["trained"] = safe_how_trained(card, "PublicTest")
    s["failure_modes"] += ["Children, older people and cultures: FER2013 comes from web image searches and is not "
                           "measured per age or group, so accuracy for them is unknown; an expression is not a "
                           "feeling, and posed expressions differ from spontaneous ones."]


def weak_classes(split: dict, name: str) -> list[str]:
    """The classes recognised in fewer than half of their faces, with what the model says instead."""
    out = []
    per_class = split.get("per_class") or {}
    cm = split.get("confusion_matrix") or {}
    labels, rows = cm.get("labels") or [], cm.get("rows_true_cols_pred") or []
    for cls, v in per_class.items():
        recall = dig(v, "recall")
        if not isinstance(recall, (int, float)) or recall >= 0.5:
            continue
        text = f"{cls.capitalize()} is recognised in only {pct(recall)} of the {name} faces that show it"
        if cls in labels and len(rows) == len(labels):
            row = rows[labels.index(cls)]
            wrong = max((x, labels[j]) for j, x in enumerate(row) if labels[j] != cls)
            text += f"; it is most often taken for {wrong[1]} ({wrong[0]} of {sum(row)})"
        out.append(text + ".")
    return out


# --- age and gender -----------------------------------------------------------------------------------------

def age_gender_split(title: str, split: dict, card: dict, headline: bool) -> tuple[list, list]:
    """(headline rows, tables) for one evaluated split (test, or another view profile shaped alike)."""
    age, gender = split.get("age") or {}, split.get("gender") or {}
    rows = []
    if age.get("mae") is not None:
        rows.append([f"age: mean absolute error ({title})", f"{age['mae']:.2f} years"])
    if age.get("cs5") is not None:
        rows.append(["age: share within 5 years", pct(age["cs5"])])
    if gender.get("accuracy") is not None:
        rows.append([f"gender: accuracy ({title})", pct(gender["accuracy"])])
    if gender.get("f1") is not None:
        rows.append(["gender: F1", f"{gender['f1']:.3f}"])
    ece = dig(split, "gender_calibration", "ece")
    if ece is not None:
        rows.append(["gender: calibration error (ECE, 0 = probabilities mean what they say)", f"{ece:.3f}"])
    iv = dig(card, "outputs", "age", "interval") or {}
    coverage = split.get("age_interval_coverage")
    if coverage is not None:
        target = f"the {iv['coverage']:.0%} " if "coverage" in iv else "the "
        rows.append([f"age: {target}interval holds the true age", pct(coverage)])
    tables = []
    bands = age.get("mae_by_band")
    if isinstance(bands, dict) and bands:
        tables.append(table(f"{title}: age error by age band", ["age band", "MAE (years)", "n"],
                            [[k, fmt("mae", dig(v, "mae")), fmt("n", dig(v, "n"))] for k, v in bands.items()]))
    reliability = dig(split, "gender_calibration", "reliability")
    if isinstance(reliability, list) and reliability:
        tables.append(table(
            f"{title}: gender calibration", ["P(female) bin", "n", "mean P(female)", "observed share female"],
            [["–".join(f"{x:.1f}" for x in dig(b, "bin", default=[])), fmt("n", dig(b, "n")),
              fmt("predicted", dig(b, "mean_predicted")), fmt("observed", dig(b, "observed"))] for b in reliability],
            "A well calibrated model has the observed share close to the mean probability in every bin."))
    known = {"age", "gender", "gender_calibration", "age_interval_coverage"}
    extra = {k: v for k, v in split.items() if k not in known}
    extra.update({f"age {k}": v for k, v in age.items() if k not in ("mae", "cs5", "mae_by_band", "n")})
    extra.update({f"gender {k}": v for k, v in gender.items() if k not in ("accuracy", "f1", "positive_label", "n")})
    if not headline:
        tables = [table(title, ["measure", "value"], rows)] + tables
        rows = []
    if extra:
        tables += generic_tables(f"{title}: other measures", extra)
    return rows, tables


def age_gender_summary(card: dict, s: dict) -> None:
    metrics = card.get("metrics") or {}
    splits = {k: v for k, v in metrics.items() if isinstance(v, dict) and dig(v, "age", "mae") is not None}
    bench_key = "test" if "test" in splits else next(iter(splits), None)
    consumed = {"latency_ms_single_face"}
    names = {"test": "UTKFace test"}
    if bench_key:
        rows, tables = age_gender_split(names.get(bench_key, label(bench_key)), splits[bench_key], card, True)
        s["headline"] += rows
        s["tables"] += tables
        consumed.add(bench_key)
    s["headline"] += latency_row(metrics)
    fair = metrics.get("fairness_test")
    if isinstance(fair, dict) and fair:
        # Cards under the app-path protocol also say how often the detector found each group's faces.
        recall = any(isinstance(v, dict) and "detection_recall" in v for v in fair.values())
        older = any(isinstance(v, dict) and "gender_accuracy_ages_13_plus" in v for v in fair.values())
        s["tables"].append(table(
            "UTKFace test: by group",
            ["group", "n", "gender accuracy"] + (["gender accuracy, ages 13+"] if older else [])
            + ["age MAE (years)"] + (["faces found by the detector"] if recall else []),
            [[k, fmt("n", dig(v, "n")), fmt("accuracy", dig(v, "gender_accuracy"))]
             + ([fmt("accuracy", dig(v, "gender_accuracy_ages_13_plus"))] if older else [])
             + [fmt("mae", dig(v, "age_mae"))]
             + ([fmt("accuracy", dig(v, "detection_recall"))] if recall else []) for k, v in fair.items()],
            "Race and gender as labelled in UTKFace." + (" The groups hold different shares of young children, "
                                                         "whose gender is read less well: the ages 13+ column "
                                                         "compares like with like." if older else "")))
        consumed.add("fairness_test")
    for key, split in splits.items():
        if key not in consumed:
            # Another evaluation shaped like test (another view profile, say): same tables, in full view.
            s["tables"] += age_gender_split(label(key), split, card, False)[1]
            consumed.add(key)
    s["other_metrics"] = {k: v for k, v in metrics.items() if k not in consumed}

    tta, setup = card.get("test_time_augmentation") or {}, card.get("serving_setup") or {}
    shift = tta.get("shift_px")
    served = [f"mirrored view averaged in: {'yes' if tta.get('horizontal_flip') else 'no'}",
              f"shifted views: {f'±{shift} px' if shift else 'no'}"]
    if "age_correction_alpha_beta" in setup:
        served.append(f"linear age correction fitted on val: "
                      f"{'yes' if setup['age_correction_alpha_beta'] != [1, 0] else 'no'}")
    balance = setup.get("gender_balance_check_on_val") or {}
    if "gender_platt_a_c" in setup:
        a, c = setup["gender_platt_a_c"]
        c -= balance.get("offset", 0.0)      # the balance offset is folded into the same logit (0 where not kept)
        served.append(f"Platt scaling of P(female) fitted on val: {'yes' if (a, round(c, 9)) != (1, 0) else 'no'}")
    if balance:
        served.append("gender threshold moved on val so that women and men are read equally well: "
                      + (f"yes (logit {balance['offset']:+.2f})" if balance.get("kept") else "no"))
    s["served"] = "; ".join(served)
    s["trained"] = safe_how_trained(card, "val")
    s["failure_modes"] += age_gender_weak_spots(metrics, splits.get(bench_key) or {})


def age_gender_weak_spots(metrics: dict, bench: dict) -> list[str]:
    out = []
    bands = {k: v["mae"] for k, v in (dig(bench, "age", "mae_by_band") or {}).items()
             if isinstance(dig(v, "mae"), (int, float))}
    if bands:
        worst = max(bands, key=bands.get)
        out.append(f"Age is least accurate for the {worst} band (mean error {bands[worst]:.1f} years on test); "
                   "older faces vary more and are fewer in the training data.")
    child_band = next((k for k in bands if k.startswith("0-")), None)
    in_years = f" ({bands[child_band]:.1f} years for {child_band})" if child_band else ""
    groups = metrics.get("fairness_test") or {}
    children, older = dig(groups, "age=0-12", "gender_accuracy"), dig(groups, "age=13+", "gender_accuracy")
    measured = (f"gender is right for {pct(children)} of children vs {pct(older)} from 13 on (test)"
                if isinstance(children, float) and isinstance(older, float) else
                "gender accuracy is not measured separately for children")
    out.append(f"Children: the age error is small in years{in_years} but large for their age, and {measured}: "
               "do not read a child's gender from it.")
    fair = {k: v["gender_accuracy"] for k, v in groups.items()
            if k.startswith("race=") and isinstance(dig(v, "gender_accuracy"), (int, float))}
    if len(fair) >= 2:
        lo, hi = min(fair, key=fair.get), max(fair, key=fair.get)
        out.append(f"Gender accuracy differs between groups: {pct(fair[lo])} for {lo.split('=', 1)[1]} faces vs "
                   f"{pct(fair[hi])} for {hi.split('=', 1)[1]} faces on test ({100 * (fair[hi] - fair[lo]):.1f} points)"
                   + ("; the groups hold different shares of young children (see the table by group)."
                      if isinstance(children, float) else "."))
    tight = metrics.get("test_on_tight_chips") or {}
    if isinstance(tight.get("age_mae"), (int, float)) and dig(bench, "age", "mae") is not None:
        out.append(f"Faces cut tighter than the app cuts them (UTKFace's own aligned crops) get worse estimates: "
                   f"age MAE {tight['age_mae']:.2f} vs {bench['age']['mae']:.2f} years.")
    return out


# --- one card ---------------------------------------------------------------------------------------------

def listed(value) -> list:
    return value if isinstance(value, list) else []


def summarize(name: str, card: dict) -> dict:
    """A card as sections for a person (see the module docstring); never raises on a card's shape."""
    s = {"name": name, "title": TITLES.get(name, label(name).capitalize()), "file": card.get("file"),
         "version": card.get("version"), "date": card.get("date"), "task": card.get("task"),
         "unreadable": card.get("unreadable"), "estimates": "", "headline": [], "data": [], "licences": [],
         "trained": None, "served": None, "tables": [], "other": [], "failure_modes": [],
         "intended_uses": [], "unsuitable_uses": [], "other_metrics": {}}
    if s["unreadable"]:
        return s
    try:
        s["estimates"] = describe_outputs(card)
        s["data"] = data_rows(card)
        s["licences"] = licences(card)
        s["failure_modes"] += [str(x) for x in listed(card.get("known_failure_modes"))]
        if name == "emotion":
            emotion_summary(card, s)
        elif name == "age_gender":
            age_gender_summary(card, s)
        else:
            s["other_metrics"] = card.get("metrics") if isinstance(card.get("metrics"), dict) else {}
            s["headline"] += latency_row(s["other_metrics"])
            s["other_metrics"] = {k: v for k, v in s["other_metrics"].items() if k != "latency_ms_single_face"}
    except (KeyError, TypeError, AttributeError, ValueError, IndexError):
        # A card shaped in a way this code did not foresee: show what was gathered and the raw measurements.
        log.exception("model card %s: laid out generically", name)
        s["other_metrics"] = card.get("metrics") if isinstance(card.get("metrics"), dict) else {}
    for key, value in s.pop("other_metrics").items():
        s["other"] += generic_tables(label(key), value)
    for key in card:
        if key not in KNOWN_FIELDS and key != "unreadable":
            s["other"] += generic_tables(label(key), card[key])
    s["headline"] += int8_row(card)
    s["failure_modes"] += common_failure_modes(card)
    # A card may state its own uses (lists of sentences); otherwise the project's apply.
    s["intended_uses"] = [str(x) for x in listed(card.get("intended_uses")) or INTENDED_USES]
    s["unsuitable_uses"] = [str(x) for x in listed(card.get("unsuitable_uses")) or UNSUITABLE_USES]
    return s


def summarize_folder(folder) -> list[dict]:
    return [summarize(name, card) for name, card in read_cards(folder).items()]
