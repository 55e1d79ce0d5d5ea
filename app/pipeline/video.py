"""Video files: decode with PyAV, sample frames, find and track faces, read each face over time.

No Flask here: the job function (app/jobs/), the CLI and the benchmark all call
`analyze_video` and `render_annotated`. Everything a frame goes through per face is the
photo pipeline's own (`locate_faces`, `Predictor.prepare/predict`), so a face in a video
is read exactly as the same face in a photo would be.
"""
from __future__ import annotations

import base64
import math
from fractions import Fraction
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import cv2
import numpy as np

from app.pipeline.analyze import check_detector, check_min_face, locate_faces
from app.pipeline.detect import DEFAULT_DETECTOR
from app.pipeline.errors import BadRequest, JobCancelled, TooLarge, Undecodable, UnsupportedType
from app.pipeline.predict import EMOTION_LABELS, load_predictor

ANALYSIS_MAX_SIDE = 1280    # frames are scaled to this longer side before detection (4K/8K cost no more than 720p)
OUTPUT_MAX_SIDE = 1280      # longer side of the annotated MP4
MAX_FPS = 30.0
VIDEO_EXTENSIONS = (".mp4", ".webm", ".mov", ".avi", ".mkv", ".m4v")   # what the page and the CLI take as video

Progress = Callable[[int, int], None]


VIDEO_PROFILE = "live"      # the fast profile: a track averages many frames anyway


def video_predictor(models_dir):
    """The app's predictor (loaded once per process, as for photos)."""
    return load_predictor(models_dir)


def predict_faces(predictor, image: np.ndarray, boxes, rolls=None) -> list[dict]:
    """The predictor's fast one-view profile: a track averages over many frames anyway. rolls: each
    face's roll from the detector (turned upright as for photos)."""
    return predictor.predict(predictor.prepare(image, boxes, rolls), profile=VIDEO_PROFILE)


# ---------------------------------------------------------------- probing and decoding

@dataclass
class VideoInfo:
    width: int              # as displayed (rotation applied)
    height: int
    rotation: int           # degrees counter-clockwise applied to each decoded frame
    duration: float | None  # seconds, None when the container does not say
    fps: float              # average frame rate of the stream
    frames: int             # frame count from the header (0 = unknown)
    codec: str

    def as_dict(self) -> dict:
        return {"width": self.width, "height": self.height, "rotation": self.rotation,
                "duration": None if self.duration is None else round(self.duration, 3),
                "fps": round(self.fps, 3), "frames": self.frames, "codec": self.codec}


def _open(path):
    import av
    try:
        return av.open(str(path))
    except av.FFmpegError as e:
        raise UnsupportedType(f"This file is not a video we can read ({_ffmpeg_reason(e)}).",
                              code="not_a_video") from e


def _ffmpeg_reason(e) -> str:
    return getattr(e, "strerror", None) or str(e)


def probe(path, *, max_seconds: float, max_pixels: int) -> VideoInfo:
    """Header facts, and the limits checked on them: raises before any frame is decoded."""
    path = Path(path)
    if path.stat().st_size == 0:
        raise BadRequest("The uploaded file is empty.", code="empty_file")
    with _open(path) as container:
        # FFmpeg reads a still photo as a one-frame video (its image2 / *_pipe demuxers); an animated GIF
        # ("gif") is a clip and stays one.
        if container.format.name == "image2" or container.format.name.endswith("_pipe"):
            raise UnsupportedType("This is a still image, not a video: send it as a photo (the upload form, "
                                  "or POST /api/v1/analyze).", code="not_a_video")
        if not container.streams.video:
            kinds = sorted({s.type for s in container.streams}) or ["no streams"]
            raise UnsupportedType(f"The file has no video stream (it has: {', '.join(kinds)}).",
                                  code="no_video_stream")
        stream = container.streams.video[0]
        ctx = stream.codec_context
        width, height = int(ctx.width or 0), int(ctx.height or 0)
        if width <= 0 or height <= 0:
            raise Undecodable("The video stream has no frame size; the file is probably truncated.",
                              code="undecodable_video")
        if width * height > max_pixels:
            raise TooLarge(f"The video's frames are {width}x{height} pixels; the limit is {max_pixels:,} "
                           f"pixels per frame.", code="frame_too_large")
        duration = None
        if stream.duration and stream.time_base:
            duration = float(stream.duration * stream.time_base)
        elif container.duration:
            duration = container.duration / 1_000_000
        if duration is not None and duration > max_seconds:
            raise TooLarge(f"The video is {duration:.0f} s long; the limit is {max_seconds:.0f} s.",
                           code="video_too_long")
        rate = stream.average_rate or stream.guessed_rate or stream.base_rate
        rotation = _stream_rotation(container, stream)
        frames, codec = int(stream.frames or 0), ctx.name      # read while open: PyAV 18.1.1 refuses after close
    fps = float(rate) if rate else 25.0
    if rotation % 180:
        width, height = height, width
    return VideoInfo(width, height, rotation, duration, fps, frames, codec)


