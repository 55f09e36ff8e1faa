"""Voice-activity gate for the streaming converter: room noise and breath in, silence out.

A vocoder re-synthesises whatever it is given, so without a gate the hiss of a room comes out as
persona-coloured noise and a low hum can pick up a pitch. The gate decides per 5 ms frame, from
things the converter measures anyway:

* energy against an adaptive noise floor (minimum statistics: the quietest frame over the last
  1.5 s, so a steady fan or hiss of any level becomes "floor" within that time);
* periodicity: a run of YIN-voiced frames well above the floor is speech, aperiodic energy counts only
  when it is loud and high-frequency like a sibilant (breath and room noise are neither);
* hangover after speech, so word endings and the quiet consonants between voiced stretches pass;
* lookahead: the converter already sees `lookahead` into the future, so a rise in energy there opens
  the gate *before* the onset reaches the output, and an unconfirmed rise is let through for its
  first 40 ms (a plosive or an /h/ before the vowel) before the gate decides against it.

The gate's output is a gain per frame (dB), applied to the synthesised envelope: opening is immediate
(the synthesiser interpolates it over one 5 ms frame), closing ramps down so word endings do not click.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass

import numpy as np

FLOOR_SECONDS = 1.5  # minimum-statistics window: a new steady noise becomes the floor within this
FLOOR_BIAS_DB = 1.5  # the minimum of 10 ms frames sits about this far below the noise's mean level
FLOOR_MIN_DB = -80.0  # digital silence is not a floor: anything audible would count as speech
FLOOR_MAX_DB = -35.0  # louder "floors" are continuous speech, not a room
PRIOR_FLOOR_DB = -55.0  # until the floor is measured, assume a quiet room at most this loud ...
PRIOR_SECONDS = 0.5  # ... for this long
OPEN_DB = 10.0  # a frame this far above the floor is a candidate for speech
SIBILANT_DB = 15.0  # aperiodic energy counts as speech only this loud (s, sh, z, ch) ...
SIBILANT_SHARE = 0.6  # ... and with this share of its power above 2.5 kHz
SIBILANT_HZ = 2500.0
ABSOLUTE_DB = -60.0  # nothing quieter than this is speech, whatever the floor
VOICED_RUN = 3  # voiced frames in a row (15 ms) before voicing counts: lone YIN hits in noise do not
HANGOVER_S = 0.15
PROVISIONAL_S = 0.04  # an unconfirmed rise in energy passes for this long (plosive bursts, /h/)
CLOSED_DB = -60.0  # gain when closed
RELEASE_S = 0.06  # from open to closed


@dataclass
class _State:
    """What carries from one frame to the next (copied to preview the provisional last frame)."""

    hang: int = 0  # frames of hangover left
    seg_age: int = -1  # frames since the current run of candidate frames began; -1 outside one
    voiced_run: int = 0
    gain_db: float = CLOSED_DB


class VoiceGate:
    """Per-frame speech/non-speech decisions with an adaptive floor; one instance per stream."""

    def __init__(self, frame: int, rate: int) -> None:
        self.frame = frame
        self.rate = rate
        frames_per_s = rate / frame
        self.hang_frames = int(round(HANGOVER_S * frames_per_s))
        self.provisional_frames = int(round(PROVISIONAL_S * frames_per_s))
        self.release_db = -CLOSED_DB / max(RELEASE_S * frames_per_s, 1.0)
        self._floor_frames = int(round(FLOOR_SECONDS * frames_per_s))
        self._prior_frames = int(round(PRIOR_SECONDS * frames_per_s))
        self.reset()

    def reset(self) -> None:
        """A new stream: floor back to the prior, gate closed."""
        self._state = _State()
        self._minima: deque[tuple[int, float]] = deque()  # (frame count, quietest frame of a block) pairs
        self._frames_seen = 0
        self.confirmed = np.zeros(0, bool)

    # measurements

    def energy_db(self, window: np.ndarray, centres: np.ndarray) -> np.ndarray:
        """Level in dBFS of the two frames around each centre (clipped at the window's ends)."""
        cum = np.concatenate([[0.0], np.cumsum(np.square(window, dtype=np.float64))])
        lo = np.clip(centres - self.frame, 0, len(window))
        hi = np.clip(centres + self.frame, 0, len(window))
        mean_square = (cum[hi] - cum[lo]) / np.maximum(hi - lo, 1)
        return 10.0 * np.log10(mean_square + 1e-12)

    def high_share(self, power_envelope: np.ndarray) -> np.ndarray:
        """Share of each frame's envelope power above SIBILANT_HZ (rows: frames, columns: FFT bins)."""
        bins = power_envelope.shape[1]
        cut = int(SIBILANT_HZ / (self.rate / 2) * (bins - 1))
        return power_envelope[:, cut:].sum(axis=1) / np.maximum(power_envelope.sum(axis=1), 1e-30)

    @property
    def floor_db(self) -> float:
        """The current noise floor estimate in dBFS."""
        if not self._minima:
            floor = PRIOR_FLOOR_DB
        else:
            floor = min(m for _, m in self._minima) + FLOOR_BIAS_DB
            if self._frames_seen < self._prior_frames:
                floor = min(floor, PRIOR_FLOOR_DB)
        return float(min(max(floor, FLOOR_MIN_DB), FLOOR_MAX_DB))

    # decisions

    def candidates(self, energy: np.ndarray) -> np.ndarray:
        """Frames loud enough above the floor to maybe be speech."""
        return energy > max(self.floor_db + OPEN_DB, ABSOLUTE_DB)

    def idle(self, energy_now: np.ndarray, energy_ahead: np.ndarray) -> bool:
        """Closed, no hangover, and nothing that could open it now or within the lookahead: the converter
        may skip analysis and synthesis for this hop (call `skip` instead of `gains`)."""
        s = self._state
        return (s.gain_db <= CLOSED_DB and s.hang == 0
                and not self.candidates(energy_now).any() and not self.candidates(energy_ahead).any())

    def skip(self, energy_now: np.ndarray, n_final: int) -> None:
        """Advance over an idle hop: only the floor learns from it."""
        self._state = _State(gain_db=CLOSED_DB)
        self.confirmed = np.zeros(len(energy_now), bool)
        self._learn_floor(energy_now[:n_final])

    def gains(self, energy_now: np.ndarray, voiced: np.ndarray, high_share: np.ndarray,
              energy_ahead: np.ndarray, n_final: int) -> np.ndarray:
        """Gain in dB per frame of this hop.

        `energy_now`, `voiced`, `high_share`: the hop's analysed frames, of which the first `n_final` are
        final and the rest provisional (analysed again next hop: their decision is previewed, not kept).
        `energy_ahead`: levels of the frames beyond, inside the lookahead (not analysed yet).
        `confirmed` afterwards marks frames judged to be speech (for the converter's statistics)."""
        floor = self.floor_db
        cand_now = self.candidates(energy_now)
        cand_all = np.concatenate([cand_now, self.candidates(energy_ahead)])
        lead = len(energy_ahead)
        out = np.empty(len(energy_now))
        confirmed = np.zeros(len(energy_now), bool)
        state = self._state
        kept = state
        for k in range(len(energy_now)):
            if k == n_final:
                kept = state
                state = _State(**state.__dict__)
            state.voiced_run = state.voiced_run + 1 if voiced[k] else 0
            state.seg_age = (state.seg_age + 1 if state.seg_age >= 0 else 0) if cand_now[k] else -1
            speech = cand_now[k] and (
                state.voiced_run >= VOICED_RUN
                or (energy_now[k] > floor + SIBILANT_DB and high_share[k] > SIBILANT_SHARE))
            confirmed[k] = speech
            if speech:
                state.hang = self.hang_frames
            # An onset within the lookahead opens the gate ahead of it, so the first syllable is whole.
            onset_ahead = not cand_now[k] and bool(cand_all[k + 1:k + 1 + lead].any())
            is_open = (speech or state.hang > 0 or onset_ahead
                       or (cand_now[k] and state.seg_age < self.provisional_frames))
            if not speech and state.hang > 0:
                state.hang -= 1
            target = 0.0 if is_open else CLOSED_DB
            state.gain_db = target if target >= state.gain_db else max(target, state.gain_db - self.release_db)
            out[k] = state.gain_db
        if n_final >= len(energy_now):
            kept = state
        self._state = kept
        self.confirmed = confirmed
        self._learn_floor(energy_now[:n_final])
        return out

    def _learn_floor(self, energy: np.ndarray) -> None:
        if not len(energy):
            return
        self._frames_seen += len(energy)
        self._minima.append((self._frames_seen, float(np.min(energy))))
        while self._minima and self._minima[0][0] <= self._frames_seen - self._floor_frames:
            self._minima.popleft()
