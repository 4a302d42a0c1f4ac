"""A party's federation gateway: its city home, its mutual-TLS server, and the seven steps
of a federated project (create/invite/accept, bind data, share field metadata, train,
publish, batch inference, online serving).

One process per party (``cityos gateway serve --party NAME --home DIR``). Peers talk to
``/fed/v1/...`` (job messages and project RPCs, the caller identified by its certificate);
the party's own operator talks to ``/gw/v1/...`` with the party's own certificate (only a
client presenting the certificate of this very party may use it). Every project action is
written to the party's audit chain. Raw rows never leave: a gateway reads its bound dataset
through :class:`~cityos.access.SecureStore` as its machine user ``gateway`` and sends only
what the algorithms send (blinded ids, ciphertexts, split decisions).
"""

from __future__ import annotations

import json
import logging
import queue
import re
import threading
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from cityos.errors import CityOSError, ValidationError, exit_code
from cityos.federation._certs import Identity, load_identity
from cityos.federation._channel import PeerLost
from cityos.federation._jobs import (
    Algorithm,
    PartyData,
    align,
    load_algorithm,
    read_part,
    write_part,
)
from cityos.federation._projects import TERMINAL, ProjectBook, coarse_stats
from cityos.federation._transport import (
    GATEWAY_FILE,
    GatewayChannel,
    PeerAborted,
    PeerClient,
    TransportServer,
)
from cityos.federation.gateway_errors import (
    FederationError,
    JobFailed,
    NotPublished,
    ProjectConflict,
    UnboundDataset,
)

__all__ = ["GATEWAY_FILE", "GATEWAY_USER", "Gateway"]

log = logging.getLogger("cityos.federation.gateway")

#: The machine user a gateway reads bound datasets as.
GATEWAY_USER = "gateway"
GATEWAY_ROLE = "federation_gateway"
#: Seconds a bound dataset's version is trusted before it is looked up again.
VERSION_TTL_S = 1.0
_DATASET_NAME = re.compile(r"^[a-z][a-z0-9_]{0,62}$")


def _status_of(exc: BaseException) -> int:
    code = exit_code(exc)
    return {3: 404, 4: 422, 5: 403, 6: 409}.get(
        code, 500 if not isinstance(exc, CityOSError) else 400
    )


class _Cancelled(Exception):
    pass


