// snapshotd console: live capture status, copy buttons and image zoom. No build step.
"use strict";

function follow(element) {
  const url = element.dataset.live;
  let waited = 0;
  const tick = async () => {
    let state;
    try {
      const response = await fetch(url, { headers: { Accept: "application/json" }, credentials: "same-origin" });
      if (response.redirected || !response.ok) return; // signed out or gone: stop quietly
      state = await response.json();
    } catch (error) {
      state = null; // a network blip: try again at the next tick
    }
    if (state) {
      show(element, state);
      if (state.done) return finish(element, state);
    }
    waited += 1;
    setTimeout(tick, waited < 60 ? 1000 : 3000);
  };
  setTimeout(tick, 500);
}

function show(element, state) {
  const scope = element.closest(".card") || document;
  const badge = scope.querySelector("[data-status-text]");
  if (badge) {
    badge.textContent = state.label;
    badge.className = "badge status-" + state.status;
  }
  const message = element.querySelector("[data-status-message]");
  if (message && state.message) message.textContent = state.message;
}

function finish(element, state) {
  if (element.hasAttribute("data-reload")) {
    window.location.reload();
    return;
  }
  element.classList.remove("is-live");
  element.dataset.status = state.status;
  const thumb = element.querySelector("[data-thumb]");
  if (!thumb) return;
  thumb.textContent = "";
  if (state.thumbnail) {
    const image = document.createElement("img");
    image.src = state.thumbnail;
    image.alt = "";
    thumb.append(image);
  } else {
    const note = document.createElement("span");
    note.className = "no-image";
    note.textContent = state.status === "failed" ? "Failed" : "No image";
    thumb.append(note);
  }
}

async function copy(button) {
  const field = document.getElementById(button.dataset.copy);
  if (!field) return;
  try {
    await navigator.clipboard.writeText(field.value);
  } catch (error) {
    // No Clipboard API (a plain-http page) or no permission: copy the selected text instead.
    field.select();
    document.execCommand("copy");
  }
  button.textContent = "Copied";
  setTimeout(() => { button.textContent = "Copy"; }, 1500);
}

document.addEventListener("DOMContentLoaded", () => {
  document.querySelectorAll("[data-live]").forEach(follow);
  document.querySelectorAll("[data-copy]").forEach((button) => {
    button.addEventListener("click", () => copy(button));
  });
  document.querySelectorAll("[data-zoom]").forEach((button) => {
    button.addEventListener("click", () => {
      const zoomed = button.getAttribute("aria-pressed") !== "true";
      button.setAttribute("aria-pressed", String(zoomed));
    });
  });
});
