/* The far-end page's words, in one table: every string the page shows comes from here.
   The language is the browser's first preferred one that the table has (English otherwise). */
"use strict";
window.EVERCALL_TEXT = {
  en: {
    title: "A call for you",
    start: "Start",
    hint: "Tap Start to see and hear the call. Your phone may ask to use the camera and microphone: tap Allow so they can see and hear you.",
    connecting: "Connecting…",
    reconnecting: "The connection dropped. Reconnecting…",
    voiceOnly: "They can hear you, but your camera is off.",
    listenOnly: "They cannot see or hear you, but you can see and hear them.",
    tapForSound: "Tap for sound",
    hideMe: "Hide me",
    showMe: "Show me",
    failed: "Could not connect. Trying again…",
    ended: "The call has ended.",
    weak: "Weak connection",
  },
  zh: {
    title: "有人给您打视频电话",
    start: "开始",
    hint: "点“开始”就能看到和听到对方。手机可能会询问能否使用摄像头和麦克风：点“允许”，对方就能看到和听到您。",
    connecting: "正在连接…",
    reconnecting: "网络断了，正在重新连接…",
    voiceOnly: "对方能听到您，但您的摄像头没有打开。",
    listenOnly: "对方看不到也听不到您，但您能看到和听到对方。",
    tapForSound: "点这里打开声音",
    hideMe: "隐藏我",
    showMe: "显示我",
    failed: "连接不上，正在重试…",
    ended: "通话已结束。",
    weak: "网络信号弱",
  },
};

window.evercallLanguage = function evercallLanguage(preferred) {
  const table = window.EVERCALL_TEXT;
  for (const tag of preferred || []) {
    const lower = String(tag).toLowerCase();
    if (table[lower]) return lower;
    const base = lower.split("-")[0];
    if (table[base]) return base;
  }
  return "en";
};
