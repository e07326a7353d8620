"""Every error of the LLM layer, in one place. Two families:

RequestError                    a request ends in it; the client sees its status, type, code, param
├── InvalidRequestError         400: malformed, or asks for something impossible
│   └── ContextLengthExceededError  400 `context_length_exceeded`: the prompt does not fit
├── ModelNotFoundError          404 `model_not_found`: no served model has that name
├── ResponseNotFoundError       404 `response_not_found`: no stored response has that id
├── RequestTooLargeError        413 `request_too_large`: too big for the request plane
├── TooManyRequestsError        429: the model's queue is full (with Retry-After)
├── ServiceUnavailableError     503: no worker can take the request now (maybe with Retry-After)
├── RequestTimeoutError         504 `request_timeout`: the request outlived --request-timeout
├── ClientDisconnectedError     499 `client_closed`: the client left before the answer was ready
└── EngineFailedError           502: the engine failed while generating
    └── WorkerLostError         the worker went away mid-stream (migration resumes it)

EngineError                     an engine or its model cannot start; the message is for the user
├── ModelPathError              the model path is no local file or folder and no HF repo
└── GGUFError                   the GGUF file cannot be read, or its tokenizer cannot be built
TemplateError                   a chat template refused the conversation or failed to render

Raise a `RequestError` anywhere in the pipeline; the frontend has one function that turns it into
an OpenAI-shaped body (`{"error": {"message", "type", "param", "code"}}`) or an SSE error event.
Anything else that escapes is our bug and becomes a 500 with a generic message. `EngineError`
is for start-up: the CLI prints it as one `dynamo-run: error:` line.
"""

from __future__ import annotations


class RequestError(Exception):
    """Base class: an error meant for the client, with its HTTP status and OpenAI type."""

    status_code = 400
    error_type = "invalid_request_error"

    def __init__(
        self,
        message: str,
        *,
        param: str | None = None,
        code: str | None = None,
        retry_after: float | None = None,
    ):
        super().__init__(message)
        self.message = message
        self.param = param
        self.code = code
        #: Seconds after which trying again may succeed (HTTP `Retry-After`), for overload.
        self.retry_after = retry_after


class InvalidRequestError(RequestError):
    """The request is malformed or asks for something impossible (400)."""


class ContextLengthExceededError(InvalidRequestError):
    """The prompt (plus the requested tokens) does not fit the model's context (400)."""

    def __init__(self, message: str, param: str = "messages"):
        # `param` is the request's prompt field: `messages` (chat) or `prompt` (completions).
        super().__init__(message, param=param, code="context_length_exceeded")


class ModelNotFoundError(RequestError):
    """No served model has that name (404)."""

    status_code = 404
    error_type = "not_found_error"

    def __init__(self, model: str):
        super().__init__(
            f"The model '{model}' does not exist", param="model", code="model_not_found"
        )


class ResponseNotFoundError(RequestError):
    """No stored Responses-API response has that id (never stored, deleted, evicted or
    expired): 404, naming the field that gave it (`previous_response_id`) where there is one."""

    status_code = 404
    error_type = "invalid_request_error"

    def __init__(self, response_id: str, param: str | None = None):
        super().__init__(
            f"Response with id '{response_id}' not found.",
            param=param,
            code="response_not_found",
        )


class RequestTooLargeError(RequestError):
    """The request is bigger than a worker can be sent (413): NATS's `max_payload`."""

    status_code = 413
    error_type = "invalid_request_error"

    def __init__(self, message: str):
        super().__init__(message, code="request_too_large")


class ServiceUnavailableError(RequestError):
    """No worker can take the request right now (503)."""

    status_code = 503
    error_type = "service_unavailable"


class TooManyRequestsError(RequestError):
    """The model has as many requests running and waiting as it may (429, with Retry-After)."""

    status_code = 429
    error_type = "rate_limit_exceeded"

    def __init__(self, message: str, *, retry_after: float | None = 1):
        super().__init__(message, code="queue_full", retry_after=retry_after)


class RequestTimeoutError(RequestError):
    """The request took longer than the server allows (504); the engine was told to stop."""

    status_code = 504
    error_type = "timeout_error"

    def __init__(self, message: str):
        super().__init__(message, code="request_timeout")


class ClientDisconnectedError(RequestError):
    """The client closed the connection before the answer was ready (499, nginx's code: the
    status only reaches logs and metrics, as the client is gone)."""

    status_code = 499
    error_type = "client_closed"

    def __init__(self, message: str = "client disconnected"):
        super().__init__(message)


class EngineFailedError(RequestError):
    """The engine failed while generating (502: the fault is upstream of the frontend)."""

    status_code = 502
    error_type = "engine_error"


class WorkerLostError(EngineFailedError):
    """The worker serving the request went away mid-stream (it died, lost the network, or shut
    down without finishing): the request itself was fine, so it can resume on another worker
    (`dynamo.llm.migration`)."""


class EngineError(Exception):
    """An engine could not start or could not serve a request; the message is for the user."""


class ModelPathError(EngineError):
    """The model path is not a local file or folder and cannot be fetched as an HF repo.

    Not `ModelNotFoundError`, which is a request naming a model nobody serves (404)."""


class GGUFError(EngineError):
    """The GGUF file cannot be read or its tokenizer is not one we can build."""


class TemplateError(ValueError):
    """The template refused the conversation (`raise_exception`) or failed to render."""


def first_line(error: BaseException) -> str:
    """An exception's message as one line for a user (its first line, or its type's name):
    library errors often carry a multi-line explanation or a traceback dump."""
    lines = str(error).strip().splitlines()
    return lines[0].strip() if lines else type(error).__name__
