"""The cluster adapter's error classification: only a failure to reach the API server is an
outage (Unavailable, retried); the client refusing an object, or a bug, is a permanent
ClientError that says what it is. Transport failures are real ones, provoked on local sockets."""

from __future__ import annotations

import errno
import socket
import ssl
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import urllib3
from kubernetes import client
from kubernetes.client.exceptions import ApiException
from kubernetes.dynamic import DynamicClient
from kubernetes.dynamic.exceptions import ResourceNotUniqueError

from reconciler import errors
from reconciler.cluster import Cluster, transport_failure


class _Listener:
    """A local TCP port that does something unhelpful with every connection."""

    def __init__(self, behaviour: str) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.port = self.sock.getsockname()[1]
        self.sock.settimeout(0.05)  # closing a socket does not wake accept(): poll a flag
        self.behaviour = behaviour
        self.held: list[socket.socket] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self.sock.accept()
            except TimeoutError:
                continue
            if self.behaviour == "close":
                conn.close()
            else:  # "hold": accept, then say nothing
                self.held.append(conn)

    def close(self) -> None:
        self._stop.set()
        self._thread.join(5)
        self.sock.close()
        for conn in self.held:
            conn.close()


@pytest.fixture
def listener() -> Iterator[Callable[[str], _Listener]]:
    made: list[_Listener] = []

    def make(behaviour: str) -> _Listener:
        made.append(_Listener(behaviour))
        return made[-1]

    yield make
    for lst in made:
        lst.close()


def _closed_port() -> int:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port: int = s.getsockname()[1]
    s.close()
    return port


def _raised(fn: Callable[[], Any]) -> BaseException:
    try:
        fn()
    except Exception as e:
        return e
    raise AssertionError("nothing was raised")


def _unavailable(e: BaseException) -> errors.ClusterError:
    assert isinstance(e, Exception)
    err = Cluster._translate(e)
    assert isinstance(err, errors.Unavailable), (type(e), err)
    assert not err.permanent and err.reason in ("Unreachable", "Unavailable")
    return err


# -- transport failures, provoked for real -------------------------------------------------------
def test_connection_refused_is_an_outage() -> None:
    url = f"http://127.0.0.1:{_closed_port()}/version"
    http = urllib3.PoolManager()
    e = _raised(lambda: http.request("GET", url, retries=urllib3.Retry(1, backoff_factor=0)))
    assert isinstance(e, urllib3.exceptions.MaxRetryError)
    err = _unavailable(e)
    assert err.message.startswith("API server unreachable: MaxRetryError: ")
    _unavailable(_raised(lambda: http.request("GET", url, retries=False)))  # NewConnectionError


def test_a_dropped_connection_and_a_silent_server_are_outages(
        listener: Callable[[str], _Listener]) -> None:
    http = urllib3.PoolManager()
    closing = listener("close")
    e = _raised(lambda: http.request("GET", f"http://127.0.0.1:{closing.port}/", retries=False))
    assert isinstance(e, urllib3.exceptions.ProtocolError)
    _unavailable(e)
    silent = listener("hold")
    e = _raised(lambda: http.request("GET", f"http://127.0.0.1:{silent.port}/", retries=False,
                                     timeout=urllib3.Timeout(connect=2, read=0.2)))
    assert isinstance(e, urllib3.exceptions.ReadTimeoutError)
    _unavailable(e)


def test_the_kubernetes_client_failing_to_connect_is_an_outage(
        listener: Callable[[str], _Listener], tmp_path: Path) -> None:
    cfg = client.Configuration()
    cfg.host = f"https://127.0.0.1:{_closed_port()}"
    cfg.retries = urllib3.Retry(1, backoff_factor=0)
    with pytest.raises(errors.Unavailable, match="API server unreachable"):
        Cluster(client.ApiClient(cfg))

    # A TLS failure with no retry left: the client raises ApiException(status=0) from inside its
    # `except SSLError`, with no `from`; the dynamic client wraps that again.
    closing = listener("close")
    cfg = client.Configuration()
    cfg.host = f"https://127.0.0.1:{closing.port}"
    cfg.retries = False
    api = client.ApiClient(cfg)
    e = _raised(lambda: api.rest_client.request("GET", f"{cfg.host}/version"))  # type: ignore[no-untyped-call]
    assert isinstance(e, ApiException) and e.status == 0
    assert isinstance(e.__context__, urllib3.exceptions.SSLError)
    assert transport_failure(e)
    _unavailable(e)
    cache = str(tmp_path / "discovery.json")
    wrapped = _raised(lambda: DynamicClient(api, cache_file=cache))  # type: ignore[no-untyped-call]
    assert type(wrapped).__name__ == "DynamicApiError" and wrapped.__context__ is not None
    _unavailable(wrapped)
    with pytest.raises(errors.Unavailable):
        Cluster(api)


