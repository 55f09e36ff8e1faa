"""Speech of real people for judging the voice converter, and the two yardsticks it is judged by.

Voices: Debian's festival voices built from recordings of real speakers (kal and ked are diphone
recordings of two American men, us-slt-hts is a statistical model of an American woman). espeak is
formant synthesis, not a person, and pocketsphinx hears it badly, so it is no yardstick here.

Sentences: four disjoint sets of Harvard sentences (IEEE 1969, public domain). A persona is learned from
ENROL (8 sentences, 20-30 s); the operator reads DEV (for tuning) or TEST (what figures are reported on,
never tuned on); the persona's likeness is judged against the persona reading REFERENCE.

Yardsticks (they ship their own models; the converter must not use them):
- word error rate: pocketsphinx's bundled US English model, each sentence decoded on its own, errors
  summed over the sentences and divided by the words read;
- likeness: resemblyzer's speaker embedding cosine. "Gap closed" is the share of the distance from the
  operator's own voice to the persona that the conversion covers:
  (cos(converted, persona) - cos(operator, persona)) / (1 - cos(operator, persona)).
"""

from __future__ import annotations

import re
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from engine.audio_io import read_audio

RATE = 16000
GAP_S = 0.4  # silence between sentences when they are joined into one stretch of speech

# festival voice command per speaker, and whom it is a recording of.
VOICES = {
    "kal": "voice_kal_diphone",  # American man (diphone recording)
    "ked": "voice_ked_diphone",  # American man (diphone recording)
    "slt": "voice_cmu_us_slt_arctic_hts",  # American woman (HTS model of her recordings)
}
APT_PACKAGES = "festival festvox-kallpc16k festvox-kdlpc16k festvox-us-slt-hts"

ENROL = (
    "The birch canoe slid on the smooth planks.",
    "Glue the sheet to the dark blue background.",
    "It is easy to tell the depth of a well.",
    "These days a chicken leg is a rare dish.",
    "Rice is often served in round bowls.",
    "The juice of lemons makes fine punch.",
    "The box was thrown beside the parked truck.",
    "The hogs were fed chopped corn and garbage.",
)
DEV = (
    "The boy was there when the sun rose.",
    "A rod is used to catch pink salmon.",
    "The source of the huge river is the clear spring.",
    "Kick the ball straight and follow through.",
    "Help the woman get back to her feet.",
)
TEST = (
    "A pot of tea helps to pass the evening.",
    "Smoky fires lack flame and heat.",
    "The soft cushion broke the man's fall.",
    "The salt breeze came across from the sea.",
    "The girl at the booth sold fifty bonds.",
    # Five more (Harvard list 3): 41 words a pair left one pair's WER good to only about +-0.07.
    "Two blue fish swam in the tank.",
    "Her purse was full of useless trash.",
    "The colt reared and threw the tall rider.",
    "It snowed, rained, and hailed the same morning.",
    "Read verse out loud for pleasure.",
)
REFERENCE = (
    "The small pup gnawed a hole in the sock.",
    "The fish twisted and turned on the bent hook.",
    "Press the pants and sew a button on the vest.",
    "The swan dive was far short of perfect.",
    "The beauty of the view stunned the young boy.",
)


def have_festival() -> bool:
    """Whether festival's text2wave is installed (the voices are checked when first used)."""
    return shutil.which("text2wave") is not None


def say(text: str, speaker: str, folder: Path) -> np.ndarray:
    """`text` read by festival speaker `speaker`, mono float32 at 16 kHz, cached as a wav in `folder`."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    slug = re.sub(r"[^a-z]+", "_", text.lower()).strip("_")[:48]
    path = folder / f"{speaker}_{slug}.wav"
    if not path.exists():
        done = subprocess.run(["text2wave", "-eval", f"({VOICES[speaker]})", "-o", str(path)], input=text,
                              text=True, capture_output=True, timeout=120)
        if done.returncode != 0 or not path.exists() or path.stat().st_size < 1000:
            path.unlink(missing_ok=True)
            raise RuntimeError(f"festival could not speak with {speaker}: apt-get install {APT_PACKAGES}")
    samples, _ = read_audio(path, RATE)
    return samples


@dataclass
class Reading:
    """Sentences read one after another, joined by short pauses; `spans` are each sentence's samples."""

    samples: np.ndarray
    spans: list[tuple[int, int]]
    texts: tuple[str, ...]

    def pieces(self, samples: np.ndarray | None = None) -> list[np.ndarray]:
        """Each sentence's stretch of `samples` (default: the reading itself), a little pause either side."""
        x = self.samples if samples is None else samples
        pad = int(GAP_S * RATE / 2)
        return [x[max(0, a - pad):b + pad] for a, b in self.spans]


