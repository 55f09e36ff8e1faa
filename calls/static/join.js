/* The far-end page: one tap, the persona's face filling the screen, and a call that survives the network.

   - Start: the one gesture mobile browsers need. In it the page unmutes the picture's sound and asks for the
     camera and microphone; each one she declines is simply left out (voice only, or watch and listen only).
     Where the browser already allows sound without a tap (a desktop she has used before), it starts by itself.
   - The screen's shape goes to the relay (/viewport), again on rotation: the relay frames the face to it.
   - Dropped connection: the browser's ICE recovers a short outage on its own; if the call is still down
     after RECOVER_MS, or the connection failed, the page makes a fresh offer on the same link, and keeps
     trying until it is back. Nothing for her to do.
   - About once a second the page posts what it measures (plain numbers) to /report for the operator. */
"use strict";

const BASE = location.pathname.replace(/\/$/, "");
const OFFER_URL = BASE + "/offer";
const REPORT_URL = BASE + "/report";
const VIEWPORT_URL = BASE + "/viewport";
const REPORT_EVERY_MS = 1000;
const RECOVER_MS = 5000;  // how long a "disconnected" call may heal itself before a fresh offer
const RETRY_MS = 2000;    // between fresh offers while the call is down
const GAP_POLL_MS = 50;   // audio concealment sampling (the longest run of patched-up audio)

const TEXT = window.EVERCALL_TEXT;
const LANG = window.evercallLanguage(navigator.languages || [navigator.language]);
const t = (key) => (TEXT[LANG] && TEXT[LANG][key]) || TEXT.en[key] || key;
document.documentElement.lang = LANG === "zh" ? "zh-CN" : LANG;
document.querySelectorAll("[data-text]").forEach((el) => { el.textContent = t(el.dataset.text); });
document.title = t("title");

const remote = document.getElementById("remote");
const selfView = document.getElementById("self");
const statusEl = document.getElementById("status");
const soundBtn = document.getElementById("sound");
const selfToggle = document.getElementById("self-toggle");
const startScreen = document.getElementById("start-screen");
const startBtn = document.getElementById("start");

function say(key) {
  statusEl.textContent = "";
  if (!key) return;
  const span = document.createElement("span");
  span.textContent = t(key);
  statusEl.appendChild(span);
}

window.evercall = {
  pc: null, connected: false, lastReport: null, started: false, reconnects: 0,
  camera: false, microphone: false, language: LANG,
};
let local = null;          // her camera/microphone stream (null: she declined both, or has none)
const incoming = new MediaStream();
remote.srcObject = incoming;

// -- the screen's shape, to the relay -----------------------------------------------------------------

function viewport() {
  const v = window.visualViewport;
  return { width: Math.round(v ? v.width : window.innerWidth), height: Math.round(v ? v.height : window.innerHeight) };
}
let viewportTimer = null;
let lastViewport = "";
async function sendViewport() {
  const shape = viewport();
  const key = shape.width + "x" + shape.height;
  if (key === lastViewport || !shape.width || !shape.height) return;
  lastViewport = key;
  try {
    await fetch(VIEWPORT_URL, { method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify(shape) });
  } catch (err) { lastViewport = ""; /* next resize or the next offer tries again */ }
}
function viewportChanged() { clearTimeout(viewportTimer); viewportTimer = setTimeout(sendViewport, 250); }
window.addEventListener("resize", viewportChanged);
window.addEventListener("orientationchange", viewportChanged);

// -- her camera and microphone: each one she allows --------------------------------------------------

async function askForMedia() {
  if (!navigator.mediaDevices || !navigator.mediaDevices.getUserMedia) return null;
  const video = { width: { ideal: 640 }, height: { ideal: 480 }, facingMode: "user" };
  const audio = { echoCancellation: true, noiseSuppression: true, autoGainControl: true };
  // Both in one question; if she declines (or lacks) either, ask for each alone: whatever she allows is used.
  for (const wanted of [{ video, audio }, { audio }, { video }]) {
    try { return await navigator.mediaDevices.getUserMedia(wanted); }
    catch (err) { /* declined or missing: try the next, smaller request */ }
  }
  return null;
}

