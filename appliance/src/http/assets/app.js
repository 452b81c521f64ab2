// Pastiche status page: live progress of the running job over server-sent
// events, and a reload when what the page shows has changed. The page reads
// completely without this script.
"use strict";
(() => {
  const seen = [];
  window.pastiche = { events: seen };
  const generation = document.body.dataset.generation;
  const job = document.getElementById("job");
  const text = document.getElementById("job-text");
  const bar = document.getElementById("job-progress");
  const queued = document.getElementById("queued");
  const bytes = (n) => {
    const units = ["B", "KiB", "MiB", "GiB", "TiB"];
    let i = 0;
    while (n >= 1024 && i < units.length - 1) { n /= 1024; i++; }
    return (i === 0 ? n : n.toFixed(1)) + " " + units[i];
  };
  const events = new EventSource("/events");
  events.addEventListener("status", (e) => {
    const s = JSON.parse(e.data);
    seen.push(s);
    const c = s.current;
    if (c) {
      job.dataset.kind = c.kind;
      const pct = c.fraction_done == null ? "" : Math.round(c.fraction_done * 100) + "%";
      text.textContent = `${c.kind} running for ${Math.round(c.seconds)}s: ${pct} ${c.files_done} files, ` +
        `${bytes(c.bytes_done)} of ${bytes(c.total_bytes)}`;
      bar.hidden = false;
      bar.value = c.fraction_done == null ? 0 : c.fraction_done;
    } else {
      job.dataset.kind = "";
      text.textContent = "No job running.";
      bar.hidden = true;
    }
    queued.textContent = "Queued: " + (s.queued.length ? s.queued.join(", ") : "nothing");
    if (s.generation !== generation) {
      events.close();
      location.reload();
    }
  });
})();
