"""A local geocoder over the city's own gazetteer, so a report that gives only an address
("near Dongcheng School No.3", "东城区第3学校门口", "Xicheng 2-3 Grid") is placed without
any outside service.

The gazetteer is what the city already holds: every static point dataset of the store
with a ``name`` (the demo city's POIs and enterprises) and the organisation's units
(districts, streets, community grids), each under its English name and a Chinese name
made from the city's vocabulary (:data:`ZH_WORDS`). Matching is normalised and fuzzy:
full-width folded, case and punctuation ignored, house numbers recognised in their
forms (``No.3``, ``#3``, ``3号``, ``第三``), place words (near, opposite, 门口, 附近 ...)
dropped, Chinese words found inside the text, English words matched with a typo
tolerance. The confidence is the IDF-weighted share of the feature's name found in the
address, capped by how precise the feature is (a point beats a grid, a grid a street, a
street a district) and lowered when another place, farther than ``300 m`` away, matches
almost as well. Below the threshold nothing is guessed: the caller refuses the address.

>>> g = Geocoder([Feature("poi", "pois", "7", "Dongcheng School No.3", 116.40, 39.93)])
>>> hit = g.geocode("在东城学校3号门口")
>>> hit.feature.name, round(hit.confidence, 2), (hit.x, hit.y)
('Dongcheng School No.3', 1.0, (116.4, 39.93))
>>> g.geocode("the park") is None
True
"""

from __future__ import annotations

import math
import re
import threading
import time
import unicodedata
import weakref
from collections.abc import Sequence
from dataclasses import dataclass, field
from difflib import SequenceMatcher
from typing import TYPE_CHECKING, Any

import shapely

from cityos.govern._text import normalise
from cityos.govern.errors import IntakeError

if TYPE_CHECKING:
    from cityos.govern._core import Governance

__all__ = [
    "ZH_WORDS",
    "Feature",
    "Geocoded",
    "Geocoder",
    "geocode",
    "geocoder_for",
    "locate",
    "reverse_geocode",
]

#: English name words of the city → Chinese (the demo city's districts carry Beijing's
#: district names in pinyin; POI, enterprise and unit kinds).
ZH_WORDS: dict[str, str] = {
    "dongcheng": "东城",
    "xicheng": "西城",
    "chaoyang": "朝阳",
    "haidian": "海淀",
    "fengtai": "丰台",
    "shijingshan": "石景山",
    "tongzhou": "通州",
    "shunyi": "顺义",
    "changping": "昌平",
    "daxing": "大兴",
    "fangshan": "房山",
    "mentougou": "门头沟",
    "huairou": "怀柔",
    "pinggu": "平谷",
    "miyun": "密云",
    "yanqing": "延庆",
    "outer": "外围",
    "chemical plant": "化工厂",
    "gas station": "加油站",
    "bus depot": "公交场站",
    "small chemical site": "小化工点",
    "chemical site": "化工点",
    "school": "学校",
    "hospital": "医院",
    "factory": "工厂",
    "mall": "商场",
    "residential": "小区",
    "office": "写字楼",
    "park": "公园",
    "street": "街道",
    "grid": "网格",
    "community": "社区",
}
#: how precise a feature's position is, by kind: the most its match can be trusted
KIND_CAP = {"poi": 1.0, "community": 0.85, "street": 0.7, "district": 0.55, "city": 0.3}
_PLACE_WORDS_EN = (
    "in front of",
    "next to",
    "close to",
    "opposite",
    "outside",
    "inside",
    "behind",
    "beside",
    "across from",
    "entrance of",
    "gate of",
    "corner of",
    "near",
    "nearby",
    "by",
    "at",
    "the",
    "of",
    "in",
    "on",
)
_PLACE_WORDS_ZH = (
    "南边路口",
    "北边路口",
    "东边路口",
    "西边路口",
    "附近",
    "门口",
    "对面",
    "旁边",
    "周边",
    "东侧",
    "西侧",
    "南侧",
    "北侧",
    "南边",
    "北边",
    "东边",
    "西边",
    "里面",
    "靠近",
    "在",
)
_ZH_DIGITS = {
    "零": 0,
    "一": 1,
    "二": 2,
    "两": 2,
    "三": 3,
    "四": 4,
    "五": 5,
    "六": 6,
    "七": 7,
    "八": 8,
    "九": 9,
}
_CJK = re.compile(r"[\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff]+")
_ZH_NUM = re.compile(r"第([零一二两三四五六七八九十]+)|([零一二两三四五六七八九十]+)号")
_NUMBER = re.compile(
    r"(?:\bno\.?\s*|\bnumber\s*|#\s*|第\s*)?(\d+(?:\s*-\s*\d+)?)(?:\s*号(?:楼|院)?)?"
)
_WORD = re.compile(r"[a-z]+")
#: places farther apart than this that match alike make an address ambiguous
AMBIGUOUS_M = 300.0


