"""The offline lexicon normaliser: slang table, leet decoding, casing and punctuation.

It is the default `translate` backend (deterministic, no network) and the baseline the trained
model must beat in `evaluate`. The same slang table drives the `corrupt` stage in reverse.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from functools import cache, lru_cache
from pathlib import Path

from unleet import io
from unleet.errors import UnleetError

LEXICON_PATH = Path(__file__).parent / "resources" / "lexicon.tsv"

# Multi-character leet glyphs first, so `|\|` is read as one letter before `|` is considered.
LEET_SEQUENCES = [
    ("|\\/|", "m"),
    ("/\\/\\", "m"),
    ("|v|", "m"),
    ("|\\|", "n"),
    ("|-|", "h"),
    ("\\/\\/", "w"),
    ("\\/", "v"),
    ("()", "o"),
    ("|<", "k"),
]
LEET_CHARS = {
    "4": "a",
    "@": "a",
    "3": "e",
    "1": "i",
    "!": "i",
    "0": "o",
    "5": "s",
    "$": "s",
    "7": "t",
    "9": "g",
    "6": "g",
    "8": "b",
    "+": "t",
    "|": "l",
}

# A number, with the units and ordinals people write after one: `1440p`, `10gb`, `144hz`, `3x`.
NUMBER_SUFFIXES = "%|k|m|x|p|st|nd|rd|th|s|gb|mb|tb|kb|hz|ghz|fps|ms|hp|km|kg|mm|cm|lbs?|mph"
NUMBER = re.compile(rf"^[$€£]?\d+([.,:/xv-]\d+)*({NUMBER_SUFFIXES})?$")
# Three letters or more, then two digits or more, name a version or a model (`win10`, `gtx1080`), not leet.
MODEL_NAME = re.compile(r"^[a-z]{3,}\d{2,}$")
# Three digits in a row are a number inside a name (`g502`, `7950xt`, `1800collect`), not leet: a
# leet word has at most two (`l33t`, `gr34t`); decoding them wrote `gso2`, `tgsoxt`, `iboocollect`.
DIGIT_RUN = re.compile(r"\d{3,}")
# Reddit users and subreddits, and web addresses: names, whatever digits they hold.
REFERENCE = re.compile(r"^(/?[ur]/[\w-]+|https?://\S+|www\.\S+)$", re.IGNORECASE)
WORD_EDGE = re.compile(r"^([\"'(\[]*)(.*?)([.,!?;:\"')\]]*)$")
LETTERS = re.compile(r"[a-z]", re.IGNORECASE)
REPEATS = re.compile(r"([a-z])\1{2,}", re.IGNORECASE)
PUNCT_RUN = re.compile(r"([!?.])[!?.]+")
SENTENCE_START = re.compile(r"(^|[.!?]\s+)([a-z])")

# Words after a bare "2" or "4" that show it stands for "to"/"too"/"for", not a count.
TO_FOLLOWERS = {
    "go",
    "be",
    "do",
    "see",
    "get",
    "play",
    "make",
    "say",
    "me",
    "you",
    "u",
    "the",
    "him",
    "her",
    "us",
    "them",
    "my",
    "your",
    "ur",
    "bed",
    "school",
    "work",
    "sleep",
    "eat",
    "win",
    "buy",
    "try",
    "know",
    "think",
    "watch",
    "help",
    "talk",
    "come",
}
TOO_FOLLOWERS = {
    "much",
    "many",
    "late",
    "bad",
    "good",
    "hard",
    "long",
    "fast",
    "easy",
    "early",
    "big",
    "small",
    "funny",
    "cute",
    "op",
    "slow",
    "expensive",
    "high",
    "low",
}
FOR_FOLLOWERS = {
    "u",
    "you",
    "me",
    "him",
    "her",
    "us",
    "them",
    "the",
    "a",
    "real",
    "sure",
    "ever",
    "now",
    "free",
    "life",
    "what",
    "this",
    "that",
    "my",
    "your",
    "ur",
}
# A bare "1" before one of these is the pronoun "I".
I_FOLLOWERS = {
    "am",
    "was",
    "will",
    "can",
    "cant",
    "can't",
    "have",
    "had",
    "think",
    "know",
    "dont",
    "don't",
    "do",
    "did",
    "need",
    "want",
    "just",
    "love",
    "hate",
    "got",
    "like",
    "really",
    "never",
    "always",
    "mean",
    "guess",
    "swear",
    "wish",
    "hope",
    "feel",
    "would",
    "could",
}
# Short words a 1-3 character leet token may decode to; anything else ("m4", "4B") stays as written.
SHORT_WORDS = {
    "a",
    "an",
    "at",
    "be",
    "by",
    "do",
    "go",
    "he",
    "hi",
    "if",
    "in",
    "is",
    "it",
    "me",
    "my",
    "no",
    "of",
    "oh",
    "on",
    "or",
    "so",
    "to",
    "up",
    "us",
    "we",
    "the",
    "and",
    "are",
    "was",
    "you",
    "not",
    "but",
    "can",
    "all",
    "any",
    "get",
    "got",
    "had",
    "has",
    "her",
    "him",
    "his",
    "how",
    "its",
    "let",
    "lot",
    "new",
    "now",
    "old",
    "one",
    "our",
    "out",
    "own",
    "say",
    "see",
    "she",
    "too",
    "two",
    "way",
    "who",
    "why",
    "yes",
    "yet",
    "win",
    "sit",
    "set",
    "bet",
    "bad",
    "big",
    "eat",
    "ate",
    "leet",
    "hey",
    "lol",
    "omg",
    "wtf",
}
PLURAL_EXCEPTIONS = {"is", "was", "has", "this", "us", "yes", "his", "its", "as", "does", "less"}


@cache
def load_table(path: Path = LEXICON_PATH) -> dict[str, str]:
    """Read the `slang<TAB>formal` table; a malformed or duplicate line names its line number."""
    table: dict[str, str] = {}
    if not path.is_file():
        raise UnleetError(f"{path}: lexicon not found")
    for number, line in io.numbered_lines(path.read_bytes().splitlines(), path):
        if number == 1 or not line.strip() or line.startswith("#"):
            continue
        fields = line.split("\t")
        if len(fields) != 2 or not all(field.strip() for field in fields):
            raise UnleetError(f"{path}:{number}: expected `slang<TAB>formal`, got {line!r}")
        slang, formal = fields[0].strip().lower(), fields[1].strip()
        if slang in table:
            raise UnleetError(f"{path}:{number}: duplicate slang key {slang!r}")
        table[slang] = formal
    return table


def abbreviation_expander(abbreviations: dict[str, str]) -> Callable[[str], str]:
    """Write out each whole-word abbreviation, capitalised where it opened a sentence.

    LLM translations keep the casual tone and with it `lol`, `gonna`, `omg`, which the lexicon,
    the challenge set and most synthetic targets write out: one convention for every target.
    """
    if not abbreviations:
        return lambda text: text
    alternatives = "|".join(re.escape(key) for key in sorted(abbreviations, key=len, reverse=True))
    pattern = re.compile(rf"(?<![\w'/@#-])({alternatives})(?![\w'/+-]|\.\w)", re.IGNORECASE)

    def expand(match: re.Match[str]) -> str:
        formal = abbreviations[match.group(1).lower()]
        opens_sentence = re.search(r"(^|[.!?\n\"(]\s*)$", match.string[: match.start()]) is not None
        return formal[0].upper() + formal[1:] if opens_sentence else formal

    return lambda text: pattern.sub(expand, text)


class Normaliser:
    """Rewrite informal text into formal English with table lookups and hand-written rules."""

    def __init__(self, table: dict[str, str] | None = None) -> None:
        self.table = load_table() if table is None else table
        self.longest_phrase = max((len(key.split()) for key in self.table), default=1)
        self.phrase_starts = {key.split()[0] for key in self.table if " " in key}
        self._plain_word = lru_cache(maxsize=1 << 18)(self._word_alone)  # words repeat: read each once
        self.vocabulary = {
            word.lower() for formal in self.table.values() for word in re.findall(r"[a-z']+", formal, re.I)
        }

    def __call__(self, text: str) -> str:
        chunks = [WORD_EDGE.match(chunk).groups() for chunk in text.split()]  # type: ignore[union-attr]
        words: list[str] = []
        index = 0
        while index < len(chunks):
            consumed, replacement = self._phrase_at(chunks, index)
            if consumed:
                lead, trail = chunks[index][0], chunks[index + consumed - 1][2]
                words.append(lead + replacement + trail)
                index += consumed
                continue
            lead, core, trail = chunks[index]
            following = chunks[index + 1][1].lower() if index + 1 < len(chunks) else ""
            previous = chunks[index - 1][1].lower() if index else ""
            words.append(lead + self._word(core, previous, following, trail) + trail)
            index += 1
        return _tidy(" ".join(word for word in words if word))

    def _phrase_at(self, chunks: list[tuple[str, str, str]], start: int) -> tuple[int, str]:
        """Longest slang phrase starting here; inner punctuation ends a phrase."""
        if chunks[start][1].lower() not in self.phrase_starts:
            return 0, ""
        for size in range(min(self.longest_phrase, len(chunks) - start), 1, -1):
            window = chunks[start : start + size]
            if any(trail for _, _, trail in window[:-1]) or any(lead for lead, _, _ in window[1:]):
                continue
            key = " ".join(core.lower() for _, core, _ in window)
            if key in self.table:
                return size, self.table[key]
        return 0, ""

    def _word(self, core: str, previous: str, following: str, trail: str) -> str:
        lower = core.lower()
        if lower not in self.table:
            if lower in {"2", "4"}:
                return _ambiguous_digit(lower, previous, following, trail)
            if lower == "1" and _decode_leet(following) in I_FOLLOWERS:
                return "I"
        return self._plain_word(core)

    def _word_alone(self, core: str) -> str:
        """A word's reading where its neighbours do not matter (all but a bare 1, 2 or 4)."""
        lower = core.lower()
        if lower in self.table:
            return self.table[lower]
        if (
            NUMBER.match(lower)
            or MODEL_NAME.match(lower)
            or DIGIT_RUN.search(core)
            or REFERENCE.match(core)
            or not core
        ):
            return core
        if any(symbol in core for symbol in LEET_CHARS) or any(s in core for s, _ in LEET_SEQUENCES):
            decoded = _decode_leet(lower)
            if decoded in self.table:
                return self.table[decoded]
            if LETTERS.search(decoded) and (len(core) > 3 or decoded in SHORT_WORDS | self.vocabulary):
                return decoded
        if REPEATS.search(core):
            return self._collapse_repeats(lower)
        if core.lower() == "i" or lower.startswith("i'"):
            return "I" + core[1:]
        if not core.islower() and not core.isupper() and not core.istitle():
            return lower
        return core

    def _collapse_repeats(self, word: str) -> str:
        """`sooo` → `so`, `goooood` → `good`: prefer a form the table knows, else the likelier length."""
        single, double = REPEATS.sub(r"\1", word), REPEATS.sub(r"\1\1", word)
        for candidate in (double, single):
            if candidate in self.table:
                return self.table[candidate]
            if candidate in self.vocabulary:
                return candidate
        return single if len(single) <= 3 else double


