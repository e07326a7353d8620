"""`slugify` as upstream's `Slug::slugify`: names safe in etcd keys, NATS subjects and buckets."""

import pytest

from dynamo.runtime.slug import slugify


@pytest.mark.parametrize(
    ("name", "slug"),
    [
        ("Qwen/Qwen3-0.6B", "qwen_qwen3-0_6b"),
        ("__Leading", "leading"),
        ("dynamo_backend", "dynamo_backend"),
        ("SmolLM2-135M-Instruct.Q4_1", "smollm2-135m-instruct_q4_1"),
        ("hf://org/name:Q8_0", "hf___org_name_q8_0"),
        ("a b\tc", "a_b_c"),
        ("Ünïcødé 中文", "n_c_d____"),  # every non-ASCII character is one `_`
        ("İ", "i_"),  # lowercasing may add characters, as Rust's to_lowercase does
        ("", ""),
        ("...", ""),
    ],
)
def test_slugify_like_upstream(name, slug):
    assert slugify(name) == slug