def _stream_rotation(container, stream) -> int:
    """Rotation from the first decodable frame's display matrix (phone videos), as a multiple of 90."""
    import av
    try:
        for frame in container.decode(stream):
            return _quarter_turns(frame.rotation) * 90
    except av.FFmpegError:
        pass
    return 0


def _quarter_turns(rotation) -> int:
    return int(round((rotation or 0) / 90)) % 4


@dataclass
class DecodeStats:
    decoded: int = 0         # frames that decoded
    failed: int = 0          # packets the decoder rejected, plus frames it flagged corrupt
    missing: int = 0         # frames absent from the timestamps (a gap of lost packets)
    ended_early: bool = False
    error: str | None = None


def sampled_frames(path, info: VideoInfo, fps: float, max_side: int, stats: DecodeStats, max_seconds: float):
    """(t seconds, RGB frame scaled to ≤ max_side, scale vs. displayed size) at ≈ `fps` per video second.

    Tolerates a stream that breaks: a packet that fails to decode is counted and skipped, and a
    file that ends early ends the iteration; `stats` says how much was lost.
    """
    import av
    step = 1.0 / fps
    tolerance = 0.5 / max(info.fps, fps)    # half a source frame: which frame is nearest a sample time
    next_t = 0.0
    scale = min(1.0, max_side / max(info.width, info.height))
    with _open(path) as container:
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        packets = container.demux(stream)
        index, last_t = -1, None
        while True:
            try:
                packet = next(packets)
            except StopIteration:
                break
            except av.FFmpegError as e:
                stats.ended_early, stats.error = True, _ffmpeg_reason(e)
                break
            try:
                frames = packet.decode()
            except av.FFmpegError:
                stats.failed += 1
                continue
            for frame in frames:
                index += 1
                if frame.is_corrupt:
                    stats.failed += 1
                    continue
                stats.decoded += 1
                t = frame.time if frame.time is not None else index / info.fps
                if last_t is not None and t - last_t > 1.5 / info.fps:
                    stats.missing += int(round((t - last_t) * info.fps)) - 1
                last_t = t
                if t > max_seconds:
                    raise TooLarge(f"The video runs past {max_seconds:.0f} s, the limit.", code="video_too_long")
                if t < next_t - tolerance:
                    continue
                while next_t <= t + tolerance:      # a gap in the stream skips the samples it held
                    next_t += step
                yield t, _to_rgb(frame, scale), scale


def _to_rgb(frame, scale: float) -> np.ndarray:
    """The frame as displayed (rotation applied), scaled; swscale does the scaling (cheap for 4K/8K)."""
    w = max(2, int(round(frame.width * scale)))
    h = max(2, int(round(frame.height * scale)))
    image = frame.reformat(width=w, height=h, format="rgb24").to_ndarray()
    turns = _quarter_turns(frame.rotation)
    return np.ascontiguousarray(np.rot90(image, turns)) if turns else image


def expected_frames(info: VideoInfo) -> int | None:
    """Frames the whole video holds: the header's count, else its duration × frame rate, else unknown."""
    if info.frames:
        return info.frames
    if info.duration and info.fps:
        return int(round(info.duration * info.fps))
    return None