def _zh_int(s: str) -> int:
    """一 → 1, 十二 → 12, 二十 → 20, 二十三 → 23."""
    if "十" not in s:
        return int("".join(str(_ZH_DIGITS[c]) for c in s))
    tens, _, units = s.partition("十")
    return (_ZH_DIGITS[tens] if tens else 1) * 10 + (_ZH_DIGITS[units] if units else 0)


@dataclass(frozen=True)
class Parsed:
    """An address or a name, normalised: English words, Chinese text, house numbers."""

    words: tuple[str, ...]
    zh: str
    numbers: tuple[str, ...]


def parse(text: str) -> Parsed:
    """Normalise an address (or a gazetteer name) for matching.

    >>> parse("Opposite  ＤＯＮＧＣＨＥＮＧ School #3")
    Parsed(words=('dongcheng', 'school'), zh='', numbers=('3',))
    >>> parse("东城区第三学校门口")
    Parsed(words=(), zh='东城区学校', numbers=('3',))
    >>> parse("Xicheng 2-3 Grid").numbers
    ('2-3',)
    """
    t = normalise(unicodedata.normalize("NFKC", text))
    t = _ZH_NUM.sub(lambda m: f" {_zh_int(m.group(1) or m.group(2))} ", t)
    for w in _PLACE_WORDS_ZH:
        t = t.replace(w, " ")
    numbers = tuple(re.sub(r"\s+", "", m.group(1)) for m in _NUMBER.finditer(t))
    t = _NUMBER.sub(" ", t)
    zh = "".join(_CJK.findall(t))
    t = _CJK.sub(" ", t)
    t = " " + " ".join(_WORD.findall(t)) + " "
    for w in sorted(_PLACE_WORDS_EN, key=len, reverse=True):
        t = t.replace(f" {w} ", " ")
    return Parsed(tuple(t.split()), zh, numbers)


def to_zh(name: str) -> str | None:
    """A Chinese name for an English gazetteer name, word by word (None when a word of it
    has no translation).

    >>> to_zh("Dongcheng Chemical Plant No.4"), to_zh("Xicheng 2-3 Grid"), to_zh("Haidian Street 2")
    ('东城化工厂4号', '西城2-3网格', '海淀第2街道')
    """
    p = " " + normalise(name) + " "
    p = _NUMBER.sub(lambda m: " \x01" + re.sub(r"\s+", "", m.group(1)) + " ", p)
    p = " " + " ".join(t for t in re.findall(r"\x01[\d-]+|[a-z]+", p)) + " "
    for en, zh in sorted(ZH_WORDS.items(), key=lambda kv: -len(kv[0])):
        p = p.replace(f" {en} ", f" \x00{zh} ")
    parts = p.split()
    if not parts or any(not t.startswith(("\x00", "\x01")) for t in parts):
        return None
    out: list[str] = []
    for k, t in enumerate(parts):
        if t.startswith("\x00"):
            out.append(t[1:])
        elif k == len(parts) - 1 and out and out[-1] == "街道":
            out[-1] = f"第{t[1:]}街道"
        else:
            out.append(t[1:] + ("号" if k == len(parts) - 1 and "-" not in t else ""))
    return "".join(out)