def _ambiguous_digit(digit: str, previous: str, following: str, trail: str) -> str:
    """A bare 2 or 4: a count before a plural noun, otherwise to/too/for by context."""
    if not NUMBER.match(following):
        following = _decode_leet(following)
    is_plural = following.endswith("s") and len(following) > 2 and following not in PLURAL_EXCEPTIONS
    if NUMBER.match(following) or NUMBER.match(previous) or is_plural:
        return digit
    if digit == "2":
        if following in TOO_FOLLOWERS or (not following or trail):
            return "too"
        return "to" if following in TO_FOLLOWERS or following.isalpha() else digit
    return "for" if following in FOR_FOLLOWERS or following.isalpha() else digit


def _decode_leet(word: str) -> str:
    for sequence, letter in LEET_SEQUENCES:
        word = word.replace(sequence, letter)
    return "".join(LEET_CHARS.get(char, char) for char in word)


def _tidy(text: str) -> str:
    """Collapse punctuation runs, capitalise sentences, end with a full stop."""
    text = PUNCT_RUN.sub(r"\1", text)
    text = re.sub(r"\s+([.,!?;:])", r"\1", text)
    text = SENTENCE_START.sub(lambda match: match.group(1) + match.group(2).upper(), text)
    if text and text[-1].isalnum():
        text += "."
    return text
