"""clients.frames: images to data URLs that decode back to the same frame, and video sampled by time."""

from __future__ import annotations

import base64
import io

import numpy as np
import pytest
from PIL import Image

from clients.frames import VideoError, encode_mp4, frame_list, image_part, sample_video, video_info
from tests.clients.conftest import level, write_video


def _decode(part: dict) -> tuple[str, np.ndarray]:
    url = part["image_url"]["url"]
    head, b64 = url.split(",", 1)
    assert head.endswith(";base64")
    with Image.open(io.BytesIO(base64.b64decode(b64))) as im:
        return head[5:].split(";")[0], np.asarray(im.convert("RGB"))


def _gradient(h=30, w=44) -> np.ndarray:
    y, x = np.mgrid[0:h, 0:w]
    return np.stack([x * 5 % 256, y * 7 % 256, (x + y) * 3 % 256], -1).astype(np.uint8)


def test_numpy_frame_goes_as_jpeg_q90_by_default_and_png_is_lossless():
    frame = _gradient()
    mime, back = _decode(image_part(frame))
    assert mime == "image/jpeg" and back.shape == frame.shape
    assert np.abs(back.astype(int) - frame).mean() < 6          # q90: close, not exact
    mime, back = _decode(image_part(frame, image_format="png"))
    assert mime == "image/png" and np.array_equal(back, frame)
    low = len(image_part(frame, quality=10)["image_url"]["url"])
    assert low < len(image_part(frame)["image_url"]["url"])      # the quality reaches the encoder


def test_pil_gray_and_rgba_inputs_become_rgb_of_the_same_size():
    for src in (Image.fromarray(_gradient()), _gradient()[:, :, 0], np.dstack([_gradient(), _gradient()[:, :, :1]]),
                _gradient()[:, :, :1]):
        mime, back = _decode(image_part(src, image_format="png"))
        assert mime == "image/png" and back.shape == (30, 44, 3)
    _, back = _decode(image_part(_gradient()[:, :, 0], image_format="png"))
    assert np.array_equal(back[:, :, 0], _gradient()[:, :, 0])


def test_encoded_bytes_are_sent_unchanged_with_their_mime():
    buf = io.BytesIO()
    Image.fromarray(_gradient()).save(buf, format="PNG")
    part = image_part(buf.getvalue())
    assert part["image_url"]["url"] == "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode()
    buf = io.BytesIO()
    Image.fromarray(_gradient()).save(buf, format="JPEG")
    mime, back = _decode(image_part(buf.getvalue(), image_format="png"))
    assert mime == "image/jpeg" and back.shape == (30, 44, 3)
    assert image_part("https://example.com/f.jpg")["image_url"]["url"] == "https://example.com/f.jpg"


def test_image_files_given_as_paths_are_read_and_sent_unchanged(tmp_path):
    path = tmp_path / "f.png"
    Image.fromarray(_gradient()).save(path)
    assert frame_list(path) == [path]
    assert image_part(path)["image_url"]["url"] == "data:image/png;base64," + base64.b64encode(path.read_bytes()).decode()


def test_bad_frames_are_refused_before_anything_is_sent():
    with pytest.raises(ValueError, match="uint8"):
        image_part(np.zeros((4, 4, 3), np.float32))
    with pytest.raises(ValueError, match="shape"):
        image_part(np.zeros((4, 4, 2), np.uint8))
    with pytest.raises(ValueError, match="not an encoded image"):
        image_part(b"definitely not an image")
    with pytest.raises(ValueError, match="image_format"):
        image_part(_gradient(), image_format="gif")


def test_frame_list_splits_batches_and_keeps_single_frames_whole():
    assert len(frame_list(np.zeros((5, 8, 8, 3), np.uint8))) == 5
    assert len(frame_list(np.zeros((8, 8, 3), np.uint8))) == 1
    assert len(frame_list(Image.new("RGB", (4, 4)))) == 1
    assert len(frame_list(b"\x89PNG")) == 1
    assert len(frame_list([Image.new("RGB", (4, 4))] * 3)) == 3


