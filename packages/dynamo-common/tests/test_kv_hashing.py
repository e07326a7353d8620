"""Block hashes: recomputed here from the definition with xxhash, and pinned as literals."""

import struct

import pytest
import xxhash

from dynamo.llm.kv.hashing import (
    XXH3_SEED,
    block_hash,
    chain_hash,
    local_block_hashes,
    sequence_hashes,
)

# Literal values: a change to the byte layout or the seed breaks routing against upstream
# workers, so it must break these too.
PINNED_BLOCK_1234 = 14643705804678351452
PINNED_BLOCK_5678 = 16777012769546811212
PINNED_SEQ_1234_5678 = 4945711292740353085
PINNED_BLOCK_RANGE64 = 3480597578098033343
PINNED_SEQ_RANGE128_BS64 = [3480597578098033343, 2575318956255022795]
PINNED_BLOCK_MAX_U32 = 12410542959481710713


def by_definition(tokens: list[int]) -> int:
    return xxhash.xxh3_64_intdigest(struct.pack(f"<{len(tokens)}I", *tokens), 1337)


def test_seed_is_upstreams() -> None:
    assert XXH3_SEED == 1337


@pytest.mark.parametrize("tokens", [[1, 2, 3, 4], [5, 6, 7, 8], list(range(64)), [2**32 - 1] * 4])
def test_block_hash_is_xxh3_of_le_u32(tokens: list[int]) -> None:
    assert block_hash(tokens) == by_definition(tokens)


def test_pinned_block_hashes() -> None:
    assert block_hash([1, 2, 3, 4]) == PINNED_BLOCK_1234
    assert block_hash([5, 6, 7, 8]) == PINNED_BLOCK_5678
    assert block_hash(list(range(64))) == PINNED_BLOCK_RANGE64
    assert block_hash([2**32 - 1] * 4) == PINNED_BLOCK_MAX_U32


def test_full_blocks_only() -> None:
    tokens = [1, 2, 3, 4, 5, 6, 7, 8, 9, 10]
    assert local_block_hashes(tokens, 4) == [PINNED_BLOCK_1234, PINNED_BLOCK_5678]
    assert local_block_hashes(tokens[:3], 4) == []
    assert local_block_hashes([], 4) == []
    assert local_block_hashes(tokens[:8], 4) == [PINNED_BLOCK_1234, PINNED_BLOCK_5678]


def test_local_hash_depends_on_content_not_position() -> None:
    a = local_block_hashes([9, 9, 9, 9, 1, 2, 3, 4], 4)
    b = local_block_hashes([1, 2, 3, 4, 7, 7, 7, 7], 4)
    assert a[1] == b[0] == PINNED_BLOCK_1234


def test_sequence_hashes_chain() -> None:
    local = [PINNED_BLOCK_1234, PINNED_BLOCK_5678]
    expected_second = xxhash.xxh3_64_intdigest(
        struct.pack("<QQ", PINNED_BLOCK_1234, PINNED_BLOCK_5678), 1337
    )
    assert sequence_hashes(local) == [PINNED_BLOCK_1234, expected_second]
    assert expected_second == PINNED_SEQ_1234_5678
    assert chain_hash(PINNED_BLOCK_1234, PINNED_BLOCK_5678) == PINNED_SEQ_1234_5678
    # Continuing a chain from its last hash gives the same tail.
    assert sequence_hashes([PINNED_BLOCK_5678], parent=PINNED_BLOCK_1234) == [PINNED_SEQ_1234_5678]
    assert sequence_hashes(local_block_hashes(list(range(128)), 64)) == PINNED_SEQ_RANGE128_BS64


def test_sequence_hash_depends_on_prefix() -> None:
    a = sequence_hashes(local_block_hashes([9, 9, 9, 9, 1, 2, 3, 4], 4))
    b = sequence_hashes(local_block_hashes([8, 8, 8, 8, 1, 2, 3, 4], 4))
    assert a[1] != b[1]


def test_bad_input() -> None:
    with pytest.raises(ValueError):
        local_block_hashes([1, 2], 0)
    with pytest.raises(OverflowError):
        block_hash([2**32])
    with pytest.raises(OverflowError):
        block_hash([-1])
