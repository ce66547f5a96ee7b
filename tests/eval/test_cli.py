"""hermes-eval's argument and annotation errors: clear messages and exit codes, before any request."""

from __future__ import annotations

import pytest

from clients.eval.cli import main


def test_unreadable_annotations_exit_1(tmp_path, capsys):
    bad = tmp_path / "bad.json"
    bad.write_text('[{"video_path": "v.mp4", "questions": [{"question": "q?", "options": ["a", "b"]}]}]')
    assert main([str(bad), "--base-url", "http://127.0.0.1:9/v1"]) == 1
    assert "cannot read" in capsys.readouterr().err
    bad.write_text('[{"video_path": "v.mp4", "questions": [{"question": "q?", "time_stamp": "00:00:01"}]}]')
    assert main([str(bad)]) == 1 and "no question to ask" in capsys.readouterr().err
    assert main([str(tmp_path / "missing.json")]) == 1 and "No such file" in capsys.readouterr().err


@pytest.mark.parametrize("argv, message", [
    (["--policies", ""], "nothing to run"),
    (["--policies", "hermes,lru"], "unknown policies ['lru']"),
    (["--fps", "0"], "must be > 0"),
])
def test_bad_arguments_exit_2(tmp_path, capsys, argv, message):
    with pytest.raises(SystemExit) as e:
        main([str(tmp_path / "q.json"), *argv])
    assert e.value.code == 2 and message in capsys.readouterr().err


def test_window_options_reach_only_their_policy():
    """--sink-tokens goes to sink_window streams and --recent-tokens to recent_hermes ones, nothing else
    (the server refuses neither on other policies, so a leak would pass unnoticed)."""
    from clients.eval.cli import build_parser, make_runners

    args = build_parser().parse_args(["q.json", "--policies", "hermes,sink_window,recent_hermes,fifo",
                                      "--budget", "24", "--sink-tokens", "4", "--recent-tokens", "6",
                                      "--base-url", "http://127.0.0.1:9/v1"])
    runners, clients = make_runners(args)
    try:
        assert {r.name: r.window for r in runners} == {
            "hermes@24": {}, "sink_window@24": {"sink_tokens": 4}, "recent_hermes@24": {"recent_tokens": 6},
            "fifo@24": {}}
    finally:
        for c in clients:
            c.close()
