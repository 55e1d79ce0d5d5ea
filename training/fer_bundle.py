"""FER2013 packed small enough to travel to a lent GPU machine, and unpacked there into the same arrays.

A lent machine takes at most 64 MiB of files and cannot reach the dataset. The preprocessed cache
(cache/fer2013_48.npz, float32) is 330 MB; the training and PublicTest image files themselves
(JPEG, 44 MiB) are the smallest lossless form of what training reads. `pack` writes their bytes, in
the cache's order, with their labels, the FER+ votes and a hash of the preprocessed pixels; `unpack`
rebuilds the cache from them through the same app.pipeline.preprocess.prepare_face and checks the
hash, so a run on the lent machine trains on exactly the arrays it would read here. PrivateTest is
left behind: training never reads it (the unpacked cache holds it empty).

    python -m training.fer_bundle pack --data-dir ../shared/data/fer2013 --out .device/fer
    python -m training.fer_bundle unpack --bundle .device/fer --data-dir /tmp/fer2013 --cache-dir cache

The bundle holds copies of dataset images: keep it in an ignored folder and delete it after the run.
"""
from __future__ import annotations

import argparse
import gzip
import hashlib
import json
from pathlib import Path

import numpy as np

TRAINING_SPLITS = ("train", "public")
VOTES = "ferplus_votes.csv"


def pixel_digest(x: np.ndarray) -> str:
    """sha1 of the preprocessed images as 8-bit values (x is k/255 exactly)."""
    return hashlib.sha1(np.round(np.asarray(x) * 255).astype(np.uint8).tobytes()).hexdigest()


def pack(data_dir: Path, out: Path, cache_dir: Path) -> dict:
    from training.data_fer import load_fer
    data = load_fer(data_dir, cache_dir)
    out.mkdir(parents=True, exist_ok=True)
    manifest, files = {"dropped_duplicates": data["dropped_duplicates"]}, []
    for split in TRAINING_SPLITS:
        s = data[split]
        files += [(data_dir / rel).read_bytes() for rel in s.paths]
        manifest[split] = {"paths": list(s.paths), "y": s.y.tolist(), "sha1": pixel_digest(s.x)}
    # one array of the files' bytes and their offsets: a tar's 1 KiB of headers per 1.5 KiB image doubles it
    offsets = np.cumsum([0] + [len(b) for b in files])
    np.savez(out / "images.npz", data=np.frombuffer(b"".join(files), np.uint8), offsets=offsets)
    if (data_dir / VOTES).exists():      # FER+ votes, when the run's --labels use them
        (out / f"{VOTES}.gz").write_bytes(gzip.compress((data_dir / VOTES).read_bytes()))
    (out / "manifest.json.gz").write_bytes(gzip.compress(json.dumps(manifest).encode()))
    return manifest


def unpack(bundle: Path, data_dir: Path, cache_dir: Path) -> None:
    from training.data_fer import INPUT_SIZE, FerSplit, SPLITS, load_split
    manifest = json.loads(gzip.decompress((bundle / "manifest.json.gz").read_bytes()))
    with np.load(bundle / "images.npz") as z:
        data, offsets = z["data"], z["offsets"]
    paths = [rel for split in TRAINING_SPLITS for rel in manifest[split]["paths"]]
    for i, rel in enumerate(paths):      # the image files as they were, read by data_fer's own load_split
        (data_dir / rel).parent.mkdir(parents=True, exist_ok=True)
        (data_dir / rel).write_bytes(data[offsets[i]:offsets[i + 1]].tobytes())
    if (bundle / f"{VOTES}.gz").exists():
        (data_dir / VOTES).write_bytes(gzip.decompress((bundle / f"{VOTES}.gz").read_bytes()))
    splits = {}
    for split in TRAINING_SPLITS:
        m = manifest[split]
        splits[split] = load_split(data_dir, list(zip(m["paths"], m["y"])))
        got = pixel_digest(splits[split].x)
        if got != m["sha1"]:
            raise SystemExit(f"{split}: preprocessed pixels differ from the packing machine's "
                             f"({got} != {m['sha1']}): this machine's JPEG decoder or OpenCV differs")
        print(f"{split}: {len(m['y'])} images, pixels identical to the packing machine's", flush=True)
    splits["private"] = FerSplit(np.zeros((0, INPUT_SIZE, INPUT_SIZE, 1), np.float32), np.zeros(0, np.int64), [])
    cache_dir.mkdir(parents=True, exist_ok=True)
    np.savez(cache_dir / "fer2013_48.npz", dropped=manifest["dropped_duplicates"],
             **{f"{k}_{a}": np.asarray(getattr(splits[k], a)) for k in SPLITS for a in ("x", "y", "paths")})


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="command", required=True)
    a = sub.add_parser("pack")
    a.add_argument("--data-dir", type=Path, required=True)
    a.add_argument("--out", type=Path, required=True)
    a.add_argument("--cache-dir", type=Path, default=Path("cache"))
    b = sub.add_parser("unpack")
    b.add_argument("--bundle", type=Path, required=True)
    b.add_argument("--data-dir", type=Path, required=True, help="where the images go (the run's --data-dir)")
    b.add_argument("--cache-dir", type=Path, default=Path("cache"))
    args = p.parse_args(argv)
    if args.command == "pack":
        m = pack(args.data_dir, args.out, args.cache_dir)
        size = sum(f.stat().st_size for f in args.out.iterdir())
        print(f"{args.out}: {len(m['train']['y'])} training and {len(m['public']['y'])} PublicTest images, "
              f"{size / 2**20:.1f} MiB", flush=True)
    else:
        unpack(args.bundle, args.data_dir, args.cache_dir)


if __name__ == "__main__":
    main()
