"""AI dispatch (AI 智能分拨): route an event to the responsible department and level.

The model predicts a department *role* (road maintenance, the water company, ...) from the
event's words (jieba segments and character bigrams for Chinese, stemmed English words)
and its category, with a multinomial logistic regression whose probability is the
confidence. A role that is held per district (level ``district``) is resolved by
jurisdiction: the department of that role whose region contains the event's point. A
point outside every region of a district-level role gets no department (confidence 0; it
goes to the dispatcher queue).

Events whose confidence reaches ``threshold`` dispatch automatically; the threshold is
chosen on validation data as the lowest that keeps precision at or above a target (95%)
(:meth:`Dispatcher.choose_threshold`). Dispatchers' overrides are recorded
(:meth:`Dispatcher.record_override`) and feed the next :meth:`Dispatcher.retrain`.

Baselines: the most frequent department, and a category → department lookup table
(:func:`baseline_most_frequent`, :func:`baseline_lookup`).

>>> from cityos.synth import make_city
>>> from cityos.synth._reports import make_reports
>>> city = make_city(size_km=6.0)
>>> jur = jurisdictions_from_districts(city.districts)
>>> d = Dispatcher(jur).fit(make_reports(city, 200, seed=1))
>>> dept, level, conf = d.predict(make_reports(city, 5, seed=2))[0]
>>> level in ("district", "city") and 0.0 <= conf <= 1.0
True
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt
import pandas as pd

from cityos.govern._text import tokens

__all__ = [
    "DispatchQuality",
    "Dispatcher",
    "auto_share_at",
    "baseline_lookup",
    "baseline_most_frequent",
    "evaluate_dispatch",
    "jurisdictions_from_districts",
    "nyc_311_dispatch_set",
    "threshold_for_precision",
]

FloatArray = npt.NDArray[np.float64]


def jurisdictions_from_districts(districts: Any, name: str = "name") -> pd.DataFrame:
    """Regions of district-level departments: one row per district, ``region`` (the
    district's name, the prefix of its departments' names) and ``geometry``."""
    return pd.DataFrame(
        {"region": districts[name].astype(str).to_numpy(), "geometry": list(districts.geometry)}
    )


def _texts(df: pd.DataFrame) -> list[str]:
    def col(name: str) -> list[str]:
        if name not in df.columns:
            return [""] * len(df)
        return [str(v) for v in df[name].fillna("").astype(str)]

    return [f"{a} {b}" for a, b in zip(col("title"), col("description"), strict=True)]


def threshold_for_precision(conf: Any, correct: Any, target: float = 0.95, min_n: int = 5) -> float:
    """The lowest confidence threshold whose auto-dispatched set (confidence >= it) has
    precision >= ``target`` on validation (at least ``min_n`` events); ``inf`` when none
    does (nothing dispatches automatically)."""
    c = np.asarray(conf, dtype=np.float64)
    ok = np.asarray(correct, dtype=bool)
    order = np.argsort(-c, kind="stable")
    c, ok = c[order], ok[order]
    prec = np.cumsum(ok) / np.arange(1, len(ok) + 1)
    best = np.inf
    for k in range(len(c)):
        if k + 1 < min_n:
            continue
        if k + 1 < len(c) and c[k + 1] == c[k]:  # a threshold takes every tie
            continue
        if prec[k] >= target:
            best = float(c[k])
    return best


def auto_share_at(conf: Any, correct: Any, threshold: float) -> tuple[float, float]:
    """(share of events at or above ``threshold``, their precision)."""
    c = np.asarray(conf, dtype=np.float64)
    ok = np.asarray(correct, dtype=bool)
    sel = c >= threshold
    return float(sel.mean()) if len(c) else 0.0, float(ok[sel].mean()) if sel.any() else 1.0


class Dispatcher:
    """Routes events to departments (see the module docstring).

    Parameters
    ----------
    jurisdictions:
        Regions of district-level departments (``region``, ``geometry`` in lon/lat); a
        department named ``"<region> <role>"`` is that role in that region.
    threshold:
        Confidence for automatic dispatch (set by :meth:`choose_threshold`).
    """

    def __init__(
        self,
        jurisdictions: pd.DataFrame | None = None,
        threshold: float = float("inf"),
        *,
        organisation: Any = None,
    ):
        self.jurisdictions = jurisdictions
        #: governance's :class:`~cityos.govern.Jurisdictions`: departments are then its
        #: codes, a role is ``function@level`` and resolves to the department of that
        #: function and level whose jurisdiction holds the point. May be set after
        #: training on generated reports (``Dispatcher.pretrained(city)``): their roles
        #: are the generated organisation's functions.
        self.organisation = organisation
        self.threshold = float(threshold)
        self._vec: Any = None
        self._cat: Any = None
        self._clf: Any = None
        self._role_level: dict[str, str] = {}
        self._train: pd.DataFrame | None = None
        self.overrides: list[dict[str, Any]] = []
        self._tree: Any = None
        if jurisdictions is not None and len(jurisdictions):
            import shapely

            self._tree = shapely.STRtree(np.asarray(list(jurisdictions["geometry"])))
            self._regions = jurisdictions["region"].astype(str).to_numpy()

    # -- jurisdiction ------------------------------------------------------------------------
    def region_of(self, x: Any, y: Any) -> list[str | None]:
        """The region containing each point (None outside every region)."""
        xs = np.atleast_1d(np.asarray(x, dtype=np.float64))
        ys = np.atleast_1d(np.asarray(y, dtype=np.float64))
        out: list[str | None] = [None] * len(xs)
        if self._tree is None:
            return out
        import shapely

        pts = shapely.points(xs, ys)
        src, tgt = self._tree.query(pts, predicate="intersects")
        for s, t in zip(src, tgt, strict=True):
            if out[int(s)] is None:
                out[int(s)] = str(self._regions[int(t)])
        return out

    def _roles(self, df: pd.DataFrame) -> tuple[list[str], list[str]]:
        """Split each department label into (role, level) using the point's region."""
        if self.organisation is not None:
            org = self.organisation
            roles_o: list[str] = []
            lv_o: list[str] = []
            for dept in df["department"].astype(str):
                d = org.departments.get(dept)
                if d is None:
                    roles_o.append(dept)
                    lv_o.append("city")
                    continue
                lvl = org.department_level(dept)
                roles_o.append(f"{d.function}@{lvl}")
                lv_o.append(lvl)
            return roles_o, lv_o
        regions = (
            self.region_of(df["x"], df["y"]) if {"x", "y"} <= set(df.columns) else [None] * len(df)
        )
        levels = df["level"].astype(str).to_numpy() if "level" in df.columns else None
        roles: list[str] = []
        lv: list[str] = []
        for k, dept in enumerate(df["department"].astype(str)):
            reg = regions[k]
            if reg is not None and dept.startswith(reg + " "):
                roles.append(dept[len(reg) + 1 :])
                lv.append("district")
            else:
                roles.append(dept)
                lv.append(str(levels[k]) if levels is not None else "city")
        return roles, lv

    # -- training ----------------------------------------------------------------------------
    def fit(self, events: pd.DataFrame, *, sample_weight: Any = None) -> Dispatcher:
        """Train on events with a known ``department`` (and optionally ``level``)."""
        from sklearn.feature_extraction.text import TfidfVectorizer
        from sklearn.linear_model import LogisticRegression

        df = events.reset_index(drop=True)
        if df.empty:
            raise ValueError("Dispatcher.fit needs at least one event with a department")
        self._train = df
        roles, lv = self._roles(df)
        self._role_level = {}
        for r, lvl in zip(roles, lv, strict=True):
            self._role_level.setdefault(r, lvl)
        self._vec = TfidfVectorizer(analyzer=tokens, sublinear_tf=True).fit(_texts(df))
        self._cat_index = {c: j for j, c in enumerate(sorted(set(df["category"].astype(str))))}
        X = self._matrix(df)
        if len(set(roles)) == 1:
            self._clf = _Constant(roles[0])
        else:
            from cityos.govern.dedup import _one_thread

            with _one_thread():
                self._clf = LogisticRegression(C=10.0, solver="newton-cg", max_iter=300).fit(
                    X, roles, sample_weight=sample_weight
                )
        return self

    def _matrix(self, df: pd.DataFrame) -> Any:
        return self._matrix_of(_texts(df), [str(c) for c in df["category"]])

    def _matrix_of(self, texts: Sequence[str], cats: Sequence[str]) -> Any:
        """Words (TF-IDF) and a one-hot category (unknown categories: all zeros)."""
        from scipy.sparse import csr_matrix, hstack

        rows = [i for i, c in enumerate(cats) if c in self._cat_index]
        onehot = csr_matrix(
            (np.ones(len(rows)), (rows, [self._cat_index[cats[i]] for i in rows])),
            shape=(len(cats), len(self._cat_index)),
        )
        return hstack([self._vec.transform(list(texts)), onehot]).tocsr()

    def _proba(self, X: Any) -> FloatArray:
        """Class probabilities of the multinomial model, computed directly (no per-call
        validation overhead: intake calls this once per report)."""
        if isinstance(self._clf, _Constant):
            return self._clf.predict_proba(X)
        z = np.asarray(X @ self._clf.coef_.T) + self._clf.intercept_
        if z.shape[1] == 1:  # two classes: sklearn's binary form
            p1 = 1.0 / (1.0 + np.exp(-z[:, 0]))
            return np.column_stack([1 - p1, p1])
        z -= z.max(axis=1, keepdims=True)
        e = np.exp(z)
        return np.asarray(e / e.sum(axis=1, keepdims=True), dtype=np.float64)

    def _predict_lists(
        self, texts: Sequence[str], cats: Sequence[str], xs: FloatArray, ys: FloatArray
    ) -> tuple[list[str | None], list[str], FloatArray]:
        if self._clf is None:
            raise RuntimeError("Dispatcher is not trained: call fit()")
        p = self._proba(self._matrix_of(texts, cats))
        k = np.argmax(p, axis=1)
        roles = np.asarray(self._clf.classes_)[k]
        conf = np.array(p[np.arange(len(k)), k], dtype=np.float64)
        need_regions = self.organisation is None and self._tree is not None
        regions = self.region_of(xs, ys) if need_regions else [None] * len(k)
        dept: list[str | None] = []
        levels: list[str] = []
        for i, r in enumerate(roles):
            lvl = self._role_level.get(str(r), "city")
            levels.append(lvl)
            if self.organisation is not None:
                code = self._resolve(str(r), float(xs[i]), float(ys[i]))
                dept.append(code)
                if code is None:
                    conf[i] = 0.0
            elif lvl == "district":
                if regions[i] is None:
                    dept.append(None)
                    conf[i] = 0.0
                else:
                    dept.append(f"{regions[i]} {r}")
            else:
                dept.append(str(r))
        return dept, levels, conf

    # -- prediction --------------------------------------------------------------------------
    def predict_frame(self, events: pd.DataFrame) -> pd.DataFrame:
        """``department``, ``level``, ``confidence``, ``auto`` (confidence >= threshold) per event."""
        if self._clf is None:
            raise RuntimeError("Dispatcher is not trained: call fit()")
        df = events.reset_index(drop=True)
        if df.empty:
            return pd.DataFrame({"department": [], "level": [], "confidence": [], "auto": []})
        xs = df["x"].to_numpy(float) if "x" in df.columns else np.full(len(df), np.nan)
        ys = df["y"].to_numpy(float) if "y" in df.columns else np.full(len(df), np.nan)
        dept, levels, conf = self._predict_lists(
            _texts(df), [str(c) for c in df["category"]], xs, ys
        )
        return pd.DataFrame(
            {
                "department": dept,
                "level": levels,
                "confidence": conf,
                "auto": conf >= self.threshold,
            }
        )

    def _resolve(self, role: str, x: float, y: float) -> str | None:
        """The organisation's department of ``role`` (function@level) holding (x, y)."""
        org = self.organisation
        if "@" in role:
            fn, lvl = role.split("@", 1)
        elif role in org.departments:
            return role
        else:  # a role learnt from "<region> <role>" labels: the organisation's office of it
            fn, lvl = role, self._role_level.get(role, "city")
        cands = sorted(
            c
            for c, d in org.departments.items()
            if d.function == fn and org.department_level(c) == lvl
        )
        for c in cands:
            if org.holds(c, x, y):
                return str(c)
        return None

    @classmethod
    def from_governance(
        cls, gov: Any, *, validation_share: float = 0.25, target: float = 0.95
    ) -> Dispatcher:
        """Train on governance's history: every event a person dispatched (the ``events``
        dataset's department, overrides included), threshold chosen for ``target``
        precision on the most recent ``validation_share`` of them."""
        ev = gov.store.read("events").to_pandas()
        ev = ev[ev["department"].notna() & ev["parent_id"].isna()]
        ev = ev.sort_values("t", kind="stable").reset_index(drop=True)
        if ev.empty:
            raise ValueError("no dispatched events to learn from")
        n_val = int(len(ev) * validation_share)
        d = cls(organisation=gov.jurisdictions)
        if n_val >= 5:
            d.fit(ev.iloc[: len(ev) - n_val])
            d.choose_threshold(ev.iloc[len(ev) - n_val :], target)
        d.fit(ev)
        return d

    def predict(self, events: Any) -> list[tuple[str | None, str, float]]:
        """The governance hook: ``(department, level, confidence)`` per event (a
        DataFrame, mappings, or objects such as governance's ``Event``, whose
        ``service_code`` stands for the category when it has none)."""
        from cityos.govern.dedup import as_record

        recs: list[dict[Any, Any]] = (
            events.to_dict("records")
            if isinstance(events, pd.DataFrame)
            else [as_record(e) for e in events]
        )
        if not recs:
            return []
        texts = [f"{r.get('title') or ''} {r.get('description') or ''}" for r in recs]
        cats = [
            str(r.get("category") if r.get("category") is not None else r.get("service_code"))
            for r in recs
        ]
        xs = np.array([_num(r.get("x")) for r in recs])
        ys = np.array([_num(r.get("y")) for r in recs])
        dept, levels, conf = self._predict_lists(texts, cats, xs, ys)
        return [(d, lv, float(c)) for d, lv, c in zip(dept, levels, conf, strict=True)]

    def choose_threshold(self, validation: pd.DataFrame, target: float = 0.95) -> float:
        """Set :attr:`threshold` to the lowest confidence with validation precision >= target."""
        f = self.predict_frame(validation)
        ok = (
            f["department"].astype(str).to_numpy()
            == validation["department"].astype(str).to_numpy()
        )
        self.threshold = threshold_for_precision(f["confidence"], ok, target)
        return self.threshold

    # -- overrides and retraining --------------------------------------------------------------
    def record_override(self, event: Any, department: str, level: str | None = None) -> None:
        """A dispatcher sent ``event`` to ``department``: keep it for the next retraining."""
        from cityos.govern.dedup import as_record

        rec = as_record(event)
        row = {k: rec.get(k) for k in ("t", "x", "y", "category", "title", "description")}
        row["department"] = department
        if level is not None:
            row["level"] = level
        self.overrides.append(row)

    def retrain(self, override_weight: float = 3.0) -> Dispatcher:
        """Refit on the training events plus every recorded override (weighted), keeping the
        threshold."""
        if self._train is None:
            raise RuntimeError("Dispatcher is not trained: call fit()")
        base = self._train
        extra = pd.DataFrame(self.overrides)
        both = pd.concat([base, extra], ignore_index=True) if len(extra) else base
        w = np.concatenate([np.ones(len(base)), np.full(len(extra), override_weight)])
        thr = self.threshold
        self.fit(both, sample_weight=w)
        self._train = base if not len(extra) else both
        self.overrides = []
        self.threshold = thr
        return self

    @classmethod
    def pretrained(cls, city: Any = None, seed: int = 0) -> Dispatcher:
        """A dispatcher trained on generated reports of ``city`` (the demo city by default
        shape), threshold chosen for 95% precision on a held-out generated set."""
        from cityos.synth import make_city
        from cityos.synth._reports import make_reports

        city = city if city is not None else make_city(seed=seed, size_km=10.0)
        d = cls(jurisdictions_from_districts(city.districts))
        d.fit(make_reports(city, 800, seed=seed + 200))
        d.choose_threshold(make_reports(city, 300, seed=seed + 201))
        return d


