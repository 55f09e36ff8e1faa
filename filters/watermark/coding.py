"""Channel coding for the provenance payload: salted CRC-32 plus a rate-1/2 convolutional code.

The 8-byte payload is followed by a CRC-32 whose start value comes from the key, so random bits (an
unmarked video, or a mark made with another key) pass the check with probability 2**-32 per decode
attempt. The 96 bits are then protected by the classic K=7 (171, 133) convolutional code, decoded with a
soft-decision Viterbi: codec damage spreads errors over many coded bits, and soft decoding turns a per-bit
error rate of several percent into a clean payload.
"""

from __future__ import annotations

import zlib

import numpy as np

PAYLOAD_BYTES = 8
CRC_BITS = 32
INFO_BITS = PAYLOAD_BYTES * 8 + CRC_BITS
CONSTRAINT = 7
_MEMORY = CONSTRAINT - 1
_GENERATORS = (0o171, 0o133)
CODED_BITS = len(_GENERATORS) * (INFO_BITS + _MEMORY)
_STATES = 1 << _MEMORY


def _parity(x: np.ndarray) -> np.ndarray:
    x = x.copy()
    for shift in (4, 2, 1):
        x ^= x >> shift
    return x & 1


# Trellis tables. The register holds the newest bit in its top position: reg = (u << 6) | state, and the
# next state is reg >> 1. For each next state the two predecessors differ only in their lowest bit.
_NEXT = np.arange(_STATES)
_INPUT = _NEXT >> (_MEMORY - 1)  # the bit that was shifted in to reach this state
_PRED = np.stack([((_NEXT << 1) & (_STATES - 1)) | 0, ((_NEXT << 1) & (_STATES - 1)) | 1])  # (2, S)
_REG = (_INPUT[None, :] << _MEMORY) | _PRED  # (2, S): full register for each (predecessor, next state)
_OUT = np.stack([_parity(_REG & g) for g in _GENERATORS], axis=-1)  # (2, S, 2) coded bits per branch
_SIGN = 1.0 - 2.0 * _OUT  # +1 for a coded 0, -1 for a coded 1
_SIGN_T = _SIGN.reshape(2 * _STATES, len(_GENERATORS)).T  # (2, 2S): soft pair -> all branch metrics


def crc_salt(key: bytes) -> int:
    """Start value for the payload CRC, derived from the key so foreign marks never check out."""
    return zlib.crc32(b"evercall-crc-salt:" + key)


def info_bits(payload: bytes, salt: int) -> np.ndarray:
    """Payload bits followed by the salted CRC-32 bits, MSB first (uint8 array of INFO_BITS)."""
    if len(payload) != PAYLOAD_BYTES:
        raise ValueError(f"payload must be {PAYLOAD_BYTES} bytes, got {len(payload)}")
    crc = zlib.crc32(payload, salt).to_bytes(4, "big")
    return np.unpackbits(np.frombuffer(payload + crc, dtype=np.uint8))


def check_info(bits: np.ndarray, salt: int) -> bytes | None:
    """The payload if the CRC matches, else None."""
    raw = np.packbits(np.asarray(bits, dtype=np.uint8)).tobytes()
    payload, crc = raw[:PAYLOAD_BYTES], raw[PAYLOAD_BYTES:]
    return payload if zlib.crc32(payload, salt).to_bytes(4, "big") == crc else None


def conv_encode(bits: np.ndarray) -> np.ndarray:
    """Rate-1/2 convolutional encoding with a zero tail (uint8 array of CODED_BITS)."""
    state = 0
    out = np.empty(len(_GENERATORS) * (len(bits) + _MEMORY), dtype=np.uint8)
    for i, u in enumerate(np.concatenate([np.asarray(bits, dtype=np.int64), np.zeros(_MEMORY, np.int64)])):
        reg = (int(u) << _MEMORY) | state
        for j, g in enumerate(_GENERATORS):
            out[2 * i + j] = bin(reg & g).count("1") & 1
        state = reg >> 1
    return out


def viterbi_decode(soft: np.ndarray) -> np.ndarray:
    """Maximum-likelihood info bits for soft coded values (positive means a coded 0).

    `soft` is (CODED_BITS,) or a batch (B, CODED_BITS); the batch is decoded in one pass, which is how the
    detector tries all its tone candidates for the price of one. Uses correlation metrics, optimal for
    equal-variance Gaussian noise and needing no noise estimate; the zero tail pins the final state.
    """
    soft = np.asarray(soft, dtype=np.float64)
    single = soft.ndim == 1
    soft = soft.reshape(-1, soft.shape[-1] // len(_GENERATORS), len(_GENERATORS))  # (B, steps, 2)
    batch, steps = soft.shape[:2]
    metric = np.full((batch, _STATES), -np.inf)
    metric[:, 0] = 0.0
    choice = np.empty((steps, batch, _STATES), dtype=np.intp)
    rows = np.arange(batch)[:, None]
    for t in range(steps):
        cand = metric[:, _PRED] + (soft[:, t] @ _SIGN_T).reshape(batch, 2, _STATES)  # (B, 2, S)
        pick = np.argmax(cand, axis=1)
        choice[t] = pick
        metric = cand[rows, pick, _NEXT]
    state = np.zeros(batch, dtype=np.intp)
    bits = np.empty((batch, steps), dtype=np.uint8)
    for t in range(steps - 1, -1, -1):
        bits[:, t] = _INPUT[state]
        state = _PRED[choice[t, rows[:, 0], state], state]
    bits = bits[:, : steps - _MEMORY]
    return bits[0] if single else bits
