"""What every calling command (serve, render, vcam) reads from its command line: the persona, the operator's
input, and the face and voice options, whose choices and help come from the backend registry.

Kept apart from calls/cli.py so subcommand modules can share it without importing the CLI itself.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from engine.errors import EvercallError
from filters.registry import (BACKENDS, DEFAULT_FACE_BACKEND, DEFAULT_FACE_MODE, DEFAULT_VOICE_BACKEND,
                              FACE_MODES, MODE_HELP)

PERSONA_HELP = ("a persona from the store (`evercall persona list`), or a folder holding a photo, a voice sample, "
                "consent.json and the consent document it names")


def _choices_help(what: str, entries: dict[str, str], default: str) -> str:
    listed = "; ".join(f"'{name}'" + (" (default)" if name == default else "") + f": {text}"
                       for name, text in entries.items())
    return f"{what}: {listed}"


def add_face_options(parser: argparse.ArgumentParser) -> None:
    """--mode, --backend, --voice-backend, --models-dir: choices and help from filters/registry.py."""
    parser.add_argument("--mode", default=DEFAULT_FACE_MODE, choices=FACE_MODES,
                        help=_choices_help("face mode", {m: MODE_HELP.get(m, "") for m in FACE_MODES},
                                           DEFAULT_FACE_MODE))
    parser.add_argument("--backend", default=DEFAULT_FACE_BACKEND, choices=tuple(BACKENDS.face),
                        help=_choices_help("face backend", {b.name: b.summary for b in BACKENDS.face.values()},
                                           DEFAULT_FACE_BACKEND) + " (see `evercall models list`)")
    parser.add_argument("--voice-backend", default=DEFAULT_VOICE_BACKEND, choices=tuple(BACKENDS.voice),
                        help=_choices_help("voice backend", {b.name: b.summary for b in BACKENDS.voice.values()},
                                           DEFAULT_VOICE_BACKEND))
    parser.add_argument("--models-dir", type=Path, metavar="DIR",
                        help="folder with model files (default: $EVERCALL_MODELS, then $EVERCALL_HOME/models)")


def add_persona_and_source(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--persona", metavar="NAME|DIR", help=PERSONA_HELP)
    parser.add_argument("--demo", action="store_true",
                        help="use the built-in sample persona (a composite of no real person) and sample operator "
                             "clip: works with no camera")
    parser.add_argument("--source", metavar="FILE|browser",
                        help="play this video file as the operator's camera and mic; `browser`: the camera and mic "
                             "of the browser that opens the operator page")
    parser.add_argument("--camera", default="0", help="webcam index or device path (default 0)")
    parser.add_argument("--mic", default=None, help="microphone index or name (default: the system default; "
                                                    "see `evercall devices`)")


def demo_material():
    """The demo material, saying so when it is built for the first time (about ten seconds)."""
    from calls.demo import demo_assets, demo_cache_dir

    root = demo_cache_dir()
    if not (root / "operator.mp4").is_file() or not (root / "persona" / "photo.png").is_file():
        print(f"building the demo persona and operator clip in {root} (first run only, about 10 s)...",
              file=sys.stderr, flush=True)
    return demo_assets()


def persona_from_args(args: argparse.Namespace, use: str):
    """The persona named by --persona (store name/id or folder) or --demo, with consent checked for `use`."""
    from engine.resolve import open_persona

    if args.persona:
        return open_persona(args.persona, use)
    if getattr(args, "demo", False):
        persona = open_persona(demo_material().persona_dir, use)
        persona.name = "demo (a composite of no real person)"
        return persona
    raise EvercallError("no persona given: pass --persona NAME (see `evercall persona list`) or --persona DIR, "
                        "or --demo")


def source_from_args(args: argparse.Namespace):
    """The operator's input: --source FILE, the demo clip, or the webcam and microphone."""
    from calls.sources import CombinedSource, FileSource, MicSource, WebcamSource

    if args.source == "browser":  # the operator page's camera and mic (calls/operator_browser.py)
        from calls.operator_browser import BrowserSource

        return BrowserSource()
    if args.source:
        return FileSource(args.source, loop=True)
    if args.demo:
        return FileSource(demo_material().operator_clip, loop=True)
    from calls.devices import find_audio_device

    camera = int(args.camera) if str(args.camera).isdigit() else args.camera
    return CombinedSource(WebcamSource(camera), MicSource(find_audio_device(args.mic, output=False)))
