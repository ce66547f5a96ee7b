"""Frames known by content (``api.frame_hashes``): what stateless clients' resent windows rely on."""

from sglang_hermes.api.frame_hashes import FrameHashes


def test_known_and_in_call_repeats_are_skipped_and_only_remembered_frames_count():
    seen = FrameHashes()
    keep, keys = seen.new_indices([b"a", b"b", b"a"])
    assert keep == [0, 1] and len(keys) == 2
    assert seen.new_indices([b"a"])[0] == [0]  # nothing is remembered until the append succeeded
    seen.remember(keys)
    assert seen.new_indices([b"b", b"c", b"a"])[0] == [1]


def test_only_the_newest_hashes_are_kept():
    seen = FrameHashes(limit=2)
    for frame in (b"1", b"2", b"3"):
        seen.remember(seen.new_indices([frame])[1])
    assert len(seen) == 2 and seen.new_indices([b"1", b"2", b"3"])[0] == [0]
