"""Data loaders on small fixture folders made here (no dataset needed)."""
import cv2
import numpy as np
import pytest

from training import data_fer, data_utk


def write_gray(path, value, size=48):
    path.parent.mkdir(parents=True, exist_ok=True)
    img = np.full((size, size), value, np.uint8)
    img[10:20, 10:30] = 255 - value          # some structure, so images differ
    cv2.imwrite(str(path), img)


@pytest.fixture
def fer_dir(tmp_path):
    for label, name in enumerate(data_fer.EMOTIONS):
        for i in range(label + 1):                     # angry 1, disgust 2, ... neutral 7 images
            write_gray(tmp_path / "train" / name / f"Training_{label}{i}.jpg", 10 * label + i)
        write_gray(tmp_path / "test" / name / f"PublicTest_{label}.jpg", 100 + label)
        write_gray(tmp_path / "test" / name / f"PrivateTest_{label}.jpg", 180 + label)
    # a training image that is a pixel copy of a test image must be dropped
    write_gray(tmp_path / "train" / "happy" / "Training_copy.jpg", 100 + 3)
    return tmp_path


def test_fer_loader_reads_class_folders_and_splits(fer_dir):
    data = data_fer.load_fer(fer_dir)
    assert data_fer.EMOTIONS == ["angry", "disgust", "fear", "happy", "sad", "surprise", "neutral"]
    assert np.bincount(data["train"].y).tolist() == [1, 2, 3, 4, 5, 6, 7]
    assert len(data["public"].y) == len(data["private"].y) == 7
    assert data["dropped_duplicates"] == 1
    x = data["train"].x
    assert x.shape[1:] == (48, 48, 1) and x.dtype == np.float32 and 0 <= x.min() and x.max() <= 1


def test_fer_loader_names_a_missing_class_folder(fer_dir):
    import shutil
    shutil.rmtree(fer_dir / "train" / "disgust")
    with pytest.raises(FileNotFoundError, match="disgust"):
        data_fer.load_fer(fer_dir)


def test_fer_soft_targets_blend_votes_and_drop_non_faces(fer_dir):
    split = data_fer.load_fer(fer_dir)["train"]
    face, nonface = split.paths[0], split.paths[1]
    votes = {face: np.array([5, 0, 0, 0, 0, 0, 5, 0], np.float32),          # half anger, half neutral
             nonface: np.array([1, 0, 0, 0, 0, 0, 0, 9], np.float32)}       # mostly "not a face"
    targets, keep = data_fer.soft_targets(split, votes, "blend")
    assert keep[0] and not keep[1] and keep[2:].all()
    assert targets[0].tolist() == pytest.approx([0.75, 0, 0, 0, 0, 0, 0.25])   # original label: angry
    assert np.allclose(targets.sum(1), 1)


@pytest.mark.parametrize("name,expected", [
    ("26_1_2_20170116174525125.jpg.chip.jpg", (26, 1, 2)),
    ("1_0_0_20161219140623097.jpg.chip.jpg", (1, 0, 0)),
    ("116_1_0_20170120134921760.jpg.chip.jpg", (116, 1, 0)),
    ("39_1_20170116174525125.jpg.chip.jpg", (39, 1, None)),      # real files lack the race field
    ("61_1_20170109142408075.jpg.chip.jpg", (61, 1, None)),
])
def test_utk_filename_parser(name, expected):
    item = data_utk.parse_filename(name)
    assert (item.age, item.gender, item.race) == expected


@pytest.mark.parametrize("name", ["readme.txt", "abc_1_2_3.jpg", "0_0_0_2017.jpg", "30_5_0_2017.jpg"])
def test_utk_filename_parser_rejects_odd_names(name):
    assert data_utk.parse_filename(name) is None


def test_hash_split_is_deterministic_and_roughly_80_10_10():
    names = [f"{i % 90 + 1}_{i % 2}_{i % 5}_2017{i:09d}.jpg.chip.jpg" for i in range(5000)]
    first = [data_utk.hash_split(n) for n in names]
    assert first == [data_utk.hash_split(n) for n in names]
    share = {s: first.count(s) / len(first) for s in ("train", "val", "test")}
    assert share["train"] == pytest.approx(0.8, abs=0.03) and share["val"] == pytest.approx(0.1, abs=0.02)


