"""``cityos gateway ...``: certificates, a party's gateway server, and the client commands
that drive the seven steps through the party's own gateway (mutual TLS with the party's
own certificate). Loaded only when a ``gateway`` command runs.

Errors raise :class:`~cityos.errors.CityOSError` subclasses, which the CLI prints in one
line with the exit code of their kind.
"""

from __future__ import annotations

import json
import os
import signal
import threading
from pathlib import Path
from typing import Annotated, Any

import typer

gateway_app = typer.Typer(
    no_args_is_help=True,
    help="The federation gateway: certificates, serve a party, drive projects and jobs.",
)
HomeOpt = Annotated[
    Path, typer.Option("--home", envvar="CITYOS_HOME", help="The party's city home.")
]


def _print(obj: Any) -> None:
    typer.echo(json.dumps(obj, indent=2, default=str))


class GatewayClient:
    """The operator's client of the gateway serving city ``home`` (its address and
    certificate folder are in ``home/federation/gateway.json``), authenticated by the
    party's certificate and by ``api_key`` (default ``CITYOS_API_KEY``): an access API key or
    token of a user of that city, as whom every request is authorised."""

    def __init__(self, home: str | Path, *, api_key: str | None = None) -> None:
        from cityos.errors import ConfigError
        from cityos.federation._certs import load_identity
        from cityos.federation._transport import GATEWAY_FILE, PeerClient

        p = Path(home) / GATEWAY_FILE
        if not p.is_file():
            raise ConfigError(
                f"no gateway serves {home}: start one with "
                f"`cityos gateway serve --party NAME --home {home} --certs DIR`"
            )
        info = json.loads(p.read_text())
        self.party = str(info["party"])
        ident = load_identity(info["certs"], self.party)
        self._client = PeerClient(ident, self.party, str(info["url"]), retry_s=3.0)
        key = api_key or os.environ.get("CITYOS_API_KEY")
        if not key:
            from cityos.access import AuthenticationError

            raise AuthenticationError(
                f"the gateway of {self.party!r} needs an access API key or token of a user of "
                f"its city: set CITYOS_API_KEY (make one with `cityos user api-key USER "
                f"--home {home}`)"
            )
        self._client.auth = f"Bearer {key}"

    def call(self, method: str, path: str, body: Any = None, *, timeout: float = 300.0) -> Any:
        from cityos.errors import ConflictError, ValidationError
        from cityos.federation._transport import RpcError
        from cityos.federation.gateway_errors import FederationError, ProjectNotFound

        try:
            return self._client.call(method, f"/gw/v1/{path.lstrip('/')}", body, timeout=timeout)
        except RpcError as exc:
            msg = f"gateway of {self.party!r}: {exc.remote_message}"
            if exc.status in (401, 403):
                from cityos.access import PermissionDenied

                raise PermissionDenied(msg) from None
            if exc.status == 404:
                raise ProjectNotFound(msg) from None
            if exc.status == 409:
                raise ConflictError(msg) from None
            if exc.status == 422:
                raise ValidationError(msg) from None
            raise FederationError(msg) from None


@gateway_app.command()
def certs(
    out: Annotated[
        Path, typer.Option("--out", help="Folder of the federation's CA and certificates.")
    ],
    federation: Annotated[str, typer.Option("--federation", help="The federation's name.")],
    party: Annotated[
        list[str], typer.Option("--party", help="A party to issue a certificate to (repeat).")
    ],
    days: Annotated[int, typer.Option(help="Validity of the party certificates in days.")] = 365,
) -> None:
    """Make (or reuse) the federation's CA in OUT and a certificate for each party."""
    from cityos.federation._certs import create_federation

    fed = create_federation(out, federation, party, days=days)
    _print(
        {
            "federation": fed.name,
            "ca": str(fed.ca),
            "parties": {p.name: {"cert": str(p.cert), "key": str(p.key)} for p in fed.parties},
        }
    )


