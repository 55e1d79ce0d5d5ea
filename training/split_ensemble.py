"""Save each network of a shipped ensemble as a model of its own, for `--ensemble-with`.

    python -m training.split_ensemble models/age_gender.keras runs/shipped_age_gender/

`--ensemble-with` offers another model's networks as prefixes (the first, then the first two, ...), so
a run warm-started from a shipped ensemble's first network can only be paired with that same network
within a size budget that leaves out the rest. Offered on its own, the second network (trained apart
from the first) is a pair the evaluation can choose. Writes <stem>_member<i>.keras and, beside each,
<stem>_member<i>.json: the model's card, marked as network i of n (the card's numbers are the
ensemble's, not this network's).
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path


def split(model_path: Path, out_dir: Path) -> list[Path]:
    import keras
    from training.common import export_inference_model, write_json
    from training.ensemble import members_of
    card_path = model_path.with_suffix(".json")
    card = json.loads(card_path.read_text()) if card_path.is_file() else {}
    networks = members_of(keras.models.load_model(model_path, compile=False))
    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    for i, net in enumerate(networks, 1):
        path = out_dir / f"{model_path.stem}_member{i}.keras"
        export_inference_model(net, path)
        setup = card.get("serving_setup", {}) | {"networks": 1}
        write_json(path.with_suffix(".json"), card | {
            "file": path.name, "serving_setup": setup,
            "member_of": {"model": str(model_path), "version": card.get("version"), "network": i, "of": len(networks),
                          "note": "one network of the model this card describes; its numbers are the whole model's"}})
        written.append(path)
        print(f"{path}: network {i} of {len(networks)}, {net.count_params():,} parameters", flush=True)
    return written


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("model", type=Path, help="a .keras model (an ensemble made by training.ensemble.average_models)")
    p.add_argument("out_dir", type=Path)
    args = p.parse_args(argv)
    split(args.model, args.out_dir)


if __name__ == "__main__":
    main()
