// "Use this browser's camera and microphone": the operator's own browser becomes the call's source.
// Its tracks go to the relay over WebRTC (calls/operator_browser.py); a "clock" data channel echoes the
// relay's pings so the relay can measure the one-way delay and stamp each frame with its capture time.
"use strict";
(() => {
const button = document.getElementById("use-camera");
if (!button) return;
const base = location.pathname.replace(/\/$/, "");  // /operator/<token>
const say = (text) => { const m = document.getElementById("camera-state"); if (m) m.textContent = text; };
let pc = null, stream = null;

function gathered(peer, ms) {  // aiortc does not trickle ICE: send the offer once gathering is done
  if (peer.iceGatheringState === "complete") return Promise.resolve();
  return new Promise((resolve) => {
    const done = () => { if (peer.iceGatheringState === "complete") resolve(); };
    peer.addEventListener("icegatheringstatechange", done);
    setTimeout(resolve, ms);
  });
}

async function start() {
  button.disabled = true;
  say("asking for the camera and microphone…");
  try {
    if (pc) pc.close();
    if (!stream) {
      stream = await navigator.mediaDevices.getUserMedia({
        video: { width: { ideal: 640 }, height: { ideal: 480 }, frameRate: { ideal: 30 } },
        audio: { echoCancellation: true, noiseSuppression: true, autoGainControl: true },
      });
    }
    pc = new RTCPeerConnection({ iceServers: [] });
    for (const track of stream.getTracks()) pc.addTransceiver(track, { direction: "sendonly", streams: [stream] });
    const clock = pc.createDataChannel("clock");
    clock.onmessage = (ev) => { if (clock.readyState === "open") clock.send(ev.data); };
    pc.onconnectionstatechange = () => {
      const s = pc.connectionState;
      if (s === "connected") say("your camera and microphone are the call's source");
      else if (s === "failed" || s === "disconnected") { say("camera connection lost: press the button again"); button.disabled = false; }
    };
    await pc.setLocalDescription(await pc.createOffer());
    await gathered(pc, 3000);
    const resp = await fetch(base + "/camera/offer", {
      method: "POST", headers: { "Content-Type": "application/json" },
      body: JSON.stringify({ sdp: pc.localDescription.sdp, type: pc.localDescription.type }),
    });
    if (!resp.ok) throw new Error((await resp.text()).trim() || ("HTTP " + resp.status));
    await pc.setRemoteDescription(await resp.json());
    say("connecting your camera…");
  } catch (err) {
    say("could not use this browser's camera: " + String(err && err.message ? err.message : err));
    button.disabled = false;
  }
}

button.addEventListener("click", start);
// Only a call started with `--source browser` takes its camera from here: ask before showing the button.
fetch(base + "/camera").then((r) => { button.hidden = r.status !== 204; }).catch(() => {});
})();