def test_4s_at_10fps_sampled_at_2fps_gives_8_frames_at_their_times(video_10fps):
    got = list(sample_video(video_10fps, 2.0))
    assert [round(t, 6) for t, _ in got] == [0.0, 0.5, 1.0, 1.5, 2.0, 2.5, 3.0, 3.5]
    # the kept frames are the source frames at those times (source frame i has gray level(i))
    assert [int(round(f.mean())) for _, f in got] == pytest.approx([level(5 * k) for k in range(8)], abs=2)
    assert all(f.shape == (48, 64, 3) and f.dtype == np.uint8 for _, f in got)


def test_sampling_keeps_every_frame_of_a_sparser_file_and_slices_by_time(video_10fps):
    assert len(list(sample_video(video_10fps, 25.0))) == 40
    assert len(list(sample_video(video_10fps, None))) == 40
    assert [round(t, 6) for t, _ in sample_video(video_10fps, 2.0, start=1.0, end=2.5)] == [1.0, 1.5, 2.0]
    assert [round(t, 6) for t, _ in sample_video(video_10fps, 1.0, start=0.95)] == [1.0, 2.0, 3.0]
    # slots start at `start`: a clip from 0.3 s is sampled 0.3, 1.3, 2.3, ...
    assert [round(t, 6) for t, _ in sample_video(video_10fps, 1.0, start=0.3)] == [0.3, 1.3, 2.3, 3.3]


def test_sampling_at_a_third_of_a_second_on_a_millisecond_clock(tmp_path):
    """30 fps stored with 1 ms pts (as webm does): 1/3 s is 0.333, which still opens the second slot."""
    path = tmp_path / "thirty.mp4"
    write_video(path, [round(k / 30, 3) for k in range(60)])
    times = [t for t, _ in sample_video(path, 3.0)]
    assert times == pytest.approx([k / 3 for k in range(6)], abs=1.5e-3)
    path = tmp_path / "thirty-exact.mp4"
    write_video(path, [k / 30 for k in range(60)], rate=30)
    assert [t for t, _ in sample_video(path, 3.0)] == pytest.approx([k / 3 for k in range(6)], abs=1e-6)


def test_variable_rate_file_is_sampled_by_presentation_time(tmp_path):
    path = tmp_path / "vfr.mp4"
    write_video(path, [0.0, 0.4, 0.45, 1.2, 1.3, 2.05, 2.9])
    got = list(sample_video(path, 1.0))
    assert [round(t, 3) for t, _ in got] == [0.0, 1.2, 2.05]
    assert [int(round(f.mean())) for _, f in got] == pytest.approx([level(0), level(3), level(5)], abs=2)


def test_video_info_reads_the_header(video_10fps):
    info = video_info(video_10fps)
    assert info.duration == pytest.approx(4.0, abs=0.11) and info.fps == pytest.approx(10.0)
    assert (info.width, info.height) == (64, 48)


def test_missing_or_non_video_files_raise_video_error(tmp_path):
    with pytest.raises(VideoError, match="no such video file"):
        video_info(tmp_path / "nope.mp4")
    junk = tmp_path / "junk.mp4"
    junk.write_bytes(b"this is not a video at all" * 10)
    with pytest.raises(VideoError):
        video_info(junk)
    with pytest.raises(VideoError):
        list(sample_video(junk, 1.0))


def test_encode_mp4_keeps_relative_times_and_crops_to_even_sides(video_10fps):
    clip = [(t, f[:47, :63]) for t, f in sample_video(video_10fps, 2.0, start=1.0, end=3.0)]
    mp4 = encode_mp4(clip)
    back = list(sample_video(mp4, None))
    assert [round(t, 3) for t, _ in back] == [0.0, 0.5, 1.0, 1.5]
    assert back[0][1].shape == (46, 62, 3)
    assert [int(round(f.mean())) for _, f in back] == pytest.approx([level(10), level(15), level(20), level(25)],
                                                                    abs=2)
    with pytest.raises(ValueError, match="no frames"):
        encode_mp4([])


def test_encode_mp4_keeps_every_frame_of_uneven_or_tied_times():
    frame = np.zeros((8, 8, 3), np.uint8)
    for times in ([0, 1 / 3, 2 / 3, 1.0], [0.0, 0.4, 0.45, 1.2, 1.3, 2.05, 2.9], [7.0], [1.0, 1.0, 1.1]):
        back = [t for t, _ in sample_video(encode_mp4([(t, frame) for t in times]), None)]
        assert len(back) == len(times), times
        assert back == pytest.approx([t - times[0] for t in times], abs=1e-4)
