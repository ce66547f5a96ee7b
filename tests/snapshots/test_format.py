"""The snapshot file refuses anything but an intact snapshot of the same model, and is never torn."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time

import pytest
import torch

from sglang_hermes.snapshots import format as snapfmt

HERE = {"model": "tiny-qwen", "dtype": "float32", "plugin_version": "0.1.0",
        "layout": {"layers": 2, "kv_heads": 2, "head_dim": 16, "kv_layout": "nhd", "model_type": "qwen2_5_vl"}}


def _snapshot(n: int = 7) -> tuple[dict, dict[str, torch.Tensor]]:
    g = torch.Generator().manual_seed(0)
    tensors = {"k": torch.randn(2, n, 2, 16, generator=g), "v": torch.randn(2, n, 2, 16, generator=g),
               "positions": torch.arange(2 * n * 3).reshape(2, n, 3), "is_summary": torch.rand(2, n, generator=g) > .5,
               "prefix_ids": torch.arange(5)}
    return {**HERE, "stream": {"clock": 42}}, tensors


def test_round_trip_is_exact(tmp_path):
    header, tensors = _snapshot()
    path = tmp_path / "s.hsnap"
    size = snapfmt.save(path, header, tensors)
    assert size == path.stat().st_size
    got_header, got = snapfmt.load(path, HERE)
    assert got_header["stream"] == {"clock": 42}
    for name, t in tensors.items():
        assert got[name].dtype == t.dtype and torch.equal(got[name], t)


@pytest.mark.parametrize("where", ["magic", "length", "header", "payload", "digest"])
def test_a_flipped_byte_anywhere_is_refused(tmp_path, where):
    data = bytearray(snapfmt.encode(*_snapshot()))
    head_len = int.from_bytes(data[8:16], "little")
    offset = {"magic": 3, "length": 9, "header": 16 + head_len // 2, "payload": 16 + head_len + 200,
              "digest": len(data) - 5}[where]
    data[offset] ^= 0x01
    path = tmp_path / "s.hsnap"
    path.write_bytes(bytes(data))
    with pytest.raises(snapfmt.SnapshotError, match="corrupt|not a hermes snapshot"):
        snapfmt.load(path, HERE)


@pytest.mark.parametrize("keep", [0, 10, 100, 0.5, -1])
def test_a_truncated_file_is_refused(tmp_path, keep):
    data = snapfmt.encode(*_snapshot())
    cut = int(len(data) * keep) if isinstance(keep, float) else (keep if keep >= 0 else len(data) + keep)
    path = tmp_path / "s.hsnap"
    path.write_bytes(data[:cut])
    with pytest.raises(snapfmt.SnapshotError, match="corrupt|not a hermes snapshot"):
        snapfmt.load(path, HERE)


@pytest.mark.parametrize("field,value", [("model", "other-model"), ("dtype", "bfloat16"),
                                         ("layout", {**HERE["layout"], "layers": 3}), ("plugin_version", "9.9")])
def test_another_model_dtype_layout_or_plugin_is_refused(tmp_path, field, value):
    header, tensors = _snapshot()
    path = tmp_path / "s.hsnap"
    snapfmt.save(path, {**header, field: value}, tensors)
    with pytest.raises(snapfmt.SnapshotError, match=f"written with {field}="):
        snapfmt.load(path, HERE)
    snapfmt.load(path)  # intact: only the identity check refuses it


_WRITER = textwrap.dedent("""
    import os, sys, torch
    from sglang_hermes.snapshots import format as snapfmt
    path, mode = sys.argv[1], sys.argv[2]
    if mode == "hang":  # stop for good after the temp file is written, before it replaces the old one
        real = os.fsync
        def fsync(fd):
            real(fd)
            print("written", flush=True)
            import time; time.sleep(600)
        os.fsync = fsync
        snapfmt.save(path, {"model": "new"}, {"k": torch.ones(1 << 20)})
    else:  # rewrite the file as fast as possible, until killed
        i = 0
        while True:
            i += 1
            snapfmt.save(path, {"model": "new", "i": i}, {"k": torch.full((1 << 21,), float(i))})
            print("written", flush=True)
""")


@pytest.mark.parametrize("mode", ["hang", "loop"])
def test_kill_9_mid_write_leaves_the_old_file_or_a_whole_new_one(tmp_path, mode):
    path = tmp_path / "s.hsnap"
    snapfmt.save(path, {"model": "old"}, {"k": torch.zeros(4)})
    proc = subprocess.Popen([sys.executable, "-c", _WRITER, str(path), mode], stdout=subprocess.PIPE, text=True,
                            env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)})
    try:
        assert proc.stdout.readline().strip() == "written"
        if mode == "loop":
            assert proc.stdout.readline().strip() == "written"
            time.sleep(0.05)  # then a kill somewhere in a later rewrite
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(30)
    finally:
        if proc.poll() is None:
            proc.kill()
    header, tensors = snapfmt.load(path)  # intact, whichever it is
    if mode == "hang":
        assert header["model"] == "old" and torch.equal(tensors["k"], torch.zeros(4))
    else:
        assert header["model"] == "new" and bool((tensors["k"] == header["i"]).all())
    leftovers = [p.name for p in tmp_path.iterdir() if p.name != path.name]
    assert all(name.endswith(".tmp") for name in leftovers)  # a killed write leaves at most its temp file