function showSelf() {
  const cam = local && local.getVideoTracks().length > 0;
  window.evercall.camera = !!cam;
  window.evercall.microphone = !!(local && local.getAudioTracks().length > 0);
  if (cam) {
    selfView.srcObject = local;
    selfView.hidden = false;
    selfToggle.hidden = false;
  }
}

selfToggle.addEventListener("click", () => {
  selfView.hidden = !selfView.hidden;
  selfToggle.textContent = t(selfView.hidden ? "showMe" : "hideMe");
});

// The self-view can be dragged anywhere (a finger or a mouse).
(function draggable(el) {
  let start = null;
  el.addEventListener("pointerdown", (ev) => {
    const r = el.getBoundingClientRect();
    start = { x: ev.clientX - r.left, y: ev.clientY - r.top };
    el.setPointerCapture(ev.pointerId);
    el.classList.add("dragging");
  });
  el.addEventListener("pointermove", (ev) => {
    if (!start) return;
    const w = el.offsetWidth, h = el.offsetHeight;
    const x = Math.min(Math.max(0, ev.clientX - start.x), window.innerWidth - w);
    const y = Math.min(Math.max(0, ev.clientY - start.y), window.innerHeight - h);
    el.style.setProperty("left", x + "px");  // CSSOM, not a style attribute in the markup: CSP allows it
    el.style.setProperty("top", y + "px");
    el.style.setProperty("right", "auto");
    el.style.setProperty("bottom", "auto");
  });
  const end = () => { start = null; el.classList.remove("dragging"); };
  el.addEventListener("pointerup", end);
  el.addEventListener("pointercancel", end);
})(selfView);

// -- the screen stays awake ----------------------------------------------------------------------------

let wakeLock = null;
async function keepAwake() {
  try {
    if ("wakeLock" in navigator && document.visibilityState === "visible") wakeLock = await navigator.wakeLock.request("screen");
  } catch (err) { wakeLock = null; /* not allowed here (battery saver, old browser): the call goes on */ }
}
document.addEventListener("visibilitychange", () => {
  if (document.visibilityState === "visible" && window.evercall.started) keepAwake();
});

// -- sound -------------------------------------------------------------------------------------------

async function unlockSound() {
  remote.muted = false;
  try { await remote.play(); soundBtn.hidden = true; }
  catch (err) { remote.muted = true; remote.play().catch(() => {}); soundBtn.hidden = false; }
  if (meter && meter.ctx.state === "suspended") meter.ctx.resume().catch(() => {});
}
soundBtn.addEventListener("click", () => { unlockSound(); });

// -- the connection -------------------------------------------------------------------------------------

function gatheringDone(pc, ms) {
  // aiortc does not trickle ICE: send the offer once gathering is complete (or after a timeout).
  if (pc.iceGatheringState === "complete") return Promise.resolve();
  return new Promise((resolve) => {
    const timer = setTimeout(resolve, ms);
    pc.addEventListener("icegatheringstatechange", () => {
      if (pc.iceGatheringState === "complete") { clearTimeout(timer); resolve(); }
    });
  });
}

let downSince = null;   // when the call last stopped being connected (null: it is up)
let recoverTimer = null;
let offering = false;
let refusedForGood = false;  // the link was withdrawn or the seat is taken: offering again cannot help

function callDown(pc, immediately) {
  if (pc !== window.evercall.pc) return;
  if (downSince === null) downSince = Date.now();
  say("reconnecting");
  clearTimeout(recoverTimer);
  recoverTimer = setTimeout(() => reconnect(pc), immediately ? 0 : RECOVER_MS);
}

async function reconnect(pc) {
  if (pc !== window.evercall.pc || window.evercall.connected || offering || refusedForGood) return;
  window.evercall.reconnects += 1;
  try { await connect(); }
  catch (err) { /* connect() schedules its own retry */ }
}

