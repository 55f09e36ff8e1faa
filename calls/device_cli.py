"""`evercall devices` and `evercall vcam`: local devices, and the persona as a virtual camera and microphone."""

from __future__ import annotations

import argparse
import signal
import threading
import time

from engine.errors import DeviceError

VCAM_HELP = """\
Run the persona locally and present it as a virtual camera and a virtual microphone, so any call app
(WeChat, Zoom, Teams, a browser) can pick "evercall" as its camera and the virtual device as its microphone.

Needs a virtual camera driver: on Linux v4l2loopback
  sudo modprobe v4l2loopback devices=1 exclusive_caps=1 card_label=evercall
on Windows and macOS the OBS Studio virtual camera. For the voice, a virtual audio device that apps can
record from: a PulseAudio null sink (pactl load-module module-null-sink sink_name=evercall, then pick
"Monitor of evercall" as the microphone in the call app), VB-CABLE on Windows, BlackHole on macOS.
"""


def cmd_devices(args: argparse.Namespace) -> int:
    from calls.devices import audio_devices, cameras

    cams = cameras()
    print("cameras:" if cams else "cameras: none found (plug one in, or use --source FILE / --demo)")
    for cam in cams:
        print(f"  {cam}")
    try:
        devices = audio_devices()
    except DeviceError as exc:
        print(f"audio: {exc}")
        return 0
    inputs = [d for d in devices if d.inputs]
    outputs = [d for d in devices if d.outputs]
    print("microphones:" if inputs else "microphones: none found")
    for d in inputs:
        print(f"  [{d.index}] {d.name} ({d.inputs} ch, {d.default_rate:.0f} Hz)")
    print("speakers and virtual microphones:" if outputs else "speakers and virtual microphones: none found")
    for d in outputs:
        print(f"  [{d.index}] {d.name} ({d.outputs} ch, {d.default_rate:.0f} Hz)")
    return 0


def cmd_vcam(args: argparse.Namespace) -> int:
    from calls.assembly import CallAssembly, CallChoices
    from calls.call_inputs import persona_from_args, source_from_args
    from calls.devices import AudioOutputSink, VirtualCameraSink, find_audio_device

    persona = persona_from_args(args, "call")
    mic_out = find_audio_device(args.virtual_mic, output=True) if args.virtual_mic else None
    source = source_from_args(args)
    assembly = CallAssembly(persona, CallChoices.from_args(args))
    pipeline = assembly.pipeline()
    sinks = []
    try:
        sinks.append(VirtualCameraSink(pipeline, backend=args.vcam_backend, device=args.vcam_device).start())
        if args.virtual_mic:
            sinks.append(AudioOutputSink(pipeline.audio_out, mic_out, pipeline.note_audio_sent,
                                         name="virtual microphone").start())
        source.start(pipeline.push_video, pipeline.push_audio)
        print(f"persona {persona.name} on virtual camera {sinks[0].device}"
              + (f" and virtual microphone {args.virtual_mic}" if args.virtual_mic else
                 " (no --virtual-mic: the voice goes nowhere)"), flush=True)
        print("pick them in your call app; press Ctrl-C to stop", flush=True)
        assembly.record("call_started", far_end="virtual camera")
        started = time.monotonic()
        stop = threading.Event()
        signal.signal(signal.SIGTERM, lambda *_: stop.set())
        try:
            while not stop.wait(args.seconds if args.seconds else 1.0):
                if args.seconds:
                    break
        except KeyboardInterrupt:
            pass
        assembly.record("call_ended", far_end="virtual camera", duration_s=round(time.monotonic() - started, 1))
    finally:
        source.stop()
        for sink in sinks:
            sink.stop()
        pipeline.close()
    print("stopped", flush=True)
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    from calls.call_inputs import add_face_options, add_persona_and_source

    devices = sub.add_parser("devices", help="list cameras, microphones and speakers",
                             description="List the cameras, microphones and speakers (including virtual "
                                         "ones) that evercall can use, with the index or name to pass.")
    devices.set_defaults(func=cmd_devices)

    vcam = sub.add_parser("vcam", help="present the persona as a virtual camera and microphone",
                          description=VCAM_HELP, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_persona_and_source(vcam)
    add_face_options(vcam)
    vcam.add_argument("--virtual-mic", metavar="NAME|INDEX",
                      help="audio output device that call apps record from (see `evercall devices`)")
    vcam.add_argument("--vcam-backend", default=None, help="pyvirtualcam backend (default: any available)")
    vcam.add_argument("--vcam-device", default=None, help="virtual camera device, e.g. /dev/video10")
    vcam.add_argument("--seconds", type=float, default=0, help="stop after this long (default: until Ctrl-C)")
    vcam.set_defaults(func=cmd_vcam)
