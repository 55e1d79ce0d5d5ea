// Shared webcam plumbing for the Capture and Live pages.

// getUserMedia only exists in secure contexts: https:// or http://localhost.
export function cameraAvailable() {
  return Boolean(navigator.mediaDevices && navigator.mediaDevices.getUserMedia);
}

// Start the camera into `video`; resolves once frames are flowing (videoWidth is known).
export async function openCamera(video, { width = 640, height = 480 } = {}) {
  if (!cameraAvailable()) {
    const err = new Error("getUserMedia unavailable");
    err.name = "InsecureContextError";
    throw err;
  }
  const stream = await navigator.mediaDevices.getUserMedia({
    video: { width: { ideal: width }, height: { ideal: height }, facingMode: "user" },
    audio: false,
  });
  video.srcObject = stream;
  await video.play();
  if (!video.videoWidth) {
    await new Promise((resolve) => video.addEventListener("loadedmetadata", resolve, { once: true }));
  }
  return stream;
}

// A plain-language reason for a failed openCamera().
export function describeCameraError(err) {
  switch (err && err.name) {
    case "NotAllowedError":
    case "SecurityError":
      return "Camera access was refused. Allow the camera in your browser's site settings, or upload a photo instead.";
    case "NotFoundError":
    case "OverconstrainedError":
      return "No camera was found on this device. You can upload a photo instead.";
    case "NotReadableError":
    case "AbortError":
      return "The camera is in use by another application or could not be started. You can upload a photo instead.";
    case "InsecureContextError":
      return "Browsers only allow the camera on https:// pages or on http://localhost. Open this site over HTTPS, or upload a photo instead.";
    default:
      return `The camera could not be started (${err && (err.message || err.name)}). You can upload a photo instead.`;
  }
}

// Show the fallback block with `message`, hide the camera-only parts.
export function showCameraFallback(message) {
  for (const el of document.querySelectorAll("[data-camera-only]")) el.hidden = true;
  const fallback = document.querySelector("[data-testid=camera-fallback]");
  fallback.querySelector("[data-camera-error]").textContent = message;
  fallback.hidden = false;
}

// Draw the current video frame scaled so its longer side is at most `maxSide` px.
export function grabFrame(video, canvas, maxSide = Infinity) {
  const scale = Math.min(1, maxSide / Math.max(video.videoWidth, video.videoHeight));
  canvas.width = Math.round(video.videoWidth * scale);
  canvas.height = Math.round(video.videoHeight * scale);
  canvas.getContext("2d").drawImage(video, 0, 0, canvas.width, canvas.height);
  return canvas;
}

export function canvasToJpeg(canvas, quality) {
  return new Promise((resolve, reject) =>
    canvas.toBlob((blob) => (blob ? resolve(blob) : reject(new Error("JPEG encoding failed"))), "image/jpeg", quality));
}

// Open the camera into `video`; on failure show the fallback (with the reason) and resolve false.
export async function startCamera(video) {
  try {
    await openCamera(video);
    return true;
  } catch (err) {
    showCameraFallback(describeCameraError(err));
    return false;
  }
}
