"""Receive-side tuning: a complete video frame leaves the jitter buffer at its marker packet, not a frame later."""

from __future__ import annotations

import functools
import logging
from types import SimpleNamespace

import aiortc.rtcrtpreceiver as receiver_module
import pytest
from aiortc.rtcrtpreceiver import RTCRtpReceiver
from aiortc.rtp import RtpPacket

import calls.transport as transport
from calls.transport import (
    AIORTC_JITTER_BUFFER,
    ReceiveTuning,
    TunedJitterBuffer,
    current_tuning,
    receivers_tuned,
    restore_receivers,
    tune_receivers,
)

FRAME_TICKS = 3000  # 90 kHz clock at 30 fps


@pytest.fixture(autouse=True)
def _untuned():
    """Every test starts and ends with aiortc's own buffer, whatever another test did."""
    restore_receivers()
    yield
    restore_receivers()


def _packet(seq: int, frame: int, marker: bool, payload: bytes | None = None) -> RtpPacket:
    packet = RtpPacket(payload_type=96, marker=int(marker), sequence_number=seq, timestamp=frame * FRAME_TICKS)
    packet._data = payload if payload is not None else bytes([seq % 256])  # what depayload() would set
    return packet


def _video_buffer():
    """A video buffer built exactly as RTCRtpReceiver builds one: by the name in aiortc.rtcrtpreceiver."""
    return receiver_module.JitterBuffer(capacity=512, is_video=True)


def _feed(buffer, packets: list[RtpPacket]) -> list:
    """The frame (or None) each packet's arrival released."""
    return [buffer.add(p)[1] for p in packets]


def test_tuned_buffer_releases_a_frame_at_its_marker_packet() -> None:
    tune_receivers(video_release_on_marker=True)
    frame0 = [_packet(0, 0, False, b"a"), _packet(1, 0, False, b"b"), _packet(2, 0, True, b"c")]
    out = _feed(_video_buffer(), frame0)
    assert out[:2] == [None, None], "an incomplete frame must wait"
    assert out[2] is not None, "the marker packet completes the frame: release it now"
    assert out[2].data == b"abc" and out[2].timestamp == 0


def test_untuned_buffer_holds_a_complete_frame_until_the_next_begins() -> None:
    buffer = _video_buffer()
    assert type(buffer) is AIORTC_JITTER_BUFFER
    out = _feed(buffer, [_packet(0, 0, False), _packet(1, 0, False), _packet(2, 0, True)])
    assert out == [None, None, None], "stock aiortc waits for the next frame"
    released = buffer.add(_packet(3, 1, False))[1]
    assert released is not None and released.timestamp == 0


def test_tuning_off_keeps_aiortcs_rule() -> None:
    tune_receivers(video_release_on_marker=False)
    buffer = _video_buffer()
    assert _feed(buffer, [_packet(0, 0, False), _packet(1, 0, True)]) == [None, None]
    assert buffer.add(_packet(2, 1, True))[1].timestamp == 0


def test_reordered_packets_release_when_the_gap_fills_and_frames_stay_in_order() -> None:
    tune_receivers()
    buffer = _video_buffer()
    out = _feed(buffer, [_packet(10, 5, False, b"x"), _packet(12, 5, True, b"z"), _packet(11, 5, False, b"y")])
    assert out[:2] == [None, None] and out[2].data == b"xyz"
    out = _feed(buffer, [_packet(13, 6, True, b"n")])
    assert out[0].data == b"n" and out[0].timestamp == 6 * FRAME_TICKS


def test_frames_without_marker_bits_still_flow_by_the_next_frame_rule() -> None:
    tune_receivers()
    buffer = _video_buffer()  # a sender that never sets the marker bit
    assert _feed(buffer, [_packet(0, 0, False), _packet(1, 0, False)]) == [None, None]
    released = buffer.add(_packet(2, 1, False))[1]
    assert released is not None and released.timestamp == 0


def test_a_gap_holds_the_frame_as_aiortc_does() -> None:
    tune_receivers()
    buffer = _video_buffer()
    assert _feed(buffer, [_packet(0, 0, False), _packet(2, 0, True), _packet(3, 1, True)]) == [None, None, None]
    assert buffer.add(_packet(1, 0, False))[1].timestamp == 0, "the retransmitted packet completes it"


