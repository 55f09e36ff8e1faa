"""Voice-activity gate for the streaming converter: room noise and breath in, silence out.

A vocoder re-synthesises whatever it is given, so without a gate the hiss of a room comes out as
persona-coloured noise, and a hum can pick up a pitch. The gate decides per 5 ms frame, from what the
converter measures anyway:

* level (above 100 Hz, where rumble lives and speech does not) against a tracked noise floor: the floor
  tracks the level of frames that are not speech (near their 40th percentile, at 10-15 dB/s), so a
  steady fan, hiss or hum of any level becomes "floor" within seconds, its fluctuations below threshold;
* periodicity: a run of YIN-voiced frames well above the floor is speech; aperiodic energy counts
  only when it is loud and high-frequency like a sibilant (s, sh, ch): breath and room noise are not;
* hangover after speech, so word endings and quiet consonants between voiced stretches pass;
* onsets: the converter already sees `lookahead` into the future, so a sharp rise in level there
  opens the gate *before* the onset reaches the output. What follows a rise passes unconfirmed for
  40 ms, then at -12 dB up to 150 ms: an /h/ or /f/ before its vowel is kept, a breath (no vowel comes)
  is cut. Noise flickers do not rise sharply enough (measured: at most 6 dB against the preceding
  50 ms; 9 dB is needed), nor does a breath that swells slowly.

With 20 ms of lookahead a breath's start cannot be told from an /h/: a loud, sharp breath comes out
8-15 dB quieter (its first 40 ms whole), a gradual or quiet one 60 dB quieter; neither gets a pitch.

The output is a gain per frame in dB, applied to the synthesised envelope: opening is immediate (the
synthesiser interpolates over one 5 ms frame), closing ramps down over 60 ms so endings do not click.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, replace

import numpy as np
from scipy import signal

HIGHPASS_HZ = 100.0
FLOOR_UP_DB_S = 10.0  # the floor follows louder non-speech at this rate ...
FLOOR_DOWN_DB_S = 15.0  # ... and quieter at this: it settles near the 40th percentile of noise levels
FLOOR_MIN_DB = -80.0  # digital silence is no floor: anything audible would count as speech
FLOOR_MAX_DB = -35.0  # louder "floors" are continuous speech, not a room
PRIOR_FLOOR_DB = -55.0  # where the floor starts: a quiet room
OPEN_DB = 10.0  # a frame this far above the floor may be speech
SIBILANT_DB = 15.0  # aperiodic energy counts as speech only this loud ...
SIBILANT_SHARE = 0.6  # ... and with this share of its power above SIBILANT_HZ
SIBILANT_HZ = 2500.0
ABSOLUTE_DB = -60.0  # nothing quieter than this is speech, whatever the floor
VOICED_RUN = 3  # voiced frames in a row (15 ms) before voicing counts: lone YIN hits in noise do not
SIBILANT_RUN = 4  # sibilant frames in a row (20 ms): an /s/ lasts 80-150 ms, a noise's odd frame does not
RISE_DB = 9.0  # an onset: a frame starting a run of candidates this far above the mean level of the
RISE_FRAMES = 10  # preceding 50 ms ...
RISE_WITHIN_DB = 12.0  # ... or, inside a run (the vowel after an /h/ or /f/), this far
HANGOVER_S = 0.15
PROVISIONAL_S = 0.04  # after an onset, unconfirmed sound passes whole for this long ...
TENTATIVE_S = 0.15  # ... and then at TENTATIVE_DB up to this long: an /f/ or /h/ before its vowel is
TENTATIVE_DB = -12.0  # kept, a breath (which no vowel follows) is cut after it
CLOSED_DB = -60.0  # gain when closed
RELEASE_S = 0.06  # ramp from open to closed
QUIET_DB = -100.0  # levels are clipped here (digital silence would make every rise infinite)


@dataclass
class _State:
    """What carries from one frame to the next (copied to preview the provisional last frame)."""

    floor_db: float = PRIOR_FLOOR_DB
    hang: int = 0  # frames of hangover left
    since_onset: int = 1 << 30  # frames since the last onset
    voiced_run: int = 0
    sibilant_run: int = 0
    candidate: bool = False  # the previous frame's
    gain_db: float = CLOSED_DB


class VoiceGate:
    """Per-frame speech/non-speech gains for one stream; fed each hop's frames in order."""

    def __init__(self, frame: int, rate: int) -> None:
        self.frame = frame
        self.rate = rate
        frames_per_s = rate / frame
        self.hang_frames = int(round(HANGOVER_S * frames_per_s))
        self.provisional_frames = int(round(PROVISIONAL_S * frames_per_s))
        self.tentative_frames = int(round(TENTATIVE_S * frames_per_s))
        self.release_db = -CLOSED_DB / max(RELEASE_S * frames_per_s, 1.0)
        self.floor_up = FLOOR_UP_DB_S / frames_per_s
        self.floor_down = FLOOR_DOWN_DB_S / frames_per_s
        self._sos = signal.butter(2, HIGHPASS_HZ, "highpass", fs=rate, output="sos")
        self.reset()

    def reset(self) -> None:
        """A new stream: floor back to the prior, gate closed."""
        self._state = _State()
        self._history: deque[float] = deque([QUIET_DB] * RISE_FRAMES, maxlen=RISE_FRAMES)
        self.confirmed = np.zeros(0, bool)

    @property
    def is_closed(self) -> bool:
        return self._state.gain_db <= CLOSED_DB and self._state.hang == 0

    # measurements

    def levels(self, window: np.ndarray, centres: np.ndarray) -> np.ndarray:
        """Level in dBFS above 100 Hz of the two frames around each centre (clipped at the window's ends).

        The filter starts from rest at the window's start; centres lie at least a frame past the
        converter's analysis context (>= 340 samples), by which time it has settled."""
        x = signal.sosfilt(self._sos, np.asarray(window, dtype=np.float64))
        cum = np.concatenate([[0.0], np.cumsum(x * x)])
        lo = np.clip(centres - self.frame, 0, len(x))
        hi = np.clip(centres + self.frame, 0, len(x))
        mean_square = (cum[hi] - cum[lo]) / np.maximum(hi - lo, 1)
        return np.maximum(10.0 * np.log10(mean_square + 1e-30), QUIET_DB)

    def high_share(self, power_envelope: np.ndarray) -> np.ndarray:
        """Share of each frame's envelope power above SIBILANT_HZ (rows: frames, columns: FFT bins)."""
        bins = power_envelope.shape[1]
        cut = int(SIBILANT_HZ / (self.rate / 2) * (bins - 1))
        return power_envelope[:, cut:].sum(axis=1) / np.maximum(power_envelope.sum(axis=1), 1e-30)

    # decisions

    def idle(self, level_now: np.ndarray, level_ahead: np.ndarray) -> bool:
        """True when the gate is closed and nothing now or in the lookahead could open it: the converter
        may skip analysis and synthesis (it still calls `gains`, with nothing voiced, to keep the state)."""
        threshold = max(self._state.floor_db + OPEN_DB, ABSOLUTE_DB)
        return self.is_closed and not (level_now > threshold).any() and not (level_ahead > threshold).any()

    def gains(self, level_now: np.ndarray, voiced: np.ndarray, high_share: np.ndarray,
              level_ahead: np.ndarray, n_final: int) -> np.ndarray:
        """Gain in dB for each of this hop's frames.

        `level_now`, `voiced`, `high_share`: the hop's analysed frames, of which the first `n_final` are
        final and the rest provisional (analysed again next hop: their decision is previewed, not kept).
        `level_ahead`: levels of the frames beyond, inside the lookahead (not analysed yet).
        Afterwards `confirmed` marks the frames judged to be speech."""
        levels = np.concatenate([np.asarray(self._history), level_now, level_ahead])
        before = np.convolve(levels, np.ones(RISE_FRAMES) / RISE_FRAMES, mode="valid")[:-1]
        rise = levels[RISE_FRAMES:] - before  # per frame of now + ahead
        s = self._state
        # Frames ahead are not analysed yet: they are judged against the floor as it stands.
        candidate = levels[RISE_FRAMES:] > max(s.floor_db + OPEN_DB, ABSOLUTE_DB)
        started = candidate & ~np.concatenate([[s.candidate], candidate[:-1]])
        onset = candidate & (rise > np.where(started, RISE_DB, RISE_WITHIN_DB))
        lead = len(level_ahead)
        out = np.empty(len(level_now))
        confirmed = np.zeros(len(level_now), bool)
        kept = s
        for k in range(len(level_now)):
            if k == n_final:
                kept, s = s, replace(s)
            level = level_now[k]
            s.candidate = level > max(s.floor_db + OPEN_DB, ABSOLUTE_DB)
            s.voiced_run = s.voiced_run + 1 if voiced[k] else 0
            sibilant = level > s.floor_db + SIBILANT_DB and high_share[k] > SIBILANT_SHARE
            s.sibilant_run = s.sibilant_run + 1 if sibilant else 0
            s.since_onset = 0 if onset[k] else s.since_onset + 1
            speech = s.candidate and (s.voiced_run >= VOICED_RUN or s.sibilant_run >= SIBILANT_RUN)
            confirmed[k] = speech
            if speech:
                s.hang = self.hang_frames
            is_open = (speech or s.hang > 0 or bool(onset[k + 1:k + 1 + lead].any())
                       or (s.candidate and s.since_onset < self.provisional_frames))
            tentative = s.candidate and s.since_onset < self.tentative_frames
            if not speech:
                if s.hang > 0:
                    s.hang -= 1
                else:  # the floor learns only from what is not speech
                    step = self.floor_up if level > s.floor_db else -self.floor_down
                    s.floor_db = min(max(s.floor_db + step, FLOOR_MIN_DB), FLOOR_MAX_DB)
            target = 0.0 if is_open else TENTATIVE_DB if tentative else CLOSED_DB
            s.gain_db = target if target >= s.gain_db else max(target, s.gain_db - self.release_db)
            out[k] = s.gain_db
        self._state = kept if n_final < len(level_now) else s
        self._history.extend(level_now[:n_final])
        self.confirmed = confirmed
        return out
