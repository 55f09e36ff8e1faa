// The operator's private notes on the persona, beside the pictures: family names, the person's phrases,
// topics to avoid. Fetched with the operator's token only (the far end's page never loads them) and
// written with textContent only. The filter box keeps the lines that contain what is typed; `n` hides
// or shows the panel (not while typing in a field).
"use strict";
(() => {
const base = location.pathname.replace(/\/$/, "");  // /operator/<token>
const $ = (id) => document.getElementById(id);
const panel = $("notes"), list = $("notes-list"), filter = $("notes-filter"), toggle = $("notes-toggle");
const main = document.querySelector("main");
let lines = [];

function item(text, className) {
  const li = document.createElement("li");
  li.textContent = text;
  if (className) li.className = className;
  return li;
}

function show() {
  const query = filter.value.trim().toLowerCase();
  const kept = query ? lines.filter((line) => line.toLowerCase().includes(query)) : lines;
  list.replaceChildren(...(kept.length ? kept.map((line) => item(line)) : [item("no line matches", "none")]));
}

function setHidden(hidden) {
  panel.hidden = hidden;
  main.classList.toggle("with-notes", !hidden);
  toggle.classList.toggle("on", !hidden);
  if (hidden && document.activeElement === filter) filter.blur();
}

function typing(target) {
  return target && (["INPUT", "TEXTAREA", "SELECT"].includes(target.tagName) || target.isContentEditable);
}

fetch(base + "/notes.json", { cache: "no-store", credentials: "same-origin" })
  .then((resp) => (resp.ok ? resp.json() : { notes: "" }))
  .then((body) => {
    const text = body && typeof body.notes === "string" ? body.notes : "";
    lines = text.split("\n").map((line) => line.trimEnd()).filter((line) => line.trim());
    if (!lines.length) return;
    toggle.hidden = false;
    show();
    setHidden(false);
  })
  .catch(() => {});

filter.addEventListener("input", show);
filter.addEventListener("keydown", (e) => { if (e.key === "Escape") { filter.value = ""; show(); filter.blur(); } });
toggle.addEventListener("click", () => setHidden(!panel.hidden));
document.addEventListener("keydown", (e) => {
  if (e.key !== "n" || e.ctrlKey || e.metaKey || e.altKey || typing(e.target) || !lines.length) return;
  e.preventDefault();
  setHidden(!panel.hidden);
});
})();
