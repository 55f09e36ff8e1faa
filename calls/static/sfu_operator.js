// The operator's view of a room call: one card per invited far end (name, link, their camera, withdraw).
// Everything is written with textContent; the server's state is polled every second.
"use strict";
(() => {
const base = location.pathname.replace(/\/$/, "");  // /operator/<token>/sfu
const $ = (id) => document.getElementById(id);
const cards = new Map();

function card(f) {
  let c = cards.get(f.id);
  if (!c) {
    c = document.createElement("section");
    c.className = "farend";
    const title = document.createElement("h3"), link = document.createElement("code"), state = document.createElement("p");
    const img = document.createElement("img"), btn = document.createElement("button");
    img.alt = "their camera"; img.src = base + "/farend/" + encodeURIComponent(f.id) + ".mjpg";
    btn.textContent = "Withdraw this link";
    btn.onclick = () => { if (confirm("Take " + f.name + " out of the call?")) fetch(base + "/invite/" + encodeURIComponent(f.id) + "/revoke", { method: "POST" }); };
    c.append(title, link, state, img, btn);
    c.parts = { title, link, state, btn };
    cards.set(f.id, c);
    $("far-ends").append(c);
  }
  c.parts.title.textContent = f.name;
  c.parts.link.textContent = f.join_url;
  c.parts.state.textContent = f.revoked ? "withdrawn" : (f.joined ? "in the call" : "not joined yet");
  c.parts.btn.hidden = f.revoked;
  c.classList.toggle("withdrawn", f.revoked);
}

async function poll() {
  try {
    const s = await (await fetch(base + "/state.json")).json();
    $("room").textContent = s.room_ready ? "room ready" : "starting the room…";
    for (const f of s.far_ends) card(f);
  } catch (err) { $("room").textContent = "cannot reach the relay"; }
}

$("invite").onsubmit = async (ev) => {
  ev.preventDefault();
  await fetch(base + "/invite", { method: "POST", headers: { "Content-Type": "application/json" },
                                  body: JSON.stringify({ name: $("name").value }) });
  $("name").value = ""; poll();
};
poll();
setInterval(poll, 1000);
})();
