"""Hidden-Markov-model map matching (Newson & Krumm 2009), vectorised over trajectories.

States are road arcs near each GPS fix (two per two-way road); emissions are Gaussian in
the distance to the arc, transitions exponential in |route distance - straight distance|;
Viterbi runs rank by rank over every trajectory at once and restarts where no route fits.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
import shapely

from cityos.analytics._points import Points, as_points, to_timedelta_ms, with_segments
from cityos.analytics._trajectory import trajectories_from_points
from cityos.analytics.errors import MapMatchError
from cityos.geo.distance import EARTH_RADIUS_M
from cityos.model import GEOM_COL, ID_COL, Trajectories

__all__ = ["MapMatcher", "MatchResult", "map_match"]

_DENSE_NODES = 6000  # up to this many nodes, all node-to-node distances fit in one matrix


@dataclass
class MatchResult:
    """What :func:`map_match` returns.

    Attributes
    ----------
    points:
        The input points sorted by (id, t) with ``traj_id`` and, per point, ``edge_id`` (-1
        when no road was within reach), ``offset_m`` along the edge from its ``from_node``,
        ``match_x``/``match_y`` (the projection onto the road, in the input CRS) and
        ``match_dist_m``.
    routes:
        One row per trajectory as :class:`~cityos.model.Trajectories`, with ``edges`` the
        road-segment ids travelled in order (gaps between fixes filled by shortest paths).
    """

    points: pd.DataFrame
    routes: Trajectories


class MapMatcher:
    """A road network prepared for matching: arcs, their straight pieces in local metres, a
    spatial index over the pieces and node-to-node route distances.

    Parameters
    ----------
    roads:
        GeoDataFrame or DataFrame with ``edge_id``, ``from_node``, ``to_node``, ``geometry``
        (LineString, or WKB) and optionally ``oneway`` (default two-way).
    geographic:
        Whether coordinates are lon/lat (guessed from the values when ``None``).
    max_route_m:
        Longest route considered between consecutive fixes.

    Examples
    --------
    >>> import shapely, pandas as pd
    >>> roads = pd.DataFrame({"edge_id": [7], "from_node": [0], "to_node": [1],
    ...                       "geometry": [shapely.LineString([(0, 0), (1000, 0)])]})
    >>> m = MapMatcher(roads, geographic=False)
    >>> pts = pd.DataFrame({"id": "a", "t": [0, 10, 20], "x": [100.0, 200, 300], "y": [4.0, -3, 5]})
    >>> res = m.match(pts)
    >>> res.points["edge_id"].tolist(), res.points["match_y"].tolist()
    ([7, 7, 7], [0.0, 0.0, 0.0])
    """

    def __init__(
        self, roads: Any, *, geographic: bool | None = None, max_route_m: float = 5000.0
    ) -> None:
        if "edge_id" not in roads.columns and ID_COL in roads.columns:
            # a network dataset read from the store keys its edges by the canonical ``id``
            roads = roads.rename(columns={ID_COL: "edge_id"})
        missing = [
            c for c in ("edge_id", "from_node", "to_node", GEOM_COL) if c not in roads.columns
        ]
        if missing or len(roads) == 0:
            raise MapMatchError(
                f"road network needs rows with columns edge_id, from_node, to_node, geometry; "
                f"missing {missing}, rows {len(roads)}. Pass the roads/edges dataset (network model)."
            )
        geoms = np.asarray(
            roads[GEOM_COL].to_numpy()
            if not hasattr(roads, "geometry")
            else roads.geometry.to_numpy()
        )
        if len(geoms) and isinstance(geoms[0], bytes | bytearray | memoryview):
            geoms = shapely.from_wkb(geoms)
        coords, part = shapely.get_coordinates(geoms, return_index=True)
        if geographic is None:
            geographic = bool(
                np.abs(coords[:, 0]).max() <= 180 and np.abs(coords[:, 1]).max() <= 90
            )
        self.geographic = geographic
        self.lat0 = float(coords[:, 1].mean()) if geographic else 0.0
        mx, my = self._to_m(coords[:, 0], coords[:, 1])
        self.max_route_m = max_route_m
        edge_id = roads["edge_id"].to_numpy(dtype=np.int64)
        u = roads["from_node"].to_numpy(dtype=np.int64)
        v = roads["to_node"].to_numpy(dtype=np.int64)
        oneway = (
            roads["oneway"].to_numpy(dtype=bool)
            if "oneway" in roads.columns
            else np.zeros(len(u), bool)
        )
        # straight pieces of every edge, with the offset of their start along the edge
        same = part[1:] == part[:-1]
        pa_, pb_ = np.flatnonzero(same), np.flatnonzero(same) + 1
        self.piece_edge = part[pa_]
        self.ax, self.ay, self.bx, self.by = mx[pa_], my[pa_], mx[pb_], my[pb_]
        plen = np.hypot(self.bx - self.ax, self.by - self.ay)
        cum = np.cumsum(plen)
        first_piece = np.searchsorted(self.piece_edge, np.arange(len(u)))
        self.edge_len = np.bincount(self.piece_edge, weights=plen, minlength=len(u))
        start_cum = np.concatenate(([0.0], cum))[first_piece]
        self.piece_off = (cum - plen) - start_cum[self.piece_edge]
        last_piece = np.searchsorted(self.piece_edge, np.arange(len(u)), side="right") - 1
        self.end_xy = (
            self.ax[first_piece],
            self.ay[first_piece],
            self.bx[last_piece],
            self.by[last_piece],
        )
        self.tree = shapely.STRtree(
            shapely.linestrings(
                np.stack(
                    [np.column_stack([self.ax, self.ay]), np.column_stack([self.bx, self.by])],
                    axis=1,
                )
            )
        )
        # arcs: the forward direction of every edge, then the reverse of two-way edges
        two = np.flatnonzero(~oneway)
        self.arc_edge = np.concatenate((np.arange(len(u)), two))  # row of the edge
        self.arc_rev = np.concatenate((np.zeros(len(u), bool), np.ones(len(two), bool)))
        self.arc_from = np.concatenate((u, v[two]))
        self.arc_to = np.concatenate((v, u[two]))
        self.rev_arc_of_edge = np.full(len(u), -1, dtype=np.int64)
        self.rev_arc_of_edge[two] = len(u) + np.arange(len(two))
        self.edge_id = edge_id
        nodes, inv = np.unique(np.concatenate((self.arc_from, self.arc_to)), return_inverse=True)
        self.nodes = nodes
        na = len(self.arc_edge)
        self.arc_fi, self.arc_ti = inv[:na], inv[na:]
        self._graph = self._build_graph()
        self._dense: np.ndarray | None = None
        # (from, to) node pair -> shortest arc between them, for turning node paths into edges
        key = self.arc_fi * len(nodes) + self.arc_ti
        order = np.lexsort((self.edge_len[self.arc_edge], key))
        k_sorted = key[order]
        firsts = np.concatenate(([True], k_sorted[1:] != k_sorted[:-1]))
        self._pair_key, self._pair_arc = k_sorted[firsts], order[firsts]

    # -- geometry helpers --------------------------------------------------------------
    def _to_m(self, x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        if not self.geographic:
            return np.asarray(x, dtype="float64"), np.asarray(y, dtype="float64")
        k = np.pi / 180.0 * EARTH_RADIUS_M
        return np.asarray(x) * (k * np.cos(np.radians(self.lat0))), np.asarray(y) * k

    def _from_m(self, mx: np.ndarray, my: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        if not self.geographic:
            return mx, my
        k = np.pi / 180.0 * EARTH_RADIUS_M
        return mx / (k * np.cos(np.radians(self.lat0))), my / k

    def _build_graph(self) -> Any:
        from scipy.sparse import csr_matrix

        n = len(self.nodes)
        w = self.edge_len[self.arc_edge]
        # scipy drops explicit zeros; a tiny length keeps zero-length arcs traversable
        return csr_matrix((np.maximum(w, 1e-6), (self.arc_fi, self.arc_ti)), shape=(n, n))

    def node_distance(self, a: np.ndarray, b: np.ndarray) -> np.ndarray:
        """Route metres from node index ``a`` to ``b`` (``inf`` beyond ``max_route_m``)."""
        from scipy.sparse.csgraph import dijkstra

        a = np.asarray(a, dtype=np.int64)
        b = np.asarray(b, dtype=np.int64)
        if len(self.nodes) <= _DENSE_NODES:
            if self._dense is None:
                self._dense = dijkstra(self._graph, limit=self.max_route_m).astype(np.float32)
            return np.asarray(self._dense[a, b], dtype="float64")
        out = np.empty(len(a))
        src, inv = np.unique(a, return_inverse=True)
        for lo in range(0, len(src), 256):  # bounded memory: 256 rows of n nodes at a time
            rows = dijkstra(self._graph, indices=src[lo : lo + 256], limit=self.max_route_m)
            sel = (inv >= lo) & (inv < lo + 256)
            out[sel] = rows[inv[sel] - lo, b[sel]]
        return out

    # -- candidates --------------------------------------------------------------------
    def candidates(
        self,
        mx: np.ndarray,
        my: np.ndarray,
        radius_m: float,
        max_edges: int,
        junction_m: float = 0.0,
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """Candidate arcs of each point: (point index, arc, offset along arc, distance),
        the ``max_edges`` nearest edges within ``radius_m``, both directions of each.

        Within ``junction_m`` of an edge's end node the distance reported is the distance to
        that node, the same for every road meeting there: at a junction, which road the
        object is on is for the transitions to decide, not for GPS noise."""
        pts = shapely.points(mx, my)
        pi, ki = self.tree.query(pts, predicate="dwithin", distance=radius_m)
        ax, ay, bx, by = self.ax[ki], self.ay[ki], self.bx[ki], self.by[ki]
        dx, dy = bx - ax, by - ay
        den = dx * dx + dy * dy
        r = np.clip(
            np.divide(
                (mx[pi] - ax) * dx + (my[pi] - ay) * dy, den, out=np.zeros(len(pi)), where=den > 0
            ),
            0.0,
            1.0,
        )
        d = np.hypot(mx[pi] - (ax + r * dx), my[pi] - (ay + r * dy))
        e = self.piece_edge[ki]
        off = self.piece_off[ki] + r * np.sqrt(den)
        if junction_m > 0:
            sx, sy, ex, ey = (c[e] for c in self.end_xy)
            dn = np.minimum(np.hypot(mx[pi] - sx, my[pi] - sy), np.hypot(mx[pi] - ex, my[pi] - ey))
            d = np.where(dn <= junction_m, dn, d)
        # nearest piece per (point, edge), then the nearest edges per point
        order = np.lexsort((d, e, pi))
        pi, e, d, off = pi[order], e[order], d[order], off[order]
        first = np.ones(len(pi), bool)
        first[1:] = (pi[1:] != pi[:-1]) | (e[1:] != e[:-1])
        pi, e, d, off = pi[first], e[first], d[first], off[first]
        order = np.lexsort((d, pi))
        pi, e, d, off = pi[order], e[order], d[order], off[order]
        starts = (
            np.flatnonzero(np.concatenate(([True], pi[1:] != pi[:-1])))
            if len(pi)
            else np.zeros(0, np.int64)
        )
        rank = np.arange(len(pi)) - np.repeat(starts, np.diff(np.append(starts, len(pi))))
        keep = rank < max_edges
        pi, e, d, off = pi[keep], e[keep], d[keep], off[keep]
        rev = self.rev_arc_of_edge[e]
        two = rev >= 0
        arcs = np.concatenate((e, rev[two]))
        return (
            np.concatenate((pi, pi[two])),
            arcs,
            np.concatenate((off, self.edge_len[e[two]] - off[two])),
            np.concatenate((d, d[two])),
        )

    # -- matching ----------------------------------------------------------------------
    def match(
        self,
        points: Any,
        *,
        sigma_m: float = 10.0,
        beta_m: float = 15.0,
        radius_m: float = 60.0,
        max_edges: int = 5,
        gap: Any = "2min",
        backtrack_m: float = 30.0,
        switch_penalty: float = 2.0,
        junction_m: float = 15.0,
        stop_penalty: float = 4.0,
        stop_m: float = 25.0,
        batch_points: int = 250_000,
        routes: bool = True,
        geographic: bool | None = None,
    ) -> MatchResult:
        """Match a point stream to the network (see :func:`map_match` for parameters)."""
        geo = self.geographic if geographic is None else geographic
        p = as_points(points, geo)
        gmax = to_timedelta_ms(gap, "gap")
        new = np.ones(p.n, dtype=bool)
        if p.n > 1:
            new[1:] = (p.obj[1:] != p.obj[:-1]) | (np.diff(p.t) > gmax)
        chain = np.cumsum(new) - 1
        mx, my = self._to_m(p.x, p.y)
        state_arc = np.full(p.n, -1, dtype=np.int64)
        state_off = np.zeros(p.n)
        state_d = np.full(p.n, np.nan)
        starts = np.flatnonzero(new)
        # whole chains per batch, so that Viterbi never crosses a batch boundary
        bounds = [0]
        for s in starts[1:]:
            if s - bounds[-1] >= batch_points:
                bounds.append(int(s))
        bounds.append(p.n)
        for lo, hi in itertools.pairwise(bounds):
            a, o, d = self._match_batch(
                mx[lo:hi],
                my[lo:hi],
                p.t[lo:hi],
                chain[lo:hi],
                sigma_m,
                beta_m,
                radius_m,
                max_edges,
                backtrack_m,
                (switch_penalty, stop_penalty),
                junction_m,
                stop_m,
            )
            state_arc[lo:hi], state_off[lo:hi], state_d[lo:hi] = a, o, d
        return self._result(p, chain, state_arc, state_off, state_d, routes)

    def _match_batch(
        self,
        mx: np.ndarray,
        my: np.ndarray,
        t: np.ndarray,
        chain: np.ndarray,
        sigma: float,
        beta: float,
        radius: float,
        max_edges: int,
        backtrack: float,
        switch: tuple[float, float],
        junction: float,
        stop_m: float,
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        n = len(mx)
        pi, arc, off, dist = self.candidates(mx, my, radius, max_edges, junction)
        order = np.lexsort((dist, pi))
        pi, arc, off, dist = pi[order], arc[order], off[order], dist[order]
        cnt = np.bincount(pi, minlength=n)
        c_max = int(cnt.max()) if n else 0
        out_arc = np.full(n, -1, dtype=np.int64)
        out_off = np.zeros(n)
        out_d = np.full(n, np.nan)
        if c_max == 0:
            return out_arc, out_off, out_d
        # dense (point, slot) layout; empty slots have emission -inf
        slot = np.arange(len(pi)) - np.repeat(np.cumsum(cnt) - cnt, cnt)
        A = np.full((n, c_max), -1, dtype=np.int64)
        Off = np.zeros((n, c_max))
        D = np.full((n, c_max), np.inf)
        A[pi, slot], Off[pi, slot], D[pi, slot] = arc, off, dist
        E = np.where(A >= 0, -0.5 * (D / sigma) ** 2, -np.inf)
        # points without candidates drop out of the chain; neighbours link across them
        has = cnt > 0
        idx = np.flatnonzero(has)
        ch = chain[idx]
        new = np.ones(len(idx), bool)
        new[1:] = ch[1:] != ch[:-1]
        cstart = np.flatnonzero(new)
        clen = np.diff(np.append(cstart, len(idx)))
        rank = np.arange(len(idx)) - np.repeat(cstart, clen)
        by_rank = np.argsort(rank, kind="stable")
        rank_starts = np.searchsorted(rank[by_rank], np.arange(int(clen.max()) + 1))
        # a fix is "stopped" when the object will not move farther than stop_m by the next one
        step = np.full(n, np.inf)
        step[:-1] = np.where(chain[1:] == chain[:-1], np.hypot(np.diff(mx), np.diff(my)), np.inf)
        stopped = step < stop_m
        score = np.full((n, c_max), -np.inf)
        back = np.full((n, c_max), -1, dtype=np.int16)
        first = idx[cstart]
        score[first] = E[first]
        for r in range(1, len(rank_starts) - 1):
            cur_pos = by_rank[rank_starts[r] : rank_starts[r + 1]]
            cur, prev = idx[cur_pos], idx[cur_pos - 1]
            T = self._transitions(
                A[prev],
                Off[prev],
                A[cur],
                Off[cur],
                np.hypot(mx[cur] - mx[prev], my[cur] - my[prev]),
                beta,
                backtrack,
                switch,
                stopped[cur],
            )
            tot = score[prev][:, :, None] + T  # (pairs, from, to)
            best = tot.argmax(axis=1)
            val = np.take_along_axis(tot, best[:, None, :], axis=1)[:, 0, :] + E[cur]
            broken = ~np.isfinite(val).any(axis=1)
            # no route fits: restart the chain here (Newson & Krumm's HMM break)
            val[broken] = E[cur[broken]]
            best[broken] = -1
            score[cur], back[cur] = val, best
        # backtrack, rank by rank, all chains at once
        last = idx[cstart + clen - 1]
        st = np.full(n, -1, dtype=np.int64)
        st[last] = score[last].argmax(axis=1)
        for r in range(len(rank_starts) - 2, 0, -1):
            cur_pos = by_rank[rank_starts[r] : rank_starts[r + 1]]
            cur, prev = idx[cur_pos], idx[cur_pos - 1]
            b = back[cur, st[cur]].astype(np.int64)
            st[prev] = np.where(b >= 0, b, score[prev].argmax(axis=1))
        sel = np.flatnonzero(st >= 0)
        out_arc[sel] = A[sel, st[sel]]
        out_off[sel] = Off[sel, st[sel]]
        out_d[sel] = D[sel, st[sel]]
        return out_arc, out_off, out_d

    def _transitions(
        self,
        a1: np.ndarray,
        o1: np.ndarray,
        a2: np.ndarray,
        o2: np.ndarray,
        gc: np.ndarray,
        beta: float,
        backtrack: float,
        switch: tuple[float, float],
        stopped: np.ndarray,
    ) -> np.ndarray:
        """Log transition probabilities (pairs × from-slot × to-slot)."""
        A1, O1 = a1[:, :, None], o1[:, :, None]
        A2, O2 = a2[:, None, :], o2[:, None, :]
        valid = (A1 >= 0) & (A2 >= 0)
        a1s, a2s = np.where(A1 >= 0, A1, 0), np.where(A2 >= 0, A2, 0)
        len1 = self.edge_len[self.arc_edge[a1s]]
        via = self.node_distance(
            np.broadcast_to(self.arc_ti[a1s], valid.shape).ravel(),
            np.broadcast_to(self.arc_fi[a2s], valid.shape).ravel(),
        ).reshape(valid.shape)
        route = (len1 - O1) + via + O2
        # staying on the arc: forward travel, or a small step back that GPS noise explains
        on_arc = (A1 == A2) & (O1 - backtrack <= O2)
        route = np.where(on_arc, np.abs(O2 - O1), route)
        logp = -np.abs(route - gc[:, None, None]) / beta
        same_edge = self.arc_edge[a1s] == self.arc_edge[a2s]
        # while stopped, |route - straight| only measures GPS noise: staying is free
        logp = np.where(stopped[:, None, None] & same_edge, 0.0, logp)
        # moving to another road costs a little, and more while the object is not moving:
        # at a stop on a junction every road there is equally near, and the one it arrived
        # by is the likeliest; the switch then happens on the first real move
        cost = switch[0] + switch[1] * stopped
        logp -= cost[:, None, None] * ~same_edge
        return np.where(valid & np.isfinite(route), logp, -np.inf)

    # -- results -----------------------------------------------------------------------
    def _result(
        self,
        p: Points,
        chain: np.ndarray,
        arc: np.ndarray,
        off: np.ndarray,
        dist: np.ndarray,
        routes: bool,
    ) -> MatchResult:
        ok = arc >= 0
        a = np.where(ok, arc, 0)
        e_row = self.arc_edge[a]
        edge_off = np.where(self.arc_rev[a], self.edge_len[e_row] - off, off)
        # position along the edge's own geometry: find the piece holding the offset
        pstart = np.searchsorted(self.piece_edge, e_row)
        pend = np.searchsorted(self.piece_edge, e_row, side="right") - 1
        key = self.piece_edge.astype("float64") * (self.edge_len.max() + 1.0) + self.piece_off
        k = np.searchsorted(key, e_row * (self.edge_len.max() + 1.0) + edge_off, side="right") - 1
        k = np.clip(k, pstart, pend)
        plen = np.hypot(self.bx[k] - self.ax[k], self.by[k] - self.ay[k])
        r = np.clip(
            np.divide(edge_off - self.piece_off[k], plen, out=np.zeros(len(k)), where=plen > 0),
            0,
            1,
        )
        qx, qy = self._from_m(
            self.ax[k] + r * (self.bx[k] - self.ax[k]), self.ay[k] + r * (self.by[k] - self.ay[k])
        )
        df = with_segments(p, chain)
        df["edge_id"] = np.where(ok, self.edge_id[e_row], -1)
        df["offset_m"] = np.where(ok, edge_off, np.nan)
        df["match_x"] = np.where(ok, qx, np.nan)
        df["match_y"] = np.where(ok, qy, np.nan)
        df["match_dist_m"] = dist
        edges = self._routes(chain, arc) if routes else None
        return MatchResult(df, trajectories_from_points(df, min_points=2, edges=edges))

    def _routes(self, chain: np.ndarray, arc: np.ndarray) -> list[list[int]]:
        """Road-segment ids travelled by each chain: matched arcs in order, with the shortest
        node path filled in wherever consecutive matches are on different arcs."""
        from scipy.sparse.csgraph import dijkstra

        idx = np.flatnonzero(arc >= 0)
        a, c = arc[idx], chain[idx]
        step = np.flatnonzero((c[1:] == c[:-1]) & (a[1:] != a[:-1]))
        src, dst = self.arc_ti[a[step]], self.arc_fi[a[step + 1]]
        fill: dict[int, list[int]] = {}
        need = np.flatnonzero(src != dst)
        if len(need):
            usrc, inv = np.unique(src[need], return_inverse=True)
            n = len(self.nodes)
            for lo in range(0, len(usrc), 256):
                _, pred = dijkstra(
                    self._graph,
                    indices=usrc[lo : lo + 256],
                    limit=self.max_route_m,
                    return_predecessors=True,
                )
                sel = np.flatnonzero((inv >= lo) & (inv < lo + 256))
                rows = inv[sel] - lo
                cur = dst[need[sel]].astype(np.int64)
                paths: list[list[int]] = [[] for _ in sel]
                active = np.arange(len(sel))
                s = src[need[sel]]
                # walk every path back to its source at once; one step per loop
                while len(active):
                    pr = pred[rows[active], cur[active]].astype(np.int64)
                    done = pr < 0
                    pair = np.where(done, -1, pr * n + cur[active])
                    pos = np.clip(np.searchsorted(self._pair_key, pair), 0, len(self._pair_key) - 1)
                    for j, ai in enumerate(active):
                        if not done[j]:
                            paths[ai].append(int(self._pair_arc[pos[j]]))
                    cur[active] = np.where(done, cur[active], pr)
                    active = active[~done & (pr != s[active])]
                for j, q in enumerate(sel):
                    fill[int(need[q])] = paths[j][::-1]
        out: list[list[int]] = []
        n_chains = int(chain.max()) + 1 if len(chain) else 0
        per_chain: list[list[int]] = [[] for _ in range(n_chains)]
        step_of = {int(s): k for k, s in enumerate(step)}
        for k, (ai, ci) in enumerate(zip(a.tolist(), c.tolist(), strict=True)):
            seq = per_chain[ci]
            if k - 1 in step_of:
                seq.extend(fill.get(step_of[k - 1], []))
            seq.append(ai)
        for seq in per_chain:
            edges = (
                self.edge_id[self.arc_edge[np.asarray(seq, dtype=np.int64)]]
                if seq
                else np.zeros(0, np.int64)
            )
            keep = np.ones(len(edges), bool)
            keep[1:] = edges[1:] != edges[:-1]
            out.append(edges[keep].tolist())
        return out


def map_match(points: Any, roads: Any, **kw: Any) -> MatchResult:
    """Match GPS points to road segments with a hidden Markov model.

    Parameters
    ----------
    points:
        Point stream (``id``, ``t``, ``x``, ``y``); trajectories are cut at gaps longer
        than ``gap`` (default 2 min) and matched independently.
    roads:
        Road network (``edge_id``, ``from_node``, ``to_node``, ``geometry``, ``oneway``),
        or a prepared :class:`MapMatcher` to reuse its index and distances.
    sigma_m:
        GPS noise (standard deviation of the emission Gaussian), metres.
    beta_m:
        Scale of the exponential on |route distance - straight distance|, metres.
    radius_m, max_edges:
        Candidate roads: the ``max_edges`` nearest within ``radius_m``.
    backtrack_m:
        A later fix up to this far *behind* an earlier one on the same road counts as noise,
        not as a loop around the block.
    switch_penalty:
        Log-probability cost of moving to another road segment; keeps stops at a junction
        on the road the vehicle arrived by.
    stop_penalty, stop_m:
        Extra cost of changing road onto a fix from which the object moves less than
        ``stop_m`` to the next one: a stopped object stays on the road it came by, and
        changes road on its first real move.
    junction_m:
        Fixes this close to a junction are equally near every road meeting there (see
        :meth:`MapMatcher.candidates`); about three times the GPS noise.

    Returns
    -------
    MatchResult
        Per-point matches and per-trajectory routes as road-segment ids.

    Examples
    --------
    >>> import shapely, pandas as pd
    >>> roads = pd.DataFrame({"edge_id": [1, 2], "from_node": [0, 1], "to_node": [1, 2],
    ...     "geometry": [shapely.LineString([(0, 0), (500, 0)]), shapely.LineString([(500, 0), (500, 500)])]})
    >>> pts = pd.DataFrame({"id": "a", "t": [0, 10, 20, 30], "x": [100.0, 400, 505, 498], "y": [3.0, -2, 100, 400]})
    >>> res = map_match(pts, roads, geographic=False)
    >>> res.points["edge_id"].tolist(), res.routes.to_arrow()["edges"].to_pylist()
    ([1, 1, 2, 2], [[1, 2]])
    """
    geographic = kw.pop("geographic", None)
    matcher = roads if isinstance(roads, MapMatcher) else MapMatcher(roads, geographic=geographic)
    return matcher.match(points, geographic=geographic, **kw)
