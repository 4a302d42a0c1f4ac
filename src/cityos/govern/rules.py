"""Early-warning rules engine (监测预警): declarative YAML rules, evaluated on a schedule,
with de-duplication of repeated warnings, a severity, backtests and a closed loop.

A rule's condition is either SQL over the store's datasets (DuckDB, every dataset a view
under its name, ``{start}``/``{end}`` the evaluation window and ``{name}`` any of the rule's
``params``) or a registered detector (the AI engine's detector protocol: ``detect(store,
start, end) -> pyarrow.Table`` with ``id, t, x, y`` and detection fields; see
:func:`register_detector`). Every row the condition answers is one warning candidate with
``t``, ``x``, ``y`` and a ``place`` (what the warning is about: a station, a vehicle, a
resident); extra columns become the warning's evidence. A row may carry its own
``severity``.

Repeated warnings collapse: the de-duplication key is ``rule : place : time bucket`` of
``dedup_window``, so a PM2.5 episode that lasts all day raises one warning per station and
window, not one per evaluation. Warnings go to a *sink* — :class:`cityos.govern.Governance`
(its ``raise_warning``) in production, :class:`WarningLog` for backtests.

>>> rules = load_rules('''
... rules:
...   - name: hot
...     kind: threshold
...     severity: warning
...     datasets: [readings]
...     sql: SELECT id AS place, t, x, y, v FROM readings WHERE v > {limit} AND t >= {start} AND t < {end}
...     params: {limit: 50}
... ''')
>>> rules[0].name, rules[0].schedule
('hot', Timedelta('0 days 01:00:00'))
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import pandas as pd

from cityos.errors import CityOSError

__all__ = [
    "DETECTORS",
    "KINDS",
    "Backtest",
    "Rule",
    "RuleEngine",
    "RuleError",
    "RunResult",
    "WarningLog",
    "load_rules",
    "outcomes_from",
    "register_detector",
]

KINDS = ("threshold", "spatiotemporal", "cross_dataset", "model")
SEVERITIES = ("info", "warning", "critical")


class RuleError(CityOSError):
    """A rule is malformed or refers to a dataset, field or detector that does not exist
    (HTTP 422); the message names the rule and what is missing."""

    status = 422


class Detector(Protocol):
    kind: str

    def detect(self, store: Any, start: Any, end: Any) -> Any: ...


#: Registered detector factories, by name: ``factory(**params) -> Detector``.
DETECTORS: dict[str, Callable[..., Detector]] = {}


def register_detector(name: str, factory: Callable[..., Detector]) -> None:
    """Make a detector available to rules as ``detector: <name>``."""
    DETECTORS[name] = factory


def _crowd(**kw: Any) -> Detector:
    from cityos.ai._anomaly import CrowdGatheringDetector

    return CrowdGatheringDetector(**kw)


def _band(**kw: Any) -> Detector:
    from cityos.ai._anomaly import ForecastBandDetector

    return ForecastBandDetector(**kw)


def _stays(**kw: Any) -> Detector:
    from cityos.govern.hazchem import AbnormalStayDetector

    return AbnormalStayDetector(**kw)


register_detector("crowd_gathering", _crowd)
register_detector("forecast_band", _band)
register_detector("abnormal_stay", _stays)


@dataclass(frozen=True)
class Rule:
    """One early-warning rule (see the module docstring for the fields)."""

    name: str
    kind: str
    severity: str = "warning"
    sql: str | None = None
    detector: str | None = None
    params: Mapping[str, Any] = field(default_factory=dict)
    datasets: tuple[str, ...] = ()
    fields: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    schedule: pd.Timedelta = field(default_factory=lambda: pd.Timedelta("1h"))
    lookback: pd.Timedelta = field(default_factory=lambda: pd.Timedelta(0))
    dedup_window: pd.Timedelta = field(default_factory=lambda: pd.Timedelta("1D"))
    title: str = ""
    service_code: str | None = None
    open_event: bool = False
    location: tuple[float, float] | None = None  # where a row without x/y is placed
    description: str = ""

    @staticmethod
    def from_dict(d: Mapping[str, Any]) -> Rule:
        name = d.get("name")
        if not isinstance(name, str) or not name:
            raise RuleError(f"a rule needs a name (got {name!r})")
        where = f"rule {name!r}"
        kind = d.get("kind")
        if kind not in KINDS:
            raise RuleError(f"{where}: kind {kind!r} is not one of {KINDS}")
        sev = d.get("severity", "warning")
        if sev not in SEVERITIES:
            raise RuleError(f"{where}: severity {sev!r} is not one of {SEVERITIES}")
        sql, det = d.get("sql"), d.get("detector")
        if (sql is None) == (det is None):
            raise RuleError(f"{where}: give exactly one of 'sql' or 'detector'")
        if det is not None and det not in DETECTORS:
            raise RuleError(
                f"{where}: detector {det!r} is not registered (known: {sorted(DETECTORS)})"
            )
        known = set(Rule.__dataclass_fields__)
        extra = sorted(set(d) - known)
        if extra:
            raise RuleError(f"{where}: unknown field(s) {extra}")

        def td(key: str, default: str) -> pd.Timedelta:
            try:
                return pd.Timedelta(str(d.get(key, default)))
            except ValueError as exc:
                raise RuleError(f"{where}: {key} {d.get(key)!r} is not a duration") from exc

        loc = d.get("location")
        return Rule(
            name=name,
            kind=str(kind),
            severity=str(sev),
            sql=sql,
            detector=det,
            params=dict(d.get("params") or {}),
            datasets=tuple(d.get("datasets") or ()),
            fields={k: tuple(v) for k, v in (d.get("fields") or {}).items()},
            schedule=td("schedule", "1h"),
            lookback=td("lookback", "0s"),
            dedup_window=td("dedup_window", "1D"),
            title=str(d.get("title") or name),
            service_code=d.get("service_code"),
            open_event=bool(d.get("open_event", False)),
            location=(float(loc[0]), float(loc[1])) if loc else None,
            description=str(d.get("description") or ""),
        )


def load_rules(src: str | Path | Iterable[Mapping[str, Any]]) -> list[Rule]:
    """Rules from a YAML file, YAML text (a ``rules:`` list or a bare list) or dicts."""
    import yaml

    if isinstance(src, Path) or (isinstance(src, str) and "\n" not in src and Path(src).is_file()):
        data: Any = yaml.safe_load(Path(src).read_text(encoding="utf-8"))
    elif isinstance(src, str):
        data = yaml.safe_load(src)
    else:
        data = list(src)
    if isinstance(data, Mapping):
        data = data.get("rules", [])
    if not isinstance(data, list):
        raise RuleError("rules: expected a list of rules")
    rules = [Rule.from_dict(d) for d in data]
    names = [r.name for r in rules]
    dup = sorted({n for n in names if names.count(n) > 1})
    if dup:
        raise RuleError(f"rules: names repeat: {dup}")
    return rules


class WarningSink(Protocol):
    def raise_warning(self, rule: str, **kw: Any) -> tuple[Any, bool]: ...


class WarningLog:
    """An in-memory warning sink with the same de-duplication as governance (a repeated
    ``dedup_key`` answers the first warning): what backtests and dry runs write to."""

    def __init__(self) -> None:
        self.rows: list[dict[str, Any]] = []
        self._keys: dict[str, dict[str, Any]] = {}

    def raise_warning(self, rule: str, **kw: Any) -> tuple[dict[str, Any], bool]:
        key = kw.get("dedup_key")
        if key is not None and key in self._keys:
            return self._keys[key], False
        row = {"id": f"W-{len(self.rows) + 1:06d}", "rule": rule, **kw}
        self.rows.append(row)
        if key is not None:
            self._keys[key] = row
        return row, True

    def frame(self) -> pd.DataFrame:
        return pd.DataFrame(self.rows)


@dataclass
class RunResult:
    """What one evaluation raised: candidates found, new warnings, repeats suppressed."""

    rule: str
    start: pd.Timestamp
    end: pd.Timestamp
    candidates: int = 0
    raised: int = 0
    repeated: int = 0
    warnings: list[Any] = field(default_factory=list)


@dataclass
class Backtest:
    """ "What this rule would have raised": the warnings, and confirmed counts where
    outcomes exist."""

    rule: str
    start: pd.Timestamp
    end: pd.Timestamp
    warnings: pd.DataFrame
    evaluations: int
    judged: int = 0
    confirmed: int = 0

    @property
    def precision(self) -> float | None:
        return self.confirmed / self.judged if self.judged else None


def _utc(v: Any) -> pd.Timestamp:
    t = pd.Timestamp(v)
    return t.tz_localize("UTC") if t.tzinfo is None else t.tz_convert("UTC")


def _sql_ts(t: pd.Timestamp) -> str:
    return f"TIMESTAMPTZ '{t.isoformat()}'"


def _jsonable(v: Any) -> Any:
    if isinstance(v, pd.Timestamp | datetime):
        return pd.Timestamp(v).isoformat()
    if isinstance(v, np.generic):
        return v.item()
    if isinstance(v, float) and not math.isfinite(v):
        return None
    return v


class RuleEngine:
    """Evaluates rules over a store and sends warnings to a sink.

    Parameters
    ----------
    store:
        The city's :class:`cityos.store.Store` (its SQL and datasets).
    rules:
        From :func:`load_rules`.
    sink:
        ``raise_warning(rule, kind=, severity=, x=, y=, t=, evidence=, title=, dedup_key=,
        service_code=, open_event=)`` — governance's, or a :class:`WarningLog`.
    """

    def __init__(self, store: Any, rules: Sequence[Rule], sink: WarningSink | None = None) -> None:
        self.store = store
        self.rules = {r.name: r for r in rules}
        self.sink: WarningSink = sink if sink is not None else WarningLog()
        self.last_end: dict[str, pd.Timestamp] = {}

    # -- checking ---------------------------------------------------------------------------
    def check(self, rule: Rule | str) -> None:
        """Fail with :class:`RuleError` naming what is missing: a declared dataset not in
        the store, a declared field not in its schema, or SQL that does not bind."""
        r = self._rule(rule)
        names = {d.name for d in self.store.list_datasets()}
        for ds in r.datasets:
            if ds not in names:
                raise RuleError(f"rule {r.name!r}: dataset {ds!r} is not in the store")
        for ds, cols in r.fields.items():
            if ds not in names:
                raise RuleError(f"rule {r.name!r}: dataset {ds!r} (in fields) is not in the store")
            have = set(self._columns(ds))
            missing = [c for c in cols if c not in have]
            if missing:
                raise RuleError(f"rule {r.name!r}: dataset {ds!r} has no field(s) {missing}")
        if r.sql is not None:
            now = pd.Timestamp.now(tz="UTC")
            self._sql(r, now - pd.Timedelta("1h"), now, explain=True)

    def _columns(self, ds: str) -> list[str]:
        schema = self.store.schema(ds)
        cols = ["id", "t", "x", "y"]
        cols += [f.name for f in getattr(schema, "fields", ())]
        return cols

    def _rule(self, rule: Rule | str) -> Rule:
        if isinstance(rule, Rule):
            return rule
        if rule not in self.rules:
            raise RuleError(f"no rule {rule!r} (rules: {sorted(self.rules)})")
        return self.rules[rule]

    # -- evaluation ---------------------------------------------------------------------------
    def _sql(
        self, r: Rule, start: pd.Timestamp, end: pd.Timestamp, explain: bool = False
    ) -> pd.DataFrame:
        assert r.sql is not None
        params = {k: v for k, v in r.params.items()}
        params.update(
            start=_sql_ts(start - r.lookback), end=_sql_ts(end), window_start=_sql_ts(start)
        )
        try:
            q = r.sql.format(**params)
        except KeyError as exc:
            raise RuleError(
                f"rule {r.name!r}: sql uses {{{exc.args[0]}}}, which is not in params"
            ) from exc
        try:
            tbl = self.store.sql(("EXPLAIN " if explain else "") + q)
        except CityOSError as exc:
            raise RuleError(f"rule {r.name!r}: {exc}") from exc
        if explain:
            return pd.DataFrame()
        return pd.DataFrame(tbl.to_pandas())

    def candidates(self, rule: Rule | str, start: Any, end: Any) -> pd.DataFrame:
        """The rows the rule's condition answers over ``[start, end)``: ``place``, ``t``,
        ``x``, ``y``, ``severity`` and evidence columns."""
        r = self._rule(rule)
        lo, hi = _utc(start), _utc(end)
        if r.sql is not None:
            names = {d.name for d in self.store.list_datasets()}
            for ds in r.datasets:
                if ds not in names:
                    raise RuleError(f"rule {r.name!r}: dataset {ds!r} is not in the store")
            df = self._sql(r, lo, hi)
        else:
            assert r.detector is not None
            try:
                det = DETECTORS[r.detector](**r.params)
            except TypeError as exc:
                raise RuleError(f"rule {r.name!r}: detector {r.detector!r} params: {exc}") from exc
            out = det.detect(self.store, lo, hi)
            df = out.to_pandas() if hasattr(out, "to_pandas") else pd.DataFrame(out)
            if "place" not in df.columns or df["place"].isna().all():
                df["place"] = df["id"] if "id" in df.columns else ""
        if df.empty:
            return df
        if "place" not in df.columns:
            df["place"] = df["id"] if "id" in df.columns else r.name
        if "t" not in df.columns:
            df["t"] = hi
        for c in ("x", "y"):
            if c not in df.columns:
                df[c] = np.nan
        if r.location is not None:
            df["x"] = df["x"].fillna(r.location[0])
            df["y"] = df["y"].fillna(r.location[1])
        if df[["x", "y"]].isna().any().any():
            raise RuleError(f"rule {r.name!r}: rows without x/y and no 'location' in the rule")
        if "severity" not in df.columns:
            df["severity"] = r.severity
        return df.reset_index(drop=True)

    def _key(self, r: Rule, place: Any, t: pd.Timestamp) -> str:
        w = int(r.dedup_window.value)
        bucket = (int(t.value) // w) if w > 0 else int(t.value)
        return f"{r.name}:{place}:{bucket}"

    def run_rule(
        self, rule: Rule | str, start: Any, end: Any, sink: WarningSink | None = None
    ) -> RunResult:
        """Evaluate one rule over ``[start, end)`` and raise its warnings."""
        r = self._rule(rule)
        sink = sink if sink is not None else self.sink
        lo, hi = _utc(start), _utc(end)
        df = self.candidates(r, lo, hi)
        res = RunResult(r.name, lo, hi, candidates=len(df))
        evidence_cols = [c for c in df.columns if c not in ("x", "y", "severity")]
        for row in df.to_dict("records"):
            t = _utc(row["t"])
            ev = {str(k): _jsonable(row[k]) for k in evidence_cols}
            ev["t"] = t.isoformat()
            sev = str(row.get("severity") or r.severity)
            w, created = sink.raise_warning(
                r.name,
                kind=r.kind,
                severity=sev if sev in SEVERITIES else r.severity,
                x=float(row["x"]),
                y=float(row["y"]),
                t=t.to_pydatetime(),
                evidence=json.loads(json.dumps(ev, default=str)),
                title=r.title.format(**{k: ev.get(k, "") for k in _fmt_keys(r.title)})
                if r.title
                else r.name,
                dedup_key=self._key(r, row["place"], t),
                service_code=r.service_code,
                open_event=r.open_event,
            )
            if created:
                res.raised += 1
                res.warnings.append(w)
            else:
                res.repeated += 1
        self.last_end[r.name] = hi
        return res

    def run(self, start: Any, end: Any) -> list[RunResult]:
        """Evaluate every rule over ``[start, end)``."""
        for r in self.rules.values():
            self.check(r)
        return [self.run_rule(r, start, end) for r in self.rules.values()]

    # -- scheduling -------------------------------------------------------------------------------
    def due(self, now: Any) -> list[str]:
        """Rules whose schedule says they should run at ``now``."""
        t = _utc(now)
        return [
            n
            for n, r in self.rules.items()
            if n not in self.last_end or t - self.last_end[n] >= r.schedule
        ]

    def tick(self, now: Any) -> list[RunResult]:
        """Run every due rule over the window since its last run (its ``schedule`` before
        ``now`` on the first run)."""
        t = _utc(now)
        out = []
        for n in self.due(t):
            r = self.rules[n]
            start = self.last_end.get(n, t - r.schedule)
            out.append(self.run_rule(r, start, t))
        return out

    def run_forever(self, stop: Any, *, clock: Any = None, poll_s: float = 30.0) -> int:
        """Scheduled evaluation: every ``poll_s`` seconds, :meth:`tick` at ``clock.now()``
        (default: the system clock) until ``stop`` (a :class:`threading.Event`) is set.
        A failing rule is logged and retried at the next tick; the others go on. Returns
        the number of ticks."""
        import logging

        log = logging.getLogger("cityos.govern.rules")
        n = 0
        while not stop.is_set():
            now = clock.now() if clock is not None else pd.Timestamp.now(tz="UTC")
            for name in self.due(now):
                try:
                    r = self.rules[name]
                    self.run_rule(r, self.last_end.get(name, _utc(now) - r.schedule), now)
                except CityOSError as exc:
                    log.error("rule %s failed: %s", name, exc)
            n += 1
            stop.wait(poll_s)
        return n

    # -- backtest -----------------------------------------------------------------------------------
    def backtest(
        self,
        rule: Rule | str,
        start: Any,
        end: Any,
        *,
        outcomes: Mapping[str, bool] | None = None,
    ) -> Backtest:
        """What ``rule`` would have raised over ``[start, end)`` evaluated on its schedule,
        into a fresh :class:`WarningLog` (nothing is raised for real). ``outcomes`` maps
        de-duplication keys (or places) to confirmed/false alarm, from handled warnings."""
        r = self._rule(rule)
        self.check(r)
        lo, hi = _utc(start), _utc(end)
        log = WarningLog()
        n = 0
        t = lo
        saved = dict(self.last_end)
        while t < hi:
            nxt = min(t + r.schedule, hi)
            self.run_rule(r, t, nxt, sink=log)
            t = nxt
            n += 1
        self.last_end = saved
        df = log.frame()
        bt = Backtest(r.name, lo, hi, df, n)
        if outcomes and not df.empty:
            for key, ev in zip(df["dedup_key"], df["evidence"], strict=True):
                o = outcomes.get(key, outcomes.get(str(ev.get("place"))))
                if o is not None:
                    bt.judged += 1
                    bt.confirmed += int(bool(o))
        return bt


def _fmt_keys(s: str) -> list[str]:
    import string

    return [f for _, f, _, _ in string.Formatter().parse(s) if f]


def outcomes_from(gov: Any, rule: Rule | str) -> dict[str, bool]:
    """Confirmed / false-alarm outcomes of a rule's handled warnings in governance, keyed
    by their de-duplication keys (the warning's own ``dedup_key``; for warnings without
    one, the key the engine would give: rule, place, time bucket), for
    :meth:`RuleEngine.backtest`. ``rule`` is a :class:`Rule` or a rule name."""
    name = rule if isinstance(rule, str) else rule.name
    w_ns = int(rule.dedup_window.value) if isinstance(rule, Rule) else 0
    out: dict[str, bool] = {}
    for w in gov.warnings(rule=name):
        if w.status not in ("confirmed", "false_alarm"):
            continue
        key = getattr(w, "dedup_key", None)
        ev = w.evidence or {}
        if not key and w_ns > 0:
            t = _utc(ev.get("t") or w.t)
            key = f"{name}:{ev.get('place')}:{int(t.value) // w_ns}"
        if key:
            out[str(key)] = w.status == "confirmed"
    return out
