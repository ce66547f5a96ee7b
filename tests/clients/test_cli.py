"""hermes-stream: arguments, which chunk triggers which question, and whole runs against the fake server."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from clients import HermesClient
from clients.hermes_stream import EXIT_SERVER, EXIT_VIDEO, build_parser, main, parse_ask, plan
from tests.clients.conftest import level


# -- arguments ---------------------------------------------------------------------------------

def test_console_script_is_installed_and_prints_usage():
    exe = shutil.which("hermes-stream", path=str(Path(sys.executable).parent))
    assert exe, "hermes-stream is not installed next to this interpreter"
    out = subprocess.run([exe, "--help"], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0 and "--ask" in out.stdout and "T:QUESTION" in out.stdout
    for flag in ("--fps", "--chunk", "--budget", "--policy", "--base-url", "--max-tokens", "--json"):
        assert flag in out.stdout


def test_module_refuses_a_malformed_ask_with_usage_exit_code():
    out = subprocess.run([sys.executable, "-m", "clients.hermes_stream", "v.mp4", "--ask", "no-colon"],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 2 and "T:QUESTION" in out.stderr and out.stdout == ""


@pytest.mark.parametrize("bad", ["no-colon", "abc:question", "-1:question", "3:", "3:   ", "nan:q", "inf:q", ":q"])
def test_bad_asks_are_refused(bad, capsys):
    with pytest.raises(SystemExit) as e:
        build_parser().parse_args(["v.mp4", "--ask", bad])
    assert e.value.code == 2 and "T:QUESTION" in capsys.readouterr().err


@pytest.mark.parametrize("argv", [["--fps", "0"], ["--fps", "-2"], ["--chunk", "0"], ["--chunk", "1.5"],
                                  ["--budget", "0"], ["--policy", "lru"], ["--max-tokens", "0"]])
def test_bad_options_are_refused(argv):
    with pytest.raises(SystemExit) as e:
        build_parser().parse_args(["v.mp4", *argv])
    assert e.value.code == 2


def test_good_arguments_parse():
    a = build_parser().parse_args(["v.mp4", "--fps", "2.5", "--chunk", "4", "--ask", "3:What: now?", "--ask",
                                   "0.5:Who?", "--budget", "64", "--policy", "fifo", "--max-tokens", "9", "--json"])
    assert a.ask == [(3.0, "What: now?"), (0.5, "Who?")] and a.fps == 2.5 and a.chunk == 4
    assert (a.budget, a.policy, a.max_tokens, a.json) == (64, "fifo", 9, True)
    assert parse_ask("12:  spaced  ") == (12.0, "spaced")


# -- scheduling --------------------------------------------------------------------------------

def test_each_question_follows_the_chunk_holding_the_last_frame_at_or_before_its_time():
    times = [k / 2 for k in range(8)]                    # 0.0 .. 3.5, chunks [0 .. 1.0] [1.5 .. 2.5] [3.0, 3.5]
    asks = [(99, "late"), (1.5, "edge"), (0, "first"), (1.2, "between"), (3.5, "last"), (1.5, "edge2")]
    assert plan(times, 3, asks) == [
        [(0, "first"), (1.2, "between")],
        [(1.5, "edge"), (1.5, "edge2")],                  # ties keep the order given
        [(3.5, "last"), (99, "late")],                    # past the end: after the last chunk
    ]
    assert plan(times, 8, asks) == [sorted(asks, key=lambda a: a[0])]
    assert plan(times, 1, [(0.7, "q")]) == [[], [(0.7, "q")]] + [[]] * 6
    assert plan(times, 3, []) == [[], [], []]


# -- whole runs against the fake server ----------------------------------------------------------

def _events(text: str) -> list[dict]:
    return [json.loads(line) for line in text.splitlines() if line.strip()]


def test_json_run_streams_chunks_asks_on_time_and_closes(fake, video_10fps, capsys):
    code = main([str(video_10fps), "--fps", "2", "--chunk", "3", "--budget", "20", "--policy", "fifo",
                 "--max-tokens", "7", "--ask", "1.5:edge?", "--ask", "0:first?", "--ask", "99:late?", "--json"],
                client=fake.client())
    out, err = capsys.readouterr()
    assert code == 0, err
    ev = _events(out)
    assert [e["event"] for e in ev] == ["open", "chunk", "answer", "chunk", "answer", "chunk", "answer", "done"]
    sid = ev[0]["session_id"]
    assert ev[0]["config"]["budget_tokens"] == 20 and ev[0]["video"]["width"] == 64 and ev[0]["sample_fps"] == 2.0
    assert [b for m, p, b in fake.requests if (m, p) == ("POST", "/v1/sessions")] == \
        [{"budget_tokens": 20, "policy": "fifo", "fps": 2.0, "chunk_frames": 3}]

    chunks = [e for e in ev if e["event"] == "chunk"]
    assert [(c["index"], c["frames"], c["t_start"], c["t_end"]) for c in chunks] == \
        [(0, 3, 0.0, 1.0), (1, 3, 1.5, 2.5), (2, 2, 3.0, 3.5)]
    assert [c["tokens_seen"] for c in chunks] == [12, 24, 32] and [c["tokens_held"] for c in chunks] == [12, 20, 20]
    assert [c["compressions"] for c in chunks] == [0, 1, 2] and all(c["append_ms"] > 0 for c in chunks)
    assert [c["time_seconds"] for c in chunks] == [1.5, 3.0, 4.0] and all(c["tokens"] == 12 for c in chunks[:2])
    # the frames went as sampled, with their timestamps
    assert [a["timestamps"] for a in fake.appends] == [[0.0, 0.5, 1.0], [1.5, 2.0, 2.5], [3.0, 3.5]]
    sent = [round(sum(im.getpixel((0, 0))) / 3) for a in fake.appends for im in a["frames"]]
    assert sent == pytest.approx([level(5 * k) for k in range(8)], abs=3)

    answers = [e for e in ev if e["event"] == "answer"]
    assert [(a["t"], a["question"], a["after_chunk"]) for a in answers] == \
        [(0.0, "first?", 0), (1.5, "edge?", 1), (99.0, "late?", 2)]
    assert [a["answer"] for a in answers] == ["saw 3 frames up to 1.5 s", "saw 6 frames up to 3 s",
                                              "saw 8 frames up to 4 s"]
    assert all(0 < a["ttft_s"] <= a["total_s"] for a in answers) and answers[2]["time_seconds"] == 4.0
    assert all(a["body"]["max_tokens"] == 7 and a["body"]["stream"] for a in fake.asks)

    done = ev[-1]
    assert done["chunks"] == 3 and done["frames"] == 8 and done["stats"]["frames"] == 8 and done["wall_s"] > 0
    assert done["session_id"] == sid and fake.deleted == [sid]


def test_table_run_prints_rows_and_answers(fake, video_10fps, capsys):
    code = main([str(video_10fps), "--fps", "1", "--chunk", "2", "--ask", "2:What now?"], client=fake.client())
    out, err = capsys.readouterr()
    assert code == 0, err
    lines = out.splitlines()
    header = next(i for i, line in enumerate(lines) if "tokens" in line and "append ms" in line)
    rows = [line.split() for line in lines[header + 1:] if line.split() and line.split()[0].isdigit()]
    assert [r[:6] for r in rows] == [["0", "2", "2.00", "8", "8", "8"], ["1", "2", "4.00", "8", "16", "16"]]
    assert "What now?" in out and "A: saw 4 frames up to 4 s" in out and "TTFT" in out
    assert "done: 4 frames in 2 chunks" in out


def test_missing_or_undecodable_video_fails_before_a_stream_opens(fake, tmp_path, capsys):
    assert main([str(tmp_path / "nope.mp4"), "--json"], client=fake.client()) == EXIT_VIDEO
    out, err = capsys.readouterr()
    assert "no such video file" in err and _events(out)[-1]["event"] == "error"
    junk = tmp_path / "junk.mp4"
    junk.write_text("not a video\n" * 20)
    assert main([str(junk)], client=fake.client()) == EXIT_VIDEO
    assert "hermes-stream:" in capsys.readouterr().err
    assert not [r for r in fake.requests if r[1] == "/v1/sessions"]


def test_server_refusal_exits_with_its_message_and_closes_the_stream(fake, video_10fps, capsys):
    fake.fail["append"] = (413, "the append carries more than 2 frames")
    code = main([str(video_10fps), "--fps", "2", "--chunk", "4", "--json"], client=fake.client())
    out, err = capsys.readouterr()
    assert code == EXIT_SERVER
    assert "the append carries more than 2 frames (HTTP 413)" in err
    last = _events(out)[-1]
    assert last["event"] == "error" and last["status"] == 413 and last["exit_code"] == EXIT_SERVER
    assert fake.deleted == ["sess-1"] and not fake.sessions


def test_unreachable_server(video_10fps, capsys):
    def down(request):
        raise httpx.ConnectError("connection refused", request=request)

    client = HermesClient("http://127.0.0.1:9/v1", max_retries=0,
                          http_client=httpx.Client(transport=httpx.MockTransport(down)))
    assert main([str(video_10fps)], client=client) == EXIT_SERVER
    assert "cannot reach the server" in capsys.readouterr().err


def test_table_escapes_control_characters_but_json_keeps_the_answer(fake, video_10fps, capsys):
    fake.answer_text = lambda sid: "odd\x0canswer\x1b[2J"
    assert main([str(video_10fps), "--chunk", "8", "--ask", "0:q"], client=fake.client()) == 0
    out = capsys.readouterr().out
    assert "A: odd\\x0canswer\\x1b[2J" in out and "\x1b" not in out
    assert main([str(video_10fps), "--chunk", "8", "--ask", "0:q", "--json"], client=fake.client()) == 0
    answer = [e for e in _events(capsys.readouterr().out) if e["event"] == "answer"][0]
    assert answer["answer"] == "odd\x0canswer\x1b[2J"


def test_progress_bar_goes_to_stderr_and_rows_to_stdout(fake, video_10fps, capsys):
    from clients.hermes_stream import run

    args = build_parser().parse_args([str(video_10fps), "--fps", "2", "--chunk", "4"])
    run(args, fake.client(), progress=True)
    out, err = capsys.readouterr()
    assert "8/8" in err and "frame" in err                     # tqdm counted every sampled frame
    assert "done: 8 frames in 2 chunks" in out and "frame/s" not in out
