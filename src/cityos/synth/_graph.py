"""Directed road graph over a synthetic city's edges, with shortest paths through
``scipy.sparse.csgraph`` (no networkx): one Dijkstra per source, predecessor rows cached."""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass
from typing import Literal

import numpy as np
import numpy.typing as npt
from scipy.sparse import csr_matrix
from scipy.sparse.csgraph import connected_components, dijkstra

from cityos.synth._errors import SynthError

__all__ = ["Path", "RoadGraph", "Weight"]

Weight = Literal["length", "time"]
IntArray = npt.NDArray[np.int64]
FloatArray = npt.NDArray[np.float64]


@dataclass(frozen=True)
class Path:
    """A shortest path: visited ``nodes``, traversed ``arcs`` and ``edges`` (edge ids, in
    order of travel) and its ``cost`` (metres for ``length``, seconds for ``time``)."""

    nodes: IntArray
    arcs: IntArray
    edges: IntArray
    cost: float


class RoadGraph:
    """Directed graph of a road network: every edge gives one arc, or two unless one-way.

    Arc ``k`` goes ``arc_from[k] -> arc_to[k]`` along edge ``arc_edge[k]``; ``arc_reversed``
    tells whether it runs against the edge's geometry. Arc weights are ``arc_length``
    (metres) and ``arc_time`` (free-flow seconds at the speed limit).

    Examples
    --------
    >>> import numpy as np
    >>> g = RoadGraph(3, np.array([0, 1]), np.array([1, 2]), np.array([10.0, 5.0]),
    ...               np.array([36.0, 36.0]), np.array([False, False]))
    >>> g.shortest_path(0, 2, weight="length").cost
    15.0
    """

    def __init__(
        self,
        n_nodes: int,
        edge_from: npt.ArrayLike,
        edge_to: npt.ArrayLike,
        edge_length_m: npt.ArrayLike,
        edge_speed_kmh: npt.ArrayLike,
        edge_oneway: npt.ArrayLike,
        cache_sources: int = 4096,
    ) -> None:
        ef = np.asarray(edge_from, dtype=np.int64)
        et = np.asarray(edge_to, dtype=np.int64)
        length = np.asarray(edge_length_m, dtype=np.float64)
        speed = np.asarray(edge_speed_kmh, dtype=np.float64)
        oneway = np.asarray(edge_oneway, dtype=bool)
        two = np.flatnonzero(~oneway)
        eid = np.arange(len(ef), dtype=np.int64)
        self.n_nodes = int(n_nodes)
        self.arc_from: IntArray = np.concatenate([ef, et[two]])
        self.arc_to: IntArray = np.concatenate([et, ef[two]])
        self.arc_edge: IntArray = np.concatenate([eid, eid[two]])
        self.arc_reversed = np.concatenate([np.zeros(len(ef), bool), np.ones(len(two), bool)])
        self.arc_length: FloatArray = length[self.arc_edge]
        self.arc_time: FloatArray = length[self.arc_edge] / (speed[self.arc_edge] / 3.6)
        key = self.arc_from * self.n_nodes + self.arc_to
        if len(np.unique(key)) != len(key):
            raise SynthError(
                "road graph has two arcs between the same ordered pair of nodes; "
                "merge parallel edges before building the graph"
            )
        self._key_order = np.argsort(key, kind="stable")
        self._key_sorted = key[self._key_order]
        self._csr: dict[str, csr_matrix] = {}
        self._pred: OrderedDict[tuple[str, int], npt.NDArray[np.int32]] = OrderedDict()
        self._cache_sources = cache_sources

    @property
    def n_arcs(self) -> int:
        """Number of directed arcs."""
        return len(self.arc_from)

    def matrix(self, weight: Weight = "time") -> csr_matrix:
        """Sparse adjacency matrix weighted by arc ``length`` (m) or free-flow ``time`` (s)."""
        if weight not in ("length", "time"):
            raise SynthError(f"unknown weight {weight!r}; use 'length' or 'time'")
        m = self._csr.get(weight)
        if m is None:
            w = self.arc_length if weight == "length" else self.arc_time
            m = csr_matrix((w, (self.arc_from, self.arc_to)), shape=(self.n_nodes,) * 2)
            self._csr[weight] = m
        return m

    def arc_index(self, u: npt.ArrayLike, v: npt.ArrayLike) -> IntArray:
        """Arc indices for node pairs ``u -> v`` (vectorised); -1 where no arc exists."""
        k = np.asarray(u, dtype=np.int64) * self.n_nodes + np.asarray(v, dtype=np.int64)
        pos = np.searchsorted(self._key_sorted, k)
        pos = np.minimum(pos, len(self._key_sorted) - 1)
        found = self._key_sorted[pos] == k
        return np.where(found, self._key_order[pos], -1).astype(np.int64)

    def is_strongly_connected(self) -> bool:
        """True when every node can reach every other node along the arcs."""
        n, _ = connected_components(self.matrix("length"), directed=True, connection="strong")
        return bool(n == 1)

    def distances(self, source: int, weight: Weight = "time") -> FloatArray:
        """Shortest-path cost from ``source`` to every node (``inf`` if unreachable)."""
        d = dijkstra(self.matrix(weight), directed=True, indices=int(source))
        return np.asarray(d, dtype=np.float64)

    def _predecessors(self, source: int, weight: Weight) -> npt.NDArray[np.int32]:
        key = (weight, source)
        row = self._pred.get(key)
        if row is not None:
            self._pred.move_to_end(key)
            return row
        _, pred = dijkstra(
            self.matrix(weight), directed=True, indices=source, return_predecessors=True
        )
        row = np.asarray(pred, dtype=np.int32)
        self._pred[key] = row
        if len(self._pred) > self._cache_sources:
            self._pred.popitem(last=False)
        return row

    def path_nodes(self, source: int, target: int, weight: Weight = "time") -> IntArray:
        """Nodes of the shortest path ``source -> target`` (both included)."""
        self._check_node(source)
        self._check_node(target)
        if source == target:
            return np.array([source], dtype=np.int64)
        pred = self._predecessors(int(source), weight)
        out = [int(target)]
        p = int(pred[target])
        while p >= 0:
            out.append(p)
            p = int(pred[p])
        if out[-1] != source:
            raise SynthError(
                f"node {target} is unreachable from node {source}; the road network is not "
                "strongly connected (build it with make_city, which guarantees it)"
            )
        return np.array(out[::-1], dtype=np.int64)

    def shortest_path(self, source: int, target: int, weight: Weight = "time") -> Path:
        """Shortest path between two nodes by ``length`` (metres) or free-flow ``time`` (s).

        Examples
        --------
        >>> from cityos.synth import make_city
        >>> city = make_city(size_km=2.0)
        >>> p = city.graph.shortest_path(0, city.graph.n_nodes - 1, weight="length")
        >>> bool(p.nodes[0] == 0 and len(p.edges) == len(p.nodes) - 1)
        True
        """
        nodes = self.path_nodes(source, target, weight)
        arcs = self.arc_index(nodes[:-1], nodes[1:])
        w = self.arc_length if weight == "length" else self.arc_time
        return Path(nodes, arcs, self.arc_edge[arcs], float(w[arcs].sum()))

    def _check_node(self, node: int) -> None:
        if not 0 <= int(node) < self.n_nodes:
            raise SynthError(
                f"node {node} is not in the graph (node ids are 0..{self.n_nodes - 1})"
            )
