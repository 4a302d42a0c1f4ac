"""Tokenisation of citizen reports in Chinese and English, shared by duplicate detection,
dispatch and search.

Chinese runs are segmented with jieba (a maintained segmenter from PyPI, the ``govern``
extra) in search mode, so a compound such as 人行道 also yields 人行 and 行道; character
bigrams of every Chinese run are added, so a paraphrase matches even where the segmenter
splits a compound differently. English words are lower-cased, stop words dropped and a
light suffix stemmer folds plurals and verb forms.

>>> tokens("Big pothole on the road, cars swerving")
['big', 'pothol', 'road', 'car', 'swerv']
>>> "路灯" in tokens("路灯不亮了")
True
"""

from __future__ import annotations

import re
import threading
from functools import lru_cache
from typing import Any

__all__ = ["has_cjk", "normalise", "tokens"]

_CJK = re.compile(r"[\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff]+")
_WORD = re.compile(r"[a-z0-9]+")
_SPLIT = re.compile(r"([\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff]+)")

_EN_STOP = frozenset(
    [
        "a",
        "an",
        "the",
        "and",
        "or",
        "of",
        "on",
        "in",
        "at",
        "to",
        "for",
        "from",
        "by",
        "with",
        "is",
        "are",
        "was",
        "were",
        "be",
        "been",
        "being",
        "it",
        "its",
        "this",
        "that",
        "there",
        "here",
        "has",
        "have",
        "had",
        "do",
        "does",
        "did",
        "not",
        "no",
        "very",
        "so",
        "too",
        "i",
        "we",
        "you",
        "he",
        "she",
        "they",
        "me",
        "my",
        "our",
        "your",
        "their",
        "them",
        "please",
        "near",
        "next",
        "there's",
        "it's",
        "im",
        "i'm",
        "can",
        "could",
        "would",
        "should",
        "will",
        "just",
        "some",
        "any",
        "all",
        "also",
        "again",
        "still",
        "now",
        "one",
    ]
)
_ZH_STOP = frozenset(
    [
        "的",
        "了",
        "在",
        "是",
        "有",
        "和",
        "就",
        "都",
        "也",
        "很",
        "还",
        "又",
        "着",
        "个",
        "把",
        "被",
        "让",
        "这",
        "那",
        "这里",
        "那里",
        "我们",
        "我",
        "你",
        "他",
        "她",
        "它",
        "请",
        "一个",
        "一",
        "吧",
        "啊",
        "呢",
        "吗",
    ]
)

_jieba_lock = threading.Lock()
_jieba: Any = None


def _segmenter() -> Any:
    """jieba, initialised once; ``False`` when it is not installed (the ``govern`` extra):
    Chinese is then tokenised by character bigrams alone, with a warning."""
    global _jieba
    if _jieba is None:
        with _jieba_lock:
            if _jieba is None:
                import logging

                try:
                    import jieba
                except ImportError:
                    import warnings

                    warnings.warn(
                        "jieba is not installed (pip install 'cityos[govern]'): Chinese text "
                        "is tokenised by character bigrams only",
                        RuntimeWarning,
                        stacklevel=3,
                    )
                    _jieba = False
                    return _jieba
                jieba.setLogLevel(logging.WARNING)
                jieba.initialize()
                _jieba = jieba
    return _jieba


def has_cjk(text: str) -> bool:
    """Whether ``text`` holds any Chinese characters.

    >>> has_cjk("路灯"), has_cjk("lamp")
    (True, False)
    """
    return _CJK.search(text) is not None


def normalise(text: str) -> str:
    """Lower-case, full-width ASCII folded to half-width, whitespace collapsed."""
    out = []
    for ch in text:
        o = ord(ch)
        if 0xFF01 <= o <= 0xFF5E:
            ch = chr(o - 0xFEE0)
        elif o == 0x3000:
            ch = " "
        out.append(ch)
    return " ".join("".join(out).lower().split())


def _stem(w: str) -> str:
    if len(w) <= 3 or w.isdigit():
        return w
    for suf, keep in (("ies", "y"), ("ing", ""), ("ed", ""), ("es", ""), ("s", ""), ("e", "")):
        if w.endswith(suf) and len(w) - len(suf) >= 3:
            return w[: len(w) - len(suf)] + keep
    return w


@lru_cache(maxsize=65536)
def _tokens_cached(text: str) -> tuple[str, ...]:
    out: list[str] = []
    for part in _SPLIT.split(normalise(text)):
        if not part:
            continue
        if _CJK.fullmatch(part):
            seg = _segmenter()
            if seg:
                for w in seg.cut_for_search(part):
                    if w and w not in _ZH_STOP:
                        out.append(w)
            # character bigrams: robust to segmentation that splits a compound (路/灯不亮)
            out.extend(part[i : i + 2] for i in range(len(part) - 1))
        else:
            for w in _WORD.findall(part):
                if w not in _EN_STOP:
                    out.append(_stem(w))
    return tuple(out)


def tokens(text: str | None) -> list[str]:
    """Words of ``text``: jieba segments for Chinese, stemmed words for English."""
    if not text:
        return []
    return list(_tokens_cached(str(text)))
