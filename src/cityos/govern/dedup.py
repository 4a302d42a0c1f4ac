"""Duplicate detection (事件辨重): is a new report the same incident as an open event?

A candidate is an open event of the same category within ``radius_m`` whose latest report
is at most ``window_h`` hours older than the new one. Each (new report, candidate report)
pair gets features — distance, time gap, TF-IDF cosine of their words (jieba segments and
character bigrams for Chinese, stemmed words for English, see :mod:`cityos.govern._text`),
whether they share a language, and the cosine of their *topic* vectors (a bilingual word →
category-kind association learnt from labelled history, which bridges a Chinese and an
English report of one incident) — and a gradient-boosted classifier, trained on labelled
pairs, gives the probability that they report one incident. The best candidate above
``threshold`` becomes the parent; the report is merged into it (governance keeps every
report and reporter on the parent).

Where both reports carry a structured house address (a house number and a street, such
as NYC 311's ``Incident Address``; free-text places like "near the school" are not one),
two different addresses are two places, whatever the coordinates say: a heating failure
at 160 Claremont Avenue is not one at 192 Claremont Avenue 170 m away, and two hydrants
on a block are two hydrants (:func:`house_key`). Such a pair is never merged.

The baseline is FixMyStreet's rule: an open report of the same category within 250 m, no
time window, no text (:func:`fixmystreet_rule`).

>>> from cityos.synth import make_city
>>> from cityos.synth._reports import make_reports
>>> city = make_city(size_km=6.0)
>>> det = DuplicateDetector().fit(make_reports(city, 150, seed=1))
>>> test = make_reports(city, 80, seed=2)
>>> q = evaluate(det.run(test), test)
>>> q.precision > 0.8 and q.recall > 0.7
True
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import pandas as pd

from cityos.govern._text import has_cjk, tokens

__all__ = [
    "DedupQuality",
    "DuplicateDetector",
    "Match",
    "as_frame",
    "as_record",
    "evaluate",
    "fixmystreet_rule",
    "house_key",
    "nyc_311_reports",
]

_R_EARTH = 6_371_008.8
FloatArray = npt.NDArray[np.float64]


@dataclass(frozen=True)
class Match:
    """A duplicate's parent: the event it merges into, with the evidence."""

    parent_id: str
    score: float
    distance_m: float
    hours: float


@dataclass(frozen=True)
class DedupQuality:
    """Precision and recall of merges: a merge is right when the parent reports the same
    incident; a report should be merged when an earlier report of its incident exists."""

    precision: float
    recall: float
    merges: int
    correct: int
    should_merge: int

    def row(self) -> tuple[str, str, str]:
        return (f"{self.precision:.3f}", f"{self.recall:.3f}", f"{self.merges}")


def _one_thread() -> Any:
    """Native thread pools (OpenMP, BLAS) limited to one thread: these models are small,
    and on a busy machine spinning OpenMP threads cost far more than they save."""
    global _CONTROLLER
    if _CONTROLLER is None:
        from threadpoolctl import ThreadpoolController

        _CONTROLLER = ThreadpoolController()
    return _CONTROLLER.limit(limits=1)


_CONTROLLER: Any = None


def _hav(x1: Any, y1: Any, x2: Any, y2: Any) -> FloatArray:
    x1, y1, x2, y2 = (np.radians(np.asarray(v, dtype=np.float64)) for v in (x1, y1, x2, y2))
    a = np.sin((y2 - y1) / 2) ** 2 + np.cos(y1) * np.cos(y2) * np.sin((x2 - x1) / 2) ** 2
    return np.asarray(2 * _R_EARTH * np.arcsin(np.sqrt(np.clip(a, 0.0, 1.0))), dtype=np.float64)


_STREET_WORDS = {
    "ST": "STREET",
    "STR": "STREET",
    "AVE": "AVENUE",
    "AV": "AVENUE",
    "BLVD": "BOULEVARD",
    "RD": "ROAD",
    "PL": "PLACE",
    "DR": "DRIVE",
    "W": "WEST",
    "E": "EAST",
    "N": "NORTH",
    "S": "SOUTH",
    "PKWY": "PARKWAY",
}
_HOUSE = re.compile(r"^(\d+[A-Z]?(?:-\d+)?)\s+(.+)$")


