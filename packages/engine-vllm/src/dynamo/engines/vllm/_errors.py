"""vLLM's exceptions as ours: a request vLLM rejects is the client's fault (400, with the
parameter vLLM names), a full queue a 503, a dead engine or anything else the engine's (502).

Both engines map their calls' errors here: `generate`'s and `encode`'s.
"""

from __future__ import annotations

from dynamo.engines.vllm._setup import one_line
from dynamo.llm.errors import (
    EngineFailedError,
    InvalidRequestError,
    RequestError,
    ServiceUnavailableError,
)


def our_error(e: Exception) -> RequestError:
    """The error to raise for `e`, raised by vLLM while serving a request."""
    from vllm.exceptions import GracefulHTTPError, VLLMClientError, VLLMValidationError
    from vllm.v1.engine.exceptions import EngineDeadError

    if isinstance(e, VLLMValidationError):
        message = str(e.args[0]) if e.args else one_line(e)
        return InvalidRequestError(" ".join(message.split()), param=getattr(e, "parameter", None))
    if isinstance(e, VLLMClientError):
        return InvalidRequestError(one_line(e))
    if isinstance(e, GracefulHTTPError):
        return ServiceUnavailableError(f"vLLM: {one_line(e)}")
    if isinstance(e, EngineDeadError):
        return EngineFailedError(f"the vLLM engine died: {one_line(e)}")
    cause = e.__cause__ if isinstance(e.__cause__, Exception) else e  # EngineGenerateError
    return EngineFailedError(f"vLLM failed: {one_line(cause)}")


__all__ = ["our_error"]