async function connect() {
  offering = true;
  const old = window.evercall.pc;
  const pc = new RTCPeerConnection({ iceServers: [] });
  window.evercall.pc = pc;
  if (old) { try { old.close(); } catch (err) { /* already closed */ } }
  const cam = local ? local.getVideoTracks()[0] : null;
  const mic = local ? local.getAudioTracks()[0] : null;
  // Always receive both: she sees and hears the persona whatever she allowed.
  if (cam) pc.addTransceiver(cam, { direction: "sendrecv", streams: [local] });
  else pc.addTransceiver("video", { direction: "recvonly" });
  if (mic) pc.addTransceiver(mic, { direction: "sendrecv", streams: [local] });
  else pc.addTransceiver("audio", { direction: "recvonly" });

  pc.ontrack = (ev) => {
    incoming.getTracks().filter((tr) => tr.kind === ev.track.kind).forEach((tr) => incoming.removeTrack(tr));
    incoming.addTrack(ev.track);
    if (ev.track.kind === "audio") startMeter(ev.track);
    remote.play().catch(() => {});
  };
  pc.onconnectionstatechange = () => {
    if (pc !== window.evercall.pc) return;
    const s = pc.connectionState;
    window.evercall.connected = s === "connected";
    if (s === "connected") {
      downSince = null;
      clearTimeout(recoverTimer);
      say(statusAfterConnect());
      if (!window.evercall.reporting) { window.evercall.reporting = true; reportLoop(); gapLoop(); }
    } else if (s === "disconnected") callDown(pc, false);
    else if (s === "failed") callDown(pc, true);
  };
  try {
    await pc.setLocalDescription(await pc.createOffer());
    await gatheringDone(pc, 3000);
    await sendViewport();
    const resp = await fetch(OFFER_URL, {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify({ sdp: pc.localDescription.sdp, type: pc.localDescription.type }),
    });
    if (resp.status === 403 || resp.status === 409) {  // the link was withdrawn, or someone else is in the call
      statusEl.textContent = "";
      const span = document.createElement("span");
      span.textContent = new DOMParser().parseFromString(await resp.text(), "text/html").body.textContent.trim();
      statusEl.appendChild(span);
      refusedForGood = true;
      offering = false;
      return;
    }
    if (!resp.ok) throw new Error("offer refused: " + resp.status);
    if (pc !== window.evercall.pc) return;
    await pc.setRemoteDescription(await resp.json());
  } catch (err) {
    if (pc === window.evercall.pc) {
      say("failed");
      clearTimeout(recoverTimer);
      recoverTimer = setTimeout(() => reconnect(pc), RETRY_MS);
    }
  } finally {
    offering = false;
  }
  // A fresh offer that never connects is replaced by another one.
  setTimeout(() => { if (pc === window.evercall.pc && pc.connectionState !== "connected") callDown(pc, true); }, RECOVER_MS + RETRY_MS);
}

function statusAfterConnect() {
  if (window.evercall.camera) return "";
  return window.evercall.microphone ? "voiceOnly" : "listenOnly";
}

async function start(withGesture) {
  if (window.evercall.started) return;
  window.evercall.started = true;
  startScreen.hidden = true;
  say("connecting");
  if (withGesture) unlockSound();      // inside the tap: what mobile autoplay rules require
  local = await askForMedia();
  showSelf();
  keepAwake();
  if (!withGesture) unlockSound();
  await connect();
}

startBtn.addEventListener("click", () => { start(true).catch(() => say("failed")); });

// Where sound may already play without a tap, there is nothing to ask of her: start at once.
(function startIfAllowed() {
  let allowed = false;
  try {
    const probeCtx = new AudioContext();
    allowed = probeCtx.state === "running";
    probeCtx.close();
  } catch (err) { allowed = false; }
  if (allowed) start(false).catch(() => say("failed"));
  else startBtn.focus();
})();

// -- what this page sees, posted back so the operator (and the tests) know the call really works --------

const probe = document.createElement("canvas");  // never attached: only read back
probe.width = 64; probe.height = 48;
const probeCtx2d = probe.getContext("2d", { willReadFrequently: true });
let snapshotSent = false;

