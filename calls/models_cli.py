"""`evercall models list|check`: which model files the neural backends need, and whether yours fit.

The main CLI calls `register(subparsers)`; each leaf command sets `func(args) -> int` (the exit code).
Nothing here downloads anything: the user brings the weights, and these commands say which files,
where they go and where each comes from.
"""

from __future__ import annotations

import argparse

from engine.models import MODELS, MODELS_ENV, check, resolve_models_dir
from filters.registry import BACKENDS

MODELS_HELP = f"""\
The neural backends run ONNX models that you supply (several are licensed for non-commercial use
only, so evercall cannot ship them). Put the files in one folder:
  --models-dir DIR     this folder, else
  {MODELS_ENV}      this folder, else
  $EVERCALL_HOME/models (default ~/.local/share/evercall/models)
Backends: face (insightface detector + ArcFace + inswapper_128; the GFPGAN restorer is optional),
voice (RVC-style content encoder + pitch model + your persona's decoder).
"""


def _folder(args: argparse.Namespace):
    return resolve_models_dir(getattr(args, "models_dir", None))


def _groups() -> dict[str, tuple[str, ...]]:
    """What `--backend` may name: each registered backend that loads model files, and "face"/"voice" for
    all of that kind's (filters/registry.py says which backend loads which files)."""
    groups = dict(BACKENDS.with_models())
    for kind, table in (("face", BACKENDS.face), ("voice", BACKENDS.voice)):
        keys = [key for backend in table.values() for key in backend.models]
        groups[kind] = tuple(dict.fromkeys(keys))
    return groups


def cmd_list(args: argparse.Namespace) -> int:
    folder, origin = _folder(args)
    print(f"models folder: {folder} (from {origin})")
    for kind, table in (("face", BACKENDS.face), ("voice", BACKENDS.voice)):
        for backend in table.values():
            if not backend.models:
                continue
            print(f"\n{kind} backend '{backend.name}' ({backend.summary}):")
            for key in backend.models:
                spec = MODELS[key]
                result = check(spec, folder)
                state = "installed" if result.ok else ("not installed" if result.status == "missing"
                                                       else f"present but {result.status}")
                need = "" if spec.required else ", optional"
                print(f"  {key}: {state}{need} ({spec.task})")
                print(f"    file:    {result.path}  ({spec.size_hint})")
                print(f"    licence: {spec.licence}")
                print(f"    get it:  {spec.source}")
    return 0


def cmd_check(args: argparse.Namespace) -> int:
    """One line per missing or mismatched file; exit 1 if a required file of the chosen backend fails."""
    folder, _ = _folder(args)
    groups = _groups()
    backends = ["face", "voice"] if args.backend == "all" else [args.backend]
    failed = False
    for backend in backends:
        for key in groups[backend]:
            spec = MODELS[key]
            result = check(spec, folder)
            if result.ok:
                continue
            failed |= spec.required
            tag = "" if spec.required else " (optional)"
            print(f"{result.line()}{tag}")
    if not failed:
        print(f"{' and '.join(backends)} backend models: all required files present and valid in {folder}")
    return 1 if failed else 0


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add `models list` and `models check` to the main CLI's subparsers."""
    raw = argparse.RawDescriptionHelpFormatter
    models = subparsers.add_parser("models", help="list and check the model files of the neural backends",
                                   description=MODELS_HELP, formatter_class=raw)
    sub = models.add_subparsers(dest="models_command", metavar="COMMAND", required=True)

    listing = sub.add_parser("list", help="each known model: installed or not, path, licence, where to get it",
                             description=MODELS_HELP, formatter_class=raw)
    listing.add_argument("--models-dir", metavar="DIR", help="folder holding the model files")
    listing.set_defaults(func=cmd_list)

    checking = sub.add_parser("check", help="check the model files; exit 1 if a required one is missing or wrong",
                              description=MODELS_HELP, formatter_class=raw)
    checking.add_argument("--models-dir", metavar="DIR", help="folder holding the model files")
    checking.add_argument("--backend", choices=(*_groups(), "all"), default="all",
                          help="which backend's models to require: a backend's name, 'face' or 'voice' for all of "
                               "that kind, or 'all' (default)")
    checking.set_defaults(func=cmd_check)
