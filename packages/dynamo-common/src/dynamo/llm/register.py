"""`register_llm`: announce a model on the network so frontends can find and serve it.

The card goes to etcd (`mdc/{slug}`) without its big files; those (tokenizer.json, configs) go to
the runtime's object store (NATS's beside etcd, a directory beside the `file` discovery backend)
in bucket `slug(display_name)`, so a frontend on another host needs no copy of the model. The model entry (`models/...`) is bound to the worker's lease: when the worker
stops, or dies and its lease expires, the model leaves every frontend's `/v1/models`. The keys and
records are `dynamo.llm.schema`'s.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
from typing import TYPE_CHECKING, Any

from dynamo.llm.model_card import ModelDeploymentCard, load_card
from dynamo.llm.model_type import ModelType
from dynamo.llm.schema import ModelEntry, card_key, card_record, model_entry_key
from dynamo.runtime.slug import slugify

if TYPE_CHECKING:
    from dynamo.runtime.component import Endpoint

log = logging.getLogger(__name__)

_REUPLOAD_ATTEMPTS = 10


def card_for_etcd(card: ModelDeploymentCard, bucket: str) -> bytes:
    return card_record(card.to_json(), bucket, list(card.files()))


async def upload_card_files(store: Any, bucket: str, card: ModelDeploymentCard) -> None:
    """Put the card's files in bucket `bucket` of `store` (`runtime.objects()`)."""
    await store.put_files(bucket, card.files())


async def _upload_again(runtime: Any, bucket: str, card: ModelDeploymentCard) -> None:
    """After a NATS reconnection: the server may have come back without its JetStream data."""
    from dynamo.runtime.backoff import Backoff  # not at the top: `dynamo.llm` stays light

    backoff = Backoff()
    last: Exception | None = None
    for _ in range(_REUPLOAD_ATTEMPTS):
        try:
            await upload_card_files(runtime.objects(), bucket, card)
            log.info("model card files of '%s' are in the object store again", card.display_name)
            return
        except Exception as e:  # JetStream may need a moment after a restart
            last = e
            await backoff.sleep()
    log.warning("could not upload the card files of '%s' again: %s", card.display_name, last)


async def register_llm(
    model_type: ModelType | str,
    endpoint: Endpoint,
    model_path: str | None,
    model_name: str | None = None,
    context_length: int | None = None,
    kv_cache_block_size: int | None = 16,
    migration_limit: int | None = None,
    router_mode: Any = None,
    user_data: dict[str, Any] | None = None,
    *,
    card: ModelDeploymentCard | None = None,
    also_serves: frozenset[ModelType] = frozenset(),
    aliases: tuple[str, ...] | list[str] = (),
) -> ModelDeploymentCard:
    """Load the card (HF id, folder or GGUF), publish it, and enter the model into discovery.

    `card=` publishes a card the caller loaded already (`dynamo-run in=dyn://` has one); it is
    copied, not changed, when `model_name`, `migration_limit` or `user_data` differ. `router_mode` is
    upstream's parameter, refused when given (`ValueError`): here the frontend chooses the routing
    (`--router-mode` on `out=dyn`), and a worker cannot. `also_serves`: the other
    request kinds a Chat or Completion worker takes (the engine's `also_serves`), published with
    the model entry. `aliases`: other names the model answers to (`--served-model-name a b`), also
    on the model entry, so every frontend serves them. Returns the card as published.
    """
    if router_mode is not None:
        raise ValueError(
            "register_llm(router_mode=...): the frontend chooses the routing here (dynamo-run "
            "out=dyn --router-mode); leave it unset"
        )
    model_type = ModelType.parse(model_type)
    if card is None:
        if model_path is None:
            if not model_name:
                raise ValueError("register_llm needs a model_path or a model_name")
            card = ModelDeploymentCard.for_name_only(model_name)
        else:
            card = await asyncio.to_thread(
                load_card,
                model_path,
                model_name=model_name,
                context_length=context_length,
                kv_cache_block_size=kv_cache_block_size or 16,
            )
    overrides: dict[str, Any] = {}
    if model_name and model_name != card.display_name:
        overrides.update(display_name=model_name, service_name=slugify(model_name))
    if migration_limit is not None:
        overrides["migration_limit"] = migration_limit
    if user_data is not None:
        overrides["user_data"] = user_data
    if overrides:
        card = dataclasses.replace(card, **overrides)

    runtime = endpoint.runtime
    await runtime.ensure_connected()
    instance_id = await runtime.primary_lease()
    bucket = card.service_name
    if card.files():
        await upload_card_files(runtime.objects(), bucket, card)
        runtime.on_nats_reconnect(lambda: _upload_again(runtime, bucket, card))
    mdc_key = card_key(card.service_name)
    # Every worker of the model writes the same card key: shared, so one leaving keeps it.
    await runtime.etcd.put_leased(mdc_key, card_for_etcd(card, bucket), shared=True)
    entry = ModelEntry.for_endpoint(
        card.display_name,
        endpoint.path,
        model_type,
        mdc_key,
        frozenset(also_serves),
        tuple(a for a in dict.fromkeys(aliases) if a != card.display_name),
    )
    key = model_entry_key(endpoint.path, instance_id)
    await runtime.etcd.put_leased(key, entry.dump())
    runtime.register_endpoint_key(endpoint.path, key)
    log.info("registered model '%s' (%s) on %s", card.display_name, model_type.value, endpoint.path)
    return card