def house_key(address: Any) -> str | None:
    """A canonical house address (number and street, abbreviations spelt out), or None
    when ``address`` is not one (empty, a street alone, free text).

    >>> house_key("330 WEST   95 STREET"), house_key("330 W 95th St.")
    ('330 WEST 95 STREET', '330 WEST 95 STREET')
    >>> house_key("CLAREMONT AVENUE"), house_key("near the school"), house_key(None)
    (None, None, None)
    """
    if not isinstance(address, str):
        return None
    a = re.sub(r"[.,#]", " ", address.upper())
    a = re.sub(r"\b(\d+)(?:ST|ND|RD|TH)\b", r"\1", a)
    m = _HOUSE.match(" ".join(a.split()))
    if m is None or not re.search(r"[A-Z]", m.group(2)):
        return None
    street = " ".join(_STREET_WORDS.get(w, w) for w in m.group(2).split())
    return f"{m.group(1)} {street}"


def _other_house(a: Any, b: Any) -> bool:
    ka, kb = house_key(a), house_key(b)
    return ka is not None and kb is not None and ka != kb


def _text(row: Mapping[Any, Any]) -> str:
    return f"{row.get('title') or ''} {row.get('description') or ''}"


_FIELDS = (
    "service_code",
    "id",
    "t",
    "x",
    "y",
    "category",
    "title",
    "description",
    "parent_id",
    "status",
    "department",
    "level",
    "address",
)


def as_record(obj: Any) -> dict[str, Any]:
    """A report or event as a plain record: a mapping as is, an object (such as
    governance's ``Event``) by its attributes, ``received_at`` standing for ``t``."""
    if isinstance(obj, Mapping):
        return dict(obj)
    rec = {k: getattr(obj, k, None) for k in _FIELDS}
    if rec["t"] is None:
        rec["t"] = getattr(obj, "received_at", None)
    if rec.get("id") == "":
        rec["id"] = None
    return rec


def as_frame(rows: Any) -> pd.DataFrame:
    """Records, objects or a DataFrame as a DataFrame of report fields."""
    if isinstance(rows, pd.DataFrame):
        return rows
    return pd.DataFrame([as_record(r) for r in rows])


def _ts(v: Any) -> float:
    """Seconds since the epoch of a timestamp-like value (naive means UTC)."""
    t = pd.Timestamp(v)
    if t.tzinfo is None:
        t = t.tz_localize("UTC")
    return float(t.value) / 1e9


