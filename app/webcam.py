"""Webcam pages: /capture (one still → the usual result page) and /live (continuous analysis).

Both pages are static shells; the camera work happens in static/js/{capture,live}.js,
which post frames to the same endpoints as uploads (POST /analyze and
POST /api/v1/analyze), so the server has a single analysis path. Live mode sends the
detector chosen on its page (LIVE_DETECTORS, BlazeFace first) with every frame.

Browsers only expose getUserMedia in a secure context: https:// or http://localhost
(127.0.0.1 included). Served over plain http from another host, the camera is
unavailable and the pages fall back to the upload form.
"""
from __future__ import annotations

from flask import Blueprint, current_app, render_template, url_for
from flask_login import current_user
from flask_wtf.csrf import generate_csrf

from app.history import MAX_LIVE_POINTS, MAX_LIVE_TRACKS
from app.pipeline.analyze import MAX_REGIONS
from app.pipeline.detect import DETECTORS

bp = Blueprint("webcam", __name__)

# The size of the frames live mode sends (VISAGE_LIVE_MAX_SIDE, default 400 px) and the smallest
# face it looks for (VISAGE_LIVE_MIN_FACE, default 0.12 of the frame height: a person within about
# 1.6 m of a laptop webcam) are settings (app/settings.py). Smaller frames detect faster, but face
# crops get blurry when upscaled to the models' input: on the 2 px-swaying test clip the per-frame
# age spread (std) of the first shipped model was 7.5 years at 320 px, 4.7 at 400 and 3.0 at 480.
# min_face lets the cascade skip its finest, costliest scales: on 400 px frames it kept the
# measured recall and false boxes for faces of 17-50% of the frame height in 57% of the time
# (bench/measure_detector.py --live → reports/detector_live.json; fps: bench/bench_live.py).
LIVE_JPEG_QUALITY = 0.8
# Temporal smoothing of live labels: observations averaged per tracked face, and the
# box overlap (IoU) needed to count a detection as the same face as the previous frame.
# 30, not 15, since live mode runs fewer views per model (profile=live): single frames spread more
# (age s.d. 5.3 vs 2.1 years over 1-3 px box moves, reports/profiles.json), at about twice the fps.
LIVE_SMOOTHING_WINDOW = 30
# Age and gender belong to the person, not the moment: they are averaged over a track's last 150
# observations (about 6 s at camera speed), which steadies the shown age where 30 frames did not
# (a still, swaying face's 30-frame mean drifted by 5 years as the frames sampled from the sway changed).
LIVE_PERSON_WINDOW = 150
LIVE_MATCH_IOU = 0.3
# A face lost for a few answers (a look away, a hand before it) and found again where it was within this
# many seconds continues its track: the same face in a recording, and its age and gender readings kept.
LIVE_REVIVE_S = 3.0
# Detection hints (static/js/live.js): scan the whole frame at least every this many frames (the
# others search only around tracked faces, several times faster: docs/speed.md), and send one frame
# at the camera's full resolution after this many frames without a face.
LIVE_FULL_SCAN_EVERY = 8
LIVE_FULL_RESOLUTION_AFTER = 15
# Live mode's detectors, the first preselected. BlazeFace: it finds close, frontal faces the cascade
# misses (issue 23: a 240-px held-out face in 0 of 303 Haar answers), and its region scan (one 128-px
# short-range pass on a crop around each tracked face, app/pipeline/detect_blazeface.py) costs about
# 1.5 ms a face. Haar stays selectable. ("none", the whole frame as one face, makes no sense here.)
LIVE_DETECTORS = ("blazeface", "haar")
# Box smoothing in the tracker (static/js/tracker.js, a One-Euro filter per box coordinate): at rest
# the box follows with this cutoff (Hz), steady to a pixel; moving, the cutoff rises by BETA per px/s.
LIVE_BOX_MIN_CUTOFF = 1.0
LIVE_BOX_BETA = 0.05


def render_webcam_page(template: str, **context):
    """Webcam pages include the upload form (fallback, and carrier of captured frames)."""
    return render_template(template, detectors=DETECTORS,
                           default_detector=current_app.config["VISAGE_DEFAULT_DETECTOR"], **context)


@bp.get("/capture")
def capture():
    return render_webcam_page("capture.html")


@bp.get("/live")
def live():
    settings = {
        "apiUrl": url_for("api.analyze"),
        "sendMaxSide": current_app.config["VISAGE_LIVE_MAX_SIDE"],
        "inFlight": current_app.config["VISAGE_LIVE_IN_FLIGHT"],
        "jpegQuality": LIVE_JPEG_QUALITY,
        "minFace": current_app.config["VISAGE_LIVE_MIN_FACE"],
        "smoothingWindow": LIVE_SMOOTHING_WINDOW,
        "personWindow": LIVE_PERSON_WINDOW,
        "matchIou": LIVE_MATCH_IOU,
        "reviveS": LIVE_REVIVE_S,
        "fullScanEvery": LIVE_FULL_SCAN_EVERY,
        "fullResolutionAfter": LIVE_FULL_RESOLUTION_AFTER,
        "boxMinCutoff": LIVE_BOX_MIN_CUTOFF,
        "boxBeta": LIVE_BOX_BETA,
        "maxRegions": MAX_REGIONS,        # more tracked faces than the API takes as hints: scan the whole frame
    }
    if current_user.is_authenticated:     # Record/Stop saves the session's timeline (app/history.py)
        settings.update(saveUrl=url_for("history.save_live"), csrfToken=generate_csrf(),
                        maxRecordFaces=MAX_LIVE_TRACKS, maxRecordPoints=MAX_LIVE_POINTS)
    return render_webcam_page("live.html", settings=settings, live_detectors=LIVE_DETECTORS)
