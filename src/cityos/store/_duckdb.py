"""The embedded engine: pruned row groups read with Arrow, exact predicates in numpy, and
relational work (grouping, aggregation) in DuckDB over the Arrow data, in one process."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from typing import Any, TypeVar

import duckdb
import numpy as np
import pandas as pd
import pyarrow as pa

from cityos.errors import QueryError
from cityos.geo.distance import point_bbox_distance
from cityos.model import GEOM_COL, ID_COL, TIME_COL
from cityos.store import _idindex as idindex
from cityos.store._engine import (
    DatasetContext,
    QueryEngine,
    empty_table,
    parallel_map,
    read_plan,
    sort_table,
    split_plan,
)
from cityos.store._kernels import (
    DIST_COL,
    EDGE_COL,
    REGION_COL,
    LineIndex,
    aggregate_frame,
    aggregate_keys,
    bin_ms,
    distances,
    group_trajectories,
    lines_index,
    nearest_lines,
    reference_point,
    regions_containing,
    regions_index,
    similarity_topk,
    utm_crs,
)
from cityos.store._plan import Predicate, ScanPlan, plan_scan, prune_mask
from cityos.store._spec import Aggregate
from cityos.store._sql import SqlView

__all__ = ["DuckDBEngine"]

_P = TypeVar("_P")

#: A clamped-point haversine distance to a box is a lower bound only up to the curvature
#: of meridians and parallels; scaling it down keeps the bound safe at city scale.
_LB_SAFETY = 0.99


class DuckDBEngine(QueryEngine):
    """Embedded execution (the default)."""

    name = "duckdb"

    def sql(self, query: str, views: Sequence[SqlView]) -> pa.Table:
        from cityos.store._sql import duckdb_sql

        return duckdb_sql(query, views)

    def _scan(
        self,
        ctx: DatasetContext,
        pred: Predicate,
        info: dict[str, Any],
        columns: list[str] | None = None,
    ) -> pa.Table:
        parts = self._scan_parts(ctx, pred, info, columns, lambda t: t)
        if len(parts) == 1:
            return parts[0]
        return pa.concat_tables(parts, promote_options="permissive")

    def _scan_parts(
        self,
        ctx: DatasetContext,
        pred: Predicate,
        info: dict[str, Any],
        columns: list[str] | None,
        then: Callable[[pa.Table], _P],
    ) -> list[_P]:
        """``then`` applied to the rows matching ``pred``, part by part: a large plan is cut
        into consecutive parts that are read, decoded, filtered and given to ``then`` on
        the query threads at once. Concatenating the parts' rows gives exactly the rows,
        in the same order, that one thread reading the whole plan would give."""
        plan = plan_scan(ctx.stats, pred)
        info["files_read"] = info.get("files_read", 0) + len(plan.files)
        by_id = (
            _by_id(ctx, plan, pred, self.deadline.check, info)
            if pred.ids is not None and pred.geometry is None and idindex.applies(ctx.schema)
            else None
        )
        if by_id is not None:
            info["rows_scanned"] = info.get("rows_scanned", 0) + by_id.num_rows
            return [then(self._keep(by_id, pred, columns))]
        info["row_groups_read"] = info.get("row_groups_read", 0) + plan.row_groups
        phys = ctx.physical(columns)
        # a restriction counts the rows it removes on the context: keep that on one thread
        plans = [plan] if ctx.restriction is not None else split_plan(plan)
        threads = None if len(plans) == 1 else False

        def part(p: ScanPlan) -> tuple[int, _P]:
            tbl = read_plan(ctx, p, phys, self.deadline, use_threads=threads)
            return tbl.num_rows, then(self._keep(tbl, pred, columns))

        done = parallel_map(part, plans)
        info["rows_scanned"] = info.get("rows_scanned", 0) + sum(n for n, _ in done)
        return [r for _, r in done]

    @staticmethod
    def _keep(tbl: pa.Table, pred: Predicate, columns: list[str] | None) -> pa.Table:
        """The rows of ``tbl`` matching ``pred`` exactly, with ``columns`` (all if None)."""
        m = pred.mask(tbl)
        out = tbl.filter(pa.array(m)) if not m.all() else tbl
        if columns is not None:
            out = out.select([c for c in columns if c in out.column_names])
        return out

    def _range(
        self, ctx: DatasetContext, pred: Predicate, columns: list[str] | None, info: dict[str, Any]
    ) -> pa.Table:
        if columns is not None and pred.geometry is not None:
            # the exact geometry test needs the coordinates, asked for or not
            shape = ["x", "y"] if ctx.schema.point_layout else [GEOM_COL]
            columns = list(dict.fromkeys([*columns, *shape]))
        return self._scan(ctx, pred, info, columns)

    def _expanding(
        self, ctx: DatasetContext, x: float, y: float, pred: Predicate, info: dict[str, Any]
    ) -> Iterator[tuple[pa.Table, float]]:
        """Yield (table of candidate rows, lower bound of everything not yet read), reading
        row groups nearest first."""
        st = ctx.stats
        idx = np.flatnonzero(prune_mask(st, pred))
        lb = point_bbox_distance(
            x, y, st.x_min[idx], st.y_min[idx], st.x_max[idx], st.y_max[idx], ctx.schema.geographic
        )
        if ctx.schema.geographic:
            lb = lb * _LB_SAFETY
        order = np.argsort(lb, kind="stable")
        pos, step = 0, 4
        while pos < len(order):
            take = order[pos : pos + step]
            pos += len(take)
            step *= 2
            m = np.zeros(len(st.rg), dtype=bool)
            m[idx[take]] = True
            plan = plan_scan(st, pred, m)
            info["files_read"] = info.get("files_read", 0) + len(plan.files)
            info["row_groups_read"] = info.get("row_groups_read", 0) + plan.row_groups
            tbl = read_plan(ctx, plan, None, self.deadline)
            info["rows_scanned"] = info.get("rows_scanned", 0) + tbl.num_rows
            tbl = tbl.filter(pa.array(pred.mask(tbl)))
            nxt = float(lb[order[pos]]) if pos < len(order) else np.inf
            yield tbl, nxt

    def _knn(
        self, ctx: DatasetContext, x: float, y: float, k: int, pred: Predicate, info: dict[str, Any]
    ) -> pa.Table:
        best: pa.Table | None = None
        for tbl, nxt in self._expanding(ctx, x, y, pred, info):
            d = distances(tbl, x, y, ctx.schema.geographic)
            tbl = tbl.append_column(DIST_COL, pa.array(d))
            best = tbl if best is None else pa.concat_tables([best, tbl])
            best = best.sort_by(
                [(DIST_COL, "ascending"), (ID_COL, "ascending"), (TIME_COL, "ascending")]
                if TIME_COL in best.column_names
                else [(DIST_COL, "ascending"), (ID_COL, "ascending")]
            ).slice(0, k)
            if best.num_rows >= k and best[DIST_COL][k - 1].as_py() < nxt:
                break
        if best is None:
            e = empty_table(ctx)
            return e.append_column(DIST_COL, pa.array([], pa.float64()))
        return best

    def _knn_trajectories(
        self, ctx: DatasetContext, x: float, y: float, k: int, pred: Predicate, info: dict[str, Any]
    ) -> pa.Table:
        best: pd.Series = pd.Series(dtype="float64")
        for tbl, nxt in self._expanding(ctx, x, y, pred, info):
            if tbl.num_rows:
                d = pd.Series(
                    distances(tbl, x, y, ctx.schema.geographic),
                    index=tbl[ID_COL].to_numpy(zero_copy_only=False),
                )
                best = pd.concat([best, d.groupby(level=0).min()]).groupby(level=0).min()
            top = _top_objects(best, k)
            if len(top) >= k and top[DIST_COL].iloc[k - 1] < nxt:
                break
        top = _top_objects(best, k)
        typ = pa.string() if ctx.schema.id_type == "string" else pa.int64()
        return pa.table(
            {
                ID_COL: pa.array(top[ID_COL].tolist(), typ),
                DIST_COL: pa.array(top[DIST_COL].to_numpy(), pa.float64()),
            }
        )

    def _similar(
        self,
        ctx: DatasetContext,
        coords: np.ndarray,
        k: int,
        metric: str,
        pred: Predicate,
        info: dict[str, Any],
    ) -> pa.Table:
        tbl = self._scan(ctx, pred, info, [ID_COL, TIME_COL, "x", "y"])
        ids, trajs = group_trajectories(tbl)
        top_ids, d = similarity_topk(
            ids, trajs, coords, k, metric, ctx.schema.geographic, self.deadline.check
        )
        typ = pa.string() if ctx.schema.id_type == "string" else pa.int64()
        return pa.table({ID_COL: pa.array(list(top_ids), typ), DIST_COL: pa.array(d, pa.float64())})

    def _join_regions(
        self, ctx: DatasetContext, regions: DatasetContext, pred: Predicate, info: dict[str, Any]
    ) -> pa.Table:
        index = self._regions_index(regions)  # built (or taken from the cache) once, here

        def join(pts: pa.Table) -> pa.Table:
            # every point's regions depend on that point alone: parts join independently
            pi, rid = regions_containing(pts["x"].to_numpy(), pts["y"].to_numpy(), None, index)
            return pts.take(pa.array(pi, pa.int64())).append_column(REGION_COL, pa.array(rid))

        out = _concat(self._scan_parts(ctx, pred, info, None, join))
        return sort_table(
            out,
            [(ID_COL, "ascending"), (TIME_COL, "ascending"), (REGION_COL, "ascending")]
            if TIME_COL in out.column_names
            else [(ID_COL, "ascending"), (REGION_COL, "ascending")],
        )

    def _join_nearest(
        self,
        ctx: DatasetContext,
        lines: DatasetContext,
        max_d: float,
        pred: Predicate,
        info: dict[str, Any],
    ) -> pa.Table:
        ref = reference_point(ctx.stats)
        crs, geo = ctx.schema.crs, ctx.schema.geographic

        def build() -> tuple[Any, np.ndarray]:
            return lines_index(self._scan(lines, Predicate(), {}), crs, geo, ref)

        # the metric frame depends on the points only through its UTM zone
        tree, lids = self._cached(lines, ("lines_index", crs, geo, geo and utm_crs(*ref)), build)
        if isinstance(tree, LineIndex):
            # the search grid and the lines' id ranks are built once, before the parts share them
            tree.grid(max_d)
            tree.id_rank(lids)

        def join(pts: pa.Table) -> pa.Table:
            # every point's nearest line depends on that point alone: parts join independently
            pi, eid, d = nearest_lines(
                pts["x"].to_numpy(), pts["y"].to_numpy(), tree, lids, max_d, crs, geo, ref
            )
            out = pts.take(pa.array(pi, pa.int64()))
            return out.append_column(EDGE_COL, pa.array(eid)).append_column(
                DIST_COL, pa.array(d, pa.float64())
            )

        out = _concat(self._scan_parts(ctx, pred, info, None, join))
        keys = [(ID_COL, "ascending")] + (
            [(TIME_COL, "ascending")] if TIME_COL in out.column_names else []
        )
        return sort_table(out, keys)

    def _cached(self, ctx: DatasetContext, key: Any, build: Callable[[], Any]) -> Any:
        """``build()`` cached with the version of ``ctx`` (rebuilt after any write to it);
        never cached when a restriction decides which of its rows this query sees."""
        if ctx.restriction is not None:
            return build()
        return ctx.stats.remember(key, build)

    def _regions_index(self, regions: DatasetContext) -> tuple[Any, np.ndarray]:
        return self._cached(  # type: ignore[no-any-return]
            regions,
            ("regions_index",),
            lambda: regions_index(self._scan(regions, Predicate(), {})),
        )

    def _aggregate(
        self,
        ctx: DatasetContext,
        spec: Aggregate,
        regions: DatasetContext | None,
        pred: Predicate,
        info: dict[str, Any],
    ) -> pa.Table:
        cols = spec.agg_columns()
        pts = self._scan(
            ctx,
            pred,
            info,
            [ID_COL, TIME_COL, "x", "y", *cols]
            if ctx.schema.model.has_time
            else [ID_COL, "x", "y", *cols],
        )
        step = bin_ms(spec.time_bin) if ctx.schema.model.has_time and spec.time_bin else None
        keys = aggregate_keys(pts, spec, step, ctx.schema.crs)
        data: dict[str, Any] = dict(keys)
        reg_tbl = None
        if regions is not None:
            reg_tbl = self._scan(regions, Predicate(), {})
            pi, rid = regions_containing(
                pts["x"].to_numpy(), pts["y"].to_numpy(), None, self._regions_index(regions)
            )
            data = {k: v[pi] for k, v in data.items()}
            data[REGION_COL] = rid
            for c in cols:
                data[c] = pts[c].to_numpy(zero_copy_only=False)[pi]
        else:
            for c in cols:
                data[c] = pts[c].to_numpy(zero_copy_only=False)
        frame = pa.table(data)
        group = [c for c in ("cell_x", "cell_y", REGION_COL, "t_bin") if c in frame.column_names]
        # names are validated identifiers (normalise_aggs); quoting them as well means no
        # name can ever be read as SQL
        sel = []
        for out, a in spec.agg_specs.items():
            if a.column is None:
                sel.append(f"count(*) AS {_quote(out)}")
            else:
                fn = "avg" if a.fn == "mean" else a.fn
                sel.append(f"{fn}({_quote(a.column)}) AS {_quote(out)}")
        con = duckdb.connect()
        try:
            con.register("frame", frame)
            gl = ", ".join(_quote(g) for g in group)
            with self.deadline.watch(con.interrupt):
                df = con.execute(f"SELECT {gl}, {', '.join(sel)} FROM frame GROUP BY {gl}").df()
        except duckdb.Error as exc:
            # DuckDB messages can quote row values: say what failed, not with what
            raise QueryError(
                f"aggregation over {ctx.name!r} failed ({type(exc).__name__}); check the "
                "aggregated columns' types"
            ) from None
        finally:
            con.close()
        return aggregate_frame(df, spec, reg_tbl, ctx.schema.crs)


def _by_id(
    ctx: DatasetContext,
    plan: ScanPlan,
    pred: Predicate,
    check: Callable[[], None],
    info: dict[str, Any],
) -> pa.Table | None:
    """The planned files' rows of ``pred.ids`` read through their id-index copies (a row
    group or two per file instead of every group the object passes through); files
    without a usable copy are read as planned. None when no planned file has a copy."""
    assert pred.ids is not None
    parts: list[pa.Table] = []
    rest: dict[str, list[int]] = {}
    used = rgs_read = 0
    for rel, rgs in plan.files.items():
        check()
        idx = idindex.id_index(str(ctx.data_dir / rel), ctx.stats.id_ranges.get(rel))
        if idx is None:
            rest[rel] = rgs
            continue
        sel = idx.row_groups(pred.ids, pred.start, pred.end)
        used += 1
        rgs_read += len(sel)
        if sel:
            parts.append(idx.read(sel))
    if not used:
        return None
    info["id_index_files"] = info.get("id_index_files", 0) + used
    if rest:
        sub = ScanPlan(rest, plan.row_groups_total, plan.files_total, 0)
        rgs_read += sub.row_groups
        # read_plan applies the restriction; the copies' rows get it below
        extra = read_plan(ctx, sub, None)
    else:
        extra = None
    info["row_groups_read"] = info.get("row_groups_read", 0) + rgs_read
    if not parts:
        return extra if extra is not None else empty_table(ctx)
    tbl = pa.concat_tables(parts, promote_options="permissive") if len(parts) > 1 else parts[0]
    tbl = ctx.restrict(tbl)
    if extra is not None:
        tbl = pa.concat_tables([tbl, extra], promote_options="permissive")
    return tbl


def _concat(parts: list[pa.Table]) -> pa.Table:
    return parts[0] if len(parts) == 1 else pa.concat_tables(parts, promote_options="permissive")


def _top_objects(best: pd.Series, k: int) -> pd.DataFrame:
    df = pd.DataFrame({ID_COL: best.index.to_numpy(), DIST_COL: best.to_numpy()})
    return df.sort_values([DIST_COL, ID_COL], kind="stable").head(k).reset_index(drop=True)


def _quote(name: str) -> str:
    """A SQL identifier, double-quoted with embedded quotes doubled."""
    return '"' + name.replace('"', '""') + '"'
