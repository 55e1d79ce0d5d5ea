"""Video analysis core (app/pipeline/video.py): real clips encoded with PyAV, real Haar, tiny random models."""
from __future__ import annotations

import io

import av
import numpy as np
import pytest

from app.pipeline.analyze import find_faces
from app.pipeline.blur import blur_faces
from app.pipeline.errors import BadRequest, JobCancelled, TooLarge, Undecodable, UnsupportedType
from app.pipeline.predict import EMOTION_LABELS
from app.pipeline.video import IouTracker, analyze_video, probe, render_annotated, timeline_rows
from tests.video_clips import crossing_clip, one_face_clip, scene, write_clip

LIMITS = {"max_seconds": 600, "max_pixels": 7680 * 4320}


@pytest.fixture(scope="module")
def clip(tmp_path_factory):
    return one_face_clip(tmp_path_factory.mktemp("clips") / "one.mp4", seconds=2.0, fps=10)


@pytest.fixture(scope="module")
def one_face_result(clip, predictor):
    calls = []
    result = analyze_video(clip, predictor, fps=5, progress=lambda done, total: calls.append((done, total)))
    return result, calls


def test_one_face_gives_one_track_with_a_full_timeline(one_face_result):
    result, _ = one_face_result
    assert result["sampling"]["samples"] == 10          # 2 s at 5 samples per second
    assert result["decoding"] == {"frames_decoded": 20, "frames_failed": 0, "frames_expected": 20,
                                  "ended_early": False, "complete": True}
    [track] = result["tracks"]
    assert track["first_seen"] == 0.0 and track["last_seen"] == pytest.approx(1.8)
    times = [p["t"] for p in track["timeline"]]
    assert times == pytest.approx([0.2 * i for i in range(10)])
    low, high = track["age_range"]
    assert low <= track["age"] <= high
    assert track["gender"]["label"] in ("female", "male") and 0.5 <= track["gender"]["probability"] <= 1
    for point in track["timeline"]:
        for key in ("emotion", "emotion_raw"):
            probs = point[key]["probabilities"]
            assert list(probs) == list(EMOTION_LABELS) and sum(probs.values()) == pytest.approx(1, abs=1e-3)
            assert point[key]["label"] == max(probs, key=probs.get)
        assert point["box"]["w"] > 80       # boxes in the video's own pixels (the portrait is 224+ px wide)
    # Smoothed values are means of raw ones over a window, so they vary less along the track.
    raw = np.array([[p["emotion_raw"]["probabilities"][e] for e in EMOTION_LABELS] for p in track["timeline"]])
    smooth = np.array([[p["emotion"]["probabilities"][e] for e in EMOTION_LABELS] for p in track["timeline"]])
    assert np.abs(np.diff(smooth, axis=0)).sum() <= np.abs(np.diff(raw, axis=0)).sum() + 1e-6
    segs = track["segments"]
    assert segs[0]["start"] == track["first_seen"] and segs[-1]["end"] == track["last_seen"]
    assert all(s["label"] in EMOTION_LABELS for s in segs)
    assert track["thumbnail"].startswith("data:image/jpeg;base64,")


def test_progress_counts_samples_up_to_the_total(one_face_result):
    _, calls = one_face_result
    done = [d for d, _ in calls]
    assert done == sorted(done) and calls[-1] == (10, 10) and calls[0][0] == 1


def test_csv_rows_one_per_face_per_sample(one_face_result):
    result, _ = one_face_result
    rows = list(timeline_rows(result))
    assert len(rows) == 10 and {r["track"] for r in rows} == {1}
    assert rows[0]["emotion"] in EMOTION_LABELS and "p_happy" in rows[0] and "raw_happy" in rows[0]


def test_two_faces_crossing_keep_their_identities(tmp_path, predictor):
    path, cross_time = crossing_clip(tmp_path / "cross.mp4")
    result = analyze_video(path, predictor, fps=5)
    tracks = result["tracks"]
    assert len(tracks) == 2, [(t["first_seen"], t["last_seen"]) for t in tracks]
    for track in tracks:
        xs = [p["box"]["x"] for p in track["timeline"]]
        steps = np.sign(np.diff(xs))
        assert abs(steps.sum()) == len(steps), f"track {track['id']} changed direction: {xs}"   # no switch
        assert track["first_seen"] < cross_time < track["last_seen"]
    directions = sorted(np.sign(t["timeline"][-1]["box"]["x"] - t["timeline"][0]["box"]["x"]) for t in tracks)
    assert directions == [-1, 1]


def test_tracker_bridges_a_missed_detection_and_starts_new_tracks_for_new_faces():
    tracker = IouTracker(max_missed=2)
    a = tracker.update([(0, 0, 50, 50)])[0]
    assert tracker.update([(10, 0, 50, 50)])[0] is a
    assert tracker.update([]) == []                                    # one miss: kept
    again, new = tracker.update([(30, 0, 50, 50), (300, 300, 50, 50)])  # predicted forward with its velocity
    assert again is a and new is not a and new.id == 2