def test_utk_list_items_uses_splits_csv_when_present(tmp_path):
    (tmp_path / "UTKFace").mkdir()
    (tmp_path / "splits.csv").write_text("filename,age,gender,race,split\n"
                                         "20_0_1_x.jpg.chip.jpg,20,0,1,train\n"
                                         "39_1_x.jpg.chip.jpg,39,1,,test\n")
    items = data_utk.list_items(tmp_path)
    assert [i.age for i in items["train"]] == [20] and items["test"][0].race is None and items["val"] == []


def test_utk_list_items_without_csv_splits_by_hash(tmp_path):
    (tmp_path / "UTKFace").mkdir()
    for i in range(30):
        write_gray(tmp_path / "UTKFace" / f"{i + 1}_{i % 2}_0_2017{i:05d}.jpg.chip.jpg", i)
    (tmp_path / "UTKFace" / "notes.jpg").write_bytes(b"")
    items = data_utk.list_items(tmp_path)
    assert sum(len(v) for v in items.values()) == 30


def test_loaders_give_only_the_splits_asked_for_from_a_cache_and_without_one(tmp_path, fer_dir):
    """An evaluator asks for its test split only after choosing; a cache is still written whole."""
    cache = tmp_path / "cache"
    first = data_fer.load_fer(fer_dir, cache, splits=("train", "public"))
    assert set(first) == {"train", "public", "dropped_duplicates"} and (cache / "fer2013_48.npz").exists()
    private = data_fer.load_fer(fer_dir, cache, splits=("private",))
    assert set(private) == {"private", "dropped_duplicates"} and len(private["private"].y) == 7
    assert set(data_fer.load_fer(fer_dir, splits=("public",))) == {"public", "dropped_duplicates"}

    fields = ("x", "age", "gender", "race", "detected")
    sizes = {"train": 5, "val": 3, "test": 4}
    from app.pipeline.detect import HaarSettings
    np.savez(cache / f"utkface_app-{HaarSettings().fingerprint()}_8_m0.15.npz", **{f"{s}_{a}": np.zeros((n, 8, 8, 1) if a == "x" else n, bool if a ==
                                                   "detected" else np.float32) for s, n in sizes.items() for a in fields})
    # the cache of crops detected with other settings is not read: it names the settings it was made with
    assert HaarSettings(candidate_cascade=None).fingerprint() != HaarSettings().fingerprint()
    data = data_utk.load_utk(tmp_path / "nowhere", 8, 0.15, "haar", cache, splits=("train", "val"))
    assert set(data) == {"train", "val", "crop_stats"} and set(data["crop_stats"]) == {"train", "val"}
    assert data["val"]["x"].shape == (3, 8, 8, 1) and data["crop_stats"]["train"] == {"images": 5, "detected": 0}


def test_serving_margin_recovers_the_framing_of_face_crops(astronaut):
    """Face crops cut around the app's own box with margin m, shrunk to FER2013's 48 px: the margin
    serving_margin measures on them with the same detector is m again (so served crops are framed like
    the training images). The default detector (BlazeFace), then Haar."""
    from app.pipeline.analyze import find_faces
    from app.pipeline.detect import DEFAULT_DETECTOR
    from app.pipeline.preprocess import crop_face
    for detector in (DEFAULT_DETECTOR, "haar"):
        box = find_faces(astronaut, detector)[0]
        for margin in (0.0, 0.2):
            crop = cv2.resize(cv2.cvtColor(crop_face(astronaut, box, margin), cv2.COLOR_RGB2GRAY), (48, 48),
                              interpolation=cv2.INTER_AREA)
            x = (crop.astype(np.float32) / 255)[None, ..., None]
            # measured: blazeface -0.01, 0.162; haar 0.0, 0.227
            assert data_fer.serving_margin(x, detector=detector) == pytest.approx(margin, abs=0.04)


def test_group_weights_lift_rare_race_gender_groups_evenly():
    from training.train_age_gender import group_weights
    race = np.array([0] * 8 + [2] * 2 + [-1] * 2)
    gender = np.array([0, 1] * 4 + [0, 1] + [1, 1])
    w = group_weights(race, gender)
    assert np.isclose(w.mean(), 1.0)
    assert w[0] < w[8] and np.isclose(w[8], w[9])          # White (4 per gender) below Asian (1 per gender)
    assert np.isclose(w[10], w[11]) and w[10] < w[8]        # unknown race, 2 women: a group of its own


