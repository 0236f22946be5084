// Knowledge bases: upload with a progress bar (the transfer, then ingestion as the worker
// reports it), and live progress of documents still being ingested. Without this script
// the form posts normally and the page shows each document's state.
(function () {
  "use strict";
  var PENDING = { queued: true, parsing: true, embedding: true };

  function poll(url, onUpdate) {
    var timer = null;
    function tick() {
      fetch(url, { credentials: "same-origin", headers: { Accept: "application/json" } })
        .then(function (response) { return response.ok ? response.json() : null; })
        .then(function (state) {
          if (!state) { return; }
          onUpdate(state);
          if (PENDING[state.status]) { timer = setTimeout(tick, 500); }
        })
        .catch(function () { timer = setTimeout(tick, 2000); });
    }
    tick();
    return function () { clearTimeout(timer); };
  }

  function label(state) {
    if (state.status === "embedding") { return "embedding " + state.chunks_done + "/" + state.chunks_total; }
    if (state.status === "failed") { return "failed: " + (state.status_reason || "unknown reason"); }
    return state.status;
  }

  document.addEventListener("DOMContentLoaded", function () {
    document.querySelectorAll("progress[data-progress-url]").forEach(function (bar) {
      var row = bar.closest("tr");
      poll(bar.getAttribute("data-progress-url"), function (state) {
        bar.max = Math.max(state.chunks_total, 1);
        bar.value = state.chunks_done;
        var text = row.querySelector("[data-progress-text]");
        if (text) { text.textContent = state.chunks_done + "/" + state.chunks_total; }
        row.querySelector("[data-status]").textContent = label(state);
        if (!PENDING[state.status]) { bar.hidden = true; }
      });
    });

    var form = document.querySelector("form[data-upload]");
    if (!form || !window.FormData) { return; }
    var box = form.querySelector("[data-upload-progress]");
    var bar = box.querySelector("progress");
    var text = box.querySelector("[data-upload-text]");
    form.addEventListener("submit", function (event) {
      event.preventDefault();
      var request = new XMLHttpRequest();
      request.open("POST", window.location.pathname);
      request.setRequestHeader("Accept", "application/json");
      box.hidden = false;
      bar.max = 100;
      bar.value = 0;
      text.textContent = "uploading";
      request.upload.onprogress = function (e) {
        if (e.lengthComputable) { bar.value = Math.round((100 * e.loaded) / e.total); }
      };
      request.onload = function () {
        var body = null;
        try { body = JSON.parse(request.responseText); } catch (ignored) { body = null; }
        if (request.status !== 202 || !body) {
          text.textContent = "refused: " + ((body && body.error) || ("HTTP " + request.status));
          if (body && body.details) { text.textContent += " " + JSON.stringify(body.details); }
          return;
        }
        text.textContent = label(body);
        poll(body.progress_url, function (state) {
          bar.max = Math.max(state.chunks_total, 1);
          bar.value = state.chunks_done;
          text.textContent = label(state);
          if (state.status === "ready") { window.location.reload(); }
        });
      };
      request.onerror = function () { text.textContent = "upload failed"; };
      request.send(new FormData(form));
    });
  });
})();
