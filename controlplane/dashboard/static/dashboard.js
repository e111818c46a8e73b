// Pilothouse dashboard: refresh the page's live part in place, follow a pod's log.
// No dependencies; served by the control plane itself.
"use strict";

function refresh(main) {
  var source = main.getAttribute("data-live");
  if (!source) return;
  var busy = false;
  setInterval(function () {
    if (busy) return;
    busy = true;
    fetch(source, { credentials: "same-origin", cache: "no-store" })
      .then(function (r) { return r.ok ? r.text() : null; })
      .then(function (html) { if (html !== null) main.innerHTML = html; })
      .catch(function () {})
      .finally(function () { busy = false; });
  }, 1000);
}

function follow(pre) {
  var events = new EventSource(pre.getAttribute("data-source"));
  events.onmessage = function (e) {
    var atEnd = window.innerHeight + window.scrollY >= document.body.scrollHeight - 4;
    pre.appendChild(document.createTextNode(e.data + "\n"));
    if (atEnd) window.scrollTo(0, document.body.scrollHeight);
  };
}

document.addEventListener("DOMContentLoaded", function () {
  var main = document.getElementById("live");
  if (main) refresh(main);
  var log = document.getElementById("log");
  if (log) follow(log);
});