function pictureSummary() {
  // A 64x48 copy of the picture actually shown, reduced to a few numbers: a black or frozen-blank
  // picture and a face look very different here, whatever the stats counters say.
  if (remote.readyState < 2 || !remote.videoWidth) return null;
  probeCtx2d.drawImage(remote, 0, 0, probe.width, probe.height);
  const px = probeCtx2d.getImageData(0, 0, probe.width, probe.height).data;
  const n = px.length / 4;
  let sum = 0, sum2 = 0, min = 255, max = 0, r = 0, g = 0, b = 0;
  for (let i = 0; i < px.length; i += 4) {
    const y = 0.299 * px[i] + 0.587 * px[i + 1] + 0.114 * px[i + 2];
    sum += y; sum2 += y * y; r += px[i]; g += px[i + 1]; b += px[i + 2];
    if (y < min) min = y;
    if (y > max) max = y;
  }
  const mean = sum / n;
  return {
    width: remote.videoWidth, height: remote.videoHeight, currentTime: remote.currentTime,
    meanLuma: mean, stdLuma: Math.sqrt(Math.max(0, sum2 / n - mean * mean)), minLuma: min, maxLuma: max,
    meanRGB: [r / n, g / n, b / n],
  };
}

let meter = null;

function startMeter(track) {
  // Level of the voice as received, measured by Web Audio (not connected to the speakers: the video
  // element plays the sound). A long window (0.68 s at 48 kHz) spans the gaps between words.
  try {
    if (meter) meter.ctx.close();
    const ctx = new AudioContext();
    const analyser = ctx.createAnalyser();
    analyser.fftSize = 32768;
    ctx.createMediaStreamSource(new MediaStream([track])).connect(analyser);
    meter = { ctx, analyser, buf: new Float32Array(analyser.fftSize) };
    if (ctx.state === "suspended" && !remote.muted) ctx.resume().catch(() => {});
  } catch (err) { meter = null; }
}

function voiceLevel() {
  if (!meter) return { state: "unavailable", rms: null };
  if (meter.ctx.state !== "running") return { state: meter.ctx.state, rms: null };
  meter.analyser.getFloatTimeDomainData(meter.buf);
  let sum2 = 0;
  for (const v of meter.buf) sum2 += v * v;
  return { state: "running", rms: Math.sqrt(sum2 / meter.buf.length) };
}

function snapshot() {
  // One still of the remote picture (JPEG keeps it well under the server's report size limit).
  const c = document.createElement("canvas");
  c.width = 320; c.height = Math.round(320 * remote.videoHeight / remote.videoWidth) || 240;
  c.getContext("2d").drawImage(remote, 0, 0, c.width, c.height);
  return c.toDataURL("image/jpeg", 0.85);
}

// The longest run of audio the decoder had to make up (concealment), sampled every GAP_POLL_MS: what
// she would hear as a gap or a warble. Runs during which the stream was silent anyway are not counted.
const gaps = { longestMs: 0, runMs: 0, last: null };
window.evercall.gaps = gaps;  // a benchmark may zero longestMs to measure one stretch of the call
async function gapLoop() {
  const pc = window.evercall.pc;
  if (pc && pc.connectionState === "connected") {
    try {
      const stats = await pc.getStats();
      stats.forEach((s) => {
        if (s.type !== "inbound-rtp" || s.kind !== "audio") return;
        const now = { samples: s.totalSamplesReceived || 0, concealed: (s.concealedSamples || 0) - (s.silentConcealedSamples || 0), pc };
        if (gaps.last && gaps.last.pc === pc && now.samples >= gaps.last.samples) {
          const total = now.samples - gaps.last.samples;
          const patched = now.concealed - gaps.last.concealed;
          if (total > 0 && patched >= 0.5 * total) {
            gaps.runMs += 1000 * patched / 48000;
            gaps.longestMs = Math.max(gaps.longestMs, gaps.runMs);
          } else gaps.runMs = 0;
        }
        gaps.last = now;
      });
    } catch (err) { /* next time */ }
  }
  setTimeout(gapLoop, GAP_POLL_MS);
}

const previous = { at: null, bytes: 0, lost: 0, received: 0, pc: null };