def frames_missing_at_end(info: VideoInfo, stats: DecodeStats) -> int:
    """Frames the header promises after the last one the stream gave: a file cut short often ends its
    stream without an error (Matroska, WebM), and its lost tail must not pass for a complete video.
    A count from the duration (no frame count in the header) is an estimate, so a shortfall within 2%
    (at least one frame: rounding, an audio track a little longer) is not counted."""
    expected = expected_frames(info)
    if expected is None:
        return 0
    short = expected - (stats.decoded + stats.failed + stats.missing)
    tolerance = 0 if info.frames else max(1, int(0.02 * expected))
    return short if short > tolerance else 0


def count_samples(info: VideoInfo, fps: float) -> int:
    """Samples a full decode will give (the progress bar's total); an estimate when the header lacks a duration."""
    if info.duration:
        return max(1, int(math.floor(info.duration * fps + 0.5)))
    if info.frames:
        return max(1, int(info.frames * min(1.0, fps / info.fps)))
    return 0


# ---------------------------------------------------------------- tracking

def iou(a, b) -> float:
    x0, y0 = max(a[0], b[0]), max(a[1], b[1])
    x1, y1 = min(a[0] + a[2], b[0] + b[2]), min(a[1] + a[3], b[1] + b[3])
    inter = max(0.0, x1 - x0) * max(0.0, y1 - y0)
    union = a[2] * a[3] + b[2] * b[3] - inter
    return inter / union if union > 0 else 0.0


@dataclass
class Track:
    id: int
    box: np.ndarray                  # last matched box (x, y, w, h), displayed-frame pixels
    velocity: np.ndarray = field(default_factory=lambda: np.zeros(4))
    missed: int = 0
    samples: list = field(default_factory=list)
    thumb: np.ndarray | None = None
    thumb_area: float = 0.0

    def predicted(self) -> np.ndarray:
        return self.box + self.velocity * (self.missed + 1)


class IouTracker:
    """The live tracker's idea (static/js/tracker.js) for files: a detection continues the track whose
    box it overlaps most (greedy, best overlap first). Unlike the browser's, each track predicts its
    next box from its velocity, so two faces that pass each other keep their identities."""

    MAX_SHIFT = 0.8     # centre moved by at most this share of the face's size between two samples

    def __init__(self, match_iou: float = 0.3, max_missed: int = 5):
        self.match_iou, self.max_missed = match_iou, max_missed
        self.active: list[Track] = []
        self.finished: list[Track] = []
        self._next_id = 1

    def update(self, boxes) -> list[Track]:
        """The track of each box, in the order of `boxes`."""
        boxes = [np.asarray(b, np.float64) for b in boxes]
        # Against the predicted box, or the last one when the face stopped or turned back.
        pairs = sorted(((max(self.affinity(b, t.predicted()), self.affinity(b, t.box)), i, j)
                        for i, b in enumerate(boxes) for j, t in enumerate(self.active)), reverse=True)
        owner: dict[int, Track] = {}
        used = set()
        for score, i, j in pairs:
            if score <= 0:
                break
            if i in owner or j in used:
                continue
            track = self.active[j]
            velocity = (boxes[i] - track.box) / (track.missed + 1)
            track.velocity = velocity if not track.samples else 0.5 * track.velocity + 0.5 * velocity
            track.box, track.missed = boxes[i], 0
            owner[i] = track
            used.add(j)
        for j, track in enumerate(self.active):
            if j not in used:
                track.missed += 1
        self.finished += [t for t in self.active if t.missed > self.max_missed]
        self.active = [t for t in self.active if t.missed <= self.max_missed]
        for i, box in enumerate(boxes):
            if i not in owner:
                owner[i] = Track(self._next_id, box)
                self._next_id += 1
                self.active.append(owner[i])
        return [owner[i] for i in range(len(boxes))]

    def affinity(self, box, predicted) -> float:
        """Overlap when it reaches match_iou; else, for a box of about the same size whose centre is
        within MAX_SHIFT of its size (a fast face at a low sampling rate), a score below any overlap match."""
        overlap = iou(box, predicted)
        if overlap >= self.match_iou:
            return overlap
        size, other = math.sqrt(box[2] * box[3]), math.sqrt(predicted[2] * predicted[3])
        if not 0.67 <= size / max(other, 1e-6) <= 1.5:
            return 0.0
        shift = math.dist((box[0] + box[2] / 2, box[1] + box[3] / 2),
                          (predicted[0] + predicted[2] / 2, predicted[1] + predicted[3] / 2)) / ((size + other) / 2)
        return self.match_iou * (1 - shift / self.MAX_SHIFT) * 0.99 if shift < self.MAX_SHIFT else 0.0

    def all_tracks(self) -> list[Track]:
        return sorted(self.finished + self.active, key=lambda t: t.id)


