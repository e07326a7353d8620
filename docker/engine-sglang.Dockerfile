# `out=sglang` on SGLang's own runtime image (CUDA, torch, SGLang and its kernels as SGLang ships
# them): our three wheels go on top. Built by `docker/build.sh sglang` (only when named), which
# puts the wheels of dynamo-common, dynamo-frontend and dynamo-engine-sglang into `wheels/`.
#
#   docker run --gpus all -p 8080:8080 -v ~/.cache/huggingface:/root/.cache/huggingface \
#       dynamo-py/engine-sglang in=http out=sglang Qwen/Qwen3-0.6B
#
# BASE_IMAGE picks SGLang's image (pin a tag whose SGLang is >= 0.5.21; `docker/build.sh sglang`
# passes SGLANG_BASE_IMAGE as BASE_IMAGE). pip keeps the packages
# the image already has when they satisfy our requirements, and fetches the few it lacks
# (nats-py, aetcd, ...) from the package index: unlike the CPU images, this build needs the
# network, as pulling the vendor's image does anyway.
ARG BASE_IMAGE=lmsysorg/sglang:latest
FROM ${BASE_IMAGE}
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1 PYTHONUNBUFFERED=1
COPY wheels /wheels
COPY healthcheck.py /opt/dynamo/healthcheck.py
RUN set -eu; \
    python3 -c "import sglang; print('SGLang', sglang.__version__)"; \
    python3 -m pip install /wheels/*.whl; \
    rm -rf /wheels; \
    python3 -c "from dynamo.engines.sglang import SGLangEngine; import sglang"
EXPOSE 8080
ENTRYPOINT ["dynamo-run"]
CMD ["in=http", "out=sglang", "Qwen/Qwen3-0.6B"]
HEALTHCHECK --interval=10s --timeout=5s --start-period=600s --retries=3 \
    CMD ["python3", "/opt/dynamo/healthcheck.py"]
