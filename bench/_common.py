"""Shared pieces of the serving benchmarks (ttft_vs_frames.py, ingest.py, concurrency.py).

Every benchmark talks to a real ``hermes-serve`` the way users do: the ``openai`` client for appends and
questions, plain JSON for ``/v1/sessions``; the scheduler's own per-stream state comes from
``/server_info``. Nothing here asserts a timing: the scripts print what they measure.

The bench model (``BENCH_MODEL``) is a random-weight Qwen2.5-VL built by ``sglang_hermes.testing``:
12 decoder layers, hidden 256 (4 query / 2 KV heads of 64), a 2-block vision tower, and frames of
140x140 -> 25 vision tokens per 2 frames -> 202 tokens per 16-frame chunk (with the vision start/end
tokens). Why not bigger frames: SGLang's CPU vision attention (SDPA with a dense [s, s] mask over every
patch of a request) needs ~28 bytes x s^2 for one request, and the stateless baseline sends all 256
frames in one request: at 224x224 that is s = 32768 patches, ~30 GB, and the scheduler is OOM-killed on
a 24 GB machine; at 140x140 it is s = 12800, ~4.6 GB. ``--smoke`` runs use the default tiny model
(hidden 64, 112x112 -> 130 tokens per 16-frame chunk).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import platform
import shutil
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import numpy as np
import openai

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # run as `python bench/x.py` from a checkout
    sys.path.insert(0, str(ROOT))

from sglang_hermes.media import data_url, encode_mp4, encode_png  # noqa: E402
from sglang_hermes.testing.server import HermesServer  # noqa: E402
from sglang_hermes.testing.tiny_models import QWEN_VL_DEFAULTS, build_tiny_qwen2_5_vl  # noqa: E402
from sglang_hermes.testing.video import synthetic_frames  # noqa: E402

# The model of the full runs: big enough that attention over the stream shows (12 layers, hidden 256,
# 202 video tokens per 16-frame chunk), small enough for a few minutes per script on 2 CPU cores.
BENCH_FRAME = 140
BENCH_MODEL = dict(num_hidden_layers=12, hidden_size=256, intermediate_size=1024, num_attention_heads=4,
                   num_key_value_heads=2, vision_depth=2, vision_hidden_size=64, max_pixels=BENCH_FRAME ** 2)
SMOKE_MODEL: dict = {}  # the default tiny model
SMOKE_FRAME = 112

FPS = 1.0
CHUNK_FRAMES = 16
LOAD_AT_START = os.getloadavg()  # the machine is shared and noisy: every result records its load


# -- model and server ----------------------------------------------------------------------------

def model_dir(cache: Path, smoke: bool) -> Path:
    """The model's checkpoint, built once into ``cache`` (keyed by its parameters)."""
    params = SMOKE_MODEL if smoke else BENCH_MODEL
    key = hashlib.sha1(json.dumps({**QWEN_VL_DEFAULTS, **params}, sort_keys=True).encode()).hexdigest()[:10]
    path = cache / f"bench-qwen2.5-vl-{'tiny' if smoke else 'bench'}-{key}"
    if not (path / "config.json").exists():
        cache.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(dir=cache, prefix=".building-"))
        build_tiny_qwen2_5_vl(tmp, **params)
        try:
            tmp.rename(path)
        except OSError:  # built concurrently by someone else
            shutil.rmtree(tmp, ignore_errors=True)
    return path


def model_info(args, api: "Api") -> dict:
    """What served the run: the built checkpoint's shape, or the served model's name (--base-url)."""
    if args.base_url:
        return {"served": api.served_model()}
    return {"served": "bench model built by sglang_hermes.testing" if not args.smoke else "default tiny model",
            **model_facts(model_dir(Path(args.cache_dir).resolve(), args.smoke))}