def test_audio_prefetch_is_configurable() -> None:
    for prefetch, first_release in ((0, 0), (1, 1), (4, 4)):
        tune_receivers(audio_prefetch=prefetch)
        buffer = receiver_module.JitterBuffer(capacity=16, prefetch=4)  # aiortc's audio call
        out = _feed(buffer, [_packet(i, i, True) for i in range(6)])
        assert out.index(next(o for o in out if o is not None)) == first_release, prefetch
        assert out[first_release].timestamp == 0


def test_receivers_pick_up_the_tuning_and_restore_undoes_it() -> None:
    transport = SimpleNamespace(state="new")  # RTCRtpReceiver only reads .state when building
    assert tune_receivers(True, 1) == ReceiveTuning(True, 1)
    assert tune_receivers(True, 1) == ReceiveTuning(True, 1), "idempotent"
    assert receiver_module.JitterBuffer is TunedJitterBuffer
    video = RTCRtpReceiver("video", transport)._RTCRtpReceiver__jitter_buffer
    audio = RTCRtpReceiver("audio", transport)._RTCRtpReceiver__jitter_buffer
    assert isinstance(video, TunedJitterBuffer) and video.tuning.video_release_on_marker
    assert isinstance(audio, TunedJitterBuffer) and audio._prefetch == 1
    restore_receivers()
    assert current_tuning() is None
    assert type(RTCRtpReceiver("video", transport)._RTCRtpReceiver__jitter_buffer) is AIORTC_JITTER_BUFFER


def test_context_manager_restores_what_was_there() -> None:
    with receivers_tuned(audio_prefetch=0) as tuning:
        assert tuning == ReceiveTuning(True, 0) and current_tuning() == tuning
    assert current_tuning() is None
    tune_receivers(audio_prefetch=2)
    with receivers_tuned(audio_prefetch=0):
        pass
    assert current_tuning() == ReceiveTuning(True, 2)


def test_bad_prefetch_is_refused() -> None:
    with pytest.raises(ValueError):
        tune_receivers(audio_prefetch=16)
    assert current_tuning() is None


def test_an_aiortc_that_renamed_an_internal_keeps_its_own_buffer_with_one_warning(monkeypatch, caplog) -> None:
    """Stand-in for a newer aiortc that renamed the buffer's `_is_video`: stock aiortc still works (it reads the
    flag only on loss), the patch would not, so it must stay out, say once what is missing, and not crash."""
    stock_init = AIORTC_JITTER_BUFFER.__init__

    @functools.wraps(stock_init)
    def renamed_init(self, *args, **kwargs):
        stock_init(self, *args, **kwargs)
        self._video = self.__dict__.pop("_is_video")

    monkeypatch.setattr(AIORTC_JITTER_BUFFER, "__init__", renamed_init)
    monkeypatch.setattr(transport._patch, "_warned", False)
    with caplog.at_level(logging.WARNING):
        assert tune_receivers() is None and tune_receivers(audio_prefetch=0) is None
    warned = [r.getMessage() for r in caplog.records if "receive tuning skipped" in r.getMessage()]
    assert len(warned) == 1 and "JitterBuffer._is_video" in warned[0], warned
    assert receiver_module.JitterBuffer is AIORTC_JITTER_BUFFER and current_tuning() is None
    # aiortc's own behaviour: the complete frame waits for the next one to begin
    buffer = _video_buffer()
    assert _feed(buffer, [_packet(0, 0, False), _packet(1, 0, True)]) == [None, None]
    assert buffer.add(_packet(2, 1, True))[1].timestamp == 0


def test_a_patch_in_force_is_withdrawn_when_aiortc_no_longer_fits(monkeypatch) -> None:
    assert tune_receivers() is not None and receiver_module.JitterBuffer is TunedJitterBuffer
    monkeypatch.delattr(AIORTC_JITTER_BUFFER, "remove")
    monkeypatch.setattr(transport._patch, "_warned", True)  # already said
    assert tune_receivers() is None and receiver_module.JitterBuffer is AIORTC_JITTER_BUFFER
