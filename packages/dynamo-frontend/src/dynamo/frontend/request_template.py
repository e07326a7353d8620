"""`--request-template FILE`: defaults for requests that leave them out (upstream's flag).

The file is JSON `{"model": ..., "temperature": ..., "max_completion_tokens": ...}`. A request
without a model, a temperature or a max-tokens field gets the template's value; what a request
sets is never overridden.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson

from dynamo.frontend.flags import UsageError

#: `RequestTemplate.apply`'s default: the token limit of chat or completions, whichever the body is.
AUTO = "auto"


@dataclass(frozen=True)
class RequestTemplate:
    model: str | None = None
    temperature: float | None = None
    max_completion_tokens: int | None = None

    @classmethod
    def load(cls, path: str | None) -> RequestTemplate | None:
        if not path:
            return None
        try:
            data = orjson.loads(Path(path).read_bytes())
        except OSError as e:
            raise UsageError(f"--request-template: cannot read {path}: {e.strerror}") from None
        except orjson.JSONDecodeError as e:
            raise UsageError(f"--request-template: {path} is not valid JSON: {e}") from None
        if not isinstance(data, dict):
            raise UsageError(f"--request-template: {path} must hold a JSON object")
        unknown = set(data) - {"model", "temperature", "max_completion_tokens"}
        if unknown:
            raise UsageError(f"--request-template: unknown fields {', '.join(sorted(unknown))}")
        template = cls(**data)
        template._check(path)
        return template

    def _check(self, path: str) -> None:
        """Each value as a request would need it, checked now: a bad one would otherwise turn
        every request into a 400 about a field its client never sent."""
        problems = []
        if self.model is not None and not (isinstance(self.model, str) and self.model.strip()):
            problems.append("model must be a non-empty string")
        temperature = self.temperature
        if temperature is not None and not (
            isinstance(temperature, int | float)
            and not isinstance(temperature, bool)
            and 0 <= temperature <= 2
        ):
            problems.append("temperature must be a number from 0 to 2")
        tokens = self.max_completion_tokens
        if tokens is not None and not (
            isinstance(tokens, int) and not isinstance(tokens, bool) and tokens >= 1
        ):
            problems.append("max_completion_tokens must be a whole number of at least 1")
        if problems:
            raise UsageError(f"--request-template {path}: {'; '.join(problems)}")

    def apply(self, body: dict[str, Any], max_tokens_key: str | None = AUTO) -> dict[str, Any]:
        """Fill the body's missing fields in place and return it. `max_tokens_key` names the
        body's token limit: by default chat's or completions', `max_output_tokens` for the
        Responses API; None for a request that generates nothing (embeddings), which only
        takes the model."""
        if self.model is not None and not body.get("model"):
            body["model"] = self.model
        if max_tokens_key is None:
            return body
        if self.temperature is not None and body.get("temperature") is None:
            body["temperature"] = self.temperature
        if self.max_completion_tokens is None:
            return body
        if max_tokens_key != AUTO:
            if body.get(max_tokens_key) is None:
                body[max_tokens_key] = self.max_completion_tokens
        elif body.get("max_tokens") is None and body.get("max_completion_tokens") is None:
            key = "max_completion_tokens" if "messages" in body else "max_tokens"
            body[key] = self.max_completion_tokens
        return body