@gateway_app.command()
def serve(
    party: Annotated[str, typer.Option("--party", help="This party's name (its certificate's).")],
    home: HomeOpt,
    certs_dir: Annotated[
        Path, typer.Option("--certs", help="Folder with ca.pem and the party's certificate.")
    ],
    port: Annotated[int, typer.Option(help="Port to listen on (0: any free port).")] = 0,
    host: Annotated[str, typer.Option(help="Address to listen on.")] = "127.0.0.1",
    peer: Annotated[
        list[str] | None,
        typer.Option("--peer", help="NAME=https://HOST:PORT of a peer gateway (repeat)."),
    ] = None,
    recv_timeout: Annotated[
        float, typer.Option(help="Longest wait (s) for one message of a live peer.")
    ] = 3600.0,
) -> None:
    """Serve PARTY's gateway over its city HOME until interrupted (SIGINT/SIGTERM).

    Operator requests need the party's certificate and an access API key or token of a
    user of HOME's city; each action is authorised for that user (roles
    federation_operator, federation_viewer, federation_client, or admin) and every dataset
    it touches by the user's data rights."""
    from cityos.errors import ValidationError
    from cityos.federation.gateway import Gateway

    peers: dict[str, str] = {}
    for item in peer or []:
        name, sep, url = item.partition("=")
        if not sep or not url.startswith("https://"):
            raise ValidationError(f"--peer {item!r}: use NAME=https://HOST:PORT", field="peer")
        peers[name] = url
    gw = Gateway(
        party,
        home,
        certs_dir,
        host=host,
        port=port,
        peers=peers,
        recv_timeout=recv_timeout,
    ).start()
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    typer.echo(json.dumps({"party": party, "federation": gw.federation, "url": gw.url}), err=False)
    try:
        stop.wait()
    finally:
        gw.stop()


project_app = typer.Typer(no_args_is_help=True, help="Create, inspect, accept or decline projects.")
gateway_app.add_typer(project_app, name="project")


@project_app.command("create")
def project_create(
    name: Annotated[str, typer.Argument(help="The project's name.")],
    host: Annotated[list[str], typer.Option("--host", help="A host party to invite (repeat).")],
    home: HomeOpt,
    description: Annotated[str, typer.Option(help="What the project is for.")] = "",
    kind: Annotated[
        str,
        typer.Option(
            help="vertical (parties hold columns of the same entities) or horizontal "
            "(they share a schema over different entities)."
        ),
    ] = "vertical",
) -> None:
    """Create a project with this party as the guest (label holder / aggregator) and invite
    hosts."""
    _print(
        GatewayClient(home).call(
            "POST",
            "projects",
            {"name": name, "hosts": host, "description": description, "kind": kind},
        )
    )


@project_app.command("show")
def project_show(project: Annotated[str, typer.Argument()], home: HomeOpt) -> None:
    """A project: members, metadata, jobs and models."""
    _print(GatewayClient(home).call("GET", f"projects/{project}"))


@project_app.command("accept")
def project_accept(project: Annotated[str, typer.Argument()], home: HomeOpt) -> None:
    """Accept an invitation."""
    _print(GatewayClient(home).call("POST", f"projects/{project}/accept"))


@project_app.command("decline")
def project_decline(project: Annotated[str, typer.Argument()], home: HomeOpt) -> None:
    """Decline an invitation."""
    _print(GatewayClient(home).call("POST", f"projects/{project}/decline"))


@gateway_app.command()
def bind(
    project: Annotated[str, typer.Argument()],
    dataset: Annotated[str, typer.Argument(help="A dataset of this party's store.")],
    home: HomeOpt,
    fields: Annotated[str, typer.Option(help="Feature fields, comma-separated.")],
    label: Annotated[str | None, typer.Option(help="The label field (the guest only).")] = None,
    id_field: Annotated[str, typer.Option(help="The field that identifies an entity.")] = "id",
) -> None:
    """Bind a local dataset to a project (its rows never leave this party)."""
    _print(
        GatewayClient(home).call(
            "POST",
            f"projects/{project}/bind",
            {
                "dataset": dataset,
                "fields": [f for f in fields.split(",") if f],
                "label": label,
                "id_field": id_field,
            },
        )
    )


@gateway_app.command()
def metadata(
    project: Annotated[str, typer.Argument()],
    home: HomeOpt,
    share: Annotated[
        list[str] | None,
        typer.Option("--share", help="FIELD[=PUBLIC_NAME[:description]] to publish (repeat)."),
    ] = None,
) -> None:
    """Publish the chosen fields' metadata (with --share), then show every party's."""
    c = GatewayClient(home)
    if share:
        chosen: dict[str, dict[str, str]] = {}
        for item in share:
            f, _, rest = item.partition("=")
            alias, _, desc = rest.partition(":")
            chosen[f] = {"as": alias or f, "description": desc}
        c.call("POST", f"projects/{project}/metadata", {"fields": chosen})
    _print(c.call("GET", f"projects/{project}/metadata"))


