// Capture page: preview the webcam; the Capture button puts the current frame into the
// upload form's file input and submits it, so uploads and captures share one result page.
import { startCamera, grabFrame, canvasToJpeg } from "./camera.js";

const video = document.getElementById("capture-video");
const button = document.getElementById("capture-button");
const status = document.getElementById("camera-status");
const form = document.querySelector("[data-testid=camera-fallback] form");
const fileInput = form.querySelector("input[type=file][name=image]");

async function start() {
  if (!(await startCamera(video))) return;
  status.textContent = `Camera ready (${video.videoWidth}×${video.videoHeight}).`;
  button.disabled = false;
}

async function capture() {
  button.disabled = true;
  status.textContent = "Analyzing…";
  let blob;
  try {
    blob = await canvasToJpeg(grabFrame(video, document.createElement("canvas")), 0.92);
  } catch (err) {            // no picture yet (a camera still starting, or gone): say so, let them try again
    status.textContent = `No picture from the camera (${err.message || err}); try again.`;
    button.disabled = false;
    return;
  }
  const transfer = new DataTransfer();
  transfer.items.add(new File([blob], "capture.jpg", { type: "image/jpeg" }));
  fileInput.files = transfer.files;
  if (form.elements.source) form.elements.source.value = "capture";
  form.submit();
}

button.addEventListener("click", capture);
start();
