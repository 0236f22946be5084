"""The number of series does not grow with the number of keys: 10,000 keys in Acme,
calls with a spread of them, and the scrape holds the same series before and after,
none naming a key, a user or a request."""

from __future__ import annotations

import random

from keys import apikeys
from keys.models import ApiKey

CHAT = [{"role": "user", "content": "hi"}]
KEYS = 10_000


def _bulk_keys(cast, count: int) -> list[str]:
    """``count`` working keys of bob's in Acme, made in one insert with the same key
    format and digest as ``keys.services`` (minting 10,000 through the API would take
    minutes and prove nothing more about the metrics)."""
    made = [apikeys.generate() for _ in range(count)]
    ApiKey.all_orgs.bulk_create(
        [
            ApiKey(
                org=cast.acme,
                public_id=new.public_id,
                secret_digest=new.digest,
                last_four=new.last_four,
                name=f"bulk-{i}",
                permissions=["inference:run"],
                owner_user=cast.bob,
                created_by=cast.bob,
            )
            for i, new in enumerate(made)
        ],
        batch_size=1000,
    )
    return [new.plaintext for new in made]


def test_ten_thousand_keys_do_not_grow_the_series(llm, cast, scrape):
    keys = _bulk_keys(cast, KEYS)
    assert ApiKey.all_orgs.filter(org=cast.acme, name__startswith="bulk-").count() == KEYS
    sample = random.Random(16).sample(keys, 60)

    def call(key: str) -> None:
        answer = llm.post(
            "/chat/completions", key, {"model": "openai-main/gpt-4o", "messages": CHAT}
        )
        assert answer.status_code == 200, answer.text

    for key in sample[:10]:
        call(key)
    first = scrape.page()
    for key in sample[10:]:
        call(key)
    second = scrape.page()

    def series(page) -> set[tuple]:
        return {(name, tuple(sorted(labels.items()))) for name, labels, _ in page.samples}

    assert series(second) == series(first)
    assert (
        second.value("inferia_gateway_requests_total", org="acme")
        - first.value("inferia_gateway_requests_total", org="acme")
        == len(sample) - 10
    )
    # No key (secret, public id), user or request id anywhere in the page.
    for key in sample:
        assert key.split("_")[1] not in second.text
    assert str(cast.bob.pk) not in second.text and "bob" not in second.label_values()
