"""word_counts.txt <-> ids, as the reference (inference_utils/vocabulary.py, build_mscoco_data.py)."""

from __future__ import annotations

import collections
import os
from collections.abc import Iterable, Sequence

START_WORD = "<S>"
END_WORD = "</S>"
UNK_WORD = "<UNK>"


class VocabularyError(ValueError):
    pass


class Vocabulary:
    """id = line number in word_counts.txt; unknown words map to the id after the last line."""

    def __init__(self, words: Sequence[str]) -> None:
        words = list(words)
        if START_WORD not in words or END_WORD not in words:
            raise VocabularyError(f"vocabulary must contain {START_WORD!r} and {END_WORD!r}")
        if UNK_WORD not in words:
            words.append(UNK_WORD)
        self.words = words
        self._ids = {w: i for i, w in enumerate(words)}
        self.start_id = self._ids[START_WORD]
        self.end_id = self._ids[END_WORD]
        self.unk_id = self._ids[UNK_WORD]

    @classmethod
    def load(cls, path: str) -> Vocabulary:
        if not os.path.isfile(path):
            raise VocabularyError(f"vocabulary file not found: {path} (expected word_counts.txt: 'word count' lines)")
        words = []
        with open(path, encoding="utf-8") as f:
            for n, line in enumerate(f, 1):
                parts = line.split()
                if not parts:
                    continue
                if len(parts) != 2 or not parts[1].isdigit():
                    raise VocabularyError(f"{path}:{n}: expected 'word count', got {line.strip()!r}")
                words.append(_unbyte(parts[0]))
        return cls(words)

    def __len__(self) -> int:
        return len(self.words)

    def word_to_id(self, word: str) -> int:
        return self._ids.get(word, self.unk_id)

    def id_to_word(self, word_id: int) -> str:
        return self.words[word_id] if 0 <= word_id < len(self.words) else UNK_WORD

    def caption_ids(self, tokens: Iterable[str]) -> list[int]:
        return [self.word_to_id(t) for t in tokens]

    def sentence(self, ids: Iterable[int]) -> str:
        """Words without <S> and </S>, joined by spaces."""
        return " ".join(self.id_to_word(i) for i in ids if i not in (self.start_id, self.end_id))


def _unbyte(word: str) -> str:
    # Files written by the reference under Python 3 hold b'word' (str(bytes)).
    if len(word) >= 3 and word[0] == "b" and word[1] in "'\"" and word[-1] == word[1]:
        return word[2:-1]
    return word


def tokenize(caption: str) -> list[str]:
    """<S> + lowercased word tokens + </S> (the reference uses nltk.word_tokenize on the lowercased caption)."""
    from nltk.tokenize import word_tokenize

    return [START_WORD, *word_tokenize(caption.lower(), preserve_line=True), END_WORD]


def count_words(captions: Iterable[Sequence[str]], min_word_count: int = 4) -> list[tuple[str, int]]:
    """Most frequent first (ties by first appearance, like Counter.most_common), rarer words dropped."""
    counts = collections.Counter(w for c in captions for w in c)
    return [(w, c) for w, c in counts.most_common() if c >= min_word_count]


def write_word_counts(path: str, word_counts: Sequence[tuple[str, int]]) -> None:
    tmp = path + ".tmp"
    with open(tmp, "w", encoding="utf-8") as f:
        f.write("\n".join(f"{w} {c}" for w, c in word_counts) + "\n")
    os.replace(tmp, path)
