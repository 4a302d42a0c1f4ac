"""A party's federation gateway: its city home, its mutual-TLS server, and the seven steps
of a federated project (create/invite/accept, bind data, share field metadata, train,
publish, batch inference, online serving).

One process per party (``cityos gateway serve --party NAME --home DIR``). Peers talk to
``/fed/v1/...`` (job messages and project RPCs, the caller identified by its certificate);
the party's own operators talk to ``/gw/v1/...`` with the party's own certificate (only a
client presenting the certificate of this very party may use it) *and* an access API key or
token of a user of the party's city: every operator action is authorised for that user by
role (:data:`ACTIONS`), and every dataset it touches by the user's data rights. Every
project action is written to the party's audit chain. Raw rows never leave: a bound dataset
is read through :class:`~cityos.access.SecureStore` as the user who bound it (row filters,
masking and read audit apply), never as an all-powerful machine user; a gateway sends only
what the algorithms send (blinded ids, ciphertexts, split decisions, model parameters).
Published models are versions of the party's AI registry (:mod:`cityos.ai._registry`).
"""

from __future__ import annotations

import hashlib
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

from cityos.access import Principal
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
    request_authorization,
)
from cityos.federation.gateway_errors import (
    FederationError,
    JobFailed,
    NotPublished,
    ProjectConflict,
    ProjectNotFound,
    UnboundDataset,
)

__all__ = [
    "ACTIONS",
    "CLIENT_ROLE",
    "GATEWAY_FILE",
    "OPERATOR_ROLE",
    "VIEWER_ROLE",
    "Gateway",
    "make_operator",
]

log = logging.getLogger("cityos.federation.gateway")

#: Access roles of a party's city that may drive its gateway (besides ``admin``): operators
#: run projects, viewers read their state, clients (applications) only score online.
OPERATOR_ROLE = "federation_operator"
VIEWER_ROLE = "federation_viewer"
CLIENT_ROLE = "federation_client"
_READ = frozenset({OPERATOR_ROLE, VIEWER_ROLE})
_OPERATE = frozenset({OPERATOR_ROLE})
#: Operator action -> the roles that may perform it (``admin`` may perform every one).
ACTIONS: dict[str, frozenset[str]] = {
    "status": _READ,
    "project.show": _READ,
    "job.show": _READ,
    "project.create": _OPERATE,
    "project.answer": _OPERATE,
    "bind": _OPERATE,
    "metadata.share": _OPERATE,
    "job.train": _OPERATE,
    "job.cancel": _OPERATE,
    "model.publish": _OPERATE,
    "model.infer": _OPERATE,
    "model.contributions": _OPERATE,
    "model.serve": frozenset({OPERATOR_ROLE, CLIENT_ROLE}),
}
#: Seconds a bound dataset's version is trusted before it is looked up again.
VERSION_TTL_S = 1.0
_DATASET_NAME = re.compile(r"^[a-z][a-z0-9_]{0,62}$")


def make_operator(
    db: Any,
    username: str,
    *,
    roles: Sequence[str] = (OPERATOR_ROLE,),
    read: Sequence[str] = (),
    write: Sequence[str] = (),
) -> str:
    """Make (or reuse) user ``username`` of a party's city with gateway ``roles`` and a role
    ``<username>_data`` granted read on ``read`` and write on ``write`` (dataset names);
    return a new API key for it. The same as ``cityos user role/create/api-key`` and
    ``cityos policy grant``, for scripts, the demo and tests.

    >>> from cityos.db import Database
    >>> db = Database("sqlite://"); db.migrate()
    >>> key = make_operator(db, "zhang", read=["air_daily"])
    >>> from cityos.access import principal_from_api_key
    >>> sorted(principal_from_api_key(db, key).roles)
    ['federation_operator', 'zhang_data']
    """
    from cityos.access import create_api_key, create_role, create_user, grant, list_roles
    from cityos.access import list_users as users

    data_role = f"{username}_data"
    have = set(list_roles(db))
    for r in sorted({*roles, data_role} - have):
        create_role(db, r, actor="make_operator")
    if username not in {u.username for u in users(db)}:
        create_user(db, username, None, roles=[*roles, data_role], actor="make_operator")
    for d in read:
        grant(db, data_role, d, "read", actor="make_operator")
    for d in write:
        grant(db, data_role, d, "write", actor="make_operator")
    return create_api_key(db, username, actor="make_operator")[1]


def _status_of(exc: BaseException) -> int:
    code = exit_code(exc)
    return {3: 404, 4: 422, 5: 403, 6: 409}.get(
        code, 500 if not isinstance(exc, CityOSError) else 400
    )


#: What each party reports of its own held-out rows (horizontal jobs).
_PARTY_METRICS = ("holdout_rows", "holdout_rmse", "local_only_rmse")
_REGISTRY_NAME = re.compile(r"[^a-z0-9_-]+")


