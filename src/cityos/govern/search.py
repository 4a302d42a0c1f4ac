"""One search (智能搜索) across events, the catalog's datasets, enterprises and places, in
Chinese and English, with place and time filters, ranked by BM25 over the words of each
document (jieba segments and character bigrams for Chinese, stemmed English words: the
tokeniser of :mod:`cityos.govern._text`), with a boost for a query that names a document's
title outright.

Data rights: given a :class:`cityos.access.SecureStore`, every document is read *through*
it, so a dataset the user may not read contributes nothing (not even its name in the
catalog part), row filters drop the rows the user may not see, and personal fields come
back masked; the search never sees more than the user does.

>>> import tempfile, cityos
>>> from cityos.model import DatasetSchema, Field, ModelKind
>>> store = cityos.open_city(tempfile.mkdtemp())
>>> _ = store.create_dataset("pois", DatasetSchema(ModelKind.POINT_STATIC, fields=(Field("name"), Field("category"))))
>>> _ = store.append("pois", [{"id": "1", "x": 116.4, "y": 39.9, "name": "Chaoyang Hospital", "category": "hospital"},
...                           {"id": "2", "x": 116.5, "y": 39.9, "name": "朝阳公园", "category": "park"}])
>>> [h.title for h in Search(store).search("公园")]
['朝阳公园']
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from cityos.govern._text import tokens

__all__ = ["KINDS", "Hit", "Search"]

KINDS = ("event", "dataset", "enterprise", "place")

#: where each kind of document comes from: (kind, dataset, title columns, text columns)
SOURCES: tuple[tuple[str, str, tuple[str, ...], tuple[str, ...]], ...] = (
    ("event", "events", ("title",), ("description", "category", "department", "status")),
    ("enterprise", "enterprises", ("name",), ("kind",)),
    ("place", "districts", ("name",), ()),
    ("place", "pois", ("name",), ("category",)),
)


@dataclass(frozen=True)
class Hit:
    """One search result."""

    kind: str
    id: str
    title: str
    snippet: str
    score: float
    dataset: str
    x: float | None = None
    y: float | None = None
    t: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "id": self.id,
            "title": self.title,
            "snippet": self.snippet,
            "score": round(self.score, 4),
            "dataset": self.dataset,
            "x": self.x,
            "y": self.y,
            "t": self.t,
        }


@dataclass
class _Doc:
    kind: str
    id: str
    title: str
    text: str
    dataset: str
    x: float | None
    y: float | None
    t: pd.Timestamp | None


def _s(v: Any) -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return ""
    return str(v)


class Search:
    """Search over a store, or over what a principal may read of it.

    Parameters
    ----------
    store:
        A :class:`cityos.store.Store` (everything) or a :class:`cityos.access.SecureStore`
        (what its principal may read; the server always passes one).
    """

    def __init__(self, store: Any, *, k1: float = 1.2, b: float = 0.75) -> None:
        self.store = store
        self.k1, self.b = k1, b

    # -- documents --------------------------------------------------------------------------
    def _datasets(self) -> dict[str, Any]:
        return {d.name: d for d in self.store.list_datasets()}

    def documents(self, kinds: Sequence[str] = KINDS) -> list[_Doc]:
        """Every document the store (as its principal) shows."""
        visible = self._datasets()
        docs: list[_Doc] = []
        for kind, ds, title_cols, text_cols in SOURCES:
            if kind not in kinds or ds not in visible:
                continue
            df = self.store.read(ds).to_pandas()
            if df.empty:
                continue
            xs, ys = self._positions(df)
            ts = pd.to_datetime(df["t"], utc=True) if "t" in df.columns else None
            tcols = [c for c in title_cols if c in df.columns]
            xcols = [c for c in text_cols if c in df.columns]
            for i, row in enumerate(df.to_dict("records")):
                title = " ".join(_s(row[c]) for c in tcols).strip() or _s(row.get("id"))
                text = " ".join(_s(row[c]) for c in xcols).strip()
                docs.append(
                    _Doc(
                        kind,
                        _s(row.get("id")),
                        title,
                        text,
                        ds,
                        None if xs is None else float(xs[i]),
                        None if ys is None else float(ys[i]),
                        None if ts is None else ts.iloc[i],
                    )
                )
        if "dataset" in kinds:
            for name, info in visible.items():
                fields = " ".join(f.name for f in getattr(info.schema, "fields", ()))
                desc = _s(
                    getattr(info, "description", "") or getattr(info.schema, "description", "")
                )
                docs.append(
                    _Doc(
                        "dataset",
                        name,
                        name,
                        f"{name.replace('_', ' ')} {desc} {fields}",
                        name,
                        None,
                        None,
                        None,
                    )
                )
        return docs

    @staticmethod
    def _positions(df: pd.DataFrame) -> tuple[Any, Any]:
        if "x" in df.columns and "y" in df.columns:
            return df["x"].to_numpy(float), df["y"].to_numpy(float)
        if "geometry" in df.columns:
            import shapely

            geoms = shapely.from_wkb(df["geometry"].to_numpy())
            pts = shapely.point_on_surface(geoms)
            return shapely.get_x(pts), shapely.get_y(pts)
        return None, None

    # -- ranking --------------------------------------------------------------------------------
    def search(
        self,
        q: str,
        *,
        bbox: Sequence[float] | None = None,
        start: Any = None,
        end: Any = None,
        kinds: Sequence[str] = KINDS,
        limit: int = 20,
    ) -> list[Hit]:
        """Documents matching ``q`` (any of its words), best first. ``bbox`` (min lon, min
        lat, max lon, max lat) keeps documents with a position inside it; ``start``/``end``
        keep timed documents in ``[start, end)`` (a filter drops documents that have no
        position, or no time, respectively)."""
        unknown = sorted(set(kinds) - set(KINDS))
        if unknown:
            raise ValueError(f"kinds: {unknown} are not among {KINDS}")
        qt = tokens(q)
        if not qt:
            return []
        docs = self.documents(kinds)
        if bbox is not None:
            x0, y0, x1, y1 = (float(v) for v in bbox)
            docs = [
                d
                for d in docs
                if d.x is not None and d.y is not None and x0 <= d.x <= x1 and y0 <= d.y <= y1
            ]
        if start is not None or end is not None:
            lo = (
                pd.Timestamp(start, tz="UTC")
                if start is not None and pd.Timestamp(start).tzinfo is None
                else (pd.Timestamp(start) if start is not None else None)
            )
            hi = (
                pd.Timestamp(end, tz="UTC")
                if end is not None and pd.Timestamp(end).tzinfo is None
                else (pd.Timestamp(end) if end is not None else None)
            )
            docs = [
                d
                for d in docs
                if d.t is not None and (lo is None or d.t >= lo) and (hi is None or d.t < hi)
            ]
        if not docs:
            return []
        toks = [tokens(f"{d.title} {d.title} {d.text}") for d in docs]
        lens = np.array([len(t) for t in toks], dtype=np.float64)
        avg = float(lens.mean()) or 1.0
        n = len(docs)
        df_count: Counter[str] = Counter()
        for t in toks:
            df_count.update(set(t))
        qset = list(dict.fromkeys(qt))
        scores = np.zeros(n)
        for i, t in enumerate(toks):
            c = Counter(t)
            s = 0.0
            for w in qset:
                f = c.get(w, 0)
                if not f:
                    continue
                idf = math.log(1 + (n - df_count[w] + 0.5) / (df_count[w] + 0.5))
                s += idf * f * (self.k1 + 1) / (f + self.k1 * (1 - self.b + self.b * lens[i] / avg))
            if s and q.strip().lower() in docs[i].title.lower():
                s *= 1.5
            scores[i] = s
        order = [i for i in np.argsort(-scores, kind="stable") if scores[i] > 0][:limit]
        return [
            Hit(
                docs[i].kind,
                docs[i].id,
                docs[i].title,
                docs[i].text[:160],
                float(scores[i]),
                docs[i].dataset,
                docs[i].x,
                docs[i].y,
                None if docs[i].t is None else docs[i].t.isoformat(),
            )
            for i in order
        ]