# ---------------------------------------------------------------- analysis

def analyze_video(path, predictor, *, fps: float = 5.0, detector: str = DEFAULT_DETECTOR, min_face=0.0,
                  max_seconds: float = 600, max_pixels: int = 7680 * 4320, smooth_seconds: float = 1.0,
                  min_hits: int = 2, progress: Progress | None = None,
                  should_cancel: Callable[[], bool] | None = None) -> dict:
    """Per-face emotion timelines for one video file (see docs/video.md for the answer's fields)."""
    fps = check_fps(fps)
    detector, min_face = check_detector(detector), check_min_face(min_face)
    info = probe(path, max_seconds=max_seconds, max_pixels=max_pixels)
    total = count_samples(info, fps)
    stats = DecodeStats()
    tracker = IouTracker()
    sampled = 0
    for t, image, scale in sampled_frames(path, info, fps, ANALYSIS_MAX_SIDE, stats, max_seconds):
        if should_cancel and should_cancel():
            raise JobCancelled()
        boxes, rolls = locate_faces(image, detector, min_face)
        faces = predict_faces(predictor, image, boxes, rolls) if boxes else []
        for track, box, face in zip(tracker.update(boxes), boxes, faces):
            full_box = [int(round(v / scale)) for v in box]
            track.samples.append((t, full_box, face))
            area = box[2] * box[3]
            if area > track.thumb_area:
                track.thumb, track.thumb_area = thumbnail(image, box), area
        sampled += 1
        total = max(total, sampled)
        if progress:
            progress(sampled, total)
    if stats.decoded == 0:
        reason = f" ({stats.error})" if stats.error else ""
        raise Undecodable(f"No frame of the video could be decoded{reason}; the file is truncated or corrupt.",
                          code="undecodable_video")
    if progress:
        progress(sampled, sampled)
    min_hits = min(min_hits, sampled)
    tracks = [summarize_track(n, track, smooth_seconds)
              for n, track in enumerate((t for t in tracker.all_tracks() if len(t.samples) >= min_hits), 1)]
    expected = expected_frames(info)
    stats.missing += frames_missing_at_end(info, stats)
    return {
        "video": info.as_dict(),
        "sampling": {"fps": fps, "samples": sampled, "smooth_seconds": smooth_seconds},
        "decoding": {"frames_decoded": stats.decoded, "frames_failed": stats.failed + stats.missing,
                     "frames_expected": expected, "ended_early": stats.ended_early,
                     "complete": not (stats.failed or stats.missing or stats.ended_early)
                     and (expected is None or stats.decoded >= expected)},
        "detector": detector,
        "profile": VIDEO_PROFILE,
        "models": dict(predictor.versions),
        "tracks": tracks,
    }


def check_fps(value) -> float:
    try:
        fps = float(value)
    except (TypeError, ValueError):
        fps = float("nan")
    if not 0.1 <= fps <= MAX_FPS:      # also false for NaN
        raise BadRequest(f"fps (samples per second of video) must be a number from 0.1 to {MAX_FPS:.0f}, "
                         f"got {value!r}.", code="bad_fps")
    return fps