@dataclass(frozen=True)
class Feature:
    """A named place of the gazetteer: ``kind`` poi (any named point), community, street,
    district; ``names`` are its other names (Chinese)."""

    kind: str
    dataset: str
    id: str
    name: str
    x: float
    y: float
    names: tuple[str, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "dataset": self.dataset,
            "id": self.id,
            "name": self.name,
            "names": list(self.names),
            "x": self.x,
            "y": self.y,
        }


@dataclass(frozen=True)
class Geocoded:
    """Where an address is: the position, the feature it matched (under which of its
    names) and how sure the match is (0..1)."""

    x: float
    y: float
    feature: Feature
    matched: str
    confidence: float
    runner_up: Feature | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "x": self.x,
            "y": self.y,
            "feature": self.feature.to_dict(),
            "matched": self.matched,
            "confidence": round(self.confidence, 4),
            "runner_up": self.runner_up.name if self.runner_up else None,
        }


@dataclass
class _Alias:
    feature: int
    text: str
    words: tuple[str, ...]
    zh_words: tuple[str, ...]
    numbers: tuple[str, ...]
    weight: float = field(default=0.0)


def _zh_words(zh_name: str) -> tuple[str, ...]:
    """The vocabulary words a Chinese name is made of (longest first), so each is looked
    for inside an address on its own: 东城学校 → (东城, 学校)."""
    vocab = sorted(set(ZH_WORDS.values()), key=len, reverse=True)
    out: list[str] = []
    rest = "".join(_CJK.findall(zh_name))
    while rest:
        w = next((v for v in vocab if rest.startswith(v)), rest[:2])
        out.append(w)
        rest = rest[len(w) :]
    return tuple(out)


def _dist_m(a: Feature, b: Feature) -> float:
    dx = (a.x - b.x) * 111_320.0 * math.cos(math.radians((a.y + b.y) / 2))
    return math.hypot(dx, (a.y - b.y) * 110_540.0)


