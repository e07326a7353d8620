"""Errors of the distributed runtime. Each carries what a user needs to act on it.

DynamoRuntimeError
├── NoInstancesError     nobody serves the endpoint right now
│   └── UnknownInstanceError   the instance asked for is not one of the endpoint's
├── PayloadTooLargeError the request is bigger than NATS takes in one message
├── RuntimeConfigError   a setting in the environment (ETCD_ENDPOINTS, ...) is unusable
├── RequestPlaneDownError  NATS is unreachable: no worker can be asked anything now
├── InstanceGoneError    no responders, or the stream stopped without its final message
└── RemoteError          the worker's handler raised; its message, status, type, code and param
                         travel here
"""

from __future__ import annotations

from typing import Any


class DynamoRuntimeError(Exception):
    """Base class of runtime errors."""


class NoInstancesError(DynamoRuntimeError):
    """No worker serves the endpoint (right now)."""

    def __init__(self, endpoint: str):
        super().__init__(f"no instances of {endpoint} are running")
        self.endpoint = endpoint


class UnknownInstanceError(NoInstancesError):
    """A request named an instance the client does not route to (none such, or one serving
    something else): the caller's mistake, unlike an endpoint with no instances at all."""

    def __init__(self, endpoint: str, instance_id: int):
        DynamoRuntimeError.__init__(self, f"{endpoint} has no instance {instance_id:x}")
        self.endpoint = endpoint
        self.instance_id = instance_id


class RuntimeConfigError(DynamoRuntimeError, ValueError):
    """An environment setting of the runtime cannot be used; the message names it."""


class PayloadTooLargeError(DynamoRuntimeError):
    """The encoded request exceeds the NATS server's `max_payload`: no worker can receive it."""

    def __init__(self, size: int, limit: int):
        super().__init__(
            f"the request is {size} bytes; the request plane takes at most {limit} bytes"
        )
        self.size = size
        self.limit = limit


class RequestPlaneDownError(DynamoRuntimeError):
    """This process is not connected to NATS (it is reconnecting): a request cannot be sent, and
    trying the other workers would not help, so the caller learns it at once."""

    def __init__(self, server: str):
        super().__init__(f"the request plane (NATS at {server}) is unreachable; reconnecting")
        self.server = server


class InstanceGoneError(DynamoRuntimeError):
    """The worker is not there (no responders) or stopped answering mid-stream."""

    def __init__(self, instance_id: int, detail: str):
        super().__init__(f"worker {instance_id:x} {detail}")
        self.instance_id = instance_id


class RemoteError(DynamoRuntimeError):
    """The worker's handler raised; the message is the worker's.

    `status`, `error_type`, `code` and `param` are the raised exception's `status_code`,
    `error_type`, `code` and `param` attributes where it had them (the LLM layer's request
    errors do), so the caller can raise the same error again.
    """

    def __init__(
        self,
        message: str,
        status: int | None = None,
        *,
        error_type: str | None = None,
        code: Any = None,
        param: str | None = None,
    ):
        super().__init__(message)
        self.message = message
        self.status = status
        self.error_type = error_type
        self.code = code
        self.param = param
