"""Stream metrics for SGLang's ``/metrics`` (Prometheus, with ``--enable-metrics``).

Created on first use, in the HTTP process: SGLang points prometheus_client at its multiprocess
directory before serving, and metrics made earlier would not be collected. Gauges use the
``mostrecent`` multiprocess mode (one HTTP process writes them).
"""

from __future__ import annotations

from functools import lru_cache


@lru_cache(maxsize=1)
def _metrics():
    from prometheus_client import Counter, Gauge, Histogram

    return {
        "open": Gauge("hermes_streams_open", "HERMES streams open", multiprocess_mode="mostrecent"),
        "held": Gauge("hermes_tokens_held", "KV slots held by all open streams (per layer)",
                      multiprocess_mode="mostrecent"),
        "compressions": Counter("hermes_compressions", "compressions run on streams"),
        "compression_seconds": Histogram("hermes_compression_seconds", "time of one compression (compaction)",
                                         buckets=(0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 1.0)),
        "ttft": Histogram("hermes_ask_ttft_seconds", "time to first token of an ask on a stream",
                          buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)),
        "appended": Counter("hermes_appended_tokens", "vision tokens appended to streams"),
    }


def streams_open(n: int) -> None:
    _metrics()["open"].set(n)


def after_append(stats: dict, compressions: int, appended: int, held_total: int) -> None:
    m = _metrics()
    if compressions > 0:
        m["compressions"].inc(compressions)
        m["compression_seconds"].observe(stats["last_compression_ms"] / 1e3)
    if appended > 0:
        m["appended"].inc(appended)
    m["held"].set(held_total)


def tokens_held(total: int) -> None:
    _metrics()["held"].set(total)


def ask_ttft(seconds: float) -> None:
    _metrics()["ttft"].observe(seconds)
