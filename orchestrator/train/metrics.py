"""Generation metrics as ChatGLM3's finetune_hf.py computes them, in pure Python (no nltk, no rouge_chinese).

Per sample, on segmented text (jieba when importable, as the guide does; else CJK per character and other text
per whitespace word):
- ROUGE-1/2/L F1 as `rouge_chinese.Rouge().get_scores(" ".join(pred), " ".join(ref))` computes them: the joined
  text is cut into sentences at Chinese/`?` sentence ends and flattened back into words; ROUGE-N counts *distinct*
  n-grams (sets), ROUGE-L is the longest common subsequence over all words; F1 = 2PR / (P + R + 1e-8).
  Reported x100 and rounded to 4 places, like the guide.
- BLEU-4 as `nltk.sentence_bleu([ref], pred, smoothing_function=SmoothingFunction().method3)`: clipped n-gram
  precisions for n = 1..4 (denominator at least 1), NIST geometric smoothing of zero counts (1 / (2^k * denominator)
  for the k-th zero), brevity penalty exp(1 - r/c), 0 when no unigram matches. Reported as the guide does: a
  fraction in [0, 1], not x100.
An empty prediction or reference scores 0 everywhere (rouge_chinese would raise). `average` is the plain mean.
"""

from __future__ import annotations

import math
import re
from collections import Counter
from functools import lru_cache

METRICS = ("rouge-1", "rouge-2", "rouge-l", "bleu-4")
_CJK = ("\u2e80-\u2fff\u3001-\u303f\u3040-\u9fff\uac00-\ud7af\uf900-\ufaff\ufe30-\ufe4f\uff00-\uffef"
        "\U00020000-\U0002fa1f")
_FALLBACK_TOKEN = re.compile(f"[{_CJK}]|[^\\s{_CJK}]+")


@lru_cache(maxsize=1)
def _jieba():
    """The jieba module (its start-up chatter silenced), or None when it is not installed."""
    try:
        import jieba
    except ImportError:
        return None
    jieba.setLogLevel(30)
    return jieba


def segmenter() -> str:
    """One line saying how text is segmented for the metrics."""
    jieba = _jieba()
    if jieba is not None:
        return f"metrics segment text with jieba {getattr(jieba, '__version__', '?')} (as ChatGLM3's finetune_hf.py)"
    return ("metrics segment text per CJK character and per whitespace-separated word (jieba is not installed: "
            "scores are not comparable with jieba-segmented ones)")


def segment(text: str) -> list[str]:
    """Words of `text`: `list(jieba.cut(text))` when jieba is installed, else the fallback segmentation."""
    jieba = _jieba()
    return list(jieba.cut(text)) if jieba is not None else fallback_segment(text)


def fallback_segment(text: str) -> list[str]:
    """Each CJK character (ideographs, kana, hangul, CJK punctuation) alone; other text split on whitespace."""
    return _FALLBACK_TOKEN.findall(text)


def _sentences(text: str) -> list[str]:
    """rouge_chinese's `cut_sent`, then each sentence's whitespace collapsed (empty pieces dropped first)."""
    text = re.sub("([。！？\\?])([^”’])", r"\1\n\2", text)
    text = re.sub("(\\.{6})([^”’])", r"\1\n\2", text)
    text = re.sub("(\\…{2})([^”’])", r"\1\n\2", text)
    text = re.sub("([。！？\\?][”’])([^，。！？\\?])", r"\1\n\2", text)
    return [" ".join(piece.split()) for piece in text.rstrip().split("\n") if piece]


def _words(tokens: list[str]) -> list[str]:
    """The word sequence rouge_chinese scores for `" ".join(tokens)`."""
    return [w for sentence in _sentences(" ".join(tokens)) for w in sentence.split(" ")]


def _f1(overlap: int, hyp: int, ref: int) -> float:
    """F1 with rouge_chinese's edge cases (0 precision/recall for empty sides, 1e-8 in the denominator)."""
    p = overlap / hyp if hyp else 0.0
    r = overlap / ref if ref else 0.0
    return 2.0 * ((p * r) / (p + r + 1e-8))


def _ngram_set(words: list[str], n: int) -> set[tuple[str, ...]]:
    return {tuple(words[i:i + n]) for i in range(len(words) - n + 1)}


def _lcs(x: list[str], y: list[str]) -> int:
    """Length of the longest common subsequence (two-row dynamic programme)."""
    prev = [0] * (len(y) + 1)
    for a in x:
        cur = [0]
        for j, b in enumerate(y, 1):
            cur.append(prev[j - 1] + 1 if a == b else max(prev[j], cur[j - 1]))
        prev = cur
    return prev[-1]


def rouge(pred: list[str], ref: list[str]) -> dict[str, float]:
    """ROUGE-1/2/L F1 in [0, 1] of segmented `pred` against segmented `ref`."""
    hyp_words, ref_words = _words(pred), _words(ref)
    if not _sentences(" ".join(pred)) or not _sentences(" ".join(ref)):
        return {"rouge-1": 0.0, "rouge-2": 0.0, "rouge-l": 0.0}
    scores = {}
    for n in (1, 2):
        hyp_ngrams, ref_ngrams = _ngram_set(hyp_words, n), _ngram_set(ref_words, n)
        scores[f"rouge-{n}"] = _f1(len(hyp_ngrams & ref_ngrams), len(hyp_ngrams), len(ref_ngrams))
    scores["rouge-l"] = _f1(_lcs(ref_words, hyp_words), len(hyp_words), len(ref_words))
    return scores


def bleu4(pred: list[str], ref: list[str]) -> float:
    """Sentence BLEU-4 of `pred` against one reference `ref`, NIST geometric smoothing (nltk's method3)."""
    precisions: list[tuple[int, int]] = []
    for n in range(1, 5):
        hyp_counts = Counter(tuple(pred[i:i + n]) for i in range(len(pred) - n + 1))
        ref_counts = Counter(tuple(ref[i:i + n]) for i in range(len(ref) - n + 1))
        matched = sum(min(count, ref_counts[gram]) for gram, count in hyp_counts.items())
        precisions.append((matched, max(1, sum(hyp_counts.values()))))
    if precisions[0][0] == 0:
        return 0.0
    log_sum, k = [], 1
    for matched, total in precisions:
        if matched == 0:
            log_sum.append(math.log(1 / (2 ** k * total)))
            k += 1
        else:
            log_sum.append(math.log(matched / total))
    c, r = len(pred), len(ref)
    brevity = 1.0 if c > r else math.exp(1 - r / c)
    return brevity * math.exp(math.fsum(0.25 * s for s in log_sum))


def score(prediction: str, reference: str) -> dict[str, float]:
    """The four metrics of one sample, scaled like the guide (ROUGE x100 rounded to 4 places, BLEU-4 in [0, 1])."""
    pred, ref = segment(prediction.strip()), segment(reference.strip())
    values = {name: round(value * 100, 4) for name, value in rouge(pred, ref).items()}
    values["bleu-4"] = bleu4(pred, ref) if pred and ref else 0.0
    return values


def average(scores: list[dict[str, float]]) -> dict[str, float]:
    """The mean of each metric over samples (0 for none)."""
    return {name: (math.fsum(s[name] for s in scores) / len(scores) if scores else 0.0) for name in METRICS}
