# `out=vllm` on vLLM's own runtime image (CUDA, torch and vLLM as the vLLM project ships them): our
# three wheels go on top. Built by `docker/build.sh vllm` (only when named), which puts the wheels
# of dynamo-common, dynamo-frontend and dynamo-engine-vllm into `wheels/`.
#
#   docker run --gpus all -p 8080:8080 -v ~/.cache/huggingface:/root/.cache/huggingface \
#       dynamo-py/engine-vllm in=http out=vllm Qwen/Qwen3-0.6B
#
# BASE_IMAGE picks vLLM's image (`docker/build.sh vllm` passes VLLM_BASE_IMAGE; pin a tag whose
# vLLM is >= 0.31). pip keeps the packages the image already has when they satisfy our
# requirements and fetches the few it lacks (nats-py, aetcd, ...) from the package index: unlike
# the CPU images, this build needs the network, as pulling vLLM's image does anyway. Not built on
# the project's machines: they have no GPU and cannot pull vLLM's image.
ARG BASE_IMAGE=vllm/vllm-openai:v0.32.0
FROM ${BASE_IMAGE}
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1 PYTHONUNBUFFERED=1
COPY wheels /wheels
COPY healthcheck.py /opt/dynamo/healthcheck.py
RUN set -eu; \
    python3 -c "import vllm; print('vLLM', vllm.__version__)"; \
    python3 -m pip install /wheels/*.whl; \
    rm -rf /wheels; \
    python3 -c "from dynamo.engines.vllm import VllmEngine; import vllm"
EXPOSE 8080
ENTRYPOINT ["dynamo-run"]
CMD ["in=http", "out=vllm", "Qwen/Qwen3-0.6B"]
HEALTHCHECK --interval=10s --timeout=5s --start-period=600s --retries=3 \
    CMD ["python3", "/opt/dynamo/healthcheck.py"]