def model_facts(path: Path) -> dict:
    cfg = json.loads((path / "config.json").read_text())
    proc = json.loads((path / "processor_config.json").read_text())
    keys = ("num_hidden_layers", "hidden_size", "intermediate_size", "num_attention_heads", "num_key_value_heads")
    out = {k: cfg.get(k) for k in keys}
    out["vision_depth"] = cfg.get("vision_config", {}).get("depth")
    out["vision_hidden_size"] = cfg.get("vision_config", {}).get("hidden_size")
    out["max_pixels"] = proc.get("video_processor", {}).get("size", {}).get("longest_edge")
    return out


def frame_side(args) -> int:
    return args.frame_side or (SMOKE_FRAME if args.smoke else BENCH_FRAME)


def server_args(max_total_tokens: int, max_chunk_tokens: int) -> list[str]:
    return ["--dtype", "float32", "--enable-metrics", "--hermes-max-chunk-tokens", str(max_chunk_tokens),
            "--max-total-tokens", str(max_total_tokens)]


@dataclass
class Target:
    """Where the benchmark sends its requests: a server it started (``server``) or one given by URL."""
    base_url: str
    server: HermesServer | None = None
    startup_seconds: float | None = None
    pid: int | None = None  # the server's process, to read its RSS (known for a started server or --server-pid)


@contextlib.contextmanager
def serve(args, *, max_total_tokens: int, max_chunk_tokens: int = 1024):
    """A hermes-serve on the benchmark's model, or the one at ``--base-url`` (then the caller's flags apply)."""
    if args.base_url:
        yield Target(args.base_url.rstrip("/").removesuffix("/v1"), pid=args.server_pid)
        return
    cache = Path(args.cache_dir).resolve()
    model = model_dir(cache, args.smoke)
    log = cache / f"{Path(sys.argv[0]).stem}-server.log"
    with HermesServer(model, extra_args=server_args(max_total_tokens, max_chunk_tokens), log_path=log) as server:
        yield Target(server.base_url, server, server.startup_seconds, server.proc.pid)


def add_common_args(ap) -> None:
    ap.add_argument("--smoke", action="store_true", help="tiny model, few frames: seconds, for the test suite")
    ap.add_argument("--base-url", default=None,
                    help="use this running hermes-serve instead of starting one (no RSS then, unless --server-pid)")
    ap.add_argument("--server-pid", type=int, default=None, help="with --base-url: its pid, to read its RSS")
    ap.add_argument("--cache-dir", default=str(ROOT / ".cache"), help="where models and the server log go")
    ap.add_argument("--json", dest="json_path", default=None, help="where to write the results as JSON")
    ap.add_argument("--frame-side", type=int, default=None,
                    help=f"side of the square synthetic frames (default {BENCH_FRAME}; smoke {SMOKE_FRAME}; "
                         f"448 for Qwen2.5-VL-7B on a GPU)")


# -- the session API ------------------------------------------------------------------------------

