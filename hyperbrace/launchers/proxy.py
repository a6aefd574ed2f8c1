"""The chief's gRPC server: the study (Optuna's storage proxy) and the models' way home, on one port.

Workers started by a cluster engine get a ``host:port``, never a database password or a path to the journal file:

* the study is served by Optuna's own gRPC storage proxy (``optuna.storages.run_grpc_proxy_server``'s service,
  workers use ``optuna.storages.GrpcStorageProxy``) in front of the chief's storage (journal file or database);
* saved models come home through a small artifact service on the same server, :class:`GrpcArtifactStore` on the
  workers' side: an Optuna artifact store (``write``/``open_reader``/``remove``) whose bytes go, in chunks, to the
  chief's ``FileSystemArtifactStore`` in the run directory (:mod:`hyperbrace.artifacts`).

The server listens without TLS or authentication, like Optuna's proxy: on loopback for a cluster on this machine,
else on every interface of the chief; keep it inside the cluster's network (see docs/parallel.md).

>>> import optuna, tempfile, pathlib
>>> from hyperbrace.artifacts import chief_store
>>> server = ProxyServer(optuna.storages.InMemoryStorage(), chief_store(pathlib.Path(tempfile.mkdtemp())))
>>> address = server.start("127.0.0.1")
>>> store = GrpcArtifactStore(address)
>>> store.write("a1", __import__("io").BytesIO(b"model bytes"))
>>> store.open_reader("a1").read()
b'model bytes'
>>> server.stop()
"""

from __future__ import annotations

import io
import re
from concurrent.futures import ThreadPoolExecutor
from typing import Any, BinaryIO

import grpc
import optuna

__all__ = ["ProxyServer", "GrpcArtifactStore"]

_SERVICE = "hyperbrace.Artifacts"
_CHUNK = 1 << 20
_ID = re.compile(r"^[A-Za-z0-9._-]{1,200}$")
_OPTIONS = [("grpc.max_receive_message_length", 64 << 20), ("grpc.max_send_message_length", 64 << 20)]


def _identity(data: bytes) -> bytes:
    return data


class ProxyServer:
    """Serves ``storage`` (Optuna's storage proxy service) and ``artifact_store`` (the chief's) on one port."""

    def __init__(self, storage: optuna.storages.BaseStorage, artifact_store: Any, threads: int = 16) -> None:
        from optuna.storages._grpc.auto_generated import api_pb2_grpc
        from optuna.storages._grpc.servicer import OptunaStorageProxyService

        self.artifact_store = artifact_store
        # The storage service as run_grpc_proxy_server builds it (optuna.storages._grpc.server.make_server), on a
        # server this object keeps, so it can also serve the artifacts and bind port 0 (a free port).
        self.server = grpc.server(ThreadPoolExecutor(max_workers=threads), options=_OPTIONS)
        api_pb2_grpc.add_StorageServiceServicer_to_server(OptunaStorageProxyService(storage), self.server)
        handlers = {
            "Write": grpc.stream_unary_rpc_method_handler(
                self._write, request_deserializer=_identity, response_serializer=_identity),
            "Read": grpc.unary_stream_rpc_method_handler(
                self._read, request_deserializer=_identity, response_serializer=_identity),
            "Remove": grpc.unary_unary_rpc_method_handler(
                self._remove, request_deserializer=_identity, response_serializer=_identity),
        }
        self.server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(_SERVICE, handlers),))

    def start(self, host: str = "127.0.0.1", port: int = 0, advertise: str | None = None) -> str:
        """Listen on ``host:port`` (0: any free port); returns ``advertise:port``, the address workers dial."""
        bound = self.server.add_insecure_port(f"{_bracket(host)}:{port}")
        if not bound:
            raise OSError(f"the gRPC proxy could not listen on {host}:{port}")
        self.server.start()
        return f"{_bracket(advertise or host)}:{bound}"

    def stop(self, grace: float = 1.0) -> None:
        self.server.stop(grace).wait()

    # -- the artifact service ----------------------------------------------------------------------------------------
    @staticmethod
    def _checked(artifact_id: str, context: grpc.ServicerContext) -> str:
        if not _ID.match(artifact_id):
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, f"bad artifact id {artifact_id!r}")
        return artifact_id

    def _write(self, chunks: Any, context: grpc.ServicerContext) -> bytes:
        iterator = iter(chunks)
        artifact_id = self._checked(next(iterator).decode(), context)
        body = io.BytesIO()
        for chunk in iterator:
            body.write(chunk)
        body.seek(0)
        self.artifact_store.write(artifact_id, body)
        return b""

    def _read(self, request: bytes, context: grpc.ServicerContext) -> Any:
        artifact_id = self._checked(request.decode(), context)
        try:
            reader = self.artifact_store.open_reader(artifact_id)
        except Exception as exc:  # noqa: BLE001  (optuna's ArtifactNotFound, or an OSError)
            context.abort(grpc.StatusCode.NOT_FOUND, f"no artifact {artifact_id!r}: {exc}")
        with reader:
            while chunk := reader.read(_CHUNK):
                yield chunk

    def _remove(self, request: bytes, context: grpc.ServicerContext) -> bytes:
        artifact_id = self._checked(request.decode(), context)
        try:
            self.artifact_store.remove(artifact_id)
        except Exception:  # noqa: BLE001  (removed already)
            pass
        return b""


def _bracket(host: str) -> str:
    return f"[{host}]" if ":" in host and not host.startswith("[") else host


class GrpcArtifactStore:
    """An Optuna artifact store that keeps its files on the chief, reached through :class:`ProxyServer`.

    Picklable (the channel opens on first use), so it travels to workers inside the plan.
    """

    def __init__(self, address: str) -> None:
        self.address = address
        self._channel: grpc.Channel | None = None

    def __getstate__(self) -> dict[str, Any]:
        return {"address": self.address, "_channel": None}

    def _call(self, kind: str, method: str) -> Any:
        if self._channel is None:
            self._channel = grpc.insecure_channel(self.address, options=_OPTIONS)
        make = {"unary": self._channel.unary_unary, "stream": self._channel.stream_unary,
                "read": self._channel.unary_stream}[kind]
        return make(f"/{_SERVICE}/{method}", request_serializer=_identity, response_deserializer=_identity)

    def write(self, artifact_id: str, content_body: BinaryIO) -> None:
        def chunks() -> Any:
            yield artifact_id.encode()
            while chunk := content_body.read(_CHUNK):
                yield chunk

        self._call("stream", "Write")(chunks(), timeout=600)

    def open_reader(self, artifact_id: str) -> BinaryIO:
        try:
            data = b"".join(self._call("read", "Read")(artifact_id.encode(), timeout=600))
        except grpc.RpcError as exc:
            if exc.code() == grpc.StatusCode.NOT_FOUND:
                from optuna.artifacts.exceptions import ArtifactNotFound

                raise ArtifactNotFound(exc.details()) from None
            raise
        return io.BytesIO(data)

    def remove(self, artifact_id: str) -> None:
        self._call("unary", "Remove")(artifact_id.encode(), timeout=60)