class Geocoder:
    """Forward and reverse geocoding over a list of :class:`Feature`\\ s.

    Parameters
    ----------
    features:
        The gazetteer.
    threshold:
        The least confidence :meth:`locate` accepts.
    """

    def __init__(self, features: Sequence[Feature], *, threshold: float = 0.75) -> None:
        self.features = list(features)
        self.threshold = threshold
        self._aliases: list[_Alias] = []
        for i, f in enumerate(self.features):
            zh = to_zh(f.name)
            for text in dict.fromkeys((f.name, *f.names, *((zh,) if zh else ()))):
                p = parse(text)
                self._aliases.append(
                    _Alias(i, text, p.words, _zh_words(p.zh) if p.zh else (), p.numbers)
                )
        #: the gazetteer's Chinese words, longest first: an address is cut into them, so a
        #: name's word counts only as a whole word of the address (工厂 is not in 化工厂)
        self._vocab = sorted({w for a in self._aliases for w in a.zh_words}, key=len, reverse=True)
        df: dict[str, int] = {}
        for a in self._aliases:
            for tok in {*a.words, *a.zh_words, *(f"#{n}" for n in a.numbers)}:
                df[tok] = df.get(tok, 0) + 1
        n = max(len(self._aliases), 1)
        self._idf = {t: math.log(1 + n / c) for t, c in df.items()}
        pts = [i for i, f in enumerate(self.features) if f.kind == "poi"]
        self._pts = pts
        self._tree = (
            shapely.STRtree(shapely.points([(self.features[i].x, self.features[i].y) for i in pts]))
            if pts
            else None
        )

    def _word_score(self, w: str, words: Sequence[str], joined: Sequence[str]) -> float:
        if w in words:
            return 1.0
        if len(w) < 4:
            return 0.0
        best = 0.0
        for q in (*words, *joined):
            m = SequenceMatcher(None, w, q)
            if m.real_quick_ratio() >= 0.8 and m.quick_ratio() >= 0.8:
                best = max(best, m.ratio())
        return best if best >= 0.8 else 0.0

    def _segment(self, zh: str) -> frozenset[str]:
        out: list[str] = []
        rest = zh
        while rest:
            w = next((v for v in self._vocab if rest.startswith(v)), rest[0])
            out.append(w)
            rest = rest[len(w) :]
        return frozenset(out)

    def _score(
        self,
        a: _Alias,
        q: Parsed,
        joined: Sequence[str],
        memo: dict[str, float],
        zh_words: frozenset[str],
    ) -> float:
        total = got = 0.0
        for w in a.words:
            wt = self._idf.get(w, 1.0)
            total += wt
            if w not in memo:
                memo[w] = self._word_score(w, q.words, joined)
            got += wt * memo[w]
        for w in a.zh_words:
            wt = self._idf.get(w, 1.0)
            total += wt
            if w in zh_words:
                got += wt
            elif len(w) >= 3:  # a longer word half-written (石景 for 石景山) counts in part
                bigrams = [w[i : i + 2] for i in range(len(w) - 1)]
                got += wt * sum(b in q.zh for b in bigrams) / len(bigrams) * 0.8
        for nmb in a.numbers:
            wt = self._idf.get(f"#{nmb}", 1.0)
            total += wt
            if nmb in q.numbers:
                got += wt
            elif q.numbers:
                return 0.0  # another house number names another place
        return got / total if total else 0.0

    def candidates(self, address: str, top: int = 5) -> list[tuple[float, Feature, str]]:
        """The best-matching features (capped score, feature, the name matched)."""
        q = parse(address)
        if not (q.words or q.zh or q.numbers):
            return []
        joined = [a + b for a, b in zip(q.words, q.words[1:], strict=False)]
        best: dict[int, tuple[float, str]] = {}
        memo: dict[str, float] = {}
        zh_words = self._segment(q.zh)
        for a in self._aliases:
            s = self._score(a, q, joined, memo, zh_words)
            if s <= 0:
                continue
            s *= KIND_CAP.get(self.features[a.feature].kind, 1.0)
            if s > best.get(a.feature, (0.0, ""))[0]:
                best[a.feature] = (s, a.text)
        ranked = sorted(best.items(), key=lambda kv: (-kv[1][0], kv[0]))
        return [(s, self.features[i], text) for i, (s, text) in ranked[:top]]

    def geocode(self, address: str) -> Geocoded | None:
        """The best match for ``address`` and its confidence (None when nothing matches)."""
        cands = self.candidates(address, top=20)
        if not cands:
            return None
        s0, f0, text = cands[0]
        rival = next(((s, f) for s, f, _ in cands[1:] if _dist_m(f, f0) > AMBIGUOUS_M), None)
        conf = s0
        if rival is not None:
            # two far-apart places that match alike: the address does not say which
            conf = s0 * min(1.0, 0.5 + (s0 - rival[0]) / 0.4)
        return Geocoded(f0.x, f0.y, f0, text, conf, rival[1] if rival else None)

    def locate(self, address: str, *, field: str = "address_string") -> Geocoded:
        """:meth:`geocode`, refusing (an :class:`IntakeError` naming ``field``) below the
        threshold."""
        hit = self.geocode(address)
        if hit is None or hit.confidence < self.threshold:
            why = (
                "matches no place this city knows"
                if hit is None
                else f"best match {hit.feature.name!r} has confidence {hit.confidence:.2f} "
                f"< {self.threshold:.2f}"
                + (f" (also like {hit.runner_up.name!r})" if hit.runner_up else "")
            )
            raise IntakeError(
                f"{field}: {address!r} {why}; give lat and long, or name a landmark",
                field=field,
            )
        return hit

    def by_id(self, ref: str) -> Geocoded | None:
        """The feature ``"<dataset>:<id>"`` (an Open311 ``address_id``), exactly.

        >>> Geocoder([Feature("poi", "pois", "7", "Park No.1", 1.0, 2.0)]).by_id("pois:7").confidence
        1.0
        """
        ds, _, fid = ref.partition(":")
        f = next((f for f in self.features if f.dataset == ds and f.id == fid), None)
        return None if f is None else Geocoded(f.x, f.y, f, f.name, 1.0)

    def nearest(self, x: float, y: float, max_m: float = 300.0) -> Feature | None:
        """The named point nearest to (x, y), within ``max_m``."""
        if self._tree is None:
            return None
        i = int(self._tree.nearest(shapely.Point(x, y)))
        f = self.features[self._pts[i]]
        probe = Feature("poi", "", "", "", x, y)
        return f if _dist_m(f, probe) <= max_m else None


