"""--mixup: each face blended with the face of the nearest age in its batch (C-Mixup)."""
import json

import numpy as np
import pytest

from conftest import SHARED_DATA as DATA


def _mixed(ages, alpha=0.4, seed=3):
    import tensorflow as tf

    from training.train_age_gender import mixup_close_ages
    n = len(ages)
    images = np.arange(n, dtype=np.float32)[:, None, None, None] * np.ones((1, 4, 4, 1), np.float32)
    targets = {"age": np.asarray(ages, np.float32)[:, None],
               "gender": (np.arange(n) % 2).astype(np.float32)[:, None]}
    weights = np.linspace(0.5, 2.0, n).astype(np.float32)
    out = mixup_close_ages(alpha, seed)(tf.constant(images), {k: tf.constant(v) for k, v in targets.items()},
                                        tf.constant(weights))
    return images, targets, weights, [np.asarray(o) if not isinstance(o, dict) else
                                      {k: np.asarray(v) for k, v in o.items()} for o in out]


def test_each_face_blends_with_its_neighbour_in_age_order_and_every_part_blends_alike():
    ages = [70.0, 3.0, 25.0, 71.0, 4.0, 26.0, 40.0, 41.0]     # neighbours in age order: 3-4, 25-26, 40-41, 70-71
    images, targets, weights, (x, y, w) = _mixed(ages)
    partner_of = {0: 3, 3: 0, 1: 4, 4: 1, 2: 5, 5: 2, 6: 7, 7: 6}
    for i, j in partner_of.items():
        lam = (x[i, 0, 0, 0] - images[j, 0, 0, 0]) / (images[i, 0, 0, 0] - images[j, 0, 0, 0])
        assert 0.0 <= lam <= 1.0
        np.testing.assert_allclose(x[i], lam * images[i] + (1 - lam) * images[j], atol=1e-5)
        np.testing.assert_allclose(y["age"][i], lam * targets["age"][i] + (1 - lam) * targets["age"][j], atol=1e-4)
        np.testing.assert_allclose(y["gender"][i], lam * targets["gender"][i] + (1 - lam) * targets["gender"][j],
                                   atol=1e-5)
        np.testing.assert_allclose(w[i], lam * weights[i] + (1 - lam) * weights[j], atol=1e-5)
    # a blend's age stays within its pair's one-year gap: no face is taught a 40 made of a 3 and a 70
    assert np.abs(y["age"][:, 0] - np.asarray(ages)).max() <= 1.0 + 1e-4


def test_small_alpha_keeps_most_faces_nearly_whole():
    _, _, _, (x, _, _) = _mixed([float(a) for a in range(64)], alpha=0.2, seed=5)
    shift = np.abs(x[:, 0, 0, 0] - np.arange(64, dtype=np.float32))   # partners differ by 1: shift = 1 - lam
    nearly_whole = (shift <= 0.1) | (shift >= 0.9)                     # mostly itself, or mostly its partner
    assert 0.5 < nearly_whole.mean() < 1.0                              # Beta(0.2, 0.2): 67% expected, some blends


@pytest.mark.skipif(not (DATA / "utkface").is_dir(), reason=f"UTKFace not found at {DATA} (see its README)")
def test_mixup_run_trains_continues_from_its_file_and_defines_the_run(tmp_path):
    from training import train_age_gender
    from training.common import read_log
    ckpt = tmp_path / "mix.npz"
    args = ["--data-dir", str(DATA / "utkface"), "--limit", "30", "--epochs", "2", "--batch-size", "16",
            "--input-size", "64", "--age-head", "distribution", "--mixup", "0.2", "--checkpoint", str(ckpt)]
    train_age_gender.main(args + ["--run-dir", str(tmp_path / "one"), "--stop-after-epoch", "1"])
    train_age_gender.main(args + ["--run-dir", str(tmp_path / "two")])       # another machine: the file alone
    rows = read_log(tmp_path / "two")
    assert len(rows) == 2 and all(np.isfinite(float(r["loss"])) for r in rows)
    assert json.loads((tmp_path / "two" / "run.json").read_text())["mixup"] == 0.2
    with pytest.raises(SystemExit, match="different run"):
        train_age_gender.main([a for a in args if a not in ("--mixup", "0.2")] + ["--run-dir", str(tmp_path / "x")])