def test_training_backgrounds_keep_the_face_and_change_its_surroundings(astronaut):
    from training.common import BACKGROUND_KINDS, framed, on_background
    face = np.ascontiguousarray(astronaut[30:230, 140:340])          # a 200x200 face image, like a UTKFace chip
    edges = framed(face)
    seen = set()
    for seed in range(40):
        out = on_background(face, np.random.default_rng(seed))
        assert out.shape == edges.shape and out.dtype == np.uint8
        p = (out.shape[0] - 200) // 2
        inner = out[p + 10:p + 190, p + 10:p + 190].astype(int)    # the face itself, away from the soft seam
        assert np.abs(inner - face[10:190, 10:190]).max() <= 1
        seen.add("edges" if np.array_equal(out, edges) else "other")
        again = on_background(face, np.random.default_rng(seed))
        assert np.array_equal(out, again)                            # one background per seed
    assert seen == {"edges", "other"} and set(BACKGROUND_KINDS) == {"edges", "flat", "noise", "picture"}


def test_a_split_is_cut_the_same_by_one_process_or_several(tmp_path, astronaut):
    """New caches are cut by one process per core (data_utk.cut_all): the crops, which images have a face,
    and each image's seeded background are those of a single process, in the items' order."""
    from app.pipeline.analyze import find_faces
    x, y, w, h = find_faces(astronaut, "blazeface")[0]
    face = astronaut[y:y + h, x:x + w]
    (tmp_path / "UTKFace").mkdir()
    chips = [cv2.resize(face[shift:, shift:], (200, 200)) for shift in (0, 4, 8)]    # three of the one face
    chips.append(np.full((200, 200, 3), 90, np.uint8))                                # and one of no face
    items = [data_utk.UtkItem(f"{30 + i}_1_0_2017.jpg.chip.jpg", 30 + i, 1, 0) for i in range(len(chips))]
    for item, chip in zip(items, chips):
        cv2.imwrite(str(tmp_path / "UTKFace" / item.filename), cv2.cvtColor(chip, cv2.COLOR_RGB2BGR))
    for backgrounds in (False, True):
        one = data_utk.cut_all(tmp_path, items, 32, 0.15, "app", backgrounds, workers=1)
        two = data_utk.cut_all(tmp_path, items, 32, 0.15, "app", backgrounds, workers=2)
        assert one[1].tolist() == two[1].tolist() == [True, True, True, False]
        assert one[0].shape == (4, 32, 32, 1) and np.array_equal(one[0], two[0])
        assert len({one[0][i].tobytes() for i in range(3)}) == 3      # each image its own crop