class DuplicateDetector:
    """Finds the open event a new report duplicates (see the module docstring).

    Parameters
    ----------
    radius_m, window_h:
        Where and when candidates are looked for.
    threshold:
        Probability above which the best candidate becomes the parent.
    """

    FEATURES = ("distance_m", "hours", "text_cos", "same_lang", "topic_cos", "same_desc")

    def __init__(self, radius_m: float = 400.0, window_h: float = 72.0, threshold: float = 0.5):
        self.radius_m = float(radius_m)
        self.window_h = float(window_h)
        self.threshold = float(threshold)
        self._vec: Any = None
        self._topic: Any = None
        self._clf: Any = None

    # -- training --------------------------------------------------------------------------
    def fit(
        self, reports: pd.DataFrame, *, truth: str = "incident_id", topic: str | None = "department"
    ) -> DuplicateDetector:
        """Learn the text space and the pair classifier from labelled ``reports`` (one row
        per report, ``truth`` the incident id; ``topic``, when present, a label whose
        word associations bridge languages, e.g. the responsible department)."""
        from sklearn.ensemble import HistGradientBoostingClassifier
        from sklearn.feature_extraction.text import TfidfVectorizer

        df = reports.reset_index(drop=True)
        texts = [_text(r) for r in df.to_dict("records")]
        self._vec = TfidfVectorizer(analyzer=tokens, sublinear_tf=True, min_df=1).fit(texts)
        self._topic = None
        if topic and topic in df.columns and df[topic].nunique() > 1:
            from sklearn.linear_model import LogisticRegression

            kind = df["kind"] if "kind" in df.columns else df[topic]
            self._topic = LogisticRegression(max_iter=300, C=5.0).fit(
                self._vec.transform(texts), kind.astype(str)
            )
        i, j = self._candidate_pairs(df)
        feats = self._features(df, i, j, texts)
        y = df[truth].to_numpy()[i] == df[truth].to_numpy()[j]
        if y.all() or not y.any():
            raise ValueError("training pairs need both duplicates and non-duplicates")
        self._clf = HistGradientBoostingClassifier(max_iter=200, learning_rate=0.1, random_state=0)
        with _one_thread():
            self._clf.fit(feats, y)
        return self

    @classmethod
    def pretrained(cls, seed: int = 0, **kw: Any) -> DuplicateDetector:
        """A detector trained on a generated labelled set (deterministic, about a second)."""
        from cityos.synth import make_city
        from cityos.synth._reports import make_reports

        return cls(**kw).fit(
            make_reports(make_city(seed=seed, size_km=10.0), 1000, seed=seed + 100)
        )

    # -- pairs and features ----------------------------------------------------------------
    def _candidate_pairs(
        self, df: pd.DataFrame
    ) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.int64]]:
        """(later, earlier) index pairs of reports of one category within radius and window."""
        t = np.array([_ts(v) for v in df["t"]])
        x, y = df["x"].to_numpy(float), df["y"].to_numpy(float)
        cat = df["category"].astype(str).to_numpy()
        order = np.argsort(t, kind="stable")
        ii: list[int] = []
        jj: list[int] = []
        win = self.window_h * 3600.0
        lo = 0
        for pos, a in enumerate(order):
            while t[order[lo]] < t[a] - win:
                lo += 1
            prev = order[lo:pos]
            if len(prev) == 0:
                continue
            prev = prev[cat[prev] == cat[a]]
            if len(prev) == 0:
                continue
            d = _hav(x[a], y[a], x[prev], y[prev])
            for b in prev[d <= self.radius_m]:
                ii.append(int(a))
                jj.append(int(b))
        return np.array(ii, dtype=np.int64), np.array(jj, dtype=np.int64)

    def _features(
        self,
        df: pd.DataFrame,
        i: npt.NDArray[np.int64],
        j: npt.NDArray[np.int64],
        texts: Sequence[str],
    ) -> FloatArray:
        x, y = df["x"].to_numpy(float), df["y"].to_numpy(float)
        t = np.array([_ts(v) for v in df["t"]])
        return self._features_of(x, y, t, texts, i, j)

    def _features_of(
        self,
        x: FloatArray,
        y: FloatArray,
        t: FloatArray,
        texts: Sequence[str],
        i: npt.NDArray[np.int64],
        j: npt.NDArray[np.int64],
    ) -> FloatArray:
        if len(i) == 0:
            return np.zeros((0, len(self.FEATURES)))
        m = self._vec.transform(list(texts))
        cos = np.asarray(m[i].multiply(m[j]).sum(axis=1)).ravel()
        cjk = np.array([has_cjk(s) for s in texts])
        if self._topic is not None:
            p = self._topic.predict_proba(m)
            p = p / np.maximum(np.linalg.norm(p, axis=1, keepdims=True), 1e-12)
            topic = (p[i] * p[j]).sum(axis=1)
        else:
            topic = np.zeros(len(i))
        desc = np.array([" ".join(s.lower().split()) for s in texts], dtype=object)
        return np.column_stack(
            [
                _hav(x[i], y[i], x[j], y[j]),
                np.abs(t[i] - t[j]) / 3600.0,
                cos,
                (cjk[i] == cjk[j]).astype(float),
                topic,
                (desc[i] == desc[j]).astype(float),
            ]
        )

    def _require(self) -> None:
        if self._clf is None:
            raise RuntimeError("DuplicateDetector is not trained: call fit() or pretrained()")

    def pair_scores(self, df: pd.DataFrame, i: Any, j: Any) -> FloatArray:
        """Probability that report ``i`` and report ``j`` of ``df`` are one incident."""
        self._require()
        i = np.asarray(i, dtype=np.int64)
        j = np.asarray(j, dtype=np.int64)
        if len(i) == 0:
            return np.zeros(0)
        texts = [_text(r) for r in df.to_dict("records")]
        feats = self._features(df, i, j, texts)
        with _one_thread():
            return np.asarray(self._clf.predict_proba(feats)[:, 1], dtype=np.float64)

    # -- the intake hook -------------------------------------------------------------------
    def find(self, event: Any, candidates: Any) -> Match | None:
        """The open event ``event`` duplicates among ``candidates`` (rows with ``id``, ``t``,
        ``x``, ``y``, ``category``, ``title``, ``description`` and optionally ``parent_id``
        and ``status``; a duplicate row stands for its parent), or None. Rows may be
        mappings, objects with those attributes (governance's ``Event``, whose
        ``received_at`` is the time) or a DataFrame."""
        return self.find_many([event], [candidates])[0]

    def find_many(
        self,
        events: Sequence[Any],
        candidates: Sequence[Any],
        *,
        memo: dict[tuple[Any, ...], float] | None = None,
    ) -> list[Match | None]:
        """:meth:`find` for each ``(event, candidates)`` pair, scored in one pass (one text
        transform and one classifier call for all pairs): the same answers as calling
        :meth:`find` on each, at a fraction of the cost (governance's group commit).

        A pair's score depends only on the two reports, so ``memo`` (a dict the caller
        keeps, keyed by both reports' place, time and text) saves scoring a pair twice:
        asking again with fewer candidates costs no model call."""
        self._require()
        xs: list[float] = []
        ys: list[float] = []
        ts: list[float] = []
        texts: list[str] = []
        pi: list[int] = []
        pj: list[int] = []
        todo: list[tuple[int, tuple[Any, ...]]] = []  # (pair, key) to score
        pair_scores: list[float] = []
        keep_of: list[tuple[list[dict[Any, Any]], Any, Any, Any, float, int, int]] = []
        for event, cands in zip(events, candidates, strict=True):
            ev = as_record(event)
            recs: list[dict[Any, Any]] = (
                cands.to_dict("records")
                if isinstance(cands, pd.DataFrame)
                else [as_record(c) for c in cands]
            )
            recs = [r for r in recs if r.get("status") not in ("closed", "verified")]
            start = len(pair_scores)
            if not recs:
                keep_of.append((recs, None, None, None, 0.0, start, start))
                continue
            t_new = _ts(ev["t"])
            ct = np.array([_ts(r["t"]) for r in recs])
            cx = np.array([float(r["x"]) for r in recs])
            cy = np.array([float(r["y"]) for r in recs])
            d = _hav(float(ev["x"]), float(ev["y"]), cx, cy)
            cat = str(ev.get("category"))
            keep = (
                np.array([str(r.get("category")) == cat for r in recs])
                & (d <= self.radius_m)
                & (t_new - ct <= self.window_h * 3600.0)
                & (t_new - ct >= -3600.0)
            )
            if ev.get("id") is not None:
                keep &= np.array([str(r.get("id")) != str(ev["id"]) for r in recs])
            if house_key(ev.get("address")) is not None:
                keep &= np.array(
                    [not _other_house(ev.get("address"), r.get("address")) for r in recs]
                )
            idx = np.flatnonzero(keep)
            ev_text = _text(ev)
            ev_node = -1
            for k in idx:
                c_text = _text(recs[k])
                key = (float(ev["x"]), float(ev["y"]), t_new, ev_text, cx[k], cy[k], ct[k], c_text)
                if memo is not None and key in memo:
                    pair_scores.append(memo[key])
                    continue
                if ev_node < 0:
                    ev_node = len(texts)
                    xs.append(float(ev["x"]))
                    ys.append(float(ev["y"]))
                    ts.append(t_new)
                    texts.append(ev_text)
                xs.append(cx[k])
                ys.append(cy[k])
                ts.append(ct[k])
                texts.append(c_text)
                pi.append(ev_node)
                pj.append(len(texts) - 1)
                todo.append((len(pair_scores), key))
                pair_scores.append(math.nan)
            keep_of.append((recs, idx, d, ct, t_new, start, len(pair_scores)))
        scores = np.array(pair_scores, dtype=np.float64)
        if todo:
            feats = self._features_of(
                np.array(xs, dtype=np.float64),
                np.array(ys, dtype=np.float64),
                np.array(ts, dtype=np.float64),
                texts,
                np.array(pi, dtype=np.int64),
                np.array(pj, dtype=np.int64),
            )
            with _one_thread():
                got = np.asarray(self._clf.predict_proba(feats)[:, 1], dtype=np.float64)
            for (pos, key), v in zip(todo, got, strict=True):
                scores[pos] = v
                if memo is not None:
                    memo[key] = float(v)
        out: list[Match | None] = []
        for recs, idx, d, ct, t_new, a, b in keep_of:
            if a == b:
                out.append(None)
                continue
            sc = scores[a:b]
            best = int(np.argmax(sc))
            if sc[best] < self.threshold:
                out.append(None)
                continue
            row = recs[int(idx[best])]
            pid = row.get("parent_id")
            parent = str(pid) if isinstance(pid, str) and pid else str(row["id"])
            out.append(
                Match(
                    parent,
                    float(sc[best]),
                    float(d[idx[best]]),
                    (t_new - ct[idx[best]]) / 3600.0,
                )
            )
        return out

    def run(self, reports: pd.DataFrame) -> pd.DataFrame:
        """Online duplicate detection over ``reports`` in time order (as intake would):
        returns ``reports`` with ``parent_id`` (the id of the first report of the group a
        report merges into, or None) and ``dup_score``. Candidates are open reports (rows
        whose ``closed_at``, if the column exists, is after the new report's time)."""
        self._require()
        df = reports.reset_index(drop=True)
        i, j = self._candidate_pairs(df)
        s = self.pair_scores(df, i, j)
        if "address" in df.columns and len(i):
            keys = np.array([house_key(a) for a in df["address"]], dtype=object)
            other = np.array(
                [
                    keys[a] is not None and keys[b] is not None and keys[a] != keys[b]
                    for a, b in zip(i, j, strict=True)
                ]
            )
            s = np.where(other, 0.0, s)
        t = np.array([_ts(v) for v in df["t"]])
        if "closed_at" in df.columns:
            closed = np.array([_ts(v) if pd.notna(v) else math.inf for v in df["closed_at"]])
            ok = closed[j] > t[i]
            i, j, s = i[ok], j[ok], s[ok]
        ids = df["id"].astype(str).to_numpy()
        root = np.arange(len(df))
        best = np.full(len(df), -1)
        best_s = np.full(len(df), -1.0)
        for a, b, v in zip(i, j, s, strict=True):
            if v >= self.threshold and v > best_s[a]:
                best[a], best_s[a] = b, v
        for a in np.argsort(t, kind="stable"):
            if best[a] >= 0:
                root[a] = root[best[a]]
        out = df.copy()
        out["parent_id"] = [ids[root[k]] if best[k] >= 0 else None for k in range(len(df))]
        out["dup_score"] = np.where(best >= 0, best_s, np.nan)
        return out

    # -- persistence -----------------------------------------------------------------------
    def save(self, path: str | Path) -> None:
        """Write the trained detector with joblib (a file this process wrote; load only
        files you trust)."""
        import joblib

        joblib.dump(self, Path(path))

    @staticmethod
    def load(path: str | Path) -> DuplicateDetector:
        import joblib

        obj = joblib.load(Path(path))
        if not isinstance(obj, DuplicateDetector):
            raise TypeError(f"{path} does not hold a DuplicateDetector")
        return obj