def thumbnail(image: np.ndarray, box, size: int = 96) -> np.ndarray:
    x, y, w, h = box
    pad = int(0.2 * max(w, h))
    crop = image[max(0, y - pad):y + h + pad, max(0, x - pad):x + w + pad]
    side = max(crop.shape[:2])
    return cv2.resize(crop, (crop.shape[1] * size // side or 1, crop.shape[0] * size // side or 1),
                      interpolation=cv2.INTER_AREA)


def jpeg_data_url(image: np.ndarray) -> str:
    ok, data = cv2.imencode(".jpg", cv2.cvtColor(image, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, 85])
    return "data:image/jpeg;base64," + base64.b64encode(data.tobytes()).decode("ascii")


def _female_probability(gender: dict) -> float:
    p = float(gender["probability"])
    return p if gender["label"] == "female" else 1.0 - p


def summarize_track(number: int, track: Track, smooth_seconds: float) -> dict:
    """Age/gender over the whole track; raw and smoothed emotions at every sample; segments of one label."""
    times = np.array([t for t, _, _ in track.samples])
    faces = [face for _, _, face in track.samples]
    raw = np.array([[face["emotion"]["probabilities"][e] for e in EMOTION_LABELS] for face in faces])
    smoothed = np.array([raw[np.abs(times - t) <= smooth_seconds / 2].mean(axis=0) for t in times])
    ages = np.array([face["age"] for face in faces])
    answer = {"id": number, "first_seen": round(float(times[0]), 3), "last_seen": round(float(times[-1]), 3),
              "samples": len(faces), "age": round(float(np.median(ages)), 1)}
    if all("age_range" in face for face in faces):
        answer["age_range"] = [round(float(np.median([f["age_range"][i] for f in faces])), 1) for i in (0, 1)]
    answer["age_spread"] = [round(float(np.percentile(ages, q)), 1) for q in (10, 90)]
    p_female = float(np.mean([_female_probability(face["gender"]) for face in faces]))
    answer["gender"] = ({"label": "female", "probability": round(p_female, 4)} if p_female >= 0.5
                        else {"label": "male", "probability": round(1 - p_female, 4)})
    mean = smoothed.mean(axis=0)
    answer["dominant_emotion"] = {"label": EMOTION_LABELS[int(np.argmax(mean))],
                                  "probabilities": _probs(mean)}
    answer["segments"] = segments(times, smoothed)
    answer["timeline"] = [{"t": round(float(t), 3), "box": dict(zip("xywh", box)),
                           "emotion": {"label": EMOTION_LABELS[int(np.argmax(s))], "probabilities": _probs(s)},
                           "emotion_raw": {"label": EMOTION_LABELS[int(np.argmax(r))], "probabilities": _probs(r)}}
                          for (t, box, _), s, r in zip(track.samples, smoothed, raw)]
    if track.thumb is not None:
        answer["thumbnail"] = jpeg_data_url(track.thumb)
    return answer


def _probs(values) -> dict:
    return {e: round(float(p), 4) for e, p in zip(EMOTION_LABELS, values)}


def segments(times: np.ndarray, smoothed: np.ndarray) -> list[dict]:
    """Runs of one dominant (smoothed) emotion: {start, end, label, probability (its mean over the run)}."""
    labels = smoothed.argmax(axis=1)
    runs, start = [], 0
    for i in range(1, len(labels) + 1):
        if i == len(labels) or labels[i] != labels[start]:
            runs.append({"start": round(float(times[start]), 3), "end": round(float(times[i - 1]), 3),
                         "label": EMOTION_LABELS[labels[start]],
                         "probability": round(float(smoothed[start:i, labels[start]].mean()), 4)})
            start = i
    return runs


# ---------------------------------------------------------------- exports

CSV_COLUMNS = (["track", "t", "x", "y", "w", "h", "age", "gender", "emotion", "emotion_raw"]
               + [f"p_{e}" for e in EMOTION_LABELS] + [f"raw_{e}" for e in EMOTION_LABELS])


def timeline_rows(result: dict):
    """One CSV row per face per sampled time (smoothed probabilities, then raw)."""
    for track in result["tracks"]:
        for point in track["timeline"]:
            row = {"track": track["id"], "t": point["t"], **point["box"], "age": track["age"],
                   "gender": track["gender"]["label"], "emotion": point["emotion"]["label"],
                   "emotion_raw": point["emotion_raw"]["label"]}
            row.update({f"p_{e}": p for e, p in point["emotion"]["probabilities"].items()})
            row.update({f"raw_{e}": p for e, p in point["emotion_raw"]["probabilities"].items()})
            yield row


def write_csv(result: dict, out) -> None:
    import csv
    writer = csv.DictWriter(out, CSV_COLUMNS)
    writer.writeheader()
    writer.writerows(timeline_rows(result))


# ---------------------------------------------------------------- annotated video

def encoder_name() -> str:
    import av
    return "libx264" if "libx264" in av.codecs_available else "mpeg4"


def boxes_at(track: dict, t: float, step: float) -> tuple[list, str] | None:
    """The track's box at time t (linear between its samples) and its smoothed label; None outside the track."""
    timeline = track["timeline"]
    if t < timeline[0]["t"] - step / 2 or t > timeline[-1]["t"] + step / 2:
        return None
    times = [p["t"] for p in timeline]
    i = int(np.searchsorted(times, t))
    if i == 0 or i == len(times):
        point = timeline[min(i, len(times) - 1)]
        return [point["box"][k] for k in "xywh"], point["emotion"]["label"]
    a, b = timeline[i - 1], timeline[i]
    if b["t"] - a["t"] > 2.5 * step:            # a gap the tracker bridged: hold the nearer box
        point = a if t - a["t"] < b["t"] - t else b
        return [point["box"][k] for k in "xywh"], point["emotion"]["label"]
    k = (t - a["t"]) / (b["t"] - a["t"])
    box = [a["box"][c] + k * (b["box"][c] - a["box"][c]) for c in "xywh"]
    return box, (a if k < 0.5 else b)["emotion"]["label"]


def render_annotated(path, result: dict, out_path, *, blur: bool = False, labels: bool = True,
                     progress: Progress | None = None, should_cancel: Callable[[], bool] | None = None) -> Path:
    """An MP4 of the video with each track's box and smoothed emotion drawn, and/or every face blurred."""
    import av
    from app.pipeline.blur import blur_faces
    info = VideoInfo(**{k: result["video"][k] for k in ("width", "height", "rotation", "fps", "frames", "codec")},
                     duration=result["video"]["duration"])
    scale = min(1.0, OUTPUT_MAX_SIDE / max(info.width, info.height))
    out_w, out_h = (max(2, int(info.width * scale) // 2 * 2), max(2, int(info.height * scale) // 2 * 2))
    step = 1.0 / result["sampling"]["fps"]
    total = max(1, info.frames or int((info.duration or 0) * info.fps))
    out_path = Path(out_path)
    done = 0
    rate = min(120, max(1, round(info.fps)))
    with av.open(str(out_path), "w", format="mp4") as out:
        stream = out.add_stream(encoder_name(), rate=rate)
        stream.width, stream.height, stream.pix_fmt = out_w, out_h, "yuv420p"
        if stream.codec_context.name == "libx264":
            stream.options = {"preset": "veryfast", "crf": "23"}
        else:
            stream.bit_rate = 2_000_000
        stats = DecodeStats()
        for t, image, _ in sampled_frames(path, info, MAX_FPS * 4, OUTPUT_MAX_SIDE, stats, float("inf")):
            if should_cancel and done % 10 == 0 and should_cancel():
                raise JobCancelled()
            image = cv2.resize(image, (out_w, out_h), interpolation=cv2.INTER_AREA) \
                if image.shape[:2] != (out_h, out_w) else image
            k = out_w / info.width
            drawn = [(track["id"], [v * k for v in found[0]], found[1]) for track in result["tracks"]
                     if (found := boxes_at(track, t, step))]
            if blur:
                image = blur_faces(image, [[int(round(v)) for v in box] for _, box, _ in drawn])
            if labels:
                image = np.ascontiguousarray(image)
                for track_id, (x, y, w, h), label in drawn:
                    p0, p1 = (int(x), int(y)), (int(x + w), int(y + h))
                    cv2.rectangle(image, p0, p1, (255, 200, 0), 2)
                    cv2.putText(image, f"#{track_id} {label}", (int(x), max(14, int(y) - 6)),
                                cv2.FONT_HERSHEY_SIMPLEX, 0.5, (255, 200, 0), 1, cv2.LINE_AA)
            frame = av.VideoFrame.from_ndarray(image, format="rgb24")
            frame.pts, frame.time_base = done, Fraction(1, rate)
            for packet in stream.encode(frame):
                out.mux(packet)
            done += 1
            if progress:
                progress(min(done, total), total)
        for packet in stream.encode():
            out.mux(packet)
    return out_path
