// The operator console. Everything shown comes from the server's figures, which include what the far
// end's browser reports: it is written with textContent only, never parsed as markup.
"use strict";
(() => {
const base = location.pathname.replace(/\/$/, "");  // /operator/<token>
const $ = (id) => document.getElementById(id);
const fmt = (v, unit = "") => {
  if (v === null || v === undefined) return "–";
  if (typeof v === "number") return Number.isFinite(v) ? (Math.round(v * 10) / 10) + unit : "–";
  return String(v);
};
let ws = null, state = {};

function figure(label, value, note, warn) {
  const box = document.createElement("div");
  box.className = warn ? "fig warn" : "fig";
  const k = document.createElement("span"), v = document.createElement("b"), n = document.createElement("span");
  k.textContent = label; v.textContent = value; n.textContent = note || "";
  box.append(k, v, n);
  return box;
}

function render(f) {
  state = f;
  $("conn").textContent = f.far_end_connected ? "far end: connected" : "far end: not connected";
  $("mute").classList.toggle("on", f.muted === true); $("mute").textContent = f.muted ? "Unmute voice" : "Mute voice";
  $("card").classList.toggle("on", f.card === true); $("card").textContent = f.card ? "Back to the call" : 'Show "one moment"';
  if (typeof f.mode === "string" && document.activeElement !== $("mode")) $("mode").value = f.mode;
  const fe = f.far_end || {}, vid = fe.video || {};
  const av = f.av || {}, face = f.face || {}, voice = f.voice || {}, media = f.media || {}, invite = f.invite || {};
  const num = (v) => (typeof v === "number" && Number.isFinite(v)) ? v : null;
  const glass = (num(av.video_send_delay_ms) !== null && num(vid.jitterBufferMsPerFrame) !== null)
    ? av.video_send_delay_ms + vid.jitterBufferMsPerFrame : null;
  const items = [
    ["glass-to-glass (est.)", fmt(glass, " ms"), "send delay + far end's jitter buffer"],
    ["video send delay", fmt(num(av.video_send_delay_ms), " ms"), "capture to sent"],
    ["voice send delay", fmt(num(av.audio_send_delay_ms), " ms"), "capture to sent"],
    ["A/V skew", fmt(num(av.skew_ms), " ms"), "video minus voice", Math.abs(num(av.skew_ms) || 0) > 20],
    ["frames out", fmt(num(f.fps_out), " fps"), "sent to the far end", f.far_end_connected && num(f.fps_out) < 20],
    ["far end decodes", fmt(num(vid.framesPerSecond), " fps"), "reported by their browser"],
    ["face stage p95", fmt(num(face.p95_ms), " ms"), "capture to converted"],
    ["dropped frames", fmt(num(face.dropped)), "skipped to stay real-time"],
    ["voice stage p95", fmt(num(voice.p95_ms), " ms"), "capture to converted"],
    ["CPU", fmt(num(f.cpu_percent), " %"), `of one core (${fmt(num(f.cpu_cores))} cores)`,
     num(f.cpu_percent) > 90 * (num(f.cpu_cores) || 1)],
    ["link expires", fmt(invite.expires_at), invite.revoked ? "withdrawn" : ""],
    ["video codec", fmt(media.codec_in_use), `asked for ${fmt(media.codec)}`,
     Boolean(media.codec_in_use && media.codec_in_use !== media.codec)],
  ];
  const link = f.far_end_link;  // calls/network.py: the far end's own loss, round trip, rate and frame rate
  if (link) {
    items.unshift([link.weak ? "her connection is weak" : "her connection",
      link.weak ? "weak" : "good",
      `loss ${fmt(num(link.loss_pct), " %")}, round trip ${fmt(num(link.rtt_ms), " ms")}, ` +
      `${fmt(num(link.kbps_in), " kbit/s")}, ${fmt(num(link.fps), " fps")}` +
      (num(link.reconnects) ? `, reconnected ${link.reconnects}x` : "") + (link.weak ? ` (${link.why})` : ""),
      link.weak]);
  }
  const hold = f.voice_hold;  // calls/network.py VoiceHold: the voice waits for her picture on a lossy path
  if (hold && num(hold.hold_ms)) {
    items.push(["voice waits for her picture", fmt(num(hold.hold_ms), " ms"),
      `her picture plays ${fmt(num(hold.lag_reported_ms), " ms")} behind her voice without it`]);
  }
  $("figures").replaceChildren(...items.map(([k, v, note, warn]) => figure(k, v, note, warn)));
  if (f.source_error) $("message").textContent = "Operator input stopped: " + String(f.source_error);
}

function send(cmd) { if (ws && ws.readyState === 1) ws.send(JSON.stringify(cmd)); }

function connect() {
  ws = new WebSocket((location.protocol === "https:" ? "wss://" : "ws://") + location.host + base + "/ws");
  ws.onmessage = (ev) => {
    let m;
    try { m = JSON.parse(ev.data); } catch (err) { return; }
    if (m.type === "figures") render(m);
    else if (m.type === "result") $("message").textContent = String(m.message);
  };
  ws.onclose = () => { $("conn").textContent = "console disconnected, retrying…"; setTimeout(connect, 2000); };
}

$("mute").onclick = () => send({ action: "mute", on: state.muted !== true });
$("card").onclick = () => send({ action: "card", on: state.card !== true });
$("mode").onchange = (e) => send({ action: "mode", mode: e.target.value });
$("end").onclick = () => { if (confirm("End the call for everyone?")) send({ action: "end" }); };
connect();
})();
