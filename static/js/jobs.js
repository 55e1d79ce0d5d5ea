// What the video and batch pages share: send an upload to the job API (202 + Location), follow the job
// with its progress bar until it ends, and cancel it. Each page says how a job reads (describe) and
// what to do once it has ended (finished).

export async function readJson(response) {
  try { return await response.json(); } catch { return null; }
}

export function followJobs({ jobBox, bar, statusText, cancelButton, errorBox, pollMs, describe, finished, noun }) {
  let current = null;   // the job followed now (its URL); a newer upload replaces it

  function showError(message) {
    errorBox.textContent = message;
    errorBox.hidden = !message;
  }

  function show(job) {
    bar.value = job.progress || 0;
    statusText.textContent = describe(job);
    cancelButton.hidden = !["queued", "running"].includes(job.status);
  }

  async function poll(job) {
    const url = current;
    while (job && ["queued", "running"].includes(job.status) && url === current) {
      show(job);
      await new Promise((resolve) => setTimeout(resolve, pollMs));
      const response = await fetch(url);
      job = await readJson(response);
      if (!response.ok) {
        showError(job && job.error ? job.error.message : `Lost the ${noun} (HTTP ${response.status}).`);
        return;
      }
    }
    if (url !== current || !job) return;
    show(job);
    if (job.status === "failed") showError(job.error ? job.error.message : `The ${noun} failed.`);
    if (job.status === "done") finished(job);
  }

  // POST body to url; on 202 follow the job it starts. The button is disabled while the upload travels.
  async function submit(url, body, button) {
    showError("");
    button.disabled = true;
    statusText.textContent = "uploading";
    bar.removeAttribute("value");          // indeterminate while the upload travels
    jobBox.hidden = false;
    try {
      const response = await fetch(url, { method: "POST", body });
      const answer = await readJson(response);
      if (response.status !== 202) {
        jobBox.hidden = true;
        showError(answer && answer.error ? answer.error.message : `Upload failed (HTTP ${response.status}).`);
        return;
      }
      current = response.headers.get("Location");
      poll(answer);
    } catch (e) {
      jobBox.hidden = true;
      showError(`Upload failed: ${e.message}`);
    } finally {
      button.disabled = false;
    }
  }

  cancelButton.addEventListener("click", async () => {
    if (!current) return;
    const job = await readJson(await fetch(current, { method: "DELETE" }));
    if (job) show(job);
  });

  return { submit, showError };
}
