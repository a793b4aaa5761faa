"""Generation metrics: ROUGE-1/2/L and BLEU-4 as ChatGLM3's finetune_hf.py computes them (rouge_chinese, nltk's
sentence_bleu with SmoothingFunction().method3, jieba), checked against hand-computed values."""

from __future__ import annotations

import math

import pytest

from tests.needs import need_module

from orchestrator.train import metrics

CAT = ["the", "cat", "sat", "on", "the", "mat"]
CAT_REF = ["the", "cat", "is", "on", "the", "mat"]


def test_rouge_counts_distinct_ngrams_and_the_longest_common_subsequence():
    scores = metrics.rouge(CAT, CAT_REF)
    # distinct unigrams 5 vs 5, 4 shared; distinct bigrams 5 vs 5, 3 shared; LCS "the cat on the mat" = 5 of 6
    assert scores["rouge-1"] == pytest.approx(0.8, abs=1e-7)
    assert scores["rouge-2"] == pytest.approx(0.6, abs=1e-7)
    assert scores["rouge-l"] == pytest.approx(5 / 6, abs=1e-7)
    assert metrics.rouge(["a", "a", "b"], ["a", "b"])["rouge-1"] == pytest.approx(1.0, abs=1e-7)  # sets


def test_bleu4_clips_counts_and_smooths_missing_ngrams_geometrically():
    # p1 = 5/6 (clipped), p2 = 3/5, p3 = 1/4, p4 = 0/3 -> 1/(2*3); equal lengths: no brevity penalty
    assert metrics.bleu4(CAT, CAT_REF) == pytest.approx((5 / 6 * 3 / 5 * 1 / 4 * 1 / 6) ** 0.25, rel=1e-12)
    # too short for 3- and 4-grams: 1/(2*1) and 1/(4*1); brevity penalty exp(1 - 4/2)
    assert metrics.bleu4(["a", "b"], ["a", "b", "c", "d"]) == pytest.approx(math.exp(-1) * (1 / 8) ** 0.25,
                                                                             rel=1e-12)
    assert metrics.bleu4(["x", "y"], ["a", "b"]) == 0.0  # no unigram match


def test_score_scales_like_the_guide_and_empty_text_scores_zero():
    perfect = metrics.score("hello world again and again", "hello world again and again")
    assert perfect["rouge-1"] == pytest.approx(100.0, abs=1e-4) and perfect["bleu-4"] == pytest.approx(1.0)
    assert metrics.score("", "hello") == {"rouge-1": 0.0, "rouge-2": 0.0, "rouge-l": 0.0, "bleu-4": 0.0}
    assert metrics.score("   ", "") == {"rouge-1": 0.0, "rouge-2": 0.0, "rouge-l": 0.0, "bleu-4": 0.0}
    assert metrics.average([{"rouge-1": 10, "rouge-2": 0, "rouge-l": 5, "bleu-4": 0.5},
                            {"rouge-1": 30, "rouge-2": 2, "rouge-l": 15, "bleu-4": 0.1}]) == pytest.approx(
        {"rouge-1": 20, "rouge-2": 1, "rouge-l": 10, "bleu-4": 0.3})


def test_fallback_segmentation_splits_cjk_per_character_and_other_text_per_word():
    assert metrics.fallback_segment("我爱北京 hello  world，ok!") == ["我", "爱", "北", "京", "hello", "world", "，",
                                                                    "ok!"]


def test_chinese_sample_matches_rouge_chinese_and_nltk():
    """Numbers from rouge_chinese 1.0.3 + nltk 3.10.4 on jieba 0.42.1 segmentation (the guide's compute_metrics)."""
    need_module("jieba")
    got = metrics.score("这款连衣裙采用纯棉面料，舒适透气。", "这款连衣裙采用优质纯棉面料，穿着舒适透气，适合夏天。")
    assert got == pytest.approx({"rouge-1": 83.3333, "rouge-2": 52.1739, "rouge-l": 80.0,
                                 "bleu-4": 0.2636715372516468}, abs=1e-9)
    assert "jieba" in metrics.segmenter()
