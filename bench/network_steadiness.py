"""How steady an age/gender network's own answer is when its crop moves by a pixel or two (validation only).

    python bench/network_steadiness.py --data-dir ../shared/data/utkface runs/a/last.keras runs/b/last.keras
    python bench/network_steadiness.py --data-dir ../shared/data/utkface --served models/age_gender.keras

bench/steadiness.py measures the whole served path (detector, crop, models); this measures the network
alone, on the val split's app-path crops (training.data_utk, as training validates), so that training
runs can be compared on it: each face and `--copies` copies of it moved by up to 2% of the side and
rescaled by up to ±2% (training.common.make_jitter, what --consistency trains against; the same copies
for every network), one view each, or with `--served` the test-time views and corrections the model's
card (<model>.json beside it) serves it with, averaged. Per network: val age MAE and gender accuracy on
the unmoved faces, the per-face spread (std) of the age over the 1 + copies views (median, p90), the share of faces
whose gender label is not the same in all views, and that share among the faces the network is unsure
of (P(female) within 0.15 of 0.5) and among the others, and the median age spread by age band.
Writes --out (JSON).
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def served_views(path: Path) -> tuple[bool, int]:
    """(mirrored too, shift in px): the test-time views of the card beside a shipped model."""
    from app.pipeline.errors import ModelUnavailable
    from app.pipeline.predict import ModelCard
    try:
        card = ModelCard.read(path.with_suffix(".json"))
    except ModelUnavailable as e:
        sys.exit(f"--served: {e}")
    return card.flip_average, card.shift_px


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("models", nargs="+", type=Path, help=".keras age/gender networks (one input size)")
    p.add_argument("--data-dir", type=Path, required=True, help="folder with UTKFace/ and splits.csv")
    p.add_argument("--cache-dir", type=Path, default=Path("cache"))
    p.add_argument("--limit", type=int, default=0, help="about this many val images (0: all, from the crop cache)")
    p.add_argument("--copies", type=int, default=3)
    p.add_argument("--seed", type=int, default=7)
    p.add_argument("--threads", type=int, default=0, help="CPU threads for TensorFlow (0 = all)")
    p.add_argument("--served", action="store_true",
                   help="each model with its card's test-time views (a shipped model: corrections are in its file)")
    p.add_argument("--out", type=Path, default=Path("reports/network_steadiness.json"))
    args = p.parse_args(argv)

    from training.common import configure_threads
    configure_threads(args.threads)
    import keras
    from training import data_utk
    from training.evaluate_age_gender import moved_copies, served_steadiness
    from training.train_age_gender import MARGIN, STEADY_JITTER

    models = {str(m): keras.models.load_model(m, compile=False) for m in args.models}
    sizes = {m.input_shape[1] for m in models.values()}
    if len(sizes) != 1:
        sys.exit(f"the networks take different input sizes: {sorted(sizes)}")
    size = sizes.pop()
    data = data_utk.load_utk(args.data_dir, size, MARGIN, "app", args.cache_dir, args.limit, splits=("val",))
    val = data_utk.detected_only(data["val"])
    copies = moved_copies(val["x"], args.copies, args.seed)
    results = {}
    for name, model in models.items():
        flip, shift_px = served_views(Path(name)) if args.served else (False, 0)
        results[name] = served_steadiness(model, flip, shift_px, copies, val) | {
            "test_time_views": {"horizontal_flip": flip, "shift_px": shift_px}}
        print(name, json.dumps(results[name]), flush=True)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"val_faces": int(len(val["age"])), "limit": args.limit, "copies": args.copies,
                                    "jitter": STEADY_JITTER, "input_size": size, "served": args.served,
                                    "networks": results}, indent=1) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