def _registry_name(project_name: str) -> str:
    """The default AI-registry name of a project's models.

    >>> _registry_name("PM2.5 tomorrow")
    'fed-pm2-5-tomorrow'
    """
    return ("fed-" + _REGISTRY_NAME.sub("-", project_name.lower()).strip("-"))[:100].rstrip("-")


def _check_registry_name(name: str) -> None:
    from cityos.ai._registry import _check_name

    try:
        _check_name(name)
    except CityOSError as exc:
        raise ValidationError(str(exc), field="name") from None


def _held_out(entity: str) -> bool:
    """One aligned id in five is held out when a job evaluates (the same at every party)."""
    return hashlib.sha256(entity.encode("utf-8")).digest()[0] % 5 == 0


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
        Longest wait for one message of a peer that is still alive (a peer that drops out,
        or no longer runs the job, is detected within seconds by liveness checks).
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
        recv_timeout: float = 3600.0,
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
        self._data_cache: dict[tuple[str, int, int], PartyData] = {}
        self._fresh: dict[str, tuple[float, dict[str, Any], PartyData]] = {}
        self._serving: dict[str, tuple[dict[str, Any], dict[str, Any], Algorithm]] = {}
        self._audit_q: queue.SimpleQueue[tuple[str, str, dict[str, Any]] | None] = (
            queue.SimpleQueue()
        )
        self._audit_thread = threading.Thread(target=self._audit_writer, daemon=True)
        self._audit_thread.start()
        self._parts: dict[str, dict[str, Any]] = {}
        self._mask_key: bytes | None = None
        self._ensure_roles()
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

    def _ensure_roles(self) -> None:
        from cityos.access import create_role, list_roles

        db = self.store.db
        roles = list_roles(db)
        for role in (OPERATOR_ROLE, VIEWER_ROLE, CLIENT_ROLE):
            if role not in roles:
                create_role(db, role, actor=f"gateway:{self.party}")

    # -- who may do what ---------------------------------------------------------------------
    def authorise(self, user: Principal, action: str) -> Principal:
        """``user`` as it is now (current roles; a disabled user is refused) if it may
        perform operator ``action`` (:data:`ACTIONS`); a refusal is audited and raises
        :class:`~cityos.access.PermissionDenied` naming the user, the action and the roles
        that may."""
        from cityos.access import ADMIN_ROLE, PermissionDenied, current_principal

        allowed = ACTIONS[action]
        p = current_principal(self.store.db, user)
        if p.is_admin or p.roles & allowed:
            return p
        self.book.audit(f"user:{p.username}", "federation.denied", operation=action)
        raise PermissionDenied(
            f"user {p.username!r} may not {action} at the gateway of {self.party!r}: "
            f"it needs one of the roles {', '.join(sorted(allowed | {ADMIN_ROLE}))}"
        )

    def _secure(self, user: Principal | str) -> Any:
        """The store as ``user`` (a principal, or the name of the user who bound a
        dataset) may see it: row filters, masking and read audit as in the HTTP API."""
        from cityos.access import SecureStore, principal_for
        from cityos.config import city_secret

        if isinstance(user, str):
            if not user:
                raise FederationError(
                    f"a binding at {self.party!r} names no user to read its dataset as: "
                    "bind the dataset again"
                )
            user = principal_for(self.store.db, user)
        if self._mask_key is None:
            self._mask_key = city_secret(self.store.settings)[0].encode()
        return SecureStore(self.store, user, mask_key=self._mask_key)

    def _require_read(self, user: Principal | str, dataset: str) -> None:
        """Raise :class:`~cityos.access.PermissionDenied` (naming ``dataset``) unless
        ``user`` (a principal, or the name of the user who bound it) may read it."""
        from cityos.access import PermissionDenied

        dec = self._secure(user).can_read(dataset)
        if not dec.allowed:
            raise PermissionDenied(f"{dec.reason} (at the gateway of {self.party!r})")

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
        user: Principal,
        description: str = "",
        kind: str = "vertical",
    ) -> dict[str, Any]:
        """Create a project with this party as guest and invite ``hosts``. ``kind`` is
        ``vertical`` (the parties hold different columns of the same entities; the guest
        holds the label) or ``horizontal`` (they share one schema, label included, over
        different entities, e.g. districts each with their own sensors; the guest
        aggregates)."""
        user = self.authorise(user, "project.create")
        addrs = (
            dict(hosts) if isinstance(hosts, Mapping) else {h: self.peers.get(h, "") for h in hosts}
        )
        for h, u in addrs.items():
            if not u:
                raise ValidationError(
                    f"no gateway address for host {h!r}: pass --peer {h}=URL", field="hosts"
                )
        actor = f"user:{user.username}"
        p = self.book.create(
            name, hosts=addrs, actor=actor, description=description, my_url=self.url, kind=kind
        )
        invitation = {
            k: p[k] for k in ("id", "name", "federation", "guest", "description", "members", "kind")
        }
        for h in addrs:
            try:
                self._member_client(p["id"], h).call("POST", "/fed/v1/rpc/invite", invitation)
            except (FederationError, PeerLost) as exc:
                self.book.abandon(p["id"], actor=actor, reason=f"host {h!r} not invited: {exc}")
                raise FederationError(
                    f"project {name!r} not created: inviting host {h!r} failed: {exc}"
                ) from exc
        return p

    def answer(self, project_id: str, *, accept: bool, user: Principal) -> dict[str, Any]:
        """Accept or decline an invitation of this party to ``project_id``."""
        user = self.authorise(user, "project.answer")
        p = self.book.answer(project_id, accept=accept, actor=f"user:{user.username}")
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
        user: Principal,
    ) -> dict[str, Any]:
        """Bind local dataset ``dataset`` to a project. ``user`` must be allowed to read
        it (else :class:`~cityos.access.PermissionDenied` naming the dataset); jobs read its
        rows as ``user`` from now on, under the user's row filters and masking."""
        user = self.authorise(user, "bind")
        self.book.get(project_id)
        # DatasetNotFound or PermissionDenied, each naming the dataset
        info = self._secure(user).describe(dataset)
        schema_fields = {"id": "string", **{f.name: str(f.type) for f in info.schema.fields}}
        return self.book.bind(
            project_id,
            dataset=dataset,
            id_field=id_field,
            fields=fields,
            label=label,
            schema_fields=schema_fields,
            version=info.version,
            actor=f"user:{user.username}",
            bound_by=user.username,
        )

    def _data(self, project_id: str, *, serving: bool = False) -> tuple[dict[str, Any], PartyData]:
        """The bound rows as the user who bound them may see them (read again when the
        dataset's version or the city's access generation changed). Jobs look both up
        every time; online requests (``serving``) at most every ``VERSION_TTL_S`` seconds."""
        hit = self._fresh.get(project_id)
        if serving and hit is not None and time.monotonic() - hit[0] < VERSION_TTL_S:
            return hit[1], hit[2]
        from cityos.access._generation import read_generation

        b = self.book.binding(project_id)
        version = int(self.store.describe(b["dataset"]).version)
        # rights change without the data changing: the access generation is in the key
        key = (
            f"{project_id}:{b['dataset']}:{b['bound_by']}",
            version,
            read_generation(self.store.db),
        )
        d = self._data_cache.get(key)
        if d is None:
            table = self._secure(str(b["bound_by"])).read(b["dataset"]).table
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
        user: Principal,
    ) -> list[dict[str, Any]]:
        """Publish the chosen fields' names (or aliases), types, descriptions and coarse
        statistics to every member. ``fields`` maps a bound field to ``{"as": public name,
        "description": ...}`` or lists field names. The statistics are of the rows
        ``user`` may see (it must be allowed to read the bound dataset)."""
        user = self.authorise(user, "metadata.share")
        actor = f"user:{user.username}"
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
        secure = self._secure(user)
        table = secure.read(b["dataset"]).table
        schema = {f.name: f for f in secure.describe(b["dataset"]).schema.fields}
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
        user: Principal,
    ) -> dict[str, Any]:
        """Launch a training job (guest only); returns the job in state ``waiting``.
        ``user`` must be allowed to read the guest's bound dataset."""
        user = self.authorise(user, "job.train")
        return self._launch(project_id, "train", algorithm, dict(params or {}), max_retries, user)

    def _launch(
        self,
        project_id: str,
        kind: str,
        algorithm: str,
        params: dict[str, Any],
        max_retries: int,
        user: Principal,
    ) -> dict[str, Any]:
        actor = f"user:{user.username}"
        p = self.book.require_active(project_id)
        if p["guest"] != self.party:
            raise ProjectConflict(f"only the guest {p['guest']!r} launches jobs of {project_id!r}")
        algo = load_algorithm(algorithm, self.algorithms)  # unknown: fails, nothing created
        if bool(getattr(algo, "horizontal", False)) != (p["kind"] == "horizontal"):
            raise ValidationError(
                f"algorithm {algorithm!r} is "
                f"{'horizontal' if getattr(algo, 'horizontal', False) else 'vertical'}; "
                f"project {project_id!r} is {p['kind']}",
                field="algorithm",
            )
        b = self.book.binding(project_id)  # the guest's own data must be bound
        self._require_read(user, str(b["dataset"]))
        params = {**params, "_user": user.username}  # the launcher (never sent to peers)
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

    def cancel(self, job_id: str, *, user: Principal) -> dict[str, Any]:
        """Cancel a waiting or running job at every party."""
        user = self.authorise(user, "job.cancel")
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
            self.book.job_update(job_id, state="cancelled", actor=f"user:{user.username}")
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
        hosts = list(job["params"].get("_hosts") or self._hosts(p))
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
                        "params": {k: v for k, v in job["params"].items() if k != "_user"},
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
                                *_PARTY_METRICS,
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
        params = {k: v for k, v in job["params"].items() if not k.startswith("_")}
        if role == "host":
            hosts = list(job["params"].get("_hosts") or hosts)
        if getattr(algo, "horizontal", False):
            return self._work_horizontal(ch, role, job, p, hosts, algo, params)
        t0 = time.perf_counter()
        if job["kind"] == "train":
            binding, data = self._data(p["id"])
            mine = data.labelled_ids()
            universe = job["params"].get("_universe")
            if role == "guest" and universe:  # the rows of an earlier job (contributions)
                keep = set(self._aligned_ids(str(universe)))
                mine = [i for i in mine if i in keep]
            ids = align(ch, role, mine, guest=guest, hosts=hosts)
            align_bytes = ch.bytes_sent
            if role == "guest":
                d = self.home / "federation" / "models" / str(job["id"])
                d.mkdir(parents=True, exist_ok=True)
                (d / "aligned.ids").write_text("\n".join(ids))
            held: list[str] = []
            if job["params"].get("_holdout"):  # both sides split the aligned ids alike
                held = [i for i in ids if _held_out(i)]
                ids = [i for i in ids if not _held_out(i)]
            X, y = data.rows(ids)
            part, metrics = algo.train(
                ch, role, X, y, params, guest=guest, hosts=hosts, feature_names=data.feature_names
            )
            if held:
                Xh, yh = data.rows(held)
                pred = algo.predict(ch, role, Xh, part, guest=guest, hosts=hosts)
                if role == "guest":
                    assert pred is not None and yh is not None
                    metrics["holdout_rows"] = len(held)
                    metrics["holdout_rmse"] = float(np.sqrt(np.mean((pred - yh) ** 2)))
            return self._trained(role, job, binding, part, len(ids), t0, ch, align_bytes, metrics)
        # batch inference over the aligned ids of the bound datasets as they are now
        model = self.book.model(str(params["model"]))
        part = self._part(model)
        binding, data = self._data(p["id"])
        ids = align(ch, role, data.ids.tolist(), guest=guest, hosts=hosts)
        X, _ = data.rows(ids)
        scores = algo.predict(ch, role, X, part, guest=guest, hosts=hosts)
        return self._inferred(role, job, binding, model, ids, scores, t0)

    def _trained(
        self,
        role: str,
        job: Mapping[str, Any],
        binding: Mapping[str, Any],
        part: Mapping[str, Any],
        rows: int,
        t0: float,
        ch: GatewayChannel,
        align_bytes: int,
        metrics: Mapping[str, Any],
    ) -> dict[str, Any]:
        """Write this party's part of a trained model; the summary a party reports."""
        path = self.home / "federation" / "models" / str(job["id"]) / f"{self.party}.part"
        sha = write_part(path, part)
        out = {
            "dataset": binding["dataset"],
            "version": binding["version"],
            "sha256": sha,
            "rows": rows,
            "seconds": round(time.perf_counter() - t0, 3),
            "bytes_sent": ch.bytes_sent,
            "align_bytes": align_bytes,
            "messages_sent": ch.messages_sent,
            **metrics,
        }
        if role == "guest":
            return {
                "parties": {
                    self.party: {
                        k: out[k]
                        for k in ("dataset", "version", "sha256", "rows", *_PARTY_METRICS)
                        if k in out
                    }
                },
                **{k: v for k, v in out.items() if k not in ("dataset", "version", "sha256")},
            }
        return out

    def _inferred(
        self,
        role: str,
        job: Mapping[str, Any],
        binding: Mapping[str, Any],
        model: Mapping[str, Any],
        ids: Sequence[str],
        scores: np.ndarray | None,
        t0: float,
    ) -> dict[str, Any]:
        out: dict[str, Any] = {
            "dataset": binding["dataset"],
            "version": binding["version"],
            "rows": len(ids),
        }
        if role == "guest":
            assert scores is not None
            out["output"] = self._write_scores(
                str(job["params"].get("output") or ""),
                model,
                ids,
                scores,
                user=str(job["params"].get("_user") or ""),
            )
            out["seconds"] = round(time.perf_counter() - t0, 3)
        return out

    def _work_horizontal(
        self,
        ch: GatewayChannel,
        role: str,
        job: Mapping[str, Any],
        p: Mapping[str, Any],
        hosts: Sequence[str],
        algo: Any,
        params: Mapping[str, Any],
    ) -> dict[str, Any]:
        """A horizontal job: every party uses its own complete rows (no alignment: the
        parties hold different entities); the guest aggregates the rounds and trains on
        its own rows too. One row in five (by id) is held out at every party, which reports
        the federated model's and its local-only model's error on its own held-out rows."""
        t0 = time.perf_counter()
        binding, data = self._data(p["id"])
        complete = np.isfinite(data.X).all(axis=1)
        if data.y is not None:
            complete &= np.isfinite(data.y)
        ids = [str(v) for v in data.ids[complete].tolist()]
        if job["kind"] == "infer":
            model = self.book.model(str(job["params"]["model"]))
            if role != "guest":
                return self._inferred(role, job, binding, model, [], None, t0)
            X, _ = data.rows(ids)
            return self._inferred(
                role, job, binding, model, ids, algo.predict_local(X, self._part(model)), t0
            )
        types = {f.name: str(f.type) for f in self.store.describe(binding["dataset"]).schema.fields}
        label = str(binding["label"])
        schema = [[f, types[f]] for f in binding["fields"]] + [[f"label:{label}", types[label]]]
        train_ids = [i for i in ids if not _held_out(i)]
        held = [i for i in ids if _held_out(i)]
        X, y = data.rows(train_ids)
        assert y is not None
        part, metrics = algo.train(
            ch, role, X, y, params, guest=str(p["guest"]), hosts=hosts, schema=schema
        )
        metrics = dict(metrics)
        if held:
            Xh, yh = data.rows(held)
            assert yh is not None
            local = algo.train_local(X, y, params)
            metrics["holdout_rows"] = len(held)
            metrics["holdout_rmse"] = float(
                np.sqrt(np.mean((algo.predict_local(Xh, part) - yh) ** 2))
            )
            metrics["local_only_rmse"] = float(np.sqrt(np.mean((local(Xh) - yh) ** 2)))
        return self._trained(role, job, binding, part, len(train_ids), t0, ch, 0, metrics)

    def _write_scores(
        self,
        output: str,
        model: Mapping[str, Any],
        ids: Sequence[str],
        scores: np.ndarray,
        *,
        user: str,
    ) -> str:
        """Write the scores to dataset ``output`` as ``user`` (who launched the job: it
        needs write on ``output``)."""
        import pandas as pd

        from cityos.model import Field, PlainTable

        name = output or f"fed_scores_{str(model['id']).replace('-', '_')}"[:63]
        if not _DATASET_NAME.match(name):
            raise ValidationError(f"invalid output dataset name {name!r}", field="output")
        secure = self._secure(user)
        if name not in {d.name for d in self.store.list_datasets()}:
            secure.create_dataset(
                name,
                PlainTable.schema("score", Field("model", "string")),
                description=f"federated scores of model {model['id']}",
            )
        df = pd.DataFrame(
            {
                "id": list(ids),
                "score": np.asarray(scores, dtype="float64"),
                "model": str(model["id"]),
            }
        )
        secure.append(name, df)
        return name

    def _part(self, model: Mapping[str, Any]) -> dict[str, Any]:
        """This party's part of a published model, from its registry version's artefact
        (checked against the artefact's and the part's SHA-256)."""
        part = self._parts.get(str(model["id"]))
        if part is None:
            folder = self.registry.artefact(
                str(model["registry_name"]), int(model["registry_version"])
            )
            part = read_part(folder / f"{self.party}.part", str(model["sha256"]))
            self._parts[str(model["id"])] = part
        return part

    @property
    def registry(self) -> Any:
        """This party's AI registry (the source of truth of its published models)."""
        from cityos.ai._registry import ModelRegistry

        return ModelRegistry.of(self.store)

    # -- step 5: publishing ----------------------------------------------------------------------------
    def publish(self, job_id: str, *, user: Principal, name: str | None = None) -> dict[str, Any]:
        """Publish a succeeded training job's model: every party registers its own part in
        its own AI registry, as a version of model ``name`` (default ``fed-<project
        name>``), with the data versions of every party and the federation, project and job
        as lineage; the guest's version is the joint model."""
        user = self.authorise(user, "model.publish")
        j = self.book.job(job_id)
        if j["kind"] != "train" or j["state"] != "succeeded":
            raise ProjectConflict(
                f"job {job_id!r} is a {j['kind']} job in state {j['state']}: only a succeeded "
                "training job can be published"
            )
        p = self.book.get(j["project"])
        if p["guest"] != self.party:
            raise ProjectConflict(f"only the guest {p['guest']!r} publishes models of {p['id']!r}")
        reg_name = name or _registry_name(str(p["name"]))
        _check_registry_name(reg_name)
        parties = j["result"]["parties"]
        versions = {
            k: {"dataset": v["dataset"], "version": v["version"], "sha256": v["sha256"]}
            for k, v in parties.items()
        }
        record = {
            "model": f"m-{job_id[2:]}",
            "project": p["id"],
            "job": job_id,
            "algorithm": j["algorithm"],
            "data_versions": versions,
            "name": reg_name,
            "params": {k: v for k, v in j["params"].items() if not k.startswith("_")},
        }
        for h in self._hosts(p):  # hosts first: they check their own part is intact
            self._member_client(p["id"], h).call("POST", "/fed/v1/rpc/publish", record)
        return self._publish_local(record, f"user:{user.username}", metrics=j["result"])

    def _publish_local(
        self, record: Mapping[str, Any], actor: str, *, metrics: Mapping[str, Any]
    ) -> dict[str, Any]:
        """Register this party's part in its AI registry, then record the publication."""
        job_id = str(record["job"])
        mine = record["data_versions"][self.party]
        path = self.home / "federation" / "models" / job_id / f"{self.party}.part"
        read_part(path, str(mine["sha256"]))  # the part on disk is the one trained
        p = self.book.get(str(record["project"]))
        lineage = {
            "federation": self.federation,
            "project": p["id"],
            "project_name": p["name"],
            "project_kind": p["kind"],
            "job": job_id,
            "model": str(record["model"]),
            "guest": p["guest"],
            "party": self.party,
            "part": "joint model (guest)" if p["guest"] == self.party else "host part",
            "parties": dict(record["data_versions"]),
        }
        manifest = {k: lineage[k] for k in ("federation", "project", "job", "model", "party")}
        kept = {
            k: v
            for k, v in metrics.items()
            if isinstance(v, int | float | str) and k not in ("seconds",)
        }
        version = self.registry.register_files(
            str(record["name"]),
            {
                f"{self.party}.part": path.read_bytes(),
                "federated.json": json.dumps(manifest, sort_keys=True).encode(),
            },
            family=f"federated-{record['algorithm']}",
            params=dict(record.get("params") or {}),
            metrics={"federated": kept},
            # this party's own dataset (so the registry's and the HTTP API's access checks
            # apply to it); every party's data versions are in the lineage
            datasets={str(mine["dataset"]): int(mine["version"])},
            feature_spec={"binding": self.book.binding(p["id"])},
            lineage=lineage,
            actor=actor,
        )
        return self.book.publish(
            model_id=str(record["model"]),
            project_id=str(record["project"]),
            job_id=job_id,
            algorithm=str(record["algorithm"]),
            part_path=str(self.registry.root.parent.parent / version.artefact / path.name),
            sha256=str(mine["sha256"]),
            data_versions=record["data_versions"],
            registry_name=version.name,
            registry_version=version.version,
            actor=actor,
        )

    def resolve_model(self, ref: str) -> dict[str, Any]:
        """A published model by its id (``m-...``) or by its AI-registry name, optionally
        with ``:VERSION`` or ``:STAGE`` (default: the production version, else the latest).
        A retired (``archived``) version is not served: :class:`NotPublished`."""
        if ref.startswith("m-"):
            m = self.book.model(ref)  # NotPublished if not
            v = self.registry.get(str(m["registry_name"]), int(m["registry_version"]))
        else:
            from cityos.ai import AIError

            name, _, which = ref.partition(":")
            try:
                v = self.registry.get(name, which or None)
            except AIError as exc:
                raise NotPublished(
                    f"no published model {ref!r} at party {self.party!r}: {exc}"
                ) from None
            if not v.lineage or "model" not in v.lineage:
                raise NotPublished(
                    f"{name!r} v{v.version} at party {self.party!r} is not a federated model"
                )
            m = self.book.model(str(v.lineage["model"]))
        if v.stage == "archived":
            raise NotPublished(
                f"model {v.name!r} v{v.version} ({m['id']}) is retired (archived) in the "
                f"registry of party {self.party!r}: stage it again to serve it"
            )
        return {**m, "stage": v.stage}

    # -- step 6: batch inference -----------------------------------------------------------------------
    def infer(
        self, model: str, *, output: str = "", max_retries: int = 1, user: Principal
    ) -> dict[str, Any]:
        """Score the aligned ids of the bound datasets with a published model (its id or
        registry name); the scores are written, as ``user`` (it needs write on
        ``output``), to dataset ``output`` of the guest's store."""
        user = self.authorise(user, "model.infer")
        m = self.resolve_model(model)  # NotPublished if not, or retired
        return self._launch(
            m["project"],
            "infer",
            m["algorithm"],
            {"model": m["id"], "output": output},
            max_retries,
            user,
        )

    # -- contributions (the basis of profit sharing) ---------------------------------------------
    def _aligned_ids(self, job_id: str) -> list[str]:
        f = self.home / "federation" / "models" / job_id / "aligned.ids"
        if not f.is_file():
            raise ProjectNotFound(f"no aligned ids of job {job_id!r} at party {self.party!r}")
        return [i for i in f.read_text().split("\n") if i]

    def contributions(
        self, model: str, *, user: Principal, timeout: float = 3600.0
    ) -> dict[str, Any]:
        """Each host's contribution to a published model's quality: exact Shapley values
        over the hosts (the guest, holding the label, is in every coalition), the value of a
        coalition being minus the RMSE on held-out rows (one aligned id in five) of the same
        algorithm and parameters trained by that coalition on the model's rows. Written to
        every party's audit chain."""
        from cityos.federation import shapley

        user = self.authorise(user, "model.contributions")
        actor = f"user:{user.username}"
        m = self.resolve_model(model)
        model_id = str(m["id"])
        p = self.book.get(m["project"])
        self._require_read(user, str(self.book.binding(p["id"])["dataset"]))
        if p["guest"] != self.party:
            raise ProjectConflict(f"only the guest {p['guest']!r} accounts contributions")
        j = self.book.job(m["job"])
        params = {k: v for k, v in j["params"].items() if not k.startswith("_")}
        algo = load_algorithm(j["algorithm"], self.algorithms)
        universe = self._aligned_ids(j["id"])

        def value(coalition: frozenset[str]) -> float:
            hs = sorted(coalition - {self.party})
            if not hs:  # the guest alone, on its own columns of the same rows
                local = getattr(algo, "train_local", None)
                if local is None:
                    raise FederationError(f"algorithm {j['algorithm']!r} cannot train locally")
                _, data = self._data(p["id"])
                tr = [i for i in universe if not _held_out(i)]
                te = [i for i in universe if _held_out(i)]
                (Xt, yt), (Xe, ye) = data.rows(tr), data.rows(te)
                assert yt is not None and ye is not None
                pred = local(Xt, yt, params)(Xe)
                return -float(np.sqrt(np.mean((np.asarray(pred) - ye) ** 2)))
            sub = self._launch(
                p["id"],
                "train",
                j["algorithm"],
                {**params, "_hosts": hs, "_holdout": True, "_universe": j["id"]},
                1,
                user,
            )
            done = self.wait(sub["id"], timeout)
            if done["state"] != "succeeded":
                raise JobFailed(f"coalition {hs} job {sub['id']} {done['state']}: {done['error']}")
            return -float(done["result"]["holdout_rmse"])

        res = shapley.contributions(self._hosts(p), value, always=[self.party])
        record = {
            "project": p["id"],
            "model": model_id,
            "method": res.method,
            "values": res.values,
            "grand": res.grand,
            "coalitions": res.coalitions,
            "metric": "-rmse (held-out rows)",
        }
        shapley.record_contributions(
            self.store.db,
            res,
            project=p["id"],
            model=model_id,
            actor=actor,
            metric=record["metric"],
        )
        for h in self._hosts(p):
            self._member_client(p["id"], h).call("POST", "/fed/v1/rpc/contributions", record)
        return record

    # -- step 7: online serving --------------------------------------------------------------------------
    def _served(self, model: str) -> tuple[dict[str, Any], dict[str, Any], Algorithm]:
        """A published, not retired model, its project and algorithm (the project and
        algorithm cached: the members of an active project do not change; the registry
        stage is looked up on every request, so retiring a version stops its serving)."""
        m = self.resolve_model(model)
        hit = self._serving.get(str(m["id"]))
        if hit is None:
            p = self.book.get(m["project"])
            hit = (m, p, load_algorithm(m["algorithm"], self.algorithms))
            self._serving[str(m["id"])] = hit
        return m, hit[1], hit[2]

    def predict(
        self, model: str, ids: Sequence[str], *, user: Principal, audit: bool = True
    ) -> list[float]:
        """Score ``ids`` online with a published model (its id or registry name): the
        guest's rows and each host's partial results (a horizontal model scores the
        guest's rows alone). ``user`` must be allowed to read the guest's bound dataset.
        The request's audit entry is written by a background writer, in order."""
        user = self.authorise(user, "model.serve")
        m, p, algo = self._served(model)
        model_id = str(m["id"])
        if p["guest"] != self.party:
            raise ProjectConflict(
                f"online serving of {model_id!r} is asked of the guest "
                f"{p['guest']!r}, not {self.party!r}"
            )
        ids = [str(i) for i in ids]
        if not ids:
            raise ValidationError("give at least one id to score", field="ids")
        b, data = self._data(p["id"], serving=True)
        self._require_read(user, str(b["dataset"]))
        X, _ = data.rows(ids)
        if getattr(algo, "horizontal", False):
            scores = algo.predict_local(X, self._part(m))  # type: ignore[attr-defined]
        else:
            hosts = self._hosts(p)
            channel = f"serve/{uuid.uuid4().hex}"
            urls = {mm["party"]: mm["url"] for mm in p["members"]}
            clients = {h: self.client(h, urls.get(h) or None) for h in hosts}
            with GatewayChannel(self.server, clients, channel, timeout=self.recv_timeout) as ch:
                for h in hosts:
                    clients[h].call(
                        "POST",
                        "/fed/v1/rpc/serve",
                        {"model": model_id, "channel": channel, "ids": ids},
                    )
                scores = algo.predict(ch, "guest", X, self._part(m), guest=self.party, hosts=hosts)
        assert scores is not None
        if audit:
            self._audit_q.put(
                (
                    f"user:{user.username}",
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
                "contributions": self._rpc_contributions,
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
        b = self.book.binding(p["id"])  # UnboundDataset: the guest learns it before any message
        self._require_read(str(b["bound_by"]), str(b["dataset"]))  # and a revoked right
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
        return self._publish_local(req, f"gateway:{peer}", metrics=j["result"])

    def _rpc_contributions(self, peer: str, req: Mapping[str, Any]) -> Any:
        from cityos.federation import shapley

        p = self.book.get(str(req["project"]))
        if p["guest"] != peer:
            raise ProjectConflict(f"only the guest {p['guest']!r} accounts contributions")
        self.book.model(str(req["model"]))
        res = shapley.Contributions(
            {str(k): float(v) for k, v in req["values"].items()},
            str(req["method"]),
            float(req["grand"]),
            {str(k): float(v) for k, v in req["coalitions"].items()},
        )
        shapley.record_contributions(
            self.store.db,
            res,
            project=p["id"],
            model=str(req["model"]),
            actor=f"gateway:{peer}",
            metric=str(req.get("metric", "")),
        )
        return {"ok": True}

    def _rpc_serve(self, peer: str, req: Mapping[str, Any]) -> Any:
        m, p, algo = self._served(str(req["model"]))
        if p["guest"] != peer:
            raise ProjectConflict(f"only the guest {p['guest']!r} serves {m['id']!r}")
        ids = [str(i) for i in req["ids"]]
        _, data = self._data(p["id"], serving=True)
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
    def _operator_principal(self) -> Principal:
        """The access user whose API key or token the request carries (always required,
        besides this party's own certificate)."""
        from cityos.access import (
            AuthenticationError,
            principal_from_api_key,
            principal_from_token,
        )
        from cityos.config import city_secret

        auth = request_authorization()
        if not auth:
            raise AuthenticationError(
                f"the operator API of {self.party!r} needs an access API key or token of a "
                "user of this party's city (Authorization: Bearer <key>; set CITYOS_API_KEY "
                "for the client commands)"
            )
        scheme, _, cred = auth.partition(" ")
        if scheme.lower() != "bearer" or not cred:
            raise AuthenticationError("use Authorization: Bearer <API key or token>")
        db = self.store.db
        if cred.count(".") == 2:
            return principal_from_token(db, cred, city_secret(self.store.settings)[0])
        return principal_from_api_key(db, cred)

    def _operator_route(self, peer: str, what: str, body: bytes) -> tuple[int, bytes]:
        from cityos.access import AuthenticationError

        if peer != self.party:
            return 403, json.dumps(
                {
                    "error": f"the operator API of {self.party!r} needs "
                    f"{self.party!r}'s own certificate, not {peer!r}'s"
                }
            ).encode()
        try:
            user = self._operator_principal()
            req = json.loads(body) if body else {}
            return 200, json.dumps(self.operate(what, req, user=user)).encode()
        except Exception as exc:
            status = 401 if isinstance(exc, AuthenticationError) else _status_of(exc)
            if status == 500:
                log.exception("operator route %s", what)
            return status, json.dumps({"error": str(exc), "kind": type(exc).__name__}).encode()

    def operate(self, what: str, req: Mapping[str, Any], *, user: Principal) -> Any:
        """One operator request (``"METHOD /gw/v1/..."`` and its JSON body) by ``user``."""
        method, _, path = what.partition(" ")
        parts = path[len("/gw/v1/") :].strip("/").split("/")
        match (method, parts):
            case ("GET", ["status"]):
                self.authorise(user, "status")
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
                    kind=str(req.get("kind", "vertical")),
                    user=user,
                )
            case ("GET", ["projects", pid]):
                self.authorise(user, "project.show")
                return {
                    **self.book.get(pid),
                    "metadata": self.book.metadata(pid),
                    "jobs": self.book.jobs(pid),
                    "models": self.book.models(pid),
                }
            case ("POST", ["projects", pid, "accept"]):
                return self.answer(pid, accept=True, user=user)
            case ("POST", ["projects", pid, "decline"]):
                return self.answer(pid, accept=False, user=user)
            case ("POST", ["projects", pid, "bind"]):
                return self.bind(
                    pid,
                    str(req["dataset"]),
                    id_field=str(req.get("id_field", "id")),
                    fields=list(req["fields"]),
                    label=req.get("label"),
                    user=user,
                )
            case ("POST", ["projects", pid, "metadata"]):
                return self.share_metadata(pid, req["fields"], user=user)
            case ("GET", ["projects", pid, "metadata"]):
                self.authorise(user, "project.show")
                return self.book.metadata(pid)
            case ("POST", ["projects", pid, "train"]):
                return self.train(
                    pid,
                    algorithm=str(req.get("algorithm", "secureboost")),
                    params=req.get("params") or {},
                    max_retries=int(req.get("max_retries", 1)),
                    user=user,
                )
            case ("GET", ["jobs", jid]):
                self.authorise(user, "job.show")
                return self.book.job(jid)
            case ("POST", ["jobs", jid, "cancel"]):
                return self.cancel(jid, user=user)
            case ("POST", ["jobs", jid, "publish"]):
                return self.publish(jid, user=user, name=req.get("name") or None)
            case ("POST", ["models", mid, "infer"]):
                return self.infer(mid, output=str(req.get("output", "")), user=user)
            case ("POST", ["models", mid, "contributions"]):
                return self.contributions(mid, user=user)
            case ("POST", ["models", mid, "predict"]):
                return {
                    "model": mid,
                    "ids": list(req["ids"]),
                    "scores": self.predict(mid, list(req["ids"]), user=user),
                }
        raise ProjectNotFoundRoute(f"no operator route {method} {path}")


class ProjectNotFoundRoute(FederationError, KeyError):
    """No such operator route."""


__all__ += ["NotPublished", "UnboundDataset"]