@gateway_app.command()
def train(
    project: Annotated[str, typer.Argument()],
    home: HomeOpt,
    algorithm: Annotated[
        str, typer.Option(help="secureboost or vlr (vertical); flower-linear (horizontal)")
    ] = "secureboost",
    params: Annotated[str, typer.Option(help="Algorithm parameters as JSON.")] = "{}",
    retries: Annotated[int, typer.Option(help="Attempts after a lost peer.")] = 1,
    wait: Annotated[bool, typer.Option(help="Wait until the job ends.")] = True,
) -> None:
    """Launch a training job (the guest); print the job (when it ended, with --wait)."""
    c = GatewayClient(home)
    job = c.call(
        "POST",
        f"projects/{project}/train",
        {"algorithm": algorithm, "params": json.loads(params), "max_retries": retries},
    )
    _print(_wait(c, job) if wait else job)


def _wait(c: GatewayClient, job: dict[str, Any], timeout: float = 3600.0) -> Any:
    import time

    from cityos.federation.gateway_errors import JobFailed

    deadline = time.monotonic() + timeout
    while job["state"] not in ("failed", "succeeded", "cancelled") and time.monotonic() < deadline:
        time.sleep(0.2)
        job = c.call("GET", f"jobs/{job['id']}")
    if job["state"] != "succeeded":
        raise JobFailed(
            f"job {job['id']} {job['state']} (attempt {job['attempt']}): {job['error']}"
        )
    return job


@gateway_app.command()
def status(
    home: HomeOpt,
    job: Annotated[str | None, typer.Option(help="One job's state.")] = None,
) -> None:
    """The gateway's projects, jobs and models (or one job)."""
    c = GatewayClient(home)
    _print(c.call("GET", f"jobs/{job}") if job else c.call("GET", "status"))


@gateway_app.command()
def cancel(job: Annotated[str, typer.Argument()], home: HomeOpt) -> None:
    """Cancel a waiting or running job at every party."""
    _print(GatewayClient(home).call("POST", f"jobs/{job}/cancel"))


@gateway_app.command()
def publish(
    job: Annotated[str, typer.Argument(help="A succeeded training job.")],
    home: HomeOpt,
    name: Annotated[
        str | None, typer.Option(help="AI-registry model name (default: fed-<project>).")
    ] = None,
) -> None:
    """Publish a trained model: every party registers its own part in its own AI registry
    (`cityos ai models` lists it; `cityos ai stage ... archived` retires it)."""
    _print(GatewayClient(home).call("POST", f"jobs/{job}/publish", {"name": name}))


@gateway_app.command()
def infer(
    model: Annotated[str, typer.Argument(help="m-... or a registry NAME[:VERSION|STAGE].")],
    home: HomeOpt,
    output: Annotated[str, typer.Option(help="Dataset of the guest's store for the scores.")] = "",
    wait: Annotated[bool, typer.Option(help="Wait until the job ends.")] = True,
) -> None:
    """Batch inference over the aligned ids; scores written to the guest's store."""
    c = GatewayClient(home)
    job = c.call("POST", f"models/{model}/infer", {"output": output})
    _print(_wait(c, job) if wait else job)


@gateway_app.command()
def predict(
    model: Annotated[str, typer.Argument(help="m-... or a registry NAME[:VERSION|STAGE].")],
    ids: Annotated[list[str], typer.Argument(help="Entity ids to score.")],
    home: HomeOpt,
) -> None:
    """Online scoring through the guest's gateway (it gathers the hosts' partial results)."""
    _print(GatewayClient(home).call("POST", f"models/{model}/predict", {"ids": ids}))


@gateway_app.command()
def contributions(
    model: Annotated[str, typer.Argument(help="A published model.")], home: HomeOpt
) -> None:
    """Each host's contribution to the model's quality (Shapley values over held-out rows),
    written to every party's audit chain — the basis of profit sharing."""
    _print(GatewayClient(home).call("POST", f"models/{model}/contributions"))