def fixmystreet_rule(reports: pd.DataFrame, radius_m: float = 250.0) -> pd.DataFrame:
    """FixMyStreet's rule as the baseline: a new report duplicates the nearest *open*
    earlier report of the same category within ``radius_m``; no time window, no text.
    A report is open until its ``closed_at`` (when the column exists; otherwise always)."""
    df = reports.reset_index(drop=True)
    t = np.array([_ts(v) for v in df["t"]])
    closed = (
        np.array([_ts(v) if pd.notna(v) else math.inf for v in df["closed_at"]])
        if "closed_at" in df.columns
        else np.full(len(df), math.inf)
    )
    x, y = df["x"].to_numpy(float), df["y"].to_numpy(float)
    cat = df["category"].astype(str).to_numpy()
    ids = df["id"].astype(str).to_numpy()
    root = np.arange(len(df))
    merged = np.zeros(len(df), dtype=bool)
    order = np.argsort(t, kind="stable")
    for pos, a in enumerate(order):
        prev = order[:pos]
        prev = prev[(cat[prev] == cat[a]) & (closed[prev] > t[a])]
        if len(prev) == 0:
            continue
        d = _hav(x[a], y[a], x[prev], y[prev])
        k = int(np.argmin(d))
        if d[k] <= radius_m:
            root[a] = root[prev[k]]
            merged[a] = True
    out = df.copy()
    out["parent_id"] = [ids[root[k]] if merged[k] else None for k in range(len(df))]
    return out