class Api:
    """One client of the session API (thread-safe: httpx and openai clients are)."""

    def __init__(self, target: Target):
        self.base = target.base_url
        self.target = target
        self.http = httpx.Client(base_url=self.base, timeout=600)
        self.client = openai.OpenAI(base_url=f"{self.base}/v1", api_key="none", max_retries=0, timeout=600)

    def open(self, policy: str, budget: int, sid: str | None = None) -> str:
        body = {"policy": policy, "budget_tokens": budget, "fps": FPS, "chunk_frames": CHUNK_FRAMES}
        if sid:
            body["id"] = sid
        r = self.http.post("/v1/sessions", json=body)
        if r.status_code != 201:
            raise RuntimeError(f"opening a {policy} stream failed: {r.status_code} {r.text}")
        return r.json()["id"]

    def warm_up(self, parts: list[dict], video: dict | None = None) -> int:
        """One throwaway stream (append, two asks) and one stateless ask, so that first-call costs of the
        server (allocations, lazy imports, kernel selection) land in no measurement. Returns the tokens
        the chunk added (the model's tokens per chunk: `full` streams need it for their budget)."""
        sid = self.open("hermes", 8192)
        try:
            _, stats = self.append(sid, parts)
            for _ in range(2):
                self.ask("warm up", 2, sid=sid)
        finally:
            self.close(sid)
        if video is not None:
            self.ask("warm up", 2, video=video)
        return int(stats["tokens_seen"])

    def served_model(self) -> str | None:
        with contextlib.suppress(Exception):
            return self.http.get("/v1/models").json()["data"][0]["id"]
        return None

    def close(self, sid: str) -> None:
        with contextlib.suppress(httpx.HTTPError):  # never hide the error that ended a run
            self.http.delete(f"/v1/sessions/{sid}")

    def append(self, sid: str, parts: list[dict]) -> tuple[float, dict]:
        """One chunk; returns (client-side latency in s, the stream's stats from the response)."""
        t0 = time.perf_counter()
        resp = self.client.chat.completions.create(
            model="default", messages=[{"role": "user", "content": parts}],
            extra_body={"session": {"id": sid, "mode": "append"}})
        return time.perf_counter() - t0, resp.model_extra["session"]

    def ask(self, question: str, max_tokens: int, sid: str | None = None, video: dict | None = None) -> dict:
        """A streamed question, on a stream (``sid``) or stateless (``video``: one chat request carrying
        the whole clip and the question). Returns {"ttft": seconds to the first non-empty answer delta,
        "total": seconds to the end, "prompt_tokens": tokens the question attended to}."""
        if sid is not None:
            messages = [{"role": "user", "content": question}]
            extra = {"session": {"id": sid}}
        else:
            messages = [{"role": "user", "content": [video, {"type": "text", "text": question}]}]
            extra = {}
        t0 = time.perf_counter()
        first, prompt_tokens = None, None
        chunks = self.client.chat.completions.create(
            model="default", messages=messages, max_tokens=max_tokens, temperature=0, stream=True,
            stream_options={"include_usage": True}, extra_body=extra)
        for chunk in chunks:
            if first is None and chunk.choices and chunk.choices[0].delta.content:
                first = time.perf_counter() - t0
            if chunk.usage is not None:
                prompt_tokens = chunk.usage.prompt_tokens
        total = time.perf_counter() - t0
        # An empty answer (EOS first) still ended its prefill: count the whole request then.
        return {"ttft": first if first is not None else total, "total": total, "prompt_tokens": prompt_tokens}

    def scheduler_streams(self) -> dict:
        """The scheduler's per-stream state: memory_len, prefix_len, candidates, last_append_ms, ..."""
        info = self.http.get("/server_info").json()
        states = info.get("internal_states") or [{}]
        return states[0].get("hermes", {}).get("streams", {})

    def hermes_state(self) -> dict:
        info = self.http.get("/server_info").json()
        return (info.get("internal_states") or [{}])[0].get("hermes", {})

    def rss_bytes(self) -> int | None:
        """Resident memory of the server's process tree (None for a server given by URL without its pid)."""
        if self.target.pid is None:
            return None
        return process_tree_rss(self.target.pid)


def process_tree_rss(pid: int) -> int:
    try:
        import psutil

        root = psutil.Process(pid)
        total = 0
        for p in [root, *root.children(recursive=True)]:
            with contextlib.suppress(psutil.Error):
                total += p.memory_info().rss
        return total
    except ImportError:
        total = 0
        for status in Path("/proc").glob("[0-9]*/status"):
            with contextlib.suppress(OSError):
                text = status.read_text()
                fields = dict(line.split(":", 1) for line in text.splitlines() if ":" in line)
                if int(status.parent.name) == pid or _descends(int(status.parent.name), pid):
                    total += int(fields.get("VmRSS", "0 kB").split()[0]) * 1024
        return total


def _descends(pid: int, ancestor: int) -> bool:
    while pid > 1:
        try:
            stat = Path(f"/proc/{pid}/stat").read_text()
        except OSError:
            return False
        pid = int(stat.rsplit(")", 1)[1].split()[1])
        if pid == ancestor:
            return True
    return False


# -- frames ---------------------------------------------------------------------------------------

def frames(n: int, args, seed: int = 1) -> np.ndarray:
    return synthetic_frames(n, size=frame_side(args), seed=seed)