# -- the gazetteer of a governed city ------------------------------------------------------
def features_of(gov: Governance) -> list[Feature]:
    """The gazetteer of ``gov``'s city: named static points of its store, and the
    organisation's units (at a point inside each region)."""
    out: list[Feature] = []
    store = gov.store
    if store is not None:
        for info in store.list_datasets():
            sch = info.schema
            if getattr(sch.model, "value", "") != "point_static":
                continue
            if getattr(sch.geometry_type, "value", "") != "point":
                continue
            if "name" not in {f.name for f in sch.fields}:
                continue
            t = store.read(info.name).table
            if not {"x", "y", "name"} <= set(t.column_names):
                continue
            for i, x, y, n in zip(
                t.column("id").to_pylist(),
                t.column("x").to_pylist(),
                t.column("y").to_pylist(),
                t.column("name").to_pylist(),
                strict=True,
            ):
                if n and x is not None and y is not None:
                    out.append(Feature("poi", info.name, str(i), str(n), float(x), float(y)))
    j = gov.jurisdictions
    for code, u in j.units.items():
        g = j.geoms.get(code)
        if g is None or u.level == "city":
            continue
        p = g.point_on_surface()
        out.append(Feature(u.level, "govern_units", code, u.name, float(p.x), float(p.y)))
    return out


_cache: weakref.WeakKeyDictionary[Any, tuple[Any, float, Geocoder]] = weakref.WeakKeyDictionary()
_cache_lock = threading.Lock()
#: how long a built gazetteer is used before it is read again (new POIs, enterprises)
TTL_S = 300.0


def geocoder_for(gov: Governance, *, refresh: bool = False) -> Geocoder:
    """The geocoder of ``gov``'s city (built once, rebuilt after :data:`TTL_S` seconds or
    when the organisation is reloaded)."""
    jur = gov.jurisdictions
    with _cache_lock:
        hit = _cache.get(gov)
        if not refresh and hit is not None and hit[0] is jur and time.monotonic() - hit[1] < TTL_S:
            return hit[2]
    g = Geocoder(features_of(gov))
    with _cache_lock:
        _cache[gov] = (jur, time.monotonic(), g)
    return g


def geocode(gov: Governance, address: str) -> Geocoded | None:
    """Where ``address`` is in ``gov``'s city, with the confidence (None: nowhere)."""
    return geocoder_for(gov).geocode(address)


def locate(gov: Governance, address: str, *, field: str = "address") -> Geocoded:
    """Like :func:`geocode`, refusing an address below the threshold (``IntakeError``
    naming ``field``)."""
    return geocoder_for(gov).locate(address, field=field)


def reverse_geocode(gov: Governance, x: float, y: float) -> str:
    """An address for a position: the nearest named place within 300 m and the units
    holding it, e.g. ``"near Dongcheng School No.3, Dongcheng 1-2 Grid, Dongcheng"``."""
    g = geocoder_for(gov)
    parts: list[str] = []
    f = g.nearest(x, y)
    if f is not None:
        parts.append(f"near {f.name}")
    j = gov.jurisdictions
    where = j.locate(x, y)
    for lv in ("community", "street", "district"):
        if lv in where:
            parts.append(j.units[where[lv]].name)
    return ", ".join(parts)
