#!/usr/bin/env bash
# Waits until every container of a compose project is healthy: what `docker compose up --wait`
# does, for Compose v1 (docker-compose 1.x, as Debian 12 ships it), which lacks `--wait`.
#
# usage: docker/wait-healthy.sh [-f COMPOSE_FILE] [-p PROJECT] [TIMEOUT_S]   (default 120 s)
set -euo pipefail

args=()
while getopts "f:p:" opt; do
    case "$opt" in
    f) args+=(-f "$OPTARG") ;;
    p) args+=(-p "$OPTARG") ;;
    *) exit 2 ;;
    esac
done
shift $((OPTIND - 1))
timeout_s="${1:-120}"
compose=(docker-compose)
docker compose version >/dev/null 2>&1 && compose=(docker compose)

deadline=$((SECONDS + timeout_s))
while :; do
    mapfile -t ids < <("${compose[@]}" "${args[@]}" ps -q)
    if [[ ${#ids[@]} -eq 0 ]]; then
        echo "wait-healthy: no containers" >&2
        exit 1
    fi
    # Containers without a health check count as ready when running.
    pending="$(docker inspect -f '{{.Name}} {{if .State.Health}}{{.State.Health.Status}}{{else}}{{.State.Status}}{{end}}' "${ids[@]}" \
        | grep -v -E ' (healthy|running)$' || true)"
    if [[ -z "$pending" ]]; then
        echo "wait-healthy: ${#ids[@]} containers healthy" >&2
        exit 0
    fi
    if ((SECONDS >= deadline)); then
        echo "wait-healthy: not healthy after ${timeout_s}s:" >&2
        echo "$pending" >&2
        exit 1
    fi
    sleep 2
done
