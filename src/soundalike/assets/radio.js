// soundalike radio's page: the player, a spectrogram drawn from what is heard, and /status every 2 s.
// window.radioLog records the media element's events, for the browser test (tests/test_radio.py).
"use strict";
const audio = document.getElementById("radio");
const button = document.getElementById("play");
const canvas = document.getElementById("spectrogram");
const paint = canvas.getContext("2d");
window.radioLog = [];
let analyser = null;

for (const type of ["play", "playing", "waiting", "stalled", "pause", "error", "ended"]) {
  audio.addEventListener(type, () => {
    window.radioLog.push({type: type, currentTime: audio.currentTime, wall: performance.now() / 1000});
    document.getElementById("state").textContent = type === "playing" ? "playing" : type;
  });
}

function listen() {
  // A fresh connection joins at the live edge; the analyser needs a user gesture (or an autoplay policy).
  audio.src = "/stream?t=" + Date.now();
  audio.play().catch((e) => { document.getElementById("state").textContent = "press Listen (" + e.name + ")"; });
  if (!analyser) {
    const context = new AudioContext();
    analyser = context.createAnalyser();
    analyser.fftSize = 1024;
    analyser.smoothingTimeConstant = 0;
    context.createMediaElementSource(audio).connect(analyser);
    analyser.connect(context.destination);
    context.resume();
    requestAnimationFrame(draw);
  }
  button.textContent = "\u25A0 Stop";
  button.classList.add("playing");
}

function stop() {
  audio.pause();
  audio.removeAttribute("src");
  audio.load();
  button.textContent = "\u25B6 Listen";
  button.classList.remove("playing");
}

button.addEventListener("click", () => (audio.paused ? listen() : stop()));

// The spectrogram scrolls left one column per frame; low frequencies at the bottom, level in dB as colour.
function draw() {
  const bins = new Uint8Array(analyser.frequencyBinCount);
  analyser.getByteFrequencyData(bins);
  const w = canvas.width, h = canvas.height;
  paint.drawImage(canvas, 1, 0, w - 1, h, 0, 0, w - 1, h);
  for (let y = 0; y < h; y++) {
    const v = bins[Math.floor((h - 1 - y) / h * bins.length)] / 255;
    paint.fillStyle = `hsl(${260 - 220 * v}, 80%, ${8 + 55 * v}%)`;
    paint.fillRect(w - 1, y, 1, 1);
  }
  requestAnimationFrame(draw);
}

function duration(s) {
  const d = Math.floor(s / 86400), h = Math.floor(s / 3600) % 24, m = Math.floor(s / 60) % 60;
  return (d ? d + " d " : "") + (d || h ? h + " h " : "") + m + " min " + Math.floor(s % 60) + " s";
}

function text(id, value) { document.getElementById(id).textContent = value; }

async function refresh() {
  try {
    const s = await (await fetch("/status", {cache: "no-store"})).json();
    const p = s.playing, g = s.generator;
    text("model", `${p.family}${p.step != null ? ", step " + p.step : ""}, ${p.sample_rate} Hz`);
    text("checkpoint", p.checkpoint);
    const k = p.keep_alive;
    text("temperature", p.temperature.toFixed(3) +
         (k.enabled ? ` (slow random walk in ${k.temperature_range[0]}\u2013${k.temperature_range[1]})` : ""));
    text("seed", `${p.seed}` + (p.stream ? `, restart ${p.stream} (seed ${p.seed + p.stream})` : ""));
    text("uptime", duration(s.uptime_s));
    text("speed", g.realtime_factor == null ? "measuring" :
         `${g.realtime_factor.toFixed(2)}\u00D7 real time, ${s.buffer_s} s ahead`);
    text("listeners", `${s.listeners} now, ${s.listeners_peak} at most`);
    const last = k.events.length ? k.events[k.events.length - 1] : null;
    text("keepalive", !k.enabled ? "off" :
         (last ? `${k.events.length} event(s); last at ${duration(last.at_s)}: ${last.what}` :
          "watching: the last minute is judged every 20 s"));
    const slow = document.getElementById("slow");
    slow.hidden = !g.slower_than_real_time;
    if (g.slower_than_real_time) {
      slow.textContent = `The generator runs at ${g.measured_at_start.toFixed(2)}\u00D7 real time on this ` +
        `machine, slower than the music plays: the station airs from a pre-rendered buffer of ${g.prebuffer_s} s ` +
        `and pauses to refill it when it runs dry (${s.state === "buffering" ? "refilling now" : "now " +
        s.buffer_s + " s left"}).`;
    }
  } catch (e) {
    text("state", "station unreachable");
  }
}

refresh();
setInterval(refresh, 2000);
if (new URLSearchParams(location.search).has("autoplay")) listen();
