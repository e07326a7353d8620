# `out=trtllm` on NVIDIA's TensorRT-LLM release image (CUDA, MPI, torch and TensorRT-LLM as NVIDIA
# ships them): our three wheels go on top. Built by `docker/build.sh trtllm` (only when named),
# which puts the wheels of dynamo-common, dynamo-frontend and dynamo-engine-trtllm into `wheels/`.
#
#   docker run --gpus all --ipc=host -p 8080:8080 -v ~/.cache/huggingface:/root/.cache/huggingface \
#       dynamo-py/engine-trtllm in=http out=trtllm TinyLlama/TinyLlama-1.1B-Chat-v1.0
#
# BASE_IMAGE (required: NVIDIA's `tensorrt-llm/release:<tag>` image from NGC) picks the release;
# `docker/build.sh trtllm` passes TRTLLM_BASE_IMAGE as BASE_IMAGE. pip keeps the packages the image already
# has when they satisfy our requirements (tensorrt-llm among them: PyPI's is only a stub) and
# fetches the few it lacks from the package index, so this build needs the network, as pulling
# the vendor's image does anyway. Several nodes: run the image under MPI with
# `trtllm-llmapi-launch dynamo-run ... --num-nodes N` (see packages/engine-trtllm/README.md).
ARG BASE_IMAGE
FROM ${BASE_IMAGE}
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1 PYTHONUNBUFFERED=1
COPY wheels /wheels
COPY healthcheck.py /opt/dynamo/healthcheck.py
RUN set -eu; \
    python3 -c "import tensorrt_llm; print('TensorRT-LLM', tensorrt_llm.__version__)"; \
    python3 -m pip install /wheels/*.whl; \
    rm -rf /wheels; \
    python3 -c "from dynamo.engines.trtllm import TrtllmEngine; import tensorrt_llm"
EXPOSE 8080
ENTRYPOINT ["dynamo-run"]
CMD ["in=http", "out=trtllm", "TinyLlama/TinyLlama-1.1B-Chat-v1.0"]
HEALTHCHECK --interval=10s --timeout=5s --start-period=600s --retries=3 \
    CMD ["python3", "/opt/dynamo/healthcheck.py"]
