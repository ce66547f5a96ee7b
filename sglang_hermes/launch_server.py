"""``hermes-serve``: ``sglang.launch_server`` with the hermes plugin enabled and sane defaults.

Takes every ``sglang.launch_server`` flag unchanged, plus ``--hermes-*`` stream defaults. On a
machine without a CUDA device it takes SGLang's CPU engine path by itself (``SGLANG_USE_CPU_ENGINE``)
and bounds the KV pool, because SGLang would otherwise reserve ~70% of RAM for it. On CUDA it turns
prefill CUDA graphs off (a replayed graph would skip the hook that scores appends).

Configurations a stream cannot run in are refused here, before SGLang parses its arguments or loads
anything (``runtime.capabilities``): the process exits non-zero with one line saying what is supported.
"""

from __future__ import annotations

import argparse
import json
import os
import sys

CPU_DEFAULT_MAX_TOTAL_TOKENS = 32768
HERMES_DEFAULTS_ENV = "SGLANG_HERMES_DEFAULTS"  # read by sglang_hermes.api.settings


def _has_cuda() -> bool:
    try:
        import torch

        return torch.cuda.is_available()
    except Exception:
        return False


def _has_flag(argv: list[str], flag: str) -> bool:
    return any(a == flag or a.startswith(flag + "=") for a in argv)


def split_hermes_args(argv: list[str]) -> tuple[dict, list[str]]:
    """Separate ``--hermes-*`` flags (our stream defaults) from SGLang's own flags."""
    parser = argparse.ArgumentParser(add_help=False)
    parser.add_argument("--hermes-budget", type=int, dest="budget_tokens")
    parser.add_argument("--hermes-policy", dest="policy")
    parser.add_argument("--hermes-reindex", choices=["lazy", "eager"], dest="reindex")
    parser.add_argument("--hermes-guidance", choices=["passes", "block"], dest="guidance",
                        help="how streams score the guidance prompts by default (see docs/api.md)")
    parser.add_argument("--hermes-ttl", type=float, dest="ttl_seconds", help="idle seconds before a stream closes")
    parser.add_argument("--hermes-fps", type=float, dest="fps", help="sampling rate of video_url parts")
    parser.add_argument("--hermes-recent-tokens", type=int, dest="recent_tokens",
                        help="newest tokens the recent_hermes policy keeps in every layer")
    parser.add_argument("--hermes-sink-tokens", type=int, dest="sink_tokens",
                        help="first tokens of a stream the sink_window policy keeps (default 64)")
    parser.add_argument("--hermes-chunk-frames", type=int, dest="chunk_frames", help="most frames per append")
    parser.add_argument("--hermes-max-chunk-tokens", type=int, dest="max_chunk_tokens")
    parser.add_argument("--hermes-max-media-bytes", type=int, dest="max_media_bytes")
    parser.add_argument("--hermes-max-frame-side", type=int, dest="max_frame_side",
                        help="frames wider or taller are refused (413)")
    parser.add_argument("--hermes-max-frame-pixels", type=int, dest="max_frame_pixels",
                        help="frames with more pixels are scaled down while decoded")
    parser.add_argument("--hermes-max-chunk-pixels", type=int, dest="max_chunk_pixels",
                        help="most decoded pixels in one append (413 above)")
    parser.add_argument("--hermes-allow-local-media", action="store_true", default=None, dest="allow_local_media",
                        help="let clients name files on this server (file:// URLs, paths); off by default")
    parser.add_argument("--hermes-busy-idle", action="store_true", default=None, dest="busy_idle",
                        help="do not pass --sleep-on-idle: the scheduler polls without sleeping when idle")
    parser.add_argument("--hermes-fetch-deadline", type=float, dest="fetch_deadline",
                        help="seconds one http(s) media URL may take, connection to last byte")
    parser.add_argument("--hermes-append-deadline", type=float, dest="append_deadline",
                        help="seconds all media of one append may take to arrive")
    parser.add_argument("--hermes-fetch-concurrency", type=int, dest="fetch_concurrency",
                        help="http(s) media downloads at once on the server")
    parser.add_argument("--hermes-stream-fetch-concurrency", type=int, dest="stream_fetch_concurrency",
                        help="http(s) media downloads at once for one stream")
    parser.add_argument("--hermes-media-workers", type=int, dest="media_workers",
                        help="threads that decode and re-encode media")
    parser.add_argument("--hermes-snapshot-dir", dest="snapshot_dir",
                        help="directory for stream snapshots (POST /v1/sessions/{id}/snapshot, restore_from, and "
                             "every open stream at graceful shutdown)")
    parser.add_argument("--hermes-offload-after", type=float, dest="offload_after",
                        help="idle seconds after which a stream's memory moves from the KV pool to host RAM")
    known, rest = parser.parse_known_args(argv)
    return {k: v for k, v in vars(known).items() if v is not None}, rest


def build_sglang_argv(argv: list[str], *, cuda: bool, sleep_on_idle: bool = True) -> list[str]:
    """SGLang's argv with what a stream server needs. ``--sleep-on-idle`` by default: an idle
    scheduler otherwise spins (~half a core each on CPU), and it wakes on the first message anyway."""
    args = list(argv)
    if sleep_on_idle and not _has_flag(args, "--sleep-on-idle"):
        args += ["--sleep-on-idle"]
    if not _has_flag(args, "--radix-cache-backend"):
        args += ["--radix-cache-backend", "hermes"]
    if not _has_flag(args, "--enable-streaming-session"):
        args += ["--enable-streaming-session"]  # a stream is a streaming session
    if not cuda:
        if not _has_flag(args, "--max-total-tokens"):
            args += ["--max-total-tokens", str(CPU_DEFAULT_MAX_TOTAL_TOKENS)]
        if not _has_flag(args, "--device"):
            args += ["--device", "cpu"]
    elif not _has_flag(args, "--cuda-graph-backend-prefill"):
        args += ["--disable-prefill-cuda-graph"]
    return args


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    hermes_defaults, sglang_argv = split_hermes_args(argv)
    busy_idle = bool(hermes_defaults.pop("busy_idle", False))
    cuda = _has_cuda()
    if not cuda:
        os.environ.setdefault("SGLANG_USE_CPU_ENGINE", "1")
    if "snapshot_dir" in hermes_defaults:
        snapshots = os.path.abspath(hermes_defaults["snapshot_dir"])  # the server runs from another cwd
        os.makedirs(snapshots, exist_ok=True)
        hermes_defaults["snapshot_dir"] = snapshots
    os.environ[HERMES_DEFAULTS_ENV] = json.dumps(hermes_defaults)
    sglang_argv = build_sglang_argv(sglang_argv, cuda=cuda, sleep_on_idle=not busy_idle)

    # SGLang reads the environment at import, so import only after the CPU switch is set.
    from sglang_hermes.runtime import capabilities

    capabilities.refuse([capabilities.installed_version_refusal()])
    capabilities.refuse(capabilities.flag_refusals(capabilities.parse_sglang_flags(sglang_argv)))

    from sglang.launch_server import run_server
    from sglang.srt.plugins import load_plugins
    from sglang.srt.server_args import prepare_server_args
    from sglang.srt.utils import kill_process_tree

    load_plugins()
    server_args = prepare_server_args(sglang_argv)
    try:
        run_server(server_args)
    finally:
        kill_process_tree(os.getpid(), include_parent=False)


if __name__ == "__main__":
    main()