def test_rotated_phone_video_is_analysed_upright(tmp_path, predictor, astronaut):
    upright = scene(360, 480, [(60, 40, 240)])
    assert find_faces(upright, "haar")
    stored = np.ascontiguousarray(np.rot90(upright, -1))     # the sensor's landscape frame, 480x360
    path = write_clip(tmp_path / "phone.mp4", [stored] * 6, fps=10, rotation=90)
    info = probe(path, **LIMITS)
    assert (info.width, info.height, info.rotation) == (360, 480, 90)
    result = analyze_video(path, predictor, fps=5)
    assert len(result["tracks"]) == 1 and result["video"]["width"] == 360


def test_4k_frames_are_downscaled_for_detection(tmp_path, predictor):
    frame = scene(3840, 2160, [(1500, 300, 1100)])
    path = write_clip(tmp_path / "uhd.mp4", [frame] * 3, fps=10)
    result = analyze_video(path, predictor, fps=5)
    [track] = result["tracks"]
    assert result["video"]["width"] == 3840
    assert track["timeline"][0]["box"]["w"] > 300       # box reported in the 4K frame's pixels


def test_frame_size_over_the_limit_is_refused_before_decoding(tmp_path, predictor, clip):
    with pytest.raises(TooLarge) as e:
        analyze_video(clip, predictor, max_pixels=640 * 480 - 1)
    assert e.value.code == "frame_too_large" and "640x480" in e.value.message


def test_too_long_is_refused_from_the_header(clip, predictor):
    with pytest.raises(TooLarge) as e:
        analyze_video(clip, predictor, max_seconds=1)
    assert e.value.code == "video_too_long"


@pytest.mark.parametrize("fps", [0, -1, 100, "x", None])
def test_bad_fps(clip, predictor, fps):
    with pytest.raises(BadRequest) as e:
        analyze_video(clip, predictor, fps=fps)
    assert e.value.code == "bad_fps"


def test_empty_file(tmp_path, predictor):
    path = tmp_path / "empty.mp4"
    path.write_bytes(b"")
    with pytest.raises(BadRequest) as e:
        analyze_video(path, predictor)
    assert e.value.code == "empty_file"


def test_not_a_video(tmp_path, predictor):
    path = tmp_path / "notes.mp4"
    path.write_bytes(b"these are meeting notes, not a video\n" * 50)
    with pytest.raises(UnsupportedType) as e:
        analyze_video(path, predictor)
    assert e.value.code == "not_a_video"


def test_a_still_photo_is_not_a_one_frame_video(tmp_path, predictor, astronaut_jpeg):
    """FFmpeg would read a JPEG or PNG as a video of one frame; the answer says to send it as a photo."""
    from PIL import Image
    png, jpeg = tmp_path / "portrait.mp4", tmp_path / "portrait.jpg"
    Image.open(io.BytesIO(astronaut_jpeg)).save(png, "PNG")      # the name does not matter, the content does
    jpeg.write_bytes(astronaut_jpeg)
    for path in (png, jpeg):
        with pytest.raises(UnsupportedType) as e:
            analyze_video(path, predictor)
        assert e.value.code == "not_a_video" and "still image" in e.value.message


def test_audio_only(tmp_path, predictor):
    path = tmp_path / "voice.m4a"
    with av.open(str(path), "w", format="mp4") as container:
        stream = container.add_stream("aac", rate=16000)
        for i in range(20):
            frame = av.AudioFrame.from_ndarray(np.zeros((1, 1024), np.float32), format="fltp", layout="mono")
            frame.sample_rate, frame.pts = 16000, i * 1024
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    with pytest.raises(UnsupportedType) as e:
        analyze_video(path, predictor)
    assert e.value.code == "no_video_stream" and "audio" in e.value.message


