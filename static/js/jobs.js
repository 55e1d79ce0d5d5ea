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

  // A read that fails for a while (the network, a proxy's 502, the job store restarting: 503 with
  // Retry-After) is tried again, saying so, while the job goes on on the server; only an answer about the
  // job itself (404: unknown or expired) ends the following.
  async function poll(job) {
    const url = current;
    let wait = pollMs;
    while (job && ["queued", "running"].includes(job.status) && url === current) {
      show(job);
      await new Promise((resolve) => setTimeout(resolve, wait));
      let response = null;
      let answer = null;
      try {
        response = await fetch(url);
        answer = await readJson(response);
      } catch {
        response = null;          // offline, or the server is restarting
      }
      if (response && response.ok && answer) {
        job = answer;
        wait = pollMs;
        showError("");
        continue;
      }
      if (response && response.status < 500 && response.status !== 429) {
        showError(answer && answer.error ? answer.error.message : `Lost the ${noun} (HTTP ${response.status}).`);
        return;
      }
      const retryAfter = Number(response && response.headers.get("Retry-After"));
      wait = Math.min(30000, Math.max(retryAfter > 0 ? retryAfter * 1000 : 0, wait * 2));
      showError(`Cannot reach the server (${response ? `HTTP ${response.status}` : "no answer"}); `
        + `trying again in ${Math.round(wait / 1000)} s. The ${noun} goes on meanwhile.`);
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