def read(texts: tuple[str, ...], speaker: str, folder: Path) -> Reading:
    """Festival speaker `speaker` reading `texts` in order, with GAP_S of silence between sentences."""
    gap = np.zeros(int(GAP_S * RATE), np.float32)
    parts, spans, pos = [gap], [], len(gap)
    for text in texts:
        s = say(text, speaker, folder)
        parts += [s, gap]
        spans.append((pos, pos + len(s)))
        pos += len(s) + len(gap)
    return Reading(np.concatenate(parts), spans, texts)


# yardsticks


def words(text: str) -> list[str]:
    """Lower-case words, punctuation dropped (apostrophes kept, as the recogniser's dictionary has them)."""
    return re.findall(r"[a-z']+", text.lower())


def edit_distance(ref: list[str], hyp: list[str]) -> int:
    """Word-level Levenshtein distance: substitutions + deletions + insertions."""
    row = list(range(len(hyp) + 1))
    for i, r in enumerate(ref, 1):
        prev, row[0] = row[0], i
        for j, h in enumerate(hyp, 1):
            prev, row[j] = row[j], min(row[j] + 1, row[j - 1] + 1, prev + (r != h))
    return row[-1]


def _decoder():
    from pocketsphinx import Decoder

    return Decoder(samprate=RATE, loglevel="FATAL")


def recognise(samples: np.ndarray, decoder) -> str:
    """What pocketsphinx's bundled English model (`decoder`, carried over the sentences of one pass, as
    in `sentence_errors`) hears in 16 kHz mono float samples."""
    pcm = (np.clip(np.asarray(samples, np.float64), -1.0, 1.0) * 32767).astype("<i2").tobytes()
    decoder.start_utt()
    decoder.process_raw(pcm, full_utt=True)
    decoder.end_utt()
    hyp = decoder.hyp()
    return hyp.hypstr if hyp is not None else ""


def sentence_errors(reading: Reading, samples: np.ndarray | None = None) -> np.ndarray:
    """Word errors in each sentence of `reading`, decoded from `samples` (time-aligned with it).

    Each pass has a decoder of its own: pocketsphinx carries its live cepstral mean from one utterance to
    the next, so one shared decoder would hear a pass through the history of the passes before it, and a
    figure would depend on what was decoded first."""
    decoder = _decoder()
    return np.array([edit_distance(words(text), words(recognise(piece, decoder)))
                     for text, piece in zip(reading.texts, reading.pieces(samples))])


def word_error_rate(reading: Reading, samples: np.ndarray | None = None) -> float:
    """Errors over words read, each sentence of `reading` decoded from `samples` (time-aligned with it)."""
    return float(sentence_errors(reading, samples).sum()) / sum(len(words(text)) for text in reading.texts)


class Likeness:
    """resemblyzer embeddings and the share of the speaker gap a conversion closes."""

    def __init__(self) -> None:
        from resemblyzer import VoiceEncoder

        self.encoder = VoiceEncoder("cpu", verbose=False)

    def embed(self, samples: np.ndarray) -> np.ndarray:
        from resemblyzer import preprocess_wav

        return self.encoder.embed_utterance(preprocess_wav(np.asarray(samples, np.float32), source_sr=RATE))

    @staticmethod
    def cosine(a: np.ndarray, b: np.ndarray) -> float:
        return float(np.dot(a, b) / (np.linalg.norm(a) * np.linalg.norm(b)))

    @staticmethod
    def gap_closed(before: float, after: float) -> float:
        """Share of the way from the operator's similarity to the persona (`before`) up to 1 covered."""
        return (after - before) / (1.0 - before)
