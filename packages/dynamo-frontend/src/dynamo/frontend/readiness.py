"""Is this frontend ready to serve? Every model it lists must be able to take a request now.

A model served in this process is ready once it is listed (its engine has started). A model
served by workers (`out=dyn`) is ready while at least one of its workers is routable: one that
left etcd, or that the request plane just found dead, does not count. `/health` answers 503 with
this report until everything is ready, so a load balancer sends no traffic to a frontend that
would only answer 503s; `/live` says only that the process is up.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from dynamo.frontend.model_manager import ModelManager


def model_workers(model: Any) -> list[int] | None:
    """The routable worker ids of a model served by workers, or None for an in-process engine.

    Looks through the engine wrappers (admission control, migration) for the router's client."""
    engine = getattr(model, "engine", None)
    while engine is not None:
        client = getattr(engine, "client", None)
        if client is not None and hasattr(client, "instance_ids"):
            return list(client.instance_ids())
        engine = getattr(engine, "engine", None)
    return None


def readiness(models: ModelManager, shutting_down: bool = False) -> tuple[bool, dict[str, Any]]:
    """(ready, the JSON report): per model whether it can take a request, and its workers."""
    report: dict[str, Any] = {}
    served = {id(m): m for m in (models.get(name) for name in models.names())}  # aliases once
    for model in served.values():
        workers = model_workers(model)
        entry: dict[str, Any] = {"ready": workers is None or len(workers) > 0}
        if workers is not None:
            entry["workers"] = len(workers)
        report[model.name] = entry
    ready = bool(report) and all(e["ready"] for e in report.values()) and not shutting_down
    if shutting_down:
        status, reason = "not_ready", "shutting down"
    elif not report:
        status, reason = "not_ready", "no model is served yet"
    elif not ready:
        waiting = sorted(name for name, e in report.items() if not e["ready"])
        status, reason = "not_ready", "no worker can take requests for: " + ", ".join(waiting)
    else:
        status, reason = "healthy", None
    body: dict[str, Any] = {"status": status, "models": report}
    if reason:
        body["reason"] = reason
    return ready, body
