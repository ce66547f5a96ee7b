// HERMES live: frames sampled in the browser at the stream's fps and appended through the public
// session API; questions streamed back as SSE; the stream's memory polled from
// GET /v1/sessions/{id}/memory. Plain script, no dependencies, same origin only.
"use strict";

const $ = (id) => document.getElementById(id);
const state = {
  sid: null, timer: null, poll: null, media: null, pending: [], inflight: false,
  framesSent: 0, appendErrors: 0, history: [], ttfts: [], memory: null, answers: 0, t0: 0,
};
window.hermesPage = state; // for tests and the curious

function num(id) { return Number($(id).value); }

function setStatus(text, error = false) {
  const s = $("status");
  s.textContent = text;
  s.classList.toggle("error", error);
}

async function api(method, path, body) {
  const init = { method, headers: {} };
  if (body !== undefined) {
    init.headers["Content-Type"] = "application/json";
    init.body = JSON.stringify(body);
  }
  const r = await fetch(path, init);
  const data = await r.json().catch(() => ({}));
  if (!r.ok) throw new Error((data.error && data.error.message) || `${r.status} ${r.statusText}`);
  return data;
}

// -- video source ------------------------------------------------------------------------------

$("source").addEventListener("change", () => {
  $("file").hidden = $("source").value !== "file";
});

async function startSource() {
  const video = $("video");
  if ($("source").value === "camera") {
    state.media = await navigator.mediaDevices.getUserMedia({ video: true, audio: false });
    video.srcObject = state.media;
  } else {
    const file = $("file").files[0];
    if (!file) throw new Error("choose a video file first");
    video.srcObject = null;
    video.src = URL.createObjectURL(file);
    video.loop = true;
  }
  await video.play();
}

function stopSource() {
  const video = $("video");
  video.pause();
  if (state.media) state.media.getTracks().forEach((t) => t.stop());
  state.media = null;
}

// -- streaming ---------------------------------------------------------------------------------

async function start() {
  $("start").disabled = true;
  try {
    await startSource();
    const fps = num("fps");
    const s = await api("POST", "/v1/sessions", {
      budget_tokens: num("budget"), policy: $("policy").value, fps,
      chunk_frames: Math.max(1, num("per-append")),
    });
    state.sid = s.id;
    state.t0 = performance.now();
    state.history = [];
    state.ttfts = [];
    state.framesSent = 0;
    $("stream-id").textContent = s.id;
    $("ask").disabled = false;
    $("stop").disabled = false;
    setStatus(`streaming into ${s.id}`);
    state.timer = setInterval(grab, 1000 / fps);
    state.poll = setInterval(pollMemory, 1000);
  } catch (e) {
    stopSource();
    $("start").disabled = false;
    setStatus(`could not start: ${e.message}`, true);
  }
}

function stop() {
  clearInterval(state.timer);
  state.timer = null;
  state.pending = [];
  stopSource();
  $("stop").disabled = true;
  $("start").disabled = false;
  setStatus(`stopped; ${state.sid} keeps its memory until its TTL`);
}

function grab() {
  const video = $("video");
  if (video.readyState < 2 || !video.videoWidth) return;
  const w = Math.max(28, num("width"));
  const h = Math.max(28, Math.round((video.videoHeight * w) / video.videoWidth / 2) * 2);
  const canvas = $("grab");
  canvas.width = w;
  canvas.height = h;
  canvas.getContext("2d").drawImage(video, 0, 0, w, h);
  state.pending.push(canvas.toDataURL("image/jpeg", 0.85));
  const keep = 8 * num("per-append"); // the server fell behind: drop the oldest frames, stay live
  if (state.pending.length > keep) state.pending.splice(0, state.pending.length - keep);
  flush();
}

async function flush() {
  const n = Math.max(1, num("per-append"));
  if (state.inflight || !state.sid || state.pending.length < n) return;
  const batch = state.pending.splice(0, n);
  state.inflight = true;
  try {
    await api("POST", "/v1/chat/completions", {
      model: "default",
      messages: [{ role: "user", content: batch.map((url) => ({ type: "image_url", image_url: { url } })) }],
      session: { id: state.sid, mode: "append" },
    });
    state.framesSent += batch.length;
  } catch (e) {
    state.appendErrors += 1;
    setStatus(`append failed: ${e.message}`, true);
  } finally {
    state.inflight = false;
  }
  if (state.timer) flush();
}

