"""Send-side media options: 10 ms low-delay Opus, a bitrate cap, the preferred codec, and a far end that
gets what the operator asked for."""

from __future__ import annotations

import fractions

import aiortc.rtcrtpsender as sender_module
import av
import numpy as np
import pytest
from aiohttp import web
from aiortc import RTCPeerConnection
from aiortc.codecs import get_encoder as aiortc_get_encoder
from aiortc.codecs.opus import OpusEncoder
from aiortc.rtcrtpparameters import RTCRtpCodecParameters

from benchmarks.latency import passthrough_pipeline
from calls.encoders import (
    CappedVp8Encoder,
    LowDelayOpusEncoder,
    SendTuning,
    current_send_tuning,
    restore_senders,
    tune_senders,
)
from calls.media_options import MediaOptions, answered_video_codec, prefer_codec
from calls.server import CallServer, CallState
from calls.sources import FileSource
from calls.transport import restore_receivers
from engine.errors import EvercallError
from tests.farend import join_for

RATE = 48000
OPUS = RTCRtpCodecParameters(mimeType="audio/opus", clockRate=48000, channels=2, payloadType=111)
VP8 = RTCRtpCodecParameters(mimeType="video/VP8", clockRate=90000, payloadType=96)


@pytest.fixture(autouse=True)
def _stock_aiortc():
    restore_senders()
    restore_receivers()
    yield
    restore_senders()
    restore_receivers()


def _click_delay_and_packet_size(encoder) -> tuple[int, int]:
    """Samples from a click's onset going in to it coming out of an Opus decoder; samples per packet."""
    decoder = av.CodecContext.create("libopus", "r")
    x = np.zeros(RATE // 2, np.float32)
    x[4800:5280] = 0.7 * np.sin(2 * np.pi * 1500 * np.arange(480) / RATE)
    out, sizes = [], []
    for k in range(0, len(x), 480):
        pcm = (x[k:k + 480] * 32767).astype(np.int16).reshape(1, -1)
        frame = av.AudioFrame.from_ndarray(pcm, format="s16", layout="mono")
        frame.sample_rate, frame.pts, frame.time_base = RATE, k, fractions.Fraction(1, RATE)
        payloads, _ = encoder.encode(frame)
        for payload in payloads:
            for decoded in decoder.decode(av.Packet(payload)):
                sizes.append(decoded.samples)
                out.append(decoded.to_ndarray().reshape(-1, decoded.to_ndarray().size // decoded.samples)[:, 0])
    y = np.concatenate(out) / 32768
    return int(np.flatnonzero(np.abs(y) > 0.25)[0]) - 4800, sizes[0]


def test_low_delay_opus_packs_10_ms_and_hears_the_click_sooner() -> None:
    ours, our_packet = _click_delay_and_packet_size(LowDelayOpusEncoder(10))
    stock, stock_packet = _click_delay_and_packet_size(OpusEncoder())
    assert our_packet == 480 and stock_packet == 960
    # Packing: a sample waits for the rest of its packet (10 instead of 20 ms); lookahead: 2.5 instead of 6.5.
    assert ours + our_packet <= stock + stock_packet - 480 - 150, (ours, stock)


def test_bitrate_cap_holds_against_receiver_reports() -> None:
    encoder = CappedVp8Encoder(300_000)
    assert encoder.target_bitrate == 300_000, "the cap is also where it starts"
    encoder.target_bitrate = 1_200_000  # a REMB report saying the link could take more
    assert encoder.target_bitrate == 300_000
    encoder.target_bitrate = 260_000
    assert encoder.target_bitrate == 260_000, "reports may still lower it"


def test_tune_senders_routes_encoders_and_restore_gives_aiortcs_back() -> None:
    assert sender_module.get_encoder is aiortc_get_encoder
    tune_senders(SendTuning(opus_frame_ms=20, video_kbps=400))
    opus, vp8 = sender_module.get_encoder(OPUS), sender_module.get_encoder(VP8)
    assert isinstance(opus, LowDelayOpusEncoder) and opus.frame_ms == 20
    assert isinstance(vp8, CappedVp8Encoder) and vp8.target_bitrate == 400_000
    assert current_send_tuning() == SendTuning(20, 400)
    restore_senders()
    assert sender_module.get_encoder is aiortc_get_encoder and current_send_tuning() is None


def test_bad_media_options_are_refused_with_the_fix() -> None:
    with pytest.raises(EvercallError, match="1280x720"):
        MediaOptions(size=(1281, 720))
    with pytest.raises(EvercallError, match="10 or 20"):
        MediaOptions(audio_frame_ms=15)
    with pytest.raises(EvercallError, match="audio-prefetch"):
        MediaOptions(audio_prefetch=99)


async def test_prefer_codec_reorders_an_offer_and_the_answer_follows() -> None:
    far = RTCPeerConnection()
    far.addTransceiver("video", direction="recvonly")
    await far.setLocalDescription(await far.createOffer())
    offer = far.localDescription.sdp
    assert answered_video_codec(offer) == "vp8", "aiortc offers VP8 first"
    reordered, found = prefer_codec(offer, "video", "h264")
    assert found and answered_video_codec(reordered) == "h264"
    assert sorted(reordered.split()) == sorted(offer.split()), "only the order of payload types changes"
    assert prefer_codec(offer, "video", "av1") == (offer, False)
    await far.close()


async def test_far_end_gets_the_codec_size_and_packet_length_asked_for(demo) -> None:
    pipeline = passthrough_pipeline()
    media = MediaOptions(codec="h264", size=(320, 240), audio_frame_ms=10)
    state = CallState(pipeline=pipeline, persona_name="test", media=media)
    runner = web.AppRunner(CallServer(state).app, handle_signals=False)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]
    source = FileSource(demo.operator_clip, loop=True).start(pipeline.push_video, pipeline.push_audio)
    got: dict = {"sizes": [], "audio_samples": []}
    try:
        joined = await join_for(f"http://127.0.0.1:{port}/join/{state.invite.token}", 3.0,
                                on_video=lambda f: got["sizes"].append((f.width, f.height)),
                                on_audio=lambda f: got["audio_samples"].append(f.samples))
    finally:
        source.stop()
        await runner.cleanup()
        pipeline.close()
    assert answered_video_codec(joined["answer_sdp"]) == "h264" and state.sending_codec == "h264"
    assert len(got["sizes"]) > 20 and set(got["sizes"]) == {(320, 240)}
    assert len(got["audio_samples"]) > 100
    assert np.median(got["audio_samples"]) == 480, "each Opus packet carries 10 ms"
