// A far end in a room call (calls/sfu/room.py): receive the persona through the relay's Janus room,
// send this browser's camera and microphone (if allowed) so the operator sees everyone.
// The browser never speaks to Janus itself: every SDP goes through this page's own link.
"use strict";
(() => {
const base = location.pathname.replace(/\/$/, "");  // /sfu/join/<token>
const $ = (id) => document.getElementById(id);
const say = (t) => { $("status").textContent = t; };
const video = $("remote");

function gathered(pc, ms) {  // Janus takes the candidates in the SDP: wait for gathering (bounded)
  if (pc.iceGatheringState === "complete") return Promise.resolve();
  return new Promise((resolve) => {
    pc.addEventListener("icegatheringstatechange", () => { if (pc.iceGatheringState === "complete") resolve(); });
    setTimeout(resolve, ms);
  });
}

async function post(path, body) {
  const resp = await fetch(base + path, { method: "POST", headers: { "Content-Type": "application/json" },
                                          body: JSON.stringify(body || {}) });
  if (!resp.ok) throw new Error((await resp.text()).replace(/<[^>]*>/g, " ").trim().slice(0, 200));
  return resp.status === 204 ? null : resp.json();
}

let sub = null, pub = null, sent = 0;

async function receive() {
  let offer = null;
  for (let i = 0; i < 40 && !offer; i++) {
    try { offer = await post("/subscribe"); } catch (err) { say(String(err.message)); await new Promise((r) => setTimeout(r, 500)); }
  }
  if (!offer) return;
  sub = new RTCPeerConnection({ iceServers: [] });
  const stream = new MediaStream();
  sub.ontrack = (ev) => { stream.addTrack(ev.track); video.srcObject = stream; };
  sub.onconnectionstatechange = () => say(sub.connectionState === "connected" ? "in the call" : sub.connectionState);
  await sub.setRemoteDescription(offer);
  await sub.setLocalDescription(await sub.createAnswer());
  await gathered(sub, 3000);
  await post("/start", { sdp: sub.localDescription.sdp, type: "answer" });
}

async function send() {
  let stream;
  try {
    stream = await navigator.mediaDevices.getUserMedia({ video: { width: { ideal: 640 }, height: { ideal: 480 } },
                                                         audio: true });
  } catch (err) { return; }  // a far end may only watch and listen
  pub = new RTCPeerConnection({ iceServers: [] });
  for (const t of stream.getTracks()) pub.addTransceiver(t, { direction: "sendonly", streams: [stream] });
  await pub.setLocalDescription(await pub.createOffer());
  await gathered(pub, 3000);
  await pub.setRemoteDescription(await post("/publish", { sdp: pub.localDescription.sdp, type: "offer" }));
}

function snapshot() {
  if (!video.videoWidth) return undefined;
  const c = document.createElement("canvas");
  c.width = 320; c.height = Math.round(320 * video.videoHeight / video.videoWidth);
  c.getContext("2d").drawImage(video, 0, 0, c.width, c.height);
  return c.toDataURL("image/jpeg", 0.8);
}

async function report() {
  const r = {};
  if (sub) {
    (await sub.getStats()).forEach((s) => {
      if (s.type !== "inbound-rtp") return;
      if (s.kind === "video") { r.framesDecoded = s.framesDecoded || 0; r.framesPerSecond = s.framesPerSecond || 0; }
      if (s.kind === "audio") { r.audioPacketsReceived = s.packetsReceived || 0; r.audioLevel = s.audioLevel || 0; }
    });
  }
  if (pub) (await pub.getStats()).forEach((s) => { if (s.type === "outbound-rtp" && s.kind === "video") r.sentFrames = s.framesSent || 0; });
  const snap = snapshot();
  if (snap && snap.length < 60000) r.snapshot = snap;
  try { await post("/report", r); } catch (err) { say(String(err.message)); }
}

$("sound").onclick = () => { video.muted = false; video.play(); $("sound").hidden = true; };
receive().catch((err) => say("could not join: " + String(err.message)));
send().catch(() => {});
setInterval(() => { report().catch(() => {}); }, 1000);
})();