// -- asking ------------------------------------------------------------------------------------

async function ask(event) {
  event.preventDefault();
  const question = $("question").value.trim();
  if (!question || !state.sid) return;
  const out = $("answer");
  out.textContent = "";
  $("ask").disabled = true;
  const t0 = performance.now();
  let ttft = null;
  try {
    const r = await fetch("/v1/chat/completions", {
      method: "POST", headers: { "Content-Type": "application/json" },
      body: JSON.stringify({
        model: "default", messages: [{ role: "user", content: question }], max_tokens: Math.max(1, num("max-tokens")),
        stream: true, session: { id: state.sid },
      }),
    });
    if (!r.ok) {
      const data = await r.json().catch(() => ({}));
      throw new Error((data.error && data.error.message) || r.statusText);
    }
    const reader = r.body.getReader();
    const decoder = new TextDecoder();
    let buf = "";
    for (;;) {
      const { value, done } = await reader.read();
      if (done) break;
      buf += decoder.decode(value, { stream: true });
      let cut;
      while ((cut = buf.indexOf("\n\n")) >= 0) {
        const line = buf.slice(0, cut);
        buf = buf.slice(cut + 2);
        if (!line.startsWith("data: ") || line === "data: [DONE]") continue;
        const chunk = JSON.parse(line.slice(6));
        if (chunk.error) throw new Error(chunk.error.message);
        const delta = chunk.choices && chunk.choices[0] && chunk.choices[0].delta.content;
        if (delta) {
          if (ttft === null) ttft = performance.now() - t0;
          out.textContent += delta;
        }
      }
    }
    if (ttft === null) ttft = performance.now() - t0;
    state.ttfts.push(ttft);
    state.answers += 1;
    document.body.dataset.answers = String(state.answers);
    $("ttft").textContent = `TTFT ${ttft.toFixed(0)} ms, answer ${(performance.now() - t0).toFixed(0)} ms`;
    drawTtft();
  } catch (e) {
    setStatus(`ask failed: ${e.message}`, true);
  } finally {
    $("ask").disabled = false;
  }
}

// -- memory ------------------------------------------------------------------------------------

async function pollMemory() {
  if (!state.sid) return;
  try {
    const m = await api("GET", `/v1/sessions/${encodeURIComponent(state.sid)}/memory`);
    state.memory = m;
    // Video tokens held (the memory, without the stream's prefix) against video tokens ever appended.
    state.history.push({ t: (performance.now() - state.t0) / 1000, held: m.tokens_held - m.prefix_tokens,
                         seen: m.tokens_seen });
    if (state.history.length > 600) state.history.shift();
    $("memory-stats").textContent =
      `frames ${m.frames} | tokens seen ${m.tokens_seen} | held ${m.tokens_held} ` +
      `(prefix ${m.prefix_tokens} + budget ${m.budget_tokens}) | compressions ${m.compressions} | layers ${m.layers}`;
    drawTokens();
    drawHeatmap(m);
  } catch (e) {
    setStatus(`memory: ${e.message}`, true);
  }
}

function clear(canvas) {
  const g = canvas.getContext("2d");
  g.fillStyle = "#0d1117";
  g.fillRect(0, 0, canvas.width, canvas.height);
  g.font = "11px ui-monospace, monospace";
  return g;
}

function drawSeries(g, pts, key, color, x, y) {
  g.strokeStyle = color;
  g.lineWidth = 2;
  g.beginPath();
  pts.forEach((p, i) => (i ? g.lineTo(x(p.t), y(p[key])) : g.moveTo(x(p.t), y(p[key]))));
  g.stroke();
}

