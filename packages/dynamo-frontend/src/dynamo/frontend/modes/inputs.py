"""Run an input (`in=http|text|stdin|batch:FILE`) against one served model: what the local and
the frontend modes share."""

from __future__ import annotations

from dynamo.frontend.flags import Invocation, UsageError
from dynamo.frontend.request_template import RequestTemplate
from dynamo.llm.pipeline import ServedModel


async def run_input(inv: Invocation, model: ServedModel, ignore_eos: bool) -> None:
    """Serve `model` on the input `inv` names until it ends (or, for http, until shutdown)."""
    args = inv.args
    if inv.input == "http":
        from dynamo.frontend.admission import AdmissionOptions
        from dynamo.frontend.http.app import AppState
        from dynamo.frontend.http.options import HttpOptions
        from dynamo.frontend.http.server import serve_http

        state = AppState(
            request_template=RequestTemplate.load(args.request_template),
            options=HttpOptions.from_args(args),
            admission_options=AdmissionOptions.from_args(args),
            anthropic_api=args.enable_anthropic_api,
        )
        state.models.add(model, args.model_aliases)
        await serve_http(state, args.http_host, args.http_port)
    elif inv.input == "text":
        from dynamo.frontend.inputs.text import run_text

        await run_text(model, ignore_eos)
    elif inv.input == "stdin":
        from dynamo.frontend.inputs.text import run_stdin

        await run_stdin(model, ignore_eos)
    elif inv.input.startswith("batch:"):
        from dynamo.frontend.inputs.batch import run_batch

        await run_batch(
            model,
            inv.input.removeprefix("batch:"),
            args.batch_concurrency,
            ignore_eos=ignore_eos,
        )
    else:
        raise UsageError(
            f"unknown input in={inv.input}: use text, stdin, http, batch:FILE or dyn://ns.comp.ep"
        )
