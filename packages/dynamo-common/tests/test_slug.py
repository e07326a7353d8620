from dynamo.llm.slug import slugify


def test_slugify_like_upstream():
    assert slugify("Qwen/Qwen3-0.6B") == "qwen_qwen3-0_6b"
    assert slugify("__Leading") == "leading"
    assert slugify("dynamo_backend") == "dynamo_backend"
