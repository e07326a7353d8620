"""`/tokenize` and `/detokenize` with a served model's own tokenizer and chat template (vLLM's
endpoints, for clients that count tokens or inspect prompts before sending them)."""

from __future__ import annotations

from typing import Any

import orjson
from starlette.requests import Request
from starlette.responses import Response

from dynamo.frontend.http.serving import JSONResponse, error_response
from dynamo.frontend.http.tokenize.protocol import (
    DetokenizeRequest,
    TokenizeChatRequest,
    TokenizeCompletionRequest,
)
from dynamo.frontend.model_manager import ModelManager
from dynamo.llm.errors import InvalidRequestError
from dynamo.llm.pipeline import ServedModel
from dynamo.llm.preprocessor import OpenAIPreprocessor
from dynamo.llm.protocols.openai import ChatCompletionRequest


async def _body(http_request: Request) -> dict[str, Any]:
    try:
        data = orjson.loads(await http_request.body())
    except orjson.JSONDecodeError as e:
        raise InvalidRequestError(f"the request body is not valid JSON: {e}") from None
    if not isinstance(data, dict):
        raise InvalidRequestError("the request body must be a JSON object")
    return data


class TokenizeServing:
    def __init__(self, models: ModelManager):
        self.models = models
        self._preprocessors: dict[str, OpenAIPreprocessor] = {}  # by model name

    def _model(self, name: str | None) -> ServedModel:
        if name is None:
            names = self.models.names()
            if len(names) != 1:
                raise InvalidRequestError(
                    "model is required when several models are served", param="model"
                )
            name = names[0]
        served = self.models.get(name)
        if served.card is None or not served.card.has_tokenizer():
            raise InvalidRequestError(f"model '{served.name}' has no tokenizer here", param="model")
        return served

    def _preprocessor(self, served: ServedModel) -> OpenAIPreprocessor:
        """The model's own preprocessor (so templating is exactly chat's), else one for its card."""
        own = getattr(served, "preprocessor", None)
        if isinstance(own, OpenAIPreprocessor):
            return own
        card = served.card
        assert card is not None
        cached = self._preprocessors.get(served.name)
        if cached is None or cached.card is not card:  # new, or the model came back
            cached = self._preprocessors[served.name] = OpenAIPreprocessor(card)
        return cached

    async def tokenize(self, http_request: Request) -> Response:
        try:
            data = await _body(http_request)
            if "messages" in data:
                chat = TokenizeChatRequest.model_validate(data)
                served = self._model(chat.model)
                if chat.continue_final_message:
                    raise InvalidRequestError(
                        "continue_final_message is not supported", param="continue_final_message"
                    )
                request = ChatCompletionRequest.model_validate(
                    {
                        "model": served.name,
                        "messages": chat.messages,
                        "tools": chat.tools,
                        "chat_template_kwargs": {
                            **(chat.chat_template_kwargs or {}),
                            "add_generation_prompt": chat.add_generation_prompt,
                        },
                    }
                )
                text = self._preprocessor(served).render_chat(request)
                add_special, want_strs = chat.add_special_tokens, chat.return_token_strs
            else:
                plain = TokenizeCompletionRequest.model_validate(data)
                served = self._model(plain.model)
                text, add_special, want_strs = (
                    plain.prompt,
                    plain.add_special_tokens,
                    plain.return_token_strs,
                )
            assert served.card is not None
            encoding = served.card.tokenizer().encode(text, add_special_tokens=add_special)
        except Exception as e:
            return error_response(e)
        return JSONResponse(
            {
                "count": len(encoding.ids),
                "max_model_len": served.card.context_length,
                "tokens": encoding.ids,
                "token_strs": encoding.tokens if want_strs else None,
            }
        )

    async def detokenize(self, http_request: Request) -> Response:
        try:
            request = DetokenizeRequest.model_validate(await _body(http_request))
            served = self._model(request.model)
            assert served.card is not None
            tokenizer = served.card.tokenizer()
            vocab = tokenizer.get_vocab_size(with_added_tokens=True)
            if any(not 0 <= t < vocab for t in request.tokens):
                raise InvalidRequestError(f"token ids must be in [0, {vocab})", param="tokens")
            text = tokenizer.decode(request.tokens, skip_special_tokens=False)
        except Exception as e:
            return error_response(e)
        return JSONResponse({"prompt": text})