def test_a_quick_run_cuts_each_image_once_per_process_until_its_file_changes(tmp_path, astronaut, monkeypatch):
    """--limit runs (and the tests) keep their few crops in the process: loading them again gives the same
    arrays without a detection, through a linked copy of the folder too; a rewritten file is cut again."""
    from app.pipeline.analyze import find_faces
    x, y, w, h = find_faces(astronaut, "blazeface")[0]
    (tmp_path / "UTKFace").mkdir()
    items = [data_utk.UtkItem(f"{30 + i}_1_0_2017.jpg.chip.jpg", 30 + i, 1, 0) for i in range(2)]
    for i, item in enumerate(items):
        chip = cv2.resize(astronaut[y + 4 * i:y + h, x:x + w], (200, 200))
        cv2.imwrite(str(tmp_path / "UTKFace" / item.filename), cv2.cvtColor(chip, cv2.COLOR_RGB2BGR))
    linked = tmp_path / "linked"
    linked.mkdir()
    (linked / "UTKFace").symlink_to(tmp_path / "UTKFace")
    monkeypatch.setattr(data_utk, "QUICK_CROPS", {})
    cut, real_cut = [], data_utk.cut_one
    monkeypatch.setattr(data_utk, "cut_one", lambda *a, **k: cut.append(a[1].filename) or real_cut(*a, **k))
    for backgrounds in (False, True):
        fresh = data_utk.cut_all(tmp_path, items, 32, 0.15, "app", backgrounds, workers=1)
        cut.clear()
        first = data_utk.cut_all(tmp_path, items, 32, 0.15, "app", backgrounds, workers=1, quick=True)
        again = data_utk.cut_all(linked, items, 32, 0.15, "app", backgrounds, workers=1, quick=True)
        assert len(cut) == 2 and np.array_equal(first[0], fresh[0]) and np.array_equal(again[0], fresh[0])
        assert first[1].tolist() == again[1].tolist() == fresh[1].tolist()
        assert len(data_utk.QUICK_CROPS) == 2 * (1 + backgrounds)        # framed and on backgrounds apart
    cut.clear()
    other = data_utk.cut_all(tmp_path, items, 40, 0.15, "app", workers=1, quick=True)       # another size
    assert len(cut) == 2 and other[0].shape == (2, 40, 40, 1)
    cut.clear()
    import os
    path = tmp_path / "UTKFace" / items[0].filename
    cv2.imwrite(str(path), cv2.flip(cv2.imread(str(path)), 1))
    os.utime(path, ns=(path.stat().st_atime_ns, path.stat().st_mtime_ns + 1_000_000_000))
    changed = data_utk.cut_all(tmp_path, items, 32, 0.15, "app", workers=1, quick=True)
    assert cut == [items[0].filename] and not np.array_equal(changed[0][0], first[0][0])


def test_fer_bundle_rebuilds_the_same_training_arrays_without_the_dataset(tmp_path, fer_dir):
    """What travels to a lent GPU machine: the training and PublicTest files, unpacked there into the cache
    the run reads, pixel for pixel; PrivateTest stays behind."""
    from training import fer_bundle
    (fer_dir / "ferplus_votes.csv").write_text("path,anger\ntrain/angry/Training_00.jpg,3\n")
    here = data_fer.load_fer(fer_dir, tmp_path / "cache_here")
    fer_bundle.main(["pack", "--data-dir", str(fer_dir), "--out", str(tmp_path / "bundle"),
                     "--cache-dir", str(tmp_path / "cache_here")])
    assert sorted(p.name for p in (tmp_path / "bundle").iterdir()) == [
        "ferplus_votes.csv.gz", "images.npz", "manifest.json.gz"]
    fer_bundle.main(["unpack", "--bundle", str(tmp_path / "bundle"), "--data-dir", str(tmp_path / "there"),
                     "--cache-dir", str(tmp_path / "cache_there")])
    there = data_fer.load_fer(tmp_path / "there", tmp_path / "cache_there")
    for split in ("train", "public"):
        assert np.array_equal(there[split].x, here[split].x) and np.array_equal(there[split].y, here[split].y)
        assert there[split].paths == here[split].paths
    assert len(there["private"].y) == 0 and there["dropped_duplicates"] == here["dropped_duplicates"] == 1
    assert (tmp_path / "there" / "ferplus_votes.csv").read_bytes() == (fer_dir / "ferplus_votes.csv").read_bytes()


def test_fer_bundle_refuses_pixels_that_differ_from_the_packing_machines(tmp_path, fer_dir):
    from training import fer_bundle
    fer_bundle.main(["pack", "--data-dir", str(fer_dir), "--out", str(tmp_path / "bundle"),
                     "--cache-dir", str(tmp_path / "cache")])
    with np.load(tmp_path / "bundle" / "images.npz") as z:
        data, offsets = z["data"].copy(), z["offsets"]
    first = cv2.imdecode(data[offsets[0]:offsets[1]], cv2.IMREAD_GRAYSCALE)
    ok, other = cv2.imencode(".png", 255 - first)         # another image in the first file's place
    data = np.concatenate([other.ravel(), data[offsets[1]:]])
    np.savez(tmp_path / "bundle" / "images.npz", data=data, offsets=np.concatenate([[0], offsets[1:] - offsets[1] + len(other)]))
    with pytest.raises(SystemExit, match="pixels differ"):
        fer_bundle.main(["unpack", "--bundle", str(tmp_path / "bundle"), "--data-dir", str(tmp_path / "there"),
                         "--cache-dir", str(tmp_path / "cache_there")])
