"""Run an input (`in=http|text|stdin|batch:FILE`) against one served model: what the local and
the frontend modes share."""

from __future__ import annotations

from typing import TYPE_CHECKING

from dynamo.frontend.run_config import RunConfig
from dynamo.llm.pipeline import ServedModel

if TYPE_CHECKING:
    from dynamo.frontend.http.app import AppState


def app_state(config: RunConfig) -> AppState:
    """The served models' state, with the HTTP server's options that `config` checked (under
    `in=http`; the defaults otherwise, where only its model registry is used). Its registry
    starts empty."""
    from dynamo.frontend.admission import AdmissionOptions
    from dynamo.frontend.http.app import AppState
    from dynamo.frontend.http.options import HttpOptions

    return AppState(
        request_template=config.template,
        options=config.http or HttpOptions(),
        admission_options=config.admission or AdmissionOptions(),
        anthropic_api=config.enable_anthropic_api,
    )


async def run_input(config: RunConfig, model: ServedModel, ignore_eos: bool) -> None:
    """Serve `model` on `config`'s input until it ends (or, for http, until shutdown)."""
    if config.input == "http":
        from dynamo.frontend.http.server import serve_http

        state = app_state(config)
        state.models.add(model, config.model_aliases)
        await serve_http(state, config.http_host, config.http_port)
    elif config.input == "text":
        from dynamo.frontend.inputs.text import run_text

        await run_text(model, ignore_eos)
    elif config.input == "stdin":
        from dynamo.frontend.inputs.text import run_stdin

        await run_stdin(model, ignore_eos)
    elif config.batch_file is not None:
        from dynamo.frontend.inputs.batch import run_batch

        await run_batch(model, config.batch_file, config.batch_concurrency, ignore_eos=ignore_eos)
    else:  # RunConfig refuses any other input; a worker (in=dyn://) serves no input
        raise ValueError(f"no input in={config.input} to run a model on")