function drawTokens() {
  const c = $("tokens-chart");
  const g = clear(c);
  const pts = state.history;
  if (pts.length < 1) return;
  const top = Math.max(1, ...pts.map((p) => p.seen));
  const t1 = Math.max(1, pts[pts.length - 1].t);
  const x = (t) => 40 + ((c.width - 50) * t) / t1;
  const y = (v) => c.height - 20 - ((c.height - 30) * v) / top;
  drawSeries(g, pts, "seen", "#8a93a6", x, y);
  drawSeries(g, pts, "held", "#5fb3ff", x, y);
  g.fillStyle = "#8a93a6";
  g.fillText(`${top}`, 2, 14);
  g.fillText("0", 2, c.height - 20);
  g.fillText(`${t1.toFixed(0)} s`, c.width - 40, c.height - 5);
  g.fillText("seen", 50, 14);
  g.fillStyle = "#5fb3ff";
  g.fillText("held (video tokens in memory)", 90, 14);
}

function drawTtft() {
  const c = $("ttft-chart");
  const g = clear(c);
  const v = state.ttfts;
  if (!v.length) return;
  const top = Math.max(...v);
  const w = Math.min(40, (c.width - 50) / v.length);
  g.fillStyle = "#5fb3ff";
  v.forEach((ms, i) => {
    const h = ((c.height - 25) * ms) / top;
    g.fillRect(45 + i * w, c.height - 15 - h, Math.max(2, w - 4), h);
  });
  g.fillStyle = "#8a93a6";
  g.fillText(`${top.toFixed(0)} ms`, 2, 14);
  g.fillText(`answers: ${v.length}`, c.width - 90, 14);
}

function heat(v) {
  // 0 -> dark blue, 1 -> yellow (a viridis-like ramp, no library)
  const stops = [[13, 17, 60], [40, 90, 160], [40, 170, 140], [250, 230, 40]];
  const f = Math.min(1, Math.max(0, v)) * (stops.length - 1);
  const i = Math.min(stops.length - 2, Math.floor(f));
  const a = stops[i], b = stops[i + 1], t = f - i;
  return `rgb(${a.map((x, k) => Math.round(x + (b[k] - x) * t)).join(",")})`;
}

function drawHeatmap(m) {
  const c = $("heatmap");
  const g = clear(c);
  const layers = m.held.length;
  const older = m.older_held.some((n) => n > 0);
  const summary = m.summary_held.some((n) => n > 0);
  const first = (older ? 1 : 0) + (summary ? 1 : 0); // leading columns: older chunks, summary tokens
  const cols = m.chunks.length + first;
  c.dataset.layers = String(layers);
  c.dataset.chunks = String(m.chunks.length);
  if (!layers || !cols) {
    c.dataset.cells = "0";
    return;
  }
  const left = 36, bottom = 18;
  const cw = (c.width - left - 4) / cols, ch = (c.height - bottom - 4) / layers;
  let lit = 0;
  for (let l = 0; l < layers; l++) {
    for (let j = 0; j < cols; j++) {
      let frac;
      if (older && j === 0) {
        frac = m.older_held[l] > 0 ? 0.15 : 0;
      } else if (summary && j === first - 1) {
        frac = m.summary_held[l] > 0 ? 1 : 0;
      } else {
        const k = j - first;
        const total = m.chunks[k].tokens || Math.max(1, ...m.held.map((row) => row[k]));
        frac = m.held[l][k] / total;
      }
      if (frac > 0) lit += 1;
      g.fillStyle = heat(frac);
      g.fillRect(left + j * cw, 4 + l * ch, Math.max(1, cw - 1), Math.max(1, ch - 1));
    }
  }
  c.dataset.cells = String(layers * cols);
  c.dataset.lit = String(lit);
  g.fillStyle = "#8a93a6";
  const step = Math.max(1, Math.ceil(layers / 8));
  for (let l = 0; l < layers; l += step) g.fillText(`L${l}`, 2, 4 + l * ch + Math.min(ch, 12));
  const xstep = Math.max(1, Math.ceil(cols / 8));
  for (let j = 0; j < cols; j += xstep) {
    const k = j - first;
    const info = k < 0 ? null : m.chunks[k];
    // the summary column: the token HERMES' deep layers keep in place of what they dropped
    const label = info ? (info.first_frame === null ? `#${info.chunk}` : `f${info.first_frame}`)
      : (summary && j === first - 1 ? "sum" : "older");
    g.fillText(label, left + j * cw, c.height - 4);
  }
}

$("start").addEventListener("click", start);
$("stop").addEventListener("click", stop);
$("ask-form").addEventListener("submit", ask);
setStatus("idle: pick a source and press Start");
