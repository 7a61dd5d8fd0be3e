// Live parts of the dashboard, with no framework: an element with data-live-url is replaced
// by a fresh copy of itself from that URL every second, until the copy has no data-live-url
// (the run ended).
"use strict";

const POLL_MS = 1000;

function poll(element) {
  const url = element.dataset.liveUrl;
  if (!url) {
    return;
  }
  window.setTimeout(async () => {
    try {
      const response = await fetch(url, { credentials: "same-origin", cache: "no-store" });
      if (response.redirected || !response.ok) {
        return; // logged out, or gone: stop rather than show a login page inside the page
      }
      const holder = document.createElement("div");
      holder.innerHTML = await response.text();
      const fresh = holder.firstElementChild;
      element.replaceWith(fresh);
      poll(fresh);
    } catch (error) {
      poll(element); // a network blip: try again
    }
  }, POLL_MS);
}

document.addEventListener("DOMContentLoaded", () => {
  document.querySelectorAll("[data-live-url]").forEach(poll);
});