def _num(v: Any) -> float:
    return float(v) if v is not None else float("nan")


class _Constant:
    def __init__(self, label: str) -> None:
        self.classes_ = np.array([label])

    def predict_proba(self, X: Any) -> FloatArray:
        return np.ones((X.shape[0], 1))


def baseline_most_frequent(
    train: pd.DataFrame, test: pd.DataFrame
) -> tuple[FloatArray, npt.NDArray[np.object_]]:
    """(confidence, department) of the most frequent training department for every event;
    the confidence is that department's training share."""
    vc = train["department"].astype(str).value_counts(normalize=True)
    return np.full(len(test), float(vc.iloc[0])), np.full(len(test), vc.index[0], dtype=object)


def baseline_lookup(
    train: pd.DataFrame, test: pd.DataFrame
) -> tuple[FloatArray, npt.NDArray[np.object_]]:
    """(confidence, department) from a category → department table (the category's most
    frequent training department, its share as confidence; unseen categories fall back
    to the most frequent department)."""
    fc, fd = baseline_most_frequent(train, test)
    tab: dict[str, tuple[str, float]] = {}
    for c, grp in train.groupby(train["category"].astype(str)):
        vc = grp["department"].astype(str).value_counts(normalize=True)
        tab[str(c)] = (str(vc.index[0]), float(vc.iloc[0]))
    conf = fc.copy()
    dept = fd.copy()
    for i, c in enumerate(test["category"].astype(str)):
        if c in tab:
            dept[i], conf[i] = tab[c]
    return conf, dept


