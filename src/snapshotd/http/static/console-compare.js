// snapshotd console: the comparison view's modes and overlay slider. No build step.
"use strict";

document.addEventListener("DOMContentLoaded", () => {
  const view = document.querySelector("[data-compare]");
  if (!view) return;
  const show = (mode) => {
    view.querySelectorAll("[data-pane]").forEach((pane) => {
      pane.hidden = pane.dataset.pane !== mode;
    });
    const address = new URL(window.location.href);
    address.searchParams.set("mode", mode);
    window.history.replaceState(null, "", address);
  };
  document.querySelectorAll("[data-mode-choice]").forEach((choice) => {
    choice.addEventListener("change", () => {
      if (choice.checked) show(choice.value);
    });
  });
  const mix = view.querySelector("[data-mix]");
  const over = view.querySelector("[data-over]");
  if (mix && over) {
    const apply = () => { over.style.opacity = String(Number(mix.value) / 100); };
    mix.addEventListener("input", apply);
    apply();
  }
});