class Gateway:
    """Party ``party``'s gateway over the city in ``home``.

    Parameters
    ----------
    party:
        This party's name (the CN of its certificate).
    home:
        The party's own city home (its ``cityos.db`` and store).
    certs:
        Folder with ``ca.pem``, ``<party>.pem`` and ``<party>.key`` (``cityos gateway certs``).
    peers:
        Known gateways: party name -> ``https://host:port``.
    algorithms:
        Extra algorithms by name (tests); the built-in ones are in
        :data:`cityos.federation._jobs.ALGORITHMS`.
    recv_timeout:
        Seconds a job waits for a peer's message before :class:`PeerLost`.
    database_url:
        The party's relational database (default: ``cityos.db`` in ``home``, or
        ``CITYOS_DATABASE_URL``), e.g. PostgreSQL.
    """

    def __init__(
        self,
        party: str,
        home: str | Path,
        certs: str | Path,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        peers: Mapping[str, str] | None = None,
        algorithms: Mapping[str, Algorithm] | None = None,
        recv_timeout: float = 120.0,
        retry_delay: float = 1.0,
        peer_retry_s: float = 10.0,
        database_url: str | None = None,
        on_message: Callable[[str, str, str, bytes], None] | None = None,
    ) -> None:
        from cityos.store import Store

        self.identity: Identity = load_identity(certs, party)
        self.party, self.federation = party, self.identity.federation
        self.certs = Path(certs)
        self.store = Store(home, database_url=database_url)
        self.home = Path(self.store.settings.home)
        self.book = ProjectBook(self.store.db, party, self.federation)
        self.peers = dict(peers or {})
        self.algorithms = dict(algorithms or {})
        self.recv_timeout, self.retry_delay = recv_timeout, retry_delay
        self.peer_retry_s = peer_retry_s
        self.server = TransportServer(self.identity, host, port, on_message=on_message)
        self.server.routes["/fed/v1/rpc/"] = self._peer_route
        self.server.routes["/gw/v1/"] = self._operator_route
        self._clients: dict[str, PeerClient] = {}
        self._clients_lock = threading.Lock()
        self._threads: dict[str, threading.Thread] = {}
        self._cancel: set[str] = set()
        self._data_cache: dict[tuple[str, int], PartyData] = {}
        self._fresh: dict[str, tuple[float, dict[str, Any], PartyData]] = {}
        self._serving: dict[str, tuple[dict[str, Any], dict[str, Any], Algorithm]] = {}
        self._audit_q: queue.SimpleQueue[tuple[str, str, dict[str, Any]] | None] = (
            queue.SimpleQueue()
        )
        self._audit_thread = threading.Thread(target=self._audit_writer, daemon=True)
        self._audit_thread.start()
        self._parts: dict[str, dict[str, Any]] = {}
        self._ensure_user()
        self._stopping = False
        self._resume, failed = self.book.interrupted()
        if failed:
            log.warning("failed jobs interrupted by a restart: %s", ", ".join(failed))

    # -- life ------------------------------------------------------------------------------------
    @property
    def url(self) -> str:
        return self.server.url

    def start(self) -> Gateway:
        self.server.start()
        self._write_address()
        self._resume_jobs()
        return self

    def _resume_jobs(self) -> None:
        """Relaunch the jobs this guest was running when it stopped (a new attempt each)."""
        for job_id in self._resume:
            log.warning("resuming job %s after a restart", job_id)
            t = threading.Thread(target=self._run_guest, args=(job_id,), daemon=True)
            self._threads[job_id] = t
            t.start()
        self._resume = []

    def _write_address(self) -> None:
        p = self.home / GATEWAY_FILE
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(
            json.dumps(
                {
                    "party": self.party,
                    "federation": self.federation,
                    "url": self.url,
                    "certs": str(self.certs.resolve()),
                }
            )
        )

    def serve_forever(self) -> None:
        self._write_address()
        self._resume_jobs()
        self.server.serve_forever()

    def _audit_writer(self) -> None:
        """Writes the audit entries of online requests off the request path, in order."""
        while True:
            item = self._audit_q.get()
            if item is None:
                return
            actor, action, detail = item
            flush = detail.get("__flush__")
            if isinstance(flush, threading.Event):
                flush.set()
                continue
            try:
                self.book.audit(actor, action, **detail)
            except Exception:  # the chain must not stop serving; the log says why
                log.exception("could not audit %s", action)

    def flush_audit(self) -> None:
        """Wait until the queued audit entries are written."""
        done = threading.Event()
        self._audit_q.put(("", "", {"__flush__": done}))
        done.wait(30)

    def stop(self) -> None:
        """Stop serving. Jobs in flight stop where they are, as if the process ended: their
        state stays as it was, for the next start to resume or fail them."""
        if self._stopping:
            return
        self._stopping = True
        self.server.inbox.abort_all("the gateway is stopping")
        self.flush_audit()
        self._audit_q.put(None)
        self._audit_thread.join(10)
        self.server.stop()
        for c in self._clients.values():
            c.close()
        self.store.close()

    def __enter__(self) -> Gateway:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _ensure_user(self) -> None:
        from cityos.access import create_role, create_user, list_roles, list_users

        db = self.store.db
        if GATEWAY_ROLE not in list_roles(db):
            create_role(db, GATEWAY_ROLE, actor=f"gateway:{self.party}")
        if GATEWAY_USER not in {u.username for u in list_users(db)}:
            create_user(
                db,
                GATEWAY_USER,
                None,
                full_name=f"federation gateway of {self.party}",
                roles=[GATEWAY_ROLE],
                actor=f"gateway:{self.party}",
            )

    def _secure(self) -> Any:
        from cityos.access import SecureStore, principal_for

        return SecureStore(self.store, principal_for(self.store.db, GATEWAY_USER))

    def client(self, party: str, url: str | None = None) -> PeerClient:
        with self._clients_lock:
            addr = url or self.peers.get(party)
            c = self._clients.get(party)
            if c is not None and (url is None or c.url == url):
                return c
            if addr is None:
                raise FederationError(
                    f"no gateway address for party {party!r} at {self.party!r}: start the "
                    f"gateway with --peer {party}=https://HOST:PORT"
                )
            c = PeerClient(self.identity, party, addr, retry_s=self.peer_retry_s)
            self._clients[party] = c
            return c

    def _member_client(self, project_id: str, party: str) -> PeerClient:
        url = next((m["url"] for m in self.book.members(project_id) if m["party"] == party), "")
        return self.client(party, url or None)

    # -- step 1 ------------------------------------------------------------------------------------
    def create_project(
        self,
        name: str,
        hosts: Sequence[str] | Mapping[str, str],
        *,
        description: str = "",
        actor: str | None = None,
    ) -> dict[str, Any]:
        """Create a project with this party as guest and invite ``hosts``."""
        addrs = (
            dict(hosts) if isinstance(hosts, Mapping) else {h: self.peers.get(h, "") for h in hosts}
        )
        for h, u in addrs.items():
            if not u:
                raise ValidationError(
                    f"no gateway address for host {h!r}: pass --peer {h}=URL", field="hosts"
                )
        actor = actor or f"operator:{self.party}"
        p = self.book.create(
            name, hosts=addrs, actor=actor, description=description, my_url=self.url
        )
        invitation = {
            k: p[k] for k in ("id", "name", "federation", "guest", "description", "members")
        }
        for h in addrs:
            self._member_client(p["id"], h).call("POST", "/fed/v1/rpc/invite", invitation)
        return p

    def answer(self, project_id: str, *, accept: bool, actor: str | None = None) -> dict[str, Any]:
        p = self.book.answer(project_id, accept=accept, actor=actor or f"operator:{self.party}")
        status = "accepted" if accept else "declined"
        for m in p["members"]:
            if m["party"] != self.party:
                self._member_client(project_id, m["party"]).call(
                    "POST", "/fed/v1/rpc/member", {"project": project_id, "status": status}
                )
        return self.book.get(project_id)

    # -- step 2 ------------------------------------------------------------------------------------
    def bind(
        self,
        project_id: str,
        dataset: str,
        *,
        id_field: str,
        fields: Sequence[str],
        label: str | None = None,
        actor: str | None = None,
    ) -> dict[str, Any]:
        """Bind local dataset ``dataset`` to a project; the gateway may read it from now on."""
        from cityos.access import grant

        actor = actor or f"operator:{self.party}"
        self.book.get(project_id)
        info = self.store.describe(dataset)  # DatasetNotFound names the dataset
        schema_fields = {"id": "string", **{f.name: str(f.type) for f in info.schema.fields}}
        grant(self.store.db, GATEWAY_ROLE, dataset, "read", actor=actor)
        return self.book.bind(
            project_id,
            dataset=dataset,
            id_field=id_field,
            fields=fields,
            label=label,
            schema_fields=schema_fields,
            version=info.version,
            actor=actor,
        )

    def _data(self, project_id: str) -> tuple[dict[str, Any], PartyData]:
        """The bound rows (read once per dataset version; the version is looked up again
        at most every ``VERSION_TTL_S`` seconds)."""
        hit = self._fresh.get(project_id)
        if hit is not None and time.monotonic() - hit[0] < VERSION_TTL_S:
            return hit[1], hit[2]
        b = self.book.binding(project_id)
        version = int(self.store.describe(b["dataset"]).version)
        key = (f"{project_id}:{b['dataset']}", version)
        d = self._data_cache.get(key)
        if d is None:
            table = self._secure().read(b["dataset"]).table
            d = PartyData.from_table(
                table, id_field=b["id_field"], fields=b["fields"], label=b["label"]
            )
            self._data_cache[key] = d
        out = {**b, "version": version}
        self._fresh[project_id] = (time.monotonic(), out, d)
        return out, d

    # -- step 3 ------------------------------------------------------------------------------------
    def share_metadata(
        self,
        project_id: str,
        fields: Mapping[str, Mapping[str, str]] | Sequence[str],
        *,
        actor: str | None = None,
    ) -> list[dict[str, Any]]:
        """Publish the chosen fields' names (or aliases), types, descriptions and coarse
        statistics to every member. ``fields`` maps a bound field to ``{"as": public name,
        "description": ...}`` or lists field names."""
        actor = actor or f"operator:{self.party}"
        b = self.book.binding(project_id)
        chosen = {f: {} for f in fields} if not isinstance(fields, Mapping) else dict(fields)
        bound = set(b["fields"]) | ({b["label"]} if b["label"] else set())
        unknown = sorted(set(chosen) - bound)
        if unknown:
            raise ValidationError(
                f"fields {unknown} are not bound to project {project_id!r} at {self.party!r} "
                f"(bound: {sorted(bound)})",
                field="fields",
            )
        table = self._secure().read(b["dataset"]).table
        schema = {f.name: f for f in self.store.describe(b["dataset"]).schema.fields}
        out = []
        for f, opt in chosen.items():
            out.append(
                {
                    "name": str(opt.get("as") or f),
                    "type": str(schema[f].type),
                    "description": str(opt.get("description") or schema[f].description or ""),
                    "role": "label" if f == b["label"] else "feature",
                    "stats": coarse_stats(table.column(f)),
                }
            )
        self.book.store_metadata(project_id, self.party, out, actor=actor)
        for m in self.book.members(project_id):
            if m["party"] != self.party and m["status"] != "declined":
                self._member_client(project_id, m["party"]).call(
                    "POST", "/fed/v1/rpc/metadata", {"project": project_id, "fields": out}
                )
        return out

    # -- step 4: training jobs -----------------------------------------------------------------------
    def train(
        self,
        project_id: str,
        *,
        algorithm: str = "secureboost",
        params: Mapping[str, Any] | None = None,
        max_retries: int = 1,
        actor: str | None = None,
    ) -> dict[str, Any]:
        """Launch a training job (guest only); returns the job in state ``waiting``."""
        return self._launch(
            project_id,
            "train",
            algorithm,
            dict(params or {}),
            max_retries,
            actor or f"operator:{self.party}",
        )

    def _launch(
        self,
        project_id: str,
        kind: str,
        algorithm: str,
        params: dict[str, Any],
        max_retries: int,
        actor: str,
    ) -> dict[str, Any]:
        p = self.book.require_active(project_id)
        if p["guest"] != self.party:
            raise ProjectConflict(f"only the guest {p['guest']!r} launches jobs of {project_id!r}")
        load_algorithm(algorithm, self.algorithms)  # unknown names fail here, nothing created
        self.book.binding(project_id)  # the guest's own data must be bound
        job_id = f"j-{uuid.uuid4().hex[:12]}"
        job = self.book.job_create(
            project_id,
            job_id=job_id,
            kind=kind,
            algorithm=algorithm,
            params=params,
            max_retries=max_retries,
            actor=actor,
        )
        t = threading.Thread(
            target=self._run_guest, args=(job_id,), daemon=True, name=f"job-{job_id}"
        )
        self._threads[job_id] = t
        t.start()
        return job

    def wait(self, job_id: str, timeout: float = 300.0) -> dict[str, Any]:
        """The job once it reached a terminal state (or as it is after ``timeout``)."""
        deadline = time.monotonic() + timeout
        while True:
            j = self.book.job(job_id)
            if j["state"] in TERMINAL or time.monotonic() > deadline:
                return j
            time.sleep(0.05)

    def cancel(self, job_id: str, *, actor: str | None = None) -> dict[str, Any]:
        j = self.book.job(job_id)
        if j["state"] in TERMINAL:
            raise ProjectConflict(f"job {job_id!r} is already {j['state']}")
        self._cancel.add(job_id)
        self.server.inbox.abort_local(f"{job_id}/{j['attempt']}", "cancelled by the operator")
        p = self.book.get(j["project"])
        if p["guest"] == self.party:
            for h in self._hosts(p):
                try:
                    self._member_client(p["id"], h).call(
                        "POST", "/fed/v1/rpc/job/cancel", {"job": job_id}, retry_s=2.0
                    )
                except (FederationError, PeerLost) as exc:
                    log.warning("could not tell %s of the cancel: %s", h, exc)
        deadline = time.monotonic() + 10
        while self.book.job(job_id)["state"] not in TERMINAL and time.monotonic() < deadline:
            time.sleep(0.05)
        if self.book.job(job_id)["state"] not in TERMINAL:
            self.book.job_update(job_id, state="cancelled", actor=actor or f"operator:{self.party}")
        return self.book.job(job_id)

    def _hosts(self, p: Mapping[str, Any]) -> list[str]:
        return [m["party"] for m in p["members"] if m["role"] == "host"]

    def _channel(self, channel: str, parties: Sequence[str], project_id: str) -> GatewayChannel:
        clients = {h: self._member_client(project_id, h) for h in parties}
        return GatewayChannel(self.server, clients, channel, timeout=self.recv_timeout)

    def _run_guest(self, job_id: str) -> None:
        actor = f"gateway:{self.party}"
        job = self.book.job(job_id)
        p = self.book.get(job["project"])
        hosts = self._hosts(p)
        attempt = job["attempt"]
        while True:
            attempt += 1
            if job_id in self._cancel:
                self.book.job_update(job_id, state="cancelled", actor=actor)
                return
            self.book.job_update(job_id, state="running", attempt=attempt, actor=actor)
            channel = f"{job_id}/{attempt}"
            try:
                with self._channel(channel, hosts, p["id"]) as ch:
                    start = {
                        "job": job_id,
                        "project": p["id"],
                        "kind": job["kind"],
                        "algorithm": job["algorithm"],
                        "params": job["params"],
                        "attempt": attempt,
                        "max_retries": job["max_retries"],
                    }
                    for h in hosts:
                        self._member_client(p["id"], h).call("POST", "/fed/v1/rpc/job/start", start)
                    result = self._work(ch, "guest", job, p, hosts)
                    for h in hosts:
                        done = ch.recv(h, "done")
                        if done.get("error"):
                            raise JobFailed(f"party {h!r}: {done['error']}")
                        result.setdefault("parties", {})[h] = {
                            k: done[k]
                            for k in (
                                "dataset",
                                "version",
                                "sha256",
                                "rows",
                                "bytes_sent",
                                "align_bytes",
                            )
                            if k in done
                        }
                self.book.job_update(job_id, state="succeeded", result=result, actor=actor)
                return
            except Exception as exc:
                if self._stopping:
                    return  # as if the process ended here: the next start resumes the job
                cancelled = job_id in self._cancel
                msg = "cancelled by the operator" if cancelled else f"{type(exc).__name__}: {exc}"
                log.warning("job %s attempt %d at %s: %s", job_id, attempt, self.party, msg)
                for h in hosts:
                    self._tell_abort(p["id"], h, channel, msg)
                if cancelled:
                    self.book.job_update(job_id, state="cancelled", error=msg, actor=actor)
                    return
                retry = (
                    attempt <= job["max_retries"]
                    and isinstance(exc, PeerLost)
                    and not isinstance(exc, PeerAborted)
                )
                if not retry:
                    self.book.job_update(job_id, state="failed", error=msg, actor=actor)
                    return
                self.book.job_update(job_id, state="waiting", error=msg, actor=actor)
                time.sleep(self.retry_delay)

    def _tell_abort(self, project_id: str, party: str, channel: str, reason: str) -> None:
        try:
            self._member_client(project_id, party).call(
                "POST",
                "/fed/v1/rpc/job/abort",
                {"channel": channel, "reason": reason[:500]},
                retry_s=1.0,
                timeout=5.0,
            )
        except (FederationError, PeerLost) as exc:
            log.info("could not tell %s that %s stopped: %s", party, channel, exc)

    def _work(
        self,
        ch: GatewayChannel,
        role: str,
        job: Mapping[str, Any],
        p: Mapping[str, Any],
        hosts: Sequence[str],
    ) -> dict[str, Any]:
        """This party's share of a job attempt; the guest's result summary."""
        algo = load_algorithm(job["algorithm"], self.algorithms)
        guest = str(p["guest"])
        params = dict(job["params"])
        t0 = time.perf_counter()
        if job["kind"] == "train":
            binding, data = self._data(p["id"])
            ids = align(ch, role, data.labelled_ids(), guest=guest, hosts=hosts)
            align_bytes = ch.bytes_sent
            X, y = data.rows(ids)
            part, metrics = algo.train(
                ch, role, X, y, params, guest=guest, hosts=hosts, feature_names=data.feature_names
            )
            path = self.home / "federation" / "models" / str(job["id"]) / f"{self.party}.part"
            sha = write_part(path, part)
            out = {
                "dataset": binding["dataset"],
                "version": binding["version"],
                "sha256": sha,
                "rows": len(ids),
                "seconds": round(time.perf_counter() - t0, 3),
                "bytes_sent": ch.bytes_sent,
                "align_bytes": align_bytes,
                "messages_sent": ch.messages_sent,
                **metrics,
            }
            if role == "guest":
                return {
                    "parties": {
                        self.party: {k: out[k] for k in ("dataset", "version", "sha256", "rows")}
                    },
                    **{k: v for k, v in out.items() if k not in ("dataset", "version", "sha256")},
                }
            return out
        # batch inference over the aligned ids of the bound datasets as they are now
        model = self.book.model(str(params["model"]))
        part = self._part(model)
        binding, data = self._data(p["id"])
        ids = align(ch, role, data.ids.tolist(), guest=guest, hosts=hosts)
        X, _ = data.rows(ids)
        scores = algo.predict(ch, role, X, part, guest=guest, hosts=hosts)
        out = {"dataset": binding["dataset"], "version": binding["version"], "rows": len(ids)}
        if role == "guest":
            assert scores is not None
            out["output"] = self._write_scores(str(params.get("output") or ""), model, ids, scores)
            out["seconds"] = round(time.perf_counter() - t0, 3)
        return out

    def _write_scores(
        self, output: str, model: Mapping[str, Any], ids: Sequence[str], scores: np.ndarray
    ) -> str:
        import pandas as pd

        from cityos.access import grant
        from cityos.model import Field, PlainTable

        name = output or f"fed_scores_{str(model['id']).replace('-', '_')}"[:63]
        if not _DATASET_NAME.match(name):
            raise ValidationError(f"invalid output dataset name {name!r}", field="output")
        if name not in {d.name for d in self.store.list_datasets()}:
            self.store.create_dataset(
                name,
                PlainTable.schema("score", Field("model", "string")),
                description=f"federated scores of model {model['id']}",
            )
            grant(self.store.db, GATEWAY_ROLE, name, "write", actor=f"gateway:{self.party}")
        df = pd.DataFrame(
            {
                "id": list(ids),
                "score": np.asarray(scores, dtype="float64"),
                "model": str(model["id"]),
            }
        )
        with self._secure().acting():
            self.store.append(name, df, source=f"federation:{model['id']}")
        return name

    def _part(self, model: Mapping[str, Any]) -> dict[str, Any]:
        part = self._parts.get(str(model["id"]))
        if part is None:
            part = read_part(Path(model["part_path"]), str(model["sha256"]))
            self._parts[str(model["id"])] = part
        return part

    # -- step 5: publishing ----------------------------------------------------------------------------
    def publish(self, job_id: str, *, actor: str | None = None) -> dict[str, Any]:
        """Publish a succeeded training job's model: every party registers its own part
        with the data versions of every party."""
        actor = actor or f"operator:{self.party}"
        j = self.book.job(job_id)
        if j["kind"] != "train" or j["state"] != "succeeded":
            raise ProjectConflict(
                f"job {job_id!r} is a {j['kind']} job in state {j['state']}: only a succeeded "
                "training job can be published"
            )
        p = self.book.get(j["project"])
        if p["guest"] != self.party:
            raise ProjectConflict(f"only the guest {p['guest']!r} publishes models of {p['id']!r}")
        parties = j["result"]["parties"]
        versions = {
            k: {"dataset": v["dataset"], "version": v["version"], "sha256": v["sha256"]}
            for k, v in parties.items()
        }
        model_id = f"m-{job_id[2:]}"
        record = {
            "model": model_id,
            "project": p["id"],
            "job": job_id,
            "algorithm": j["algorithm"],
            "data_versions": versions,
        }
        for h in self._hosts(p):  # hosts first: they check their own part is intact
            self._member_client(p["id"], h).call("POST", "/fed/v1/rpc/publish", record)
        return self._publish_local(record, actor)

    def _publish_local(self, record: Mapping[str, Any], actor: str) -> dict[str, Any]:
        job_id = str(record["job"])
        mine = record["data_versions"][self.party]
        path = self.home / "federation" / "models" / job_id / f"{self.party}.part"
        read_part(path, str(mine["sha256"]))  # the part on disk is the one trained
        return self.book.publish(
            model_id=str(record["model"]),
            project_id=str(record["project"]),
            job_id=job_id,
            algorithm=str(record["algorithm"]),
            part_path=str(path),
            sha256=str(mine["sha256"]),
            data_versions=record["data_versions"],
            actor=actor,
        )

    # -- step 6: batch inference -----------------------------------------------------------------------
    def infer(
        self, model_id: str, *, output: str = "", max_retries: int = 1, actor: str | None = None
    ) -> dict[str, Any]:
        """Score the aligned ids of the bound datasets with a published model; the scores
        are written to dataset ``output`` of the guest's store."""
        m = self.book.model(model_id)  # NotPublished if not
        return self._launch(
            m["project"],
            "infer",
            m["algorithm"],
            {"model": model_id, "output": output},
            max_retries,
            actor or f"operator:{self.party}",
        )

    # -- step 7: online serving --------------------------------------------------------------------------
    def _served(self, model_id: str) -> tuple[dict[str, Any], dict[str, Any], Algorithm]:
        """A published model, its project and algorithm (cached: published models do not
        change, nor do the members of an active project)."""
        hit = self._serving.get(model_id)
        if hit is None:
            m = self.book.model(model_id)  # NotPublished if not
            p = self.book.get(m["project"])
            hit = (m, p, load_algorithm(m["algorithm"], self.algorithms))
            self._serving[model_id] = hit
        return hit

    def predict(
        self, model_id: str, ids: Sequence[str], *, actor: str | None = None, audit: bool = True
    ) -> list[float]:
        """Score ``ids`` online: the guest's rows and each host's partial results. The
        request's audit entry is written by a background writer, in order."""
        m, p, algo = self._served(model_id)
        if p["guest"] != self.party:
            raise ProjectConflict(
                f"online serving of {model_id!r} is asked of the guest "
                f"{p['guest']!r}, not {self.party!r}"
            )
        ids = [str(i) for i in ids]
        if not ids:
            raise ValidationError("give at least one id to score", field="ids")
        _, data = self._data(p["id"])
        X, _ = data.rows(ids)
        hosts = self._hosts(p)
        channel = f"serve/{uuid.uuid4().hex}"
        urls = {mm["party"]: mm["url"] for mm in p["members"]}
        clients = {h: self.client(h, urls.get(h) or None) for h in hosts}
        with GatewayChannel(self.server, clients, channel, timeout=self.recv_timeout) as ch:
            for h in hosts:
                clients[h].call(
                    "POST", "/fed/v1/rpc/serve", {"model": model_id, "channel": channel, "ids": ids}
                )
            scores = algo.predict(ch, "guest", X, self._part(m), guest=self.party, hosts=hosts)
        assert scores is not None
        if audit:
            self._audit_q.put(
                (
                    actor or f"operator:{self.party}",
                    "federation.serve",
                    {"project": p["id"], "model": model_id, "rows": len(ids)},
                )
            )
        return [float(v) for v in scores]

    # -- the peers' side ---------------------------------------------------------------------------------
    def _peer_route(self, peer: str, what: str, body: bytes) -> tuple[int, bytes]:
        try:
            req = json.loads(body) if body else {}
            method, _, path = what.partition(" ")
            name = path[len("/fed/v1/rpc/") :]
            handler = {
                "invite": self._rpc_invite,
                "member": self._rpc_member,
                "metadata": self._rpc_metadata,
                "job/start": self._rpc_job_start,
                "job/abort": self._rpc_job_abort,
                "job/cancel": self._rpc_job_cancel,
                "publish": self._rpc_publish,
                "serve": self._rpc_serve,
            }.get(name)
            if handler is None or method != "POST":
                return 404, json.dumps({"error": f"no peer route {what}"}).encode()
            if name not in ("invite", "serve"):  # serve checks the guest itself
                self._require_member(peer, str(req.get("project") or self._project_of(req)))
            return 200, json.dumps(handler(peer, req)).encode()
        except Exception as exc:
            status = _status_of(exc)
            if status == 500:
                log.exception("peer route %s from %s", what, peer)
            return status, json.dumps({"error": str(exc), "kind": type(exc).__name__}).encode()

    def _project_of(self, req: Mapping[str, Any]) -> str:
        if "job" in req:
            return (
                str(self.book.job(str(req["job"]))["project"])
                if "project" not in req
                else str(req["project"])
            )
        if "model" in req:
            return str(self.book.model(str(req["model"]))["project"])
        if "channel" in req:
            jid = str(req["channel"]).split("/")[0]
            return str(self.book.job(jid)["project"])
        raise ValidationError("the request names no project", field="project")

    def _require_member(self, peer: str, project_id: str) -> None:
        if peer not in {m["party"] for m in self.book.members(project_id)}:
            raise ProjectConflict(f"party {peer!r} is not a member of project {project_id!r}")

    def _rpc_invite(self, peer: str, req: Mapping[str, Any]) -> Any:
        return self.book.receive_invitation(req, frm=peer)

    def _rpc_member(self, peer: str, req: Mapping[str, Any]) -> Any:
        return self.book.member_answered(str(req["project"]), peer, str(req["status"]))

    def _rpc_metadata(self, peer: str, req: Mapping[str, Any]) -> Any:
        self.book.store_metadata(
            str(req["project"]), peer, list(req["fields"]), actor=f"gateway:{peer}"
        )
        return {"ok": True}

    def _rpc_job_start(self, peer: str, req: Mapping[str, Any]) -> Any:
        p = self.book.require_active(str(req["project"]))
        if p["guest"] != peer:
            raise ProjectConflict(f"only the guest {p['guest']!r} starts jobs of {p['id']!r}")
        self.book.binding(p["id"])  # UnboundDataset: the guest learns it before any message
        job_id, attempt = str(req["job"]), int(req["attempt"])
        if job_id in self._cancel:
            raise ProjectConflict(f"job {job_id!r} was cancelled")
        job = self.book.job_create(
            p["id"],
            job_id=job_id,
            kind=str(req["kind"]),
            algorithm=str(req["algorithm"]),
            params=req["params"],
            max_retries=int(req["max_retries"]),
            actor=f"gateway:{peer}",
        )
        if req["kind"] == "infer":
            self.book.model(str(req["params"]["model"]))
        prev = self._threads.get(job_id)
        if prev is not None and prev.is_alive():
            self.server.inbox.abort_local(f"{job_id}/{job['attempt']}", "a new attempt started")
            prev.join(10)
        self.book.job_update(job_id, state="running", attempt=attempt, actor=f"gateway:{peer}")
        ch = self._channel(f"{job_id}/{attempt}", [peer], p["id"])  # open before answering
        t = threading.Thread(target=self._run_host, args=(ch, job_id, p), daemon=True)
        self._threads[job_id] = t
        t.start()
        return {"ok": True}

    def _run_host(self, ch: GatewayChannel, job_id: str, p: Mapping[str, Any]) -> None:
        actor = f"gateway:{self.party}"
        guest = str(p["guest"])
        try:
            with ch:
                job = self.book.job(job_id)
                try:
                    out = self._work(ch, "host", job, p, [self.party])
                except PeerLost:
                    raise
                except Exception as exc:
                    msg = f"{type(exc).__name__}: {exc}"
                    self._tell_abort(p["id"], guest, ch.channel, f"party {self.party!r}: {msg}")
                    raise
                ch.send(guest, "done", out)
            self.book.job_update(job_id, state="succeeded", result=out, actor=actor)
        except Exception as exc:
            if self._stopping:
                return
            state = "cancelled" if job_id in self._cancel else "failed"
            cur = self.book.job(job_id)
            if cur["attempt"] == int(ch.channel.rsplit("/", 1)[1]) and cur["state"] == "running":
                self.book.job_update(
                    job_id, state=state, error=f"{type(exc).__name__}: {exc}", actor=actor
                )

    def _rpc_job_abort(self, peer: str, req: Mapping[str, Any]) -> Any:
        self.server.inbox.abort(str(req["channel"]), peer, str(req.get("reason", "")))
        return {"ok": True}

    def _rpc_job_cancel(self, peer: str, req: Mapping[str, Any]) -> Any:
        job_id = str(req["job"])
        self._cancel.add(job_id)  # a start of this job that arrives later is refused
        try:
            j = self.book.job(job_id)
        except KeyError:
            return {"ok": True}
        self.server.inbox.abort(f"{job_id}/{j['attempt']}", peer, "cancelled by the guest")
        if j["state"] not in TERMINAL:
            deadline = time.monotonic() + 5
            while self.book.job(job_id)["state"] not in TERMINAL and time.monotonic() < deadline:
                time.sleep(0.05)
            if self.book.job(job_id)["state"] not in TERMINAL:
                self.book.job_update(job_id, state="cancelled", actor=f"gateway:{peer}")
        return {"ok": True}

    def _rpc_publish(self, peer: str, req: Mapping[str, Any]) -> Any:
        p = self.book.get(str(req["project"]))
        if p["guest"] != peer:
            raise ProjectConflict(f"only the guest {p['guest']!r} publishes models of {p['id']!r}")
        j = self.book.job(str(req["job"]))
        if j["state"] != "succeeded":
            raise ProjectConflict(f"job {j['id']!r} is {j['state']} at {self.party!r}")
        return self._publish_local(req, f"gateway:{peer}")

    def _rpc_serve(self, peer: str, req: Mapping[str, Any]) -> Any:
        m, p, algo = self._served(str(req["model"]))
        if p["guest"] != peer:
            raise ProjectConflict(f"only the guest {p['guest']!r} serves {m['id']!r}")
        ids = [str(i) for i in req["ids"]]
        _, data = self._data(p["id"])
        X, _ = data.rows(ids)
        part = self._part(m)
        url = next((mm["url"] for mm in p["members"] if mm["party"] == peer), "")
        ch = GatewayChannel(
            self.server,
            {peer: self.client(peer, url or None)},
            str(req["channel"]),
            timeout=self.recv_timeout,
        )

        def run() -> None:
            with ch:
                try:
                    algo.predict(ch, "host", X, part, guest=peer, hosts=[self.party])
                except Exception as exc:
                    log.warning("online request %s failed at %s: %s", ch.channel, self.party, exc)

        threading.Thread(target=run, daemon=True).start()
        self._audit_q.put(
            (
                f"gateway:{peer}",
                "federation.serve.partial",
                {"project": p["id"], "model": m["id"], "rows": len(ids)},
            )
        )
        return {"ok": True}

    # -- the operator's side -------------------------------------------------------------------------------
    def _operator_route(self, peer: str, what: str, body: bytes) -> tuple[int, bytes]:
        if peer != self.party:
            return 403, json.dumps(
                {
                    "error": f"the operator API of {self.party!r} needs "
                    f"{self.party!r}'s own certificate, not {peer!r}'s"
                }
            ).encode()
        try:
            req = json.loads(body) if body else {}
            return 200, json.dumps(self.operate(what, req)).encode()
        except Exception as exc:
            status = _status_of(exc)
            if status == 500:
                log.exception("operator route %s", what)
            return status, json.dumps({"error": str(exc), "kind": type(exc).__name__}).encode()

    def operate(self, what: str, req: Mapping[str, Any]) -> Any:
        """One operator request (``"METHOD /gw/v1/..."`` and its JSON body)."""
        method, _, path = what.partition(" ")
        parts = path[len("/gw/v1/") :].strip("/").split("/")
        a = f"operator:{self.party}"
        match (method, parts):
            case ("GET", ["status"]):
                return {
                    "party": self.party,
                    "federation": self.federation,
                    "url": self.url,
                    "projects": self.book.all(),
                    "jobs": self.book.jobs(),
                    "models": self.book.models(),
                }
            case ("POST", ["projects"]):
                return self.create_project(
                    str(req["name"]),
                    list(req["hosts"]),
                    description=str(req.get("description", "")),
                    actor=a,
                )
            case ("GET", ["projects", pid]):
                return {
                    **self.book.get(pid),
                    "metadata": self.book.metadata(pid),
                    "jobs": self.book.jobs(pid),
                    "models": self.book.models(pid),
                }
            case ("POST", ["projects", pid, "accept"]):
                return self.answer(pid, accept=True, actor=a)
            case ("POST", ["projects", pid, "decline"]):
                return self.answer(pid, accept=False, actor=a)
            case ("POST", ["projects", pid, "bind"]):
                return self.bind(
                    pid,
                    str(req["dataset"]),
                    id_field=str(req.get("id_field", "id")),
                    fields=list(req["fields"]),
                    label=req.get("label"),
                    actor=a,
                )
            case ("POST", ["projects", pid, "metadata"]):
                return self.share_metadata(pid, req["fields"], actor=a)
            case ("GET", ["projects", pid, "metadata"]):
                return self.book.metadata(pid)
            case ("POST", ["projects", pid, "train"]):
                return self.train(
                    pid,
                    algorithm=str(req.get("algorithm", "secureboost")),
                    params=req.get("params") or {},
                    max_retries=int(req.get("max_retries", 1)),
                    actor=a,
                )
            case ("GET", ["jobs", jid]):
                return self.book.job(jid)
            case ("POST", ["jobs", jid, "cancel"]):
                return self.cancel(jid, actor=a)
            case ("POST", ["jobs", jid, "publish"]):
                return self.publish(jid, actor=a)
            case ("POST", ["models", mid, "infer"]):
                return self.infer(mid, output=str(req.get("output", "")), actor=a)
            case ("POST", ["models", mid, "predict"]):
                return {
                    "model": mid,
                    "ids": list(req["ids"]),
                    "scores": self.predict(mid, list(req["ids"]), actor=a),
                }
        raise ProjectNotFoundRoute(f"no operator route {method} {path}")


class ProjectNotFoundRoute(FederationError, KeyError):
    """No such operator route."""


__all__ += ["NotPublished", "UnboundDataset"]