def image_parts(chunk: np.ndarray) -> list[dict]:
    """Frames as PNG data URLs (lossless): the parts of one append."""
    return [{"type": "image_url", "image_url": {"url": data_url("image/png", encode_png(f))}} for f in chunk]


def chunked_parts(video: np.ndarray) -> list[list[dict]]:
    """The appends of a video: CHUNK_FRAMES frames each, encoded once up front (not timed)."""
    return [image_parts(video[i:i + CHUNK_FRAMES]) for i in range(0, len(video), CHUNK_FRAMES)]


def video_part(clip: np.ndarray, variant: int) -> dict:
    """The whole clip as one mp4 part for a stateless request. ``variant`` changes one pixel of the
    first frame so that every stateless request is new to SGLang (no cached prefix, no cached vision
    embedding): what a stateless server pays for each question about a live video."""
    clip = clip.copy()
    clip[0, 0, 0, 0] = (int(clip[0, 0, 0, 0]) + 1 + variant * 37) % 256
    clip[0, 0, 1, :] = variant % 256
    return {"type": "video_url", "video_url": {"url": data_url("video/mp4", encode_mp4(clip, fps=FPS))}}


# -- reporting ------------------------------------------------------------------------------------

def median(xs) -> float | None:
    xs = [x for x in xs if x is not None]
    return statistics.median(xs) if xs else None


def percentile(xs, q: float) -> float | None:
    xs = sorted(x for x in xs if x is not None)
    if not xs:
        return None
    return float(np.percentile(np.asarray(xs), q))


def fmt(x, spec: str = ".1f") -> str:
    if x is None:
        return "-"
    if isinstance(x, bool):
        return "yes" if x else "NO"
    if isinstance(x, float):
        return format(x, spec)
    return str(x)


def table(rows: list[dict], columns: list[tuple[str, str, str]]) -> str:
    """Rows as a text table; columns are (key, header, format spec)."""
    cells = [[h for _, h, _ in columns]] + [[fmt(r.get(k), spec) for k, _, spec in columns] for r in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(columns))]
    lines = ["  ".join(c.rjust(w) if j else c.ljust(w) for j, (c, w) in enumerate(zip(row, widths))) for row in cells]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def machine() -> dict:
    cpu = platform.processor() or platform.machine()
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    mem = None
    with contextlib.suppress(OSError, ValueError):
        mem = int(Path("/proc/meminfo").read_text().split()[1]) * 1024
    try:
        import torch

        gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else None
        torch_version = torch.__version__
    except Exception:
        gpu, torch_version = None, None
    return {"cpu": cpu, "cores": os.cpu_count(), "memory_bytes": mem, "gpu": gpu, "python": platform.python_version(),
            "torch": torch_version, "platform": platform.platform(), "loadavg_start": LOAD_AT_START,
            "loadavg_end": os.getloadavg()}


def startup_note(startup: float | None) -> str:
    return f"server startup {startup:.0f} s" if startup is not None else "server given by --base-url"


def load_note() -> str:
    end = os.getloadavg()
    return (f"load average (1/5 min) at start {LOAD_AT_START[0]:.2f}/{LOAD_AT_START[1]:.2f}, "
            f"at end {end[0]:.2f}/{end[1]:.2f} on {os.cpu_count()} cores")


def write_json(path: str | None, default_name: str, payload: dict, smoke: bool) -> Path:
    """Full runs default to bench/results/ (committed with docs/benchmarks.md), smoke runs to .cache/."""
    default_dir = ROOT / ".cache" / "bench-smoke" if smoke else ROOT / "bench" / "results"
    out = Path(path) if path else default_dir / f"{default_name}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(payload, indent=2))
    return out


# -- plots (matplotlib when installed, else a plain PIL line chart) ----------------------------------

