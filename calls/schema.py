"""What a browser may send, checked before anything acts on it: the far end's offer and reports, the
operator console's commands.

The far end is anyone holding the link, so what it sends is data, never markup: numbers, a few known
words and one JPEG still. Anything else is refused with a `BadMessage` whose text is one line, which the
server answers with a 400. Unknown keys in a report are dropped (a newer page may send more figures);
known keys of the wrong type refuse the whole message. Booleans must be JSON booleans: `"false"` is text.
"""

from __future__ import annotations

import json
import math
import re
from typing import Any

MAX_JSON_BYTES = 64_000  # a report with its snapshot; commands are far smaller
MAX_OFFER_BYTES = 128_000  # a browser's SDP offer is 3-15 kB
MAX_DEPTH = 8  # the deepest a legitimate message nests is 3
MAX_KEYS = 40
MAX_WORD = 40
CONNECTION_STATES = frozenset({"new", "connecting", "connected", "disconnected", "failed", "closed"})
_KEY = re.compile(r"^[A-Za-z][A-Za-z0-9_]{0,39}$")
_WORD = re.compile(r"^[A-Za-z0-9_. -]{0,40}$")
_SNAPSHOT = re.compile(r"^data:image/jpeg;base64,[A-Za-z0-9+/=]+$")


class BadMessage(ValueError):
    """A message that does not fit its schema; `str()` is one line for the 400 answer."""


def _depth(text: str) -> int:
    """How deep brackets nest outside strings: checked before parsing, so nesting cannot exhaust the stack."""
    depth = deepest = 0
    in_string = escaped = False
    for ch in text:
        if in_string:
            if escaped:
                escaped = False
            elif ch == "\\":
                escaped = True
            elif ch == '"':
                in_string = False
        elif ch == '"':
            in_string = True
        elif ch in "[{":
            depth += 1
            deepest = max(deepest, depth)
        elif ch in "]}":
            depth -= 1
    return deepest


def _no_constant(name: str) -> float:
    raise BadMessage(f"{name} is not a number JSON allows")


def parse_json(raw: bytes | str, what: str, limit: int = MAX_JSON_BYTES) -> Any:
    """Decode one JSON message of at most `limit` bytes and MAX_DEPTH levels; BadMessage otherwise."""
    if len(raw) > limit:
        raise BadMessage(f"{what} is over {limit} bytes")
    try:
        text = raw.decode("utf-8") if isinstance(raw, (bytes, bytearray)) else raw
    except UnicodeDecodeError:
        raise BadMessage(f"{what} is not UTF-8 text") from None
    if _depth(text) > MAX_DEPTH:
        raise BadMessage(f"{what} nests deeper than {MAX_DEPTH} levels")
    try:
        return json.loads(text, parse_constant=_no_constant)
    except BadMessage:
        raise
    except (ValueError, RecursionError):
        raise BadMessage(f"{what} is not valid JSON") from None


def _number(value: Any, where: str) -> float | int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise BadMessage(f"{where} must be a finite number or null")
    return value


def _word(value: Any, where: str) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str) or not _WORD.match(value):
        raise BadMessage(f"{where} must be a short plain word")
    return value


def _object(value: Any, where: str) -> dict:
    if not isinstance(value, dict):
        raise BadMessage(f"{where} must be a JSON object")
    if len(value) > MAX_KEYS:
        raise BadMessage(f"{where} has over {MAX_KEYS} keys")
    return value


def _figures(value: Any, where: str) -> dict | None:
    """A flat object of named numbers (WebRTC stats): {"framesDecoded": 120, ...}, or null."""
    if value is None:
        return None
    out = {}
    for key, item in _object(value, where).items():
        if not _KEY.match(key):
            raise BadMessage(f"{where} has a key that is not a plain name")
        out[key] = _number(item, f"{where}.{key}")
    return out


def _picture(value: Any) -> dict | None:
    if value is None:
        return None
    out = {}
    for key, item in _object(value, "picture").items():
        if not _KEY.match(key):
            raise BadMessage("picture has a key that is not a plain name")
        if isinstance(item, list):
            if len(item) > 4:
                raise BadMessage(f"picture.{key} has over 4 items")
            out[key] = [_number(v, f"picture.{key}") for v in item]
        else:
            out[key] = _number(item, f"picture.{key}")
    return out


def _voice(value: Any) -> dict | None:
    if value is None:
        return None
    value = _object(value, "voice")
    return {"state": _word(value.get("state"), "voice.state"), "rms": _number(value.get("rms"), "voice.rms")}


def _sent(value: Any) -> dict:
    if value is None:
        return {}
    out = {}
    for kind, figures in _object(value, "sent").items():
        if kind not in ("video", "audio"):
            raise BadMessage("sent names a kind other than video or audio")
        out[kind] = _figures(figures, f"sent.{kind}")
    return out


def farend_report(data: Any) -> dict:
    """The far-end page's own figures, reduced to what the schema knows."""
    data = _object(data, "the report")
    report: dict[str, Any] = {}
    if "connectionState" in data:
        state = data["connectionState"]
        if state not in CONNECTION_STATES:
            raise BadMessage("connectionState is not a WebRTC connection state")
        report["connectionState"] = state
    if "at" in data:
        report["at"] = _number(data["at"], "at")
    for key in ("video", "audio", "network", "screen"):  # network, screen: the far end's path and screen
        if key in data:
            report[key] = _figures(data[key], key)
    if "sent" in data:
        report["sent"] = _sent(data["sent"])
    if "picture" in data:
        report["picture"] = _picture(data["picture"])
    if "voice" in data:
        report["voice"] = _voice(data["voice"])
    if data.get("snapshot") is not None:
        snapshot = data["snapshot"]
        if not isinstance(snapshot, str) or not _SNAPSHOT.match(snapshot):
            raise BadMessage("snapshot must be a data:image/jpeg;base64 URL")
        report["snapshot"] = snapshot
    return report


def offer(data: Any) -> tuple[str, str]:
    """(sdp, type) of a far end's offer: a non-empty SDP text with at least one media section."""
    data = _object(data, "the offer")
    sdp, kind = data.get("sdp"), data.get("type")
    if kind != "offer":
        raise BadMessage("the offer's 'type' must be \"offer\"")
    if not isinstance(sdp, str) or not sdp.strip():
        raise BadMessage("the offer's 'sdp' must be non-empty text")
    if not sdp.startswith("v=0") or "\nm=" not in sdp or "\x00" in sdp:
        raise BadMessage("the offer's 'sdp' is not a session description with media")
    return sdp, kind


CONSOLE_ACTIONS = ("mute", "card", "mode", "end")


def console_command(data: Any) -> dict:
    """One console command: {"action": "mute"|"card", "on": bool} | {"action": "mode", "mode": word} | end."""
    data = _object(data, "a command")
    action = data.get("action")
    if action not in CONSOLE_ACTIONS:
        shown = action if isinstance(action, str) and _WORD.match(action) else "(not a known word)"
        raise BadMessage(f"unknown action {shown!r}: expected one of {', '.join(CONSOLE_ACTIONS)}")
    if action in ("mute", "card"):
        if not isinstance(data.get("on"), bool):
            raise BadMessage(f"'{action}' needs \"on\": true or false (a JSON boolean)")
        return {"action": action, "on": data["on"]}
    if action == "mode":
        mode = data.get("mode")
        if not isinstance(mode, str) or not re.fullmatch(r"[a-z_-]{1,20}", mode):
            raise BadMessage("'mode' needs \"mode\": the name of a face mode")
        return {"action": action, "mode": mode}
    return {"action": action}