def evaluate(
    result: pd.DataFrame, truth: pd.DataFrame, *, label: str = "incident_id"
) -> DedupQuality:
    """Precision and recall of ``result``'s merges (``parent_id``) against ``truth``'s
    incident labels (rows in the same order, by ``id``)."""
    inc = dict(zip(truth["id"].astype(str), truth[label], strict=True))
    t = {str(k): _ts(v) for k, v in zip(truth["id"], truth["t"], strict=True)}
    first: dict[Any, float] = {}
    for k, v in sorted(t.items(), key=lambda kv: kv[1]):
        first.setdefault(inc[k], v)
    should = sum(1 for k in t if t[k] > first[inc[k]] or _not_first(k, inc, t))
    merges = correct = 0
    for rid, pid in zip(result["id"].astype(str), result["parent_id"], strict=True):
        if pid is None or (isinstance(pid, float) and math.isnan(pid)):
            continue
        merges += 1
        correct += int(inc[str(pid)] == inc[rid])
    return DedupQuality(
        precision=correct / merges if merges else 1.0,
        recall=correct / should if should else 1.0,
        merges=merges,
        correct=correct,
        should_merge=should,
    )


def _not_first(k: str, inc: Mapping[str, Any], t: Mapping[str, float]) -> bool:
    # reports of one incident at the very same instant: all but the lowest id should merge
    same = [o for o in t if inc[o] == inc[k] and t[o] == t[k]]
    return len(same) > 1 and k != min(same)


