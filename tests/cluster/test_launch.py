"""hermes-cluster's command line and the commands it runs (no process is started here)."""

from __future__ import annotations

import pytest

from sglang_hermes.cluster.gateway import gateway_command
from sglang_hermes.cluster.launch import parse_args, worker_command, worker_env


def test_flags_after_the_separator_go_to_every_worker():
    args, serve = parse_args(["--workers", "3", "--port", "8000", "--", "--model-path", "m", "--hermes-budget", "64"])
    assert (args.workers, args.port, serve) == (3, 8000, ["--model-path", "m", "--hermes-budget", "64"])
    assert worker_command(serve, "127.0.0.1", 31002)[1:] == ["-m", "sglang_hermes.launch_server", "--model-path", "m",
                                                             "--hermes-budget", "64", "--host", "127.0.0.1",
                                                             "--port", "31002"]


@pytest.mark.parametrize("argv", [
    ["--workers", "2"],                                              # no model for the workers
    ["--workers", "2", "--", "--model-path", "m", "--port", "1"],    # the launcher owns worker ports
    ["--workers", "0", "--", "--model-path", "m"],                   # nothing to route to
])
def test_bad_command_lines_exit_with_usage(argv, capsys):
    with pytest.raises(SystemExit) as e:
        parse_args(argv)
    assert e.value.code == 2 and "usage: hermes-cluster" in capsys.readouterr().err


def test_existing_servers_alone_need_no_model():
    args, serve = parse_args(["--workers", "0", "--worker-url", "http://a:1", "--worker-url", "http://b:2"])
    assert args.worker_url == ["http://a:1", "http://b:2"] and serve == []


def test_each_worker_gets_its_own_gpus():
    assert worker_env(0, 0) == {}
    assert [worker_env(i, 2)["CUDA_VISIBLE_DEVICES"] for i in range(3)] == ["0,1", "2,3", "4,5"]


def test_the_gateway_routes_by_stream_id_without_retries_or_circuit_breaker():
    cmd = gateway_command(["http://a:1", "http://b:2"], port=9, extra_args=["--log-level", "warn"])
    assert cmd[cmd.index("--worker-urls") + 1:cmd.index("--worker-urls") + 3] == ["http://a:1", "http://b:2"]
    assert cmd[cmd.index("--policy") + 1] == "consistent_hashing"
    assert {"--disable-retries", "--disable-circuit-breaker"} <= set(cmd) and cmd[-2:] == ["--log-level", "warn"]
    with pytest.raises(ValueError):
        gateway_command([])