async function collect(pc) {
  const out = { connectionState: pc.connectionState, at: Date.now(), video: null, audio: null, sent: {} };
  const stats = await pc.getStats();
  let bytes = 0, lost = 0, received = 0, rttMs = null;
  const playout = {};  // each medium's playout position on the relay's send clock (ms), read in one call
  stats.forEach((s) => {
    if (s.type === "inbound-rtp" && s.estimatedPlayoutTimestamp) playout[s.kind] = s.estimatedPlayoutTimestamp;
    if (s.type === "inbound-rtp" && s.kind === "video") {
      out.video = {
        framesDecoded: s.framesDecoded, framesPerSecond: s.framesPerSecond,
        frameWidth: s.frameWidth, frameHeight: s.frameHeight, framesDropped: s.framesDropped,
        freezeCount: s.freezeCount, totalFreezesDuration: s.totalFreezesDuration,
        packetsLost: s.packetsLost, packetsReceived: s.packetsReceived, nackCount: s.nackCount,
        jitterBufferMsPerFrame: s.jitterBufferEmittedCount ? 1000 * s.jitterBufferDelay / s.jitterBufferEmittedCount : null,
      };
    } else if (s.type === "inbound-rtp" && s.kind === "audio") {
      out.audio = {
        packetsReceived: s.packetsReceived, packetsLost: s.packetsLost,
        totalSamplesReceived: s.totalSamplesReceived, audioLevel: s.audioLevel,
        totalAudioEnergy: s.totalAudioEnergy, concealedSamples: s.concealedSamples,
        silentConcealedSamples: s.silentConcealedSamples, concealmentEvents: s.concealmentEvents,
        fecPacketsReceived: s.fecPacketsReceived,
        jitterBufferMs: s.jitterBufferEmittedCount ? 1000 * s.jitterBufferDelay / s.jitterBufferEmittedCount : null,
        longestConcealedMs: gaps.longestMs,
      };
    } else if (s.type === "outbound-rtp") {
      out.sent[s.kind] = { packetsSent: s.packetsSent, framesEncoded: s.framesEncoded };
    } else if (s.type === "candidate-pair" && s.nominated && s.state === "succeeded" && s.currentRoundTripTime !== undefined) {
      rttMs = 1000 * s.currentRoundTripTime;
    }
    if (s.type === "inbound-rtp") {
      bytes += s.bytesReceived || 0; lost += s.packetsLost || 0; received += s.packetsReceived || 0;
    }
  });
  // How far the picture she sees is behind the voice she hears: the relay holds the voice back by it
  // (calls/network.py: VoiceHold), since on a lossy path the picture waits for retransmissions.
  if (out.video && playout.video && playout.audio) out.video.behindVoiceMs = playout.audio - playout.video;
  let kbpsIn = null, lossPct = null;
  if (previous.at !== null && previous.pc === pc && out.at > previous.at) {
    kbpsIn = 8 * (bytes - previous.bytes) / (out.at - previous.at);
    const dl = lost - previous.lost, dr = received - previous.received;
    lossPct = dl + dr > 0 ? 100 * Math.max(0, dl) / (dl + dr) : 0;
  }
  Object.assign(previous, { at: out.at, bytes, lost, received, pc });
  out.network = {
    lossPct, rttMs, kbpsIn, reconnects: window.evercall.reconnects,
    fps: out.video ? (out.video.framesPerSecond || 0) : null,
  };
  const shape = viewport();
  out.screen = { width: shape.width, height: shape.height, camera: window.evercall.camera ? 1 : 0,
    microphone: window.evercall.microphone ? 1 : 0 };
  out.picture = pictureSummary();
  out.voice = voiceLevel();
  if (!snapshotSent && out.picture && out.picture.maxLuma > 16 && out.video && out.video.framesDecoded >= 30) {
    out.snapshot = snapshot();
    snapshotSent = true;
  }
  return out;
}

async function reportLoop() {
  // One report at a time, about once a second, for as long as the page is open. A failed post is not fatal:
  // the call matters more than its figures.
  const pc = window.evercall.pc;
  if (pc && pc.connectionState !== "closed") {
    try {
      const body = await collect(pc);
      window.evercall.lastReport = Object.assign({}, body, { snapshot: undefined });
      const resp = await fetch(REPORT_URL, { method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify(body) });
      // 409: the relay no longer counts this browser in the call (it gave the seat up while the network was
      // down). Whatever this side's connection still believes, only a fresh offer brings the call back.
      if (resp.status === 409 && pc === window.evercall.pc && !offering && !refusedForGood) {
        window.evercall.connected = false;
        callDown(pc, true);
      }
    } catch (err) { /* try again next time */ }
  }
  setTimeout(reportLoop, REPORT_EVERY_MS);
}