@dataclass(frozen=True)
class DispatchQuality:
    method: str
    accuracy: float
    threshold: float
    auto_share: float
    auto_precision: float
    n_test: int

    def row(self) -> tuple[str, ...]:
        thr = "none" if not np.isfinite(self.threshold) else f"{self.threshold:.2f}"
        return (
            self.method,
            f"{self.accuracy:.3f}",
            f"{self.auto_share:.3f}",
            f"{self.auto_precision:.3f}",
            thr,
            str(self.n_test),
        )


def evaluate_dispatch(
    train: pd.DataFrame,
    validation: pd.DataFrame,
    test: pd.DataFrame,
    *,
    jurisdictions: pd.DataFrame | None = None,
    target: float = 0.95,
) -> list[DispatchQuality]:
    """Accuracy and the share auto-dispatchable at ``target`` precision (threshold chosen
    on ``validation``, measured on ``test``) for the model and both baselines."""
    out: list[DispatchQuality] = []
    truth = test["department"].astype(str).to_numpy()
    vtruth = validation["department"].astype(str).to_numpy()
    d = Dispatcher(jurisdictions).fit(train)
    thr = d.choose_threshold(validation, target)
    f = d.predict_frame(test)
    ok = f["department"].astype(str).to_numpy() == truth
    share, prec = auto_share_at(f["confidence"], ok, thr)
    out.append(
        DispatchQuality(
            "model (text+category+jurisdiction)", float(ok.mean()), thr, share, prec, len(test)
        )
    )
    for name, fn in (
        ("most frequent department", baseline_most_frequent),
        ("category lookup", baseline_lookup),
    ):
        vc, vd = fn(train, validation)
        bthr = threshold_for_precision(vc, vd.astype(str) == vtruth, target)
        c, dd = fn(train, test)
        bok = dd.astype(str) == truth
        s, p = auto_share_at(c, bok, bthr)
        out.append(DispatchQuality(name, float(bok.mean()), bthr, s, p, len(test)))
    return out


def nyc_311_dispatch_set(paths: Sequence[Any]) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """NYC 311 samples as (train, validation, test): the agency is the department label;
    each sample is split chronologically (first 60% of its requests by created time to
    train, next 20% validation, last 20% test) and the parts pooled. The samples are small
    (about 1,160 requests), so figures on them are indicative only."""
    from cityos.govern.dedup import nyc_311_reports

    parts: list[list[pd.DataFrame]] = [[], [], []]
    for p in paths:
        df = nyc_311_reports(p).sort_values("t", kind="stable").reset_index(drop=True)
        df = df.assign(level="city")
        n = len(df)
        a, b = int(n * 0.6), int(n * 0.8)
        parts[0].append(df.iloc[:a])
        parts[1].append(df.iloc[a:b])
        parts[2].append(df.iloc[b:])
    tr, va, te = (pd.concat(p, ignore_index=True) for p in parts)
    return tr, va, te
