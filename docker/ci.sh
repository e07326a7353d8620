#!/usr/bin/env bash
# CI's container stage (.ci/run calls it): builds the images and runs tests-integration when a
# Docker engine is reachable, and says plainly when it skips them. A few minutes on a machine
# that has built them before; on a fresh one add the local base (about a minute) and the
# wheel downloads.
set -euo pipefail
cd "$(dirname "$0")/.."

if ! command -v docker >/dev/null 2>&1 || ! docker info >/dev/null 2>&1; then
    echo "docker/ci.sh: SKIPPING the image build and tests-integration: no Docker engine is reachable"
    exit 0
fi

echo "docker/ci.sh: building the images"
docker/build.sh

echo "docker/ci.sh: running tests-integration"
uv run --locked pytest tests-integration -p no:cacheprovider
