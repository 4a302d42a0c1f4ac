"""The model registry on the city's relational database (Alembic branch ``ai``): every
version with its parameters, metrics per horizon, the exact dataset versions and code
version it was trained on, its artefact (files under ``<home>/ai/registry``, with their
SHA-256), and stages (``none`` → ``staging`` → ``production`` → ``archived``) with
rollback.

Why not MLflow: ``pip install mlflow`` (3.17.2) would downgrade the pinned pyarrow 26.0.1
to 25.0.1 and pull ~35 more packages (Flask, gunicorn, graphene, databricks-sdk, docker,
opentelemetry, ...); see docs/ai.md. This registry keeps MLflow's concepts (registered
model, version, stage, run params/metrics, artefact) in tables of ``cityos.db``, so it moves
to PostgreSQL with the rest of the city's state.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
import threading
import uuid
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError

from cityos.ai._errors import RegistryError, VersionNotFound
from cityos.ai._tables import ModelVersionRow, StageEventRow
from cityos.ai._zoo import Forecaster, load_model
from cityos.db import Database

__all__ = ["EXTERNAL_PREFIXES", "STAGES", "ModelRegistry", "ModelVersion", "code_version"]

STAGES = ("none", "staging", "production", "archived")
#: Families whose artefacts are files registered as they are (:meth:`ModelRegistry.register_files`),
#: not zoo models: ``federated-<algorithm>`` (a party's part of a federated model).
EXTERNAL_PREFIXES = ("federated-",)
_NAME_OK = set("abcdefghijklmnopqrstuvwxyz0123456789_-")


def _check_name(name: str) -> str:
    if not name or len(name) > 100 or not set(name) <= _NAME_OK or not name[0].isalpha():
        raise RegistryError(
            f"invalid model name {name!r}: use lower-case letters, digits, '_' or '-', "
            "starting with a letter"
        )
    return name


_CODE: list[str] = []
_OPEN: dict[tuple[str, str], ModelRegistry] = {}
_OPEN_LOCK = threading.Lock()


def code_version() -> str:
    """``cityos <version>`` plus the git commit of the source tree when there is one."""
    if not _CODE:
        import cityos

        v = f"cityos {cityos.__version__}"
        try:
            out = subprocess.run(
                ["git", "rev-parse", "--short=12", "HEAD"],
                cwd=Path(__file__).parent,
                capture_output=True,
                text=True,
                timeout=5,
                check=False,
            )
            if out.returncode == 0 and out.stdout.strip():
                v += f" ({out.stdout.strip()})"
        except OSError:
            pass
        _CODE.append(v)
    return _CODE[0]


@dataclass(frozen=True)
class ModelVersion:
    """One registered version of a model."""

    name: str
    version: int
    family: str
    horizon: int
    params: dict[str, Any]
    metrics: dict[str, Any]
    datasets: dict[str, int]
    feature_spec: dict[str, Any]
    code_version: str
    artefact: str
    sha256: str
    stage: str
    created_by: str
    created_at: datetime | None
    study: dict[str, Any] | None = None
    reference: dict[str, Any] | None = None
    lineage: dict[str, Any] | None = None

    @property
    def external(self) -> bool:
        """Whether the artefact is not a zoo model (e.g. a federated model's part, served
        by the federation gateway rather than :meth:`ModelRegistry.load`)."""
        return self.family.startswith(EXTERNAL_PREFIXES)

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "version": self.version,
            "family": self.family,
            "horizon": self.horizon,
            "params": self.params,
            "metrics": self.metrics,
            "datasets": self.datasets,
            "feature_spec": self.feature_spec,
            "code_version": self.code_version,
            "artefact": self.artefact,
            "sha256": self.sha256,
            "stage": self.stage,
            "created_by": self.created_by,
            "created_at": self.created_at.isoformat() if self.created_at else None,
            "has_study": self.study is not None,
            "lineage": self.lineage,
        }


def _row_to(v: ModelVersionRow) -> ModelVersion:
    return ModelVersion(
        v.name,
        v.version,
        v.family,
        v.horizon,
        json.loads(v.params),
        json.loads(v.metrics),
        json.loads(v.datasets),
        json.loads(v.feature_spec),
        v.code_version,
        v.artefact,
        v.sha256,
        v.stage,
        v.created_by,
        v.created_at,
        json.loads(v.study) if v.study else None,
        json.loads(v.reference) if v.reference else None,
        json.loads(v.lineage) if v.lineage else None,
    )


def _digest(folder: Path) -> str:
    h = hashlib.sha256()
    for f in sorted(p for p in folder.rglob("*") if p.is_file()):
        h.update(f.relative_to(folder).as_posix().encode())
        h.update(f.read_bytes())
    return h.hexdigest()


class ModelRegistry:
    """Registered models of one city.

    Parameters
    ----------
    db:
        The city's database (``store.db``).
    home:
        The city's folder; artefacts go to ``home/ai/registry/<name>/<version>``.

    Examples
    --------
    >>> import tempfile, numpy as np
    >>> from cityos.ai import Panel, make_model
    >>> db = Database("sqlite://"); db.migrate()
    >>> reg = ModelRegistry(db, tempfile.mkdtemp())
    >>> p = Panel.from_array(np.arange(48.0).reshape(48, 1), "2026-03-02", "1h")
    >>> v = reg.register("demo", make_model("persistence", 3).fit(p), metrics={"val": {}})
    >>> reg.deploy("demo", v.version).stage, reg.get("demo").version
    ('production', 1)
    """

    def __init__(self, db: Database, home: str | Path) -> None:
        self.db = db
        self.root = Path(home) / "ai" / "registry"
        self._cache: dict[tuple[str, int, str], Forecaster] = {}
        self._lock = threading.Lock()

    @classmethod
    def of(cls, store: Any) -> ModelRegistry:
        """The registry of the city ``store`` (a Store or SecureStore) lives in; one per
        city and process, so loaded models stay cached between calls."""
        home = Path(store.home if hasattr(store, "home") else store.settings.home)
        key = (str(store.db.url), str(home.resolve()))
        with _OPEN_LOCK:
            reg = _OPEN.get(key)
            if reg is None or reg.db is not store.db:
                reg = _OPEN[key] = cls(store.db, home)
        return reg

    # -- writes ------------------------------------------------------------------------------
    def register(
        self,
        name: str,
        model: Forecaster,
        *,
        metrics: dict[str, Any] | None = None,
        feature_spec: dict[str, Any] | None = None,
        study: dict[str, Any] | None = None,
        reference: dict[str, Any] | None = None,
        actor: str = "",
    ) -> ModelVersion:
        """Add a fitted model as the next version of ``name`` (stage ``none``)."""
        _check_name(name)
        if not model.fitted or model.meta is None:
            raise RegistryError(f"cannot register an unfitted {model.family} model as {name!r}")
        tmp = self.root / name / f".tmp-{uuid.uuid4().hex}"
        model.save(tmp)
        return self._commit(
            name,
            tmp,
            family=model.family,
            horizon=model.horizon,
            params=model.params,
            metrics=metrics,
            datasets=model.meta.get("datasets", {}),
            feature_spec=feature_spec,
            study=study,
            reference=reference,
            lineage=None,
            actor=actor,
        )

    def register_files(
        self,
        name: str,
        files: dict[str, bytes],
        *,
        family: str,
        params: dict[str, Any] | None = None,
        metrics: dict[str, Any] | None = None,
        datasets: dict[str, int] | None = None,
        feature_spec: dict[str, Any] | None = None,
        lineage: dict[str, Any] | None = None,
        horizon: int = 0,
        actor: str = "",
    ) -> ModelVersion:
        """Add a model that is not a zoo model as the next version of ``name`` (stage
        ``none``): its artefact is ``files`` (file name -> bytes), kept and checked by
        SHA-256 like any other; ``family`` must start with one of
        :data:`EXTERNAL_PREFIXES`. The whole lifecycle (stages, deploy, rollback) applies;
        :meth:`artefact` hands the verified folder to whoever serves it.

        >>> import tempfile
        >>> db = Database("sqlite://"); db.migrate()
        >>> reg = ModelRegistry(db, tempfile.mkdtemp())
        >>> v = reg.register_files("joint", {"part.bin": b"x"}, family="federated-secureboost",
        ...                        datasets={"env/air": 3}, lineage={"project": "p-1"})
        >>> v.version, v.external, v.lineage, (reg.artefact("joint", 1) / "part.bin").read_bytes()
        (1, True, {'project': 'p-1'}, b'x')
        """
        _check_name(name)
        if not family.startswith(EXTERNAL_PREFIXES):
            raise RegistryError(
                f"family {family!r} of {name!r} is not external (it should start with one of "
                f"{list(EXTERNAL_PREFIXES)}); register zoo models with register()"
            )
        if not files:
            raise RegistryError(f"no artefact files for {name!r}")
        tmp = self.root / name / f".tmp-{uuid.uuid4().hex}"
        tmp.mkdir(parents=True)
        try:
            for fname, data in files.items():
                if "/" in fname or fname.startswith("."):
                    raise RegistryError(f"invalid artefact file name {fname!r}")
                (tmp / fname).write_bytes(data)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        return self._commit(
            name,
            tmp,
            family=family,
            horizon=horizon,
            params=params or {},
            metrics=metrics,
            datasets=datasets or {},
            feature_spec=feature_spec,
            study=None,
            reference=None,
            lineage=lineage,
            actor=actor,
        )

    def _commit(
        self,
        name: str,
        tmp: Path,
        *,
        family: str,
        horizon: int,
        params: dict[str, Any],
        metrics: dict[str, Any] | None,
        datasets: dict[str, Any],
        feature_spec: dict[str, Any] | None,
        study: dict[str, Any] | None,
        reference: dict[str, Any] | None,
        lineage: dict[str, Any] | None,
        actor: str,
    ) -> ModelVersion:
        """Register the artefact folder ``tmp`` as the next version of ``name``."""
        sha = _digest(tmp)
        for _ in range(5):
            with self.db.session() as s:
                last = s.scalar(
                    select(func.max(ModelVersionRow.version)).where(ModelVersionRow.name == name)
                )
            version = int(last or 0) + 1
            final = self.root / name / str(version)
            try:
                with self.db.session() as s:
                    s.add(
                        ModelVersionRow(
                            name=name,
                            version=version,
                            family=family,
                            horizon=horizon,
                            params=json.dumps(params, default=str),
                            metrics=json.dumps(metrics or {}, default=_num),
                            datasets=json.dumps(datasets),
                            feature_spec=json.dumps(feature_spec or {}, default=str),
                            code_version=code_version(),
                            artefact=str(final.relative_to(self.root.parent.parent)),
                            sha256=sha,
                            stage="none",
                            study=json.dumps(study, default=_num) if study is not None else None,
                            reference=json.dumps(reference) if reference is not None else None,
                            lineage=json.dumps(lineage, default=str)
                            if lineage is not None
                            else None,
                            created_by=actor,
                        )
                    )
                    s.flush()
                    if final.exists():
                        shutil.rmtree(final)
                    tmp.rename(final)
                return self.get(name, version)
            except IntegrityError:
                continue  # another writer took this version number: take the next
            except BaseException:
                shutil.rmtree(tmp, ignore_errors=True)
                raise
        shutil.rmtree(tmp, ignore_errors=True)
        raise RegistryError(
            f"could not allocate a version of {name!r}: too many concurrent writers"
        )

    def transition(
        self, name: str, version: int, stage: str, *, actor: str = "", reason: str = ""
    ) -> ModelVersion:
        """Move a version to ``stage``. Promoting to ``production`` archives the version
        that held it; nothing changes when the version does not exist."""
        if stage not in STAGES:
            raise RegistryError(f"unknown stage {stage!r}; stages are {list(STAGES)}")
        with self.db.session() as s:
            row = self._row(s, name, version)
            if stage == "production":
                for cur in s.scalars(
                    select(ModelVersionRow).where(
                        ModelVersionRow.name == name,
                        ModelVersionRow.stage == "production",
                        ModelVersionRow.version != version,
                    )
                ):
                    s.add(
                        StageEventRow(
                            name=name,
                            version=cur.version,
                            from_stage="production",
                            to_stage="archived",
                            actor=actor,
                            reason=f"replaced by v{version}",
                        )
                    )
                    cur.stage = "archived"
            if row.stage != stage:
                s.add(
                    StageEventRow(
                        name=name,
                        version=version,
                        from_stage=row.stage,
                        to_stage=stage,
                        actor=actor,
                        reason=reason,
                    )
                )
                row.stage = stage
        return self.get(name, version)

    def deploy(self, name: str, version: int | None = None, *, actor: str = "") -> ModelVersion:
        """Put ``version`` (default: the latest) into production."""
        v = self.get(name, version if version is not None else "latest")
        return self.transition(name, v.version, "production", actor=actor, reason="deploy")

    def rollback(self, name: str, *, actor: str = "") -> ModelVersion:
        """Back to the version that was in production before the current one."""
        cur = self.get(name, "production")
        with self.db.session() as s:
            prev = s.scalars(
                select(StageEventRow)
                .where(
                    StageEventRow.name == name,
                    StageEventRow.from_stage == "production",
                    StageEventRow.version != cur.version,
                )
                .order_by(StageEventRow.id.desc())
            ).first()
        if prev is None:
            raise RegistryError(f"{name!r} has no earlier production version to roll back to")
        return self.transition(
            name, prev.version, "production", actor=actor, reason=f"rollback from v{cur.version}"
        )

    # -- reads -------------------------------------------------------------------------------
    def _row(self, s: Any, name: str, version: int) -> ModelVersionRow:
        row = s.scalars(
            select(ModelVersionRow).where(
                ModelVersionRow.name == name, ModelVersionRow.version == int(version)
            )
        ).first()
        if row is None:
            known = [v.version for v in self.versions(name)] if self.names().count(name) else []
            raise VersionNotFound(
                f"model {name!r} has no version {version}"
                + (
                    f"; its versions are {known}"
                    if known
                    else f"; registered models: {self.names()}"
                )
            )
        return row  # type: ignore[no-any-return]

    def names(self) -> list[str]:
        with self.db.session() as s:
            return sorted(set(s.scalars(select(ModelVersionRow.name))))

    def versions(self, name: str) -> list[ModelVersion]:
        with self.db.session() as s:
            rows = s.scalars(
                select(ModelVersionRow)
                .where(ModelVersionRow.name == name)
                .order_by(ModelVersionRow.version)
            ).all()
            return [_row_to(r) for r in rows]

    def list_models(self) -> list[ModelVersion]:
        """Per model: its production version, else its latest."""
        out = []
        for n in self.names():
            vs = self.versions(n)
            prod = [v for v in vs if v.stage == "production"]
            out.append(prod[-1] if prod else vs[-1])
        return out

    def get(self, name: str, version: int | str | None = None) -> ModelVersion:
        """A version: a number, ``"production"`` (default when deployed), ``"latest"``."""
        vs = self.versions(name)
        if not vs:
            raise VersionNotFound(
                f"no registered model {name!r}; registered models: {self.names()}"
            )
        if version is None:
            prod = [v for v in vs if v.stage == "production"]
            return prod[-1] if prod else vs[-1]
        if version == "latest":
            return vs[-1]
        if version in STAGES:
            hit = [v for v in vs if v.stage == version]
            if not hit:
                raise VersionNotFound(f"model {name!r} has no version in stage {version!r}")
            return hit[-1]
        try:
            num = int(version)
        except (TypeError, ValueError):
            raise VersionNotFound(
                f"bad version {version!r} of {name!r}: a number, 'latest' or a stage"
            ) from None
        for v in vs:
            if v.version == num:
                return v
        raise VersionNotFound(
            f"model {name!r} has no version {num}; its versions are {[v.version for v in vs]}"
        )

    def load(self, name: str, version: int | str | None = None) -> tuple[Forecaster, ModelVersion]:
        """The model object of a version (cached; its artefact checked against its SHA-256)."""
        v = self.get(name, version)
        if v.external:
            raise RegistryError(
                f"{name!r} v{v.version} is a {v.family} model: it is served by its owner "
                "(a federated model by the federation gateway: `cityos gateway predict`), "
                "not loaded as a zoo model"
            )
        key = (v.name, v.version, v.sha256)
        with self._lock:
            m = self._cache.get(key)
            if m is None:
                folder = self.artefact(name, v.version)
                m = load_model(folder)
                onnx = folder / "model.onnx"
                if onnx.is_file() and hasattr(m, "use_onnx"):
                    m.use_onnx(onnx)
                self._cache[key] = m
        return m, v

    def artefact(self, name: str, version: int) -> Path:
        """The folder of a version's artefact, checked against its SHA-256."""
        v = self.get(name, version)
        folder = self.root.parent.parent / v.artefact
        if not folder.is_dir() or _digest(folder) != v.sha256:
            raise RegistryError(
                f"artefact of {name!r} v{v.version} at {folder} is missing or changed "
                "(SHA-256 mismatch); re-register the model"
            )
        return folder

    def add_file(self, name: str, version: int, filename: str, data: bytes) -> ModelVersion:
        """Attach a file (e.g. an ONNX export) to a version's artefact, updating its SHA-256."""
        v = self.get(name, version)
        folder = self.root.parent.parent / v.artefact
        (folder / filename).write_bytes(data)
        with self.db.session() as s:
            row = self._row(s, name, version)
            row.sha256 = _digest(folder)
        return self.get(name, version)

    def stage_history(self, name: str) -> list[dict[str, Any]]:
        with self.db.session() as s:
            rows = s.scalars(
                select(StageEventRow).where(StageEventRow.name == name).order_by(StageEventRow.id)
            ).all()
            return [
                {
                    "version": r.version,
                    "from": r.from_stage,
                    "to": r.to_stage,
                    "actor": r.actor,
                    "reason": r.reason,
                    "at": r.at.isoformat() if r.at else None,
                }
                for r in rows
            ]


def _num(v: Any) -> Any:
    import numpy as np

    if isinstance(v, np.generic):
        return v.item()
    return str(v)