def test_truncated_file_analyses_what_decodes(tmp_path, predictor, clip):
    data = clip.read_bytes()
    # MPEG-TS carries no index at the end, so a cut file keeps its first frames.
    ts = write_clip(tmp_path / "whole.ts", [scene(640, 480, [(160 + i * 4, 48, 224)]) for i in range(30)],
                    fps=10, fmt="mpegts")
    cut = tmp_path / "cut.ts"
    cut.write_bytes(ts.read_bytes()[: len(ts.read_bytes()) // 2])
    result = analyze_video(cut, predictor, fps=5)
    assert 0 < result["decoding"]["frames_decoded"] < 30 and result["tracks"]
    # An MP4 cut before its index cannot be read at all: a clear error, not a hang.
    head = tmp_path / "head.mp4"
    head.write_bytes(data[:200])
    with pytest.raises((UnsupportedType, Undecodable)):
        analyze_video(head, predictor)


def test_a_file_cut_short_without_an_error_is_not_called_complete(tmp_path, predictor):
    """A Matroska file cut in half ends its stream quietly (no decoding error); its header still gives
    the whole duration, so the frames after the cut count as lost and the answer says it is incomplete.
    (12 s: a shorter file is one Matroska cluster, and half a cluster gives no frame at all.)"""
    frames = [scene(320, 240, [(80 + i // 2, 24, 112)]) for i in range(120)]
    whole = write_clip(tmp_path / "whole.mkv", frames, fps=10, fmt="matroska")
    assert analyze_video(whole, predictor, fps=2)["decoding"]["complete"]
    cut = tmp_path / "cut.mkv"
    cut.write_bytes(whole.read_bytes()[: len(whole.read_bytes()) // 2])
    decoding = analyze_video(cut, predictor, fps=2)["decoding"]
    assert not decoding["complete"] and decoding["frames_expected"] == 120
    assert 0 < decoding["frames_decoded"] < 120
    assert decoding["frames_decoded"] + decoding["frames_failed"] == 120


def test_stream_broken_in_the_middle_reports_failed_frames(tmp_path, predictor):
    frames = [scene(640, 480, [(160 + i * 2, 48, 224)]) for i in range(60)]
    path = write_clip(tmp_path / "ok.ts", frames, fps=10, fmt="mpegts")
    data = bytearray(path.read_bytes())
    rng = np.random.default_rng(0)
    middle = len(data) // 2
    data[middle:middle + 3000] = rng.integers(0, 256, 3000, dtype=np.uint8).tobytes()
    broken = tmp_path / "broken.ts"
    broken.write_bytes(bytes(data))
    result = analyze_video(broken, predictor, fps=5)
    decoding = result["decoding"]
    assert not decoding["complete"]
    assert decoding["frames_failed"] > 0 and decoding["frames_decoded"] + decoding["frames_failed"] >= 55
    assert result["tracks"] and result["tracks"][0]["last_seen"] > 4     # went on after the break


def test_cancel_stops_the_analysis(clip, predictor):
    calls = []

    def should_cancel():
        calls.append(1)
        return len(calls) > 2

    with pytest.raises(JobCancelled):
        analyze_video(clip, predictor, should_cancel=should_cancel)
    assert len(calls) == 3


def test_annotated_and_blurred_video(tmp_path, clip, one_face_result):
    result, _ = one_face_result
    plain = render_annotated(clip, result, tmp_path / "annotated.mp4")
    blurred = render_annotated(clip, result, tmp_path / "blurred.mp4", blur=True, labels=False)
    for path in (plain, blurred):
        with av.open(str(path)) as container:
            frames = [f.to_ndarray(format="rgb24") for f in container.decode(video=0)]
        assert len(frames) == 20 and frames[0].shape == (480, 640, 3)
        if path == blurred:
            assert not any(find_faces(f, "haar") for f in frames[::5])
        else:
            box = result["tracks"][0]["timeline"][0]["box"]
            edge = frames[0][box["y"] - 2:box["y"] + 3, box["x"] + 10:box["x"] + box["w"] - 10]
            assert (np.abs(edge.astype(int) - (255, 200, 0)).sum(axis=-1) < 60).any()   # the drawn box


def test_blur_faces_on_a_photo(astronaut):
    boxes = find_faces(astronaut, "haar")
    assert boxes
    blurred = blur_faces(astronaut, boxes)
    assert not find_faces(blurred, "haar")
    x, y, w, h = boxes[0]
    assert np.array_equal(blurred[:, x + w + w:], astronaut[:, x + w + w:])   # the rest is untouched


@pytest.mark.parametrize("name, codec", [("clip.webm", "libvpx"), ("clip.mov", "libx264"),
                                         ("clip.avi", "mpeg4"), ("clip.mkv", "libx264")])
def test_the_accepted_containers(tmp_path, predictor, name, codec):
    frames = [scene(320, 240, [(90 + i, 10, 140)]) for i in range(10)]
    path = write_clip(tmp_path / name, frames, fps=10, codec=codec)
    result = analyze_video(path, predictor, fps=5)
    assert result["sampling"]["samples"] == 5 and len(result["tracks"]) == 1


def test_uses_the_one_view_profile(clip, predictor):
    from app.pipeline.predict import Predictor

    class ProfiledPredictor(Predictor):        # records the profile each call asks for
        def predict(self, batches, profile="accurate"):
            self.profiles.append(profile)
            return super().predict(batches, profile)

    profiled = ProfiledPredictor(predictor.models)
    profiled.profiles = []
    result = analyze_video(clip, profiled, fps=5)
    assert set(profiled.profiles) == {"live"} and result["profile"] == "live"