PALETTE = ["#d62728", "#1f77b4", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f"]


@dataclass
class Panel:
    title: str
    xlabel: str
    ylabel: str
    series: dict[str, list[tuple[float, float]]] = field(default_factory=dict)
    logx: bool = False
    logy: bool = False


def plot(path: Path, panels: list[Panel]) -> str:
    """Writes ``path`` (PNG); returns which library drew it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        _plot_pil(path, panels)
        return "PIL"
    fig, axes = plt.subplots(1, len(panels), figsize=(6 * len(panels), 4.2))
    for ax, panel in zip(np.atleast_1d(axes), panels):
        for i, (name, pts) in enumerate(panel.series.items()):
            pts = [(x, y) for x, y in pts if y is not None]
            ax.plot([p[0] for p in pts], [p[1] for p in pts], marker="o", label=name, color=PALETTE[i % len(PALETTE)])
        ax.set(title=panel.title, xlabel=panel.xlabel, ylabel=panel.ylabel)
        if panel.logx:
            ax.set_xscale("log", base=2)
        if panel.logy:
            ax.set_yscale("log")
        ax.grid(alpha=0.3)
        ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return "matplotlib"


def _plot_pil(path: Path, panels: list[Panel]) -> None:
    from PIL import Image, ImageDraw, ImageFont

    pw, ph = 640, 440
    img = Image.new("RGB", (pw * len(panels), ph), "white")
    draw = ImageDraw.Draw(img)
    font = ImageFont.load_default()
    for k, panel in enumerate(panels):
        ox = k * pw
        left, right, top, bottom = ox + 70, ox + pw - 20, 40, ph - 60
        pts_all = [(x, y) for s in panel.series.values() for x, y in s if y is not None]
        if not pts_all:
            continue
        tx = (lambda v: np.log2(v)) if panel.logx else (lambda v: v)
        ty = (lambda v: np.log10(max(v, 1e-9))) if panel.logy else (lambda v: v)
        xs = [tx(x) for x, _ in pts_all]
        ys = [ty(y) for _, y in pts_all]
        x0, x1 = min(xs), max(xs)
        y0, y1 = (min(ys), max(ys)) if panel.logy else (0.0, max(ys))
        if x1 == x0:
            x1 = x0 + 1
        if y1 == y0:
            y1 = y0 + 1
        y1 += (y1 - y0) * 0.08

        def to_px(x, y):
            px = left + (tx(x) - x0) / (x1 - x0) * (right - left)
            return px, bottom - (ty(y) - y0) / (y1 - y0) * (bottom - top)

        draw.rectangle([left, top, right, bottom], outline="black")
        draw.text((ox + pw // 2 - 4 * len(panel.title), 12), panel.title, fill="black", font=font)
        draw.text(((left + right) // 2 - 3 * len(panel.xlabel), ph - 25), panel.xlabel, fill="black", font=font)
        draw.text((ox + 4, top - 18), panel.ylabel, fill="black", font=font)
        xticks = sorted({x for x, _ in pts_all})
        for x in xticks:
            px, _ = to_px(x, 10 ** y0 if panel.logy else y0)
            draw.line([px, bottom, px, bottom + 5], fill="black")
            draw.text((px - 8, bottom + 8), f"{x:g}", fill="black", font=font)
        for i in range(6):
            yv = y0 + (y1 - y0) * i / 5
            label = 10 ** yv if panel.logy else yv
            py = bottom - i / 5 * (bottom - top)
            draw.line([left - 5, py, left, py], fill="black")
            draw.line([left, py, right, py], fill=(230, 230, 230))
            draw.text((ox + 8, py - 6), f"{label:.3g}", fill="black", font=font)
        for i, (name, pts) in reversed(list(enumerate(panel.series.items()))):  # the first series on top
            colour = PALETTE[i % len(PALETTE)]
            pts = [to_px(x, y) for x, y in pts if y is not None]
            if len(pts) > 1:
                draw.line(pts, fill=colour, width=2)
            for px, py in pts:
                draw.ellipse([px - 3, py - 3, px + 3, py + 3], fill=colour)
            ly = top + 8 + 14 * i
            draw.line([left + 10, ly + 6, left + 30, ly + 6], fill=colour, width=3)
            draw.text((left + 36, ly), name, fill="black", font=font)
    img.save(path)