@pytest.mark.parametrize("exc", [
    ConnectionRefusedError(errno.ECONNREFUSED, "Connection refused"),
    ConnectionResetError(errno.ECONNRESET, "Connection reset by peer"),
    BrokenPipeError(errno.EPIPE, "Broken pipe"),
    TimeoutError("timed out"),
    socket.timeout("timed out"),  # noqa: UP041  (the alias the socket module raises)
    socket.gaierror(socket.EAI_NONAME, "Name or service not known"),
    OSError(errno.ENETUNREACH, "Network is unreachable"),
    OSError(errno.EHOSTUNREACH, "No route to host"),
    ssl.SSLError(1, "[SSL: WRONG_VERSION_NUMBER] wrong version number"),
    ssl.SSLCertVerificationError(1, "certificate verify failed"),
    urllib3.exceptions.ProtocolError("Connection aborted.", ConnectionResetError(104, "reset")),
    urllib3.exceptions.SSLError("EOF occurred in violation of protocol"),
    urllib3.exceptions.ReadTimeoutError(None, "/version", "Read timed out."),  # type: ignore[arg-type]
    urllib3.exceptions.ConnectTimeoutError("timed out"),
])
def test_network_exceptions_are_outages(exc: Exception) -> None:
    err = _unavailable(exc)
    assert err.message.startswith(f"API server unreachable: {type(exc).__name__}")


# -- everything else is what it is ---------------------------------------------------------------
def _during_outage_raise(bug: Exception) -> Exception:
    """`bug` raised while an outage was being handled, without `from`: context only."""
    try:
        try:
            raise ConnectionRefusedError(errno.ECONNREFUSED, "refused")
        except ConnectionRefusedError:
            raise bug  # noqa: B904
    except Exception as e:
        return e


@pytest.mark.parametrize(("exc", "message"), [
    (ValueError("Namespace is required for v1.ConfigMap"),
     "ValueError: Namespace is required for v1.ConfigMap"),
    (ValueError("name is required to patch v1.ConfigMap"),
     "ValueError: name is required to patch v1.ConfigMap"),
    (KeyError("metadata"), "KeyError: 'metadata'"),
    (TypeError("Object of type bytes is not JSON serializable"),
     "TypeError: Object of type bytes is not JSON serializable"),
    (AttributeError("'str' object has no attribute 'groups'"),
     "AttributeError: 'str' object has no attribute 'groups'"),
    (FileNotFoundError(errno.ENOENT, "No such file or directory"),
     "FileNotFoundError: [Errno 2] No such file or directory"),
    (urllib3.exceptions.LocationValueError("No host specified."), "LocationValueError: No host specified."),
    (ResourceNotUniqueError("Multiple matches found for {'kind': 'Widget'}"),
     "ResourceNotUniqueError: Multiple matches found for {'kind': 'Widget'}"),
    (RuntimeError(), "RuntimeError"),
    (_during_outage_raise(KeyError("spec")), "KeyError: 'spec'"),
])
def test_other_exceptions_are_permanent_client_errors(exc: Exception, message: str) -> None:
    err = Cluster._translate(exc)
    assert type(err) is errors.ClientError and err.permanent, err
    assert err.message == message and err.reason == "ClientError"
    assert "unreachable" not in err.message.lower()


def test_an_explicit_transport_cause_is_an_outage() -> None:
    try:
        try:
            raise ConnectionResetError(errno.ECONNRESET, "reset")
        except ConnectionResetError as e:
            raise ValueError("could not read the response") from e
    except ValueError as e:
        _unavailable(e)


def test_an_api_exception_without_a_response_and_without_a_transport_cause_is_a_client_error() -> None:
    e = ApiException(status=0, reason="Cannot prepare a request message for provided arguments.")
    err = Cluster._translate(e)
    assert type(err) is errors.ClientError and err.permanent
    assert err.message == "ApiException: Cannot prepare a request message for provided arguments."


def test_api_responses_keep_their_status_classes() -> None:
    e = ApiException(status=404, reason="Not Found")
    e.body = '{"kind":"Status","message":"configmaps \\"x\\" not found","reason":"NotFound"}'
    assert isinstance(Cluster._translate(e), errors.NotFound)
    e = ApiException(status=503, reason="Service Unavailable")
    assert isinstance(Cluster._translate(e), errors.Unavailable)
    assert Cluster._translate(errors.Conflict("x")).message == "x"


def test_an_object_server_side_apply_cannot_type_is_invalid_not_an_outage() -> None:
    # kubernetes/kubernetes#139253: SSA answers 500 for an unknown field or a wrongly typed one.
    e = ApiException(status=500, reason="Internal Server Error")
    e.body = ('{"kind":"Status","message":"failed to create typed patch object (x/y; example.com/v1, '
              'Kind=Gadget): .spec.sise: field not declared in schema","code":500}')
    err = Cluster._translate(e)
    assert isinstance(err, errors.Invalid) and err.permanent and "field not declared" in err.message
    e = ApiException(status=500, reason="Internal Server Error")
    e.body = '{"kind":"Status","message":"etcdserver: request timed out","code":500}'
    assert isinstance(Cluster._translate(e), errors.Unavailable)