def nyc_311_reports(path: str | Path) -> pd.DataFrame:
    """A NYC 311 sample as reports for duplicate detection, with the label NYC gave.

    Ground truth: a request whose ``Resolution Description`` says it duplicates an earlier
    complaint ("duplicate of a previously filed complaint", "duplicate of a building-wide
    condition already reported") is a duplicate (``is_duplicate``); every other request
    is not. Only some agencies write such resolutions (``labelling_agency``: DEP and HPD in
    the 2025 sample); NYPD and the rest never do, so their duplicates are unlabelled.
    The original a duplicate points to is not named and may lie before the sample.
    """
    raw = pd.read_csv(path, low_memory=False)
    raw = raw.dropna(subset=["Latitude", "Longitude", "Created Date"]).reset_index(drop=True)
    res = raw["Resolution Description"].fillna("")
    dup = res.str.contains(
        r"duplicate of (?:a|an) (?:previously|building-wide)", case=False, regex=True
    )
    agencies = set(raw.loc[dup, "Agency"].astype(str))
    fmt = "%m/%d/%Y %I:%M:%S %p"
    created = (
        pd.to_datetime(raw["Created Date"], format=fmt)
        .dt.tz_localize("America/New_York")
        .dt.tz_convert("UTC")
    )
    closed = (
        pd.to_datetime(raw["Closed Date"], format=fmt, errors="coerce")
        .dt.tz_localize("America/New_York", nonexistent="shift_forward", ambiguous="NaT")
        .dt.tz_convert("UTC")
    )
    desc = (
        raw["Descriptor"].fillna("").astype(str) + " " + raw["Location Type"].fillna("").astype(str)
    )
    out = pd.DataFrame(
        {
            "id": "NYC-" + raw["Unique Key"].astype(str),
            "t": created,
            "x": raw["Longitude"].astype(float),
            "y": raw["Latitude"].astype(float),
            "category": raw["Complaint Type"].astype(str),
            "title": raw["Complaint Type"].astype(str),
            "description": desc.str.strip(),
            "address": raw["Incident Address"].fillna("").astype(str),
            "department": raw["Agency"].astype(str),
            "closed_at": closed,
            "is_duplicate": dup.to_numpy(),
            "labelling_agency": raw["Agency"].astype(str).isin(agencies).to_numpy(),
        }
    )
    return out.sort_values("t", kind="stable").reset_index(drop=True)


def evaluate_flags(result: pd.DataFrame, truth: pd.DataFrame, mask: Any = None) -> DedupQuality:
    """Precision and recall of *flagging* a report as a duplicate (any parent) against a
    per-report label ``is_duplicate`` (the NYC 311 ground truth), optionally over rows
    where ``mask`` holds."""
    flag = result["parent_id"].notna().to_numpy()
    lab = truth["is_duplicate"].to_numpy(bool)
    if mask is not None:
        m = np.asarray(mask, dtype=bool)
        flag, lab = flag[m], lab[m]
    tp = int((flag & lab).sum())
    return DedupQuality(
        precision=tp / int(flag.sum()) if flag.any() else 1.0,
        recall=tp / int(lab.sum()) if lab.any() else 1.0,
        merges=int(flag.sum()),
        correct=tp,
        should_merge=int(lab.sum()),
    )
