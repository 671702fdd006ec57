"""Helpers around the generated Orgplane client.

The generated code keeps the contracts' import paths (``orgplane.identity.v1.identity_pb2``,
``orgplane.identity.v1.identity_pb2_grpc``, …); this module adds what every caller needs:

* ``Client(channel)``: the stubs of the four public services on one channel;
* ``bearer(token)`` / ``api_key(key)``: the credential metadata for a call;
* ``error_reason(err)``: the ``google.rpc.ErrorInfo`` reason of a refused call as an
  ``orgplane.errors.v1.ErrorReason`` value, to compare with ``errors_pb2.EMAIL_NOT_VERIFIED``
  and friends;
* ``error_info(err)``, ``bad_request_fields(err)``, ``details(err, Type)`` and ``status(err)``:
  the rest of the ``google.rpc.Status`` the services send in the ``grpc-status-details-bin``
  trailer.

The error helpers accept what a call raises: a ``grpc.RpcError`` from a unary or streaming
call, or a ``grpc.aio.AioRpcError``. They never raise on a missing or malformed status; they
answer ``None``, an empty list or ``ERROR_REASON_UNSPECIFIED``.
"""

from __future__ import annotations

from typing import Iterable, Optional, Sequence, Tuple, Type, TypeVar

import grpc
from google.protobuf.message import DecodeError, Message
from google.rpc import error_details_pb2, status_pb2

from orgplane.billing.v1 import billing_pb2_grpc
from orgplane.errors.v1 import errors_pb2
from orgplane.identity.v1 import identity_pb2_grpc
from orgplane.organization.v1 import account_pb2_grpc, organization_pb2_grpc
from orgplane.workspace.v1 import workspace_pb2_grpc

__all__ = [
    "DOMAIN",
    "Client",
    "ErrorReason",
    "api_key",
    "bad_request_fields",
    "bearer",
    "details",
    "error_info",
    "error_reason",
    "status",
]

#: The ``ErrorInfo.domain`` of every reason Orgplane sends.
DOMAIN = "orgplane.dev"
#: The trailer that carries the serialized ``google.rpc.Status``.
STATUS_DETAILS_KEY = "grpc-status-details-bin"

#: ``orgplane.errors.v1.ErrorReason`` (the generated enum wrapper): ``ErrorReason.Name(v)``,
#: ``ErrorReason.Value("EMAIL_NOT_VERIFIED")``; the values are ``errors_pb2.EMAIL_NOT_VERIFIED``…
ErrorReason = errors_pb2.ErrorReason

Metadata = Sequence[Tuple[str, str]]
M = TypeVar("M", bound=Message)


class Client:
    """The stubs of the public services, all on one channel (``orgplane all`` serves them on
    one port; in a split deployment, make one Client per address and use the stub you need)."""

    def __init__(self, channel: grpc.Channel):
        self.identity = identity_pb2_grpc.IdentityServiceStub(channel)
        self.organizations = organization_pb2_grpc.OrganizationServiceStub(channel)
        self.accounts = account_pb2_grpc.AccountServiceStub(channel)
        self.workspaces = workspace_pb2_grpc.WorkspaceServiceStub(channel)
        self.billing = billing_pb2_grpc.BillingAccessServiceStub(channel)


def bearer(token: str, *, min_organization_revision: Optional[int] = None) -> list[tuple[str, str]]:
    """Metadata for a call as the holder of an access token (user or service principal).

    ``min_organization_revision``: a ``revision`` from an OrganizationService answer; the
    called service waits until its replica has applied it (``x-min-organization-revision``),
    so a call right after, say, AcceptInvite sees the new role.
    """
    md = [("authorization", f"Bearer {token}")]
    return md + _revision(min_organization_revision)


def api_key(key: str, *, min_organization_revision: Optional[int] = None) -> list[tuple[str, str]]:
    """Metadata for a call with an API key (``x-api-key``). Send one credential only: a call
    with both a bearer token and a key is refused (``AMBIGUOUS_CREDENTIALS``)."""
    return [("x-api-key", key)] + _revision(min_organization_revision)


def _revision(revision: Optional[int]) -> list[tuple[str, str]]:
    return [] if revision is None else [("x-min-organization-revision", str(int(revision)))]


def status(err: grpc.RpcError) -> Optional[status_pb2.Status]:
    """The ``google.rpc.Status`` of a refused call, from its ``grpc-status-details-bin``
    trailer; ``None`` without one (for example a failure of the connection itself)."""
    trailers = _trailing_metadata(err)
    for key, value in trailers:
        if key == STATUS_DETAILS_KEY:
            if isinstance(value, str):  # not expected for a -bin key, but be lenient
                value = value.encode("latin-1")
            try:
                return status_pb2.Status.FromString(value)
            except DecodeError:
                return None
    return None


def details(err: grpc.RpcError, message_type: Type[M]) -> list[M]:
    """Every detail of type ``message_type`` (``error_details_pb2.RetryInfo``,
    ``QuotaFailure``, ``PreconditionFailure``, …) in the call's status, unpacked."""
    st = status(err)
    found: list[M] = []
    if st is None:
        return found
    for any_detail in st.details:
        if any_detail.Is(message_type.DESCRIPTOR):
            msg = message_type()
            any_detail.Unpack(msg)
            found.append(msg)
    return found


def error_info(err: grpc.RpcError) -> Optional[error_details_pb2.ErrorInfo]:
    """The call's ``google.rpc.ErrorInfo`` of domain ``orgplane.dev`` (with its ``reason``
    and ``metadata``, such as ``organization_id`` or ``capability``); ``None`` without one."""
    for info in details(err, error_details_pb2.ErrorInfo):
        if info.domain == DOMAIN:
            return info
    return None


def error_reason(err: grpc.RpcError) -> "errors_pb2.ErrorReason":
    """The reason of a refused call as an ``orgplane.errors.v1.ErrorReason`` value.

    Compare it with the generated constants::

        except grpc.RpcError as err:
            if error_reason(err) == errors_pb2.EMAIL_NOT_VERIFIED: ...

    ``ERROR_REASON_UNSPECIFIED`` (0) when the call carries no ErrorInfo of domain
    ``orgplane.dev`` (a transport failure, a proxy's answer) **or when the reason is a name
    this client does not know** — one added to the server after this package was built.
    New reasons are added as the API grows, so treat UNSPECIFIED as "decide by
    ``err.code()`` alone"; ``error_info(err).reason`` still has the name as sent.
    """
    info = error_info(err)
    if info is None or not info.reason:
        return errors_pb2.ERROR_REASON_UNSPECIFIED
    try:
        return ErrorReason.Value(info.reason)
    except ValueError:
        return errors_pb2.ERROR_REASON_UNSPECIFIED


def bad_request_fields(err: grpc.RpcError) -> list[str]:
    """The ``field`` of each ``google.rpc.BadRequest`` field violation (INVALID_ARGUMENT),
    in order: for example ``["password"]`` for a sign-up with a short password."""
    return [v.field for bad in details(err, error_details_pb2.BadRequest) for v in bad.field_violations]


def _trailing_metadata(err: grpc.RpcError) -> Iterable[tuple[str, object]]:
    getter = getattr(err, "trailing_metadata", None)
    if getter is None:
        return ()
    try:
        trailers = getter()
    except Exception:  # noqa: BLE001 — an error object without trailers is no status
        return ()
    return tuple(trailers or ())
