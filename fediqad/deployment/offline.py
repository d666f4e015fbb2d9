"""Offline image builds: a Python base image made from Debian packages and a wheelhouse.

Air-gapped hospitals cannot pull `python:*-slim` or reach a wheel index while building.
Everything an image needs is therefore prepared on the host first (from the Debian mirror
and the Python package index this host can reach, or carried over on a disk), and the
image build itself runs with `--network none`:

- the base image: `debootstrap --variant=minbase` of the Debian release the host's apt
  sources serve, with `python3-venv` and `ca-certificates`, then `docker import`;
- the wheelhouse: `pip wheel` of the project's dependencies (a CPU-only torch where the
  host has one) into `deploy/wheelhouse/`, which the Dockerfiles install from with
  `pip --no-index --find-links`.

Both are reused when present, so a second build costs only Docker's layer cache lookups.
"""

from __future__ import annotations

import hashlib
import json
import re
import shutil
import subprocess
import sys
import tarfile
import tempfile
import tomllib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from shared.errors import UserError

BASE_REPOSITORY = "fediqad-base"
WHEELHOUSE = Path("deploy") / "wheelhouse"
MANIFEST = "wheelhouse.json"
BASE_PACKAGES = ("python3-venv", "ca-certificates")

Log = Callable[[str], None]


@dataclass(frozen=True)
class DebianSource:
    """The release and mirror the host's apt is configured for."""

    release: str
    mirror: str


def _deb822_sources(text: str) -> list[tuple[str, list[str]]]:
    out = []
    for stanza in re.split(r"\n\s*\n", text):
        fields = dict(re.findall(r"^(\w[\w-]*):\s*(.*)$", stanza, re.M))
        if fields.get("Types", "").split()[:1] == ["deb"] and fields.get("Enabled") != "no":
            for uri in fields.get("URIs", "").split():
                out.append((uri, fields.get("Suites", "").split()))
    return out


def _one_line_sources(text: str) -> list[tuple[str, list[str]]]:
    out = []
    for line in text.splitlines():
        words = re.sub(r"\[[^\]]*\]", "", line.split("#", 1)[0]).split()
        if len(words) >= 3 and words[0] == "deb":
            out.append((words[1], [words[2]]))
    return out


def apt_source(apt_dir: Path = Path("/etc/apt")) -> DebianSource:
    """The Debian release and main mirror in the host's apt sources (deb822 or one-line)."""
    entries: list[tuple[str, list[str]]] = []
    for path in sorted((apt_dir / "sources.list.d").glob("*.sources")):
        entries += _deb822_sources(path.read_text())
    for path in [apt_dir / "sources.list", *sorted((apt_dir / "sources.list.d").glob("*.list"))]:
        if path.is_file():
            entries += _one_line_sources(path.read_text())
    for uri, suites in entries:
        releases = [s for s in suites if re.fullmatch(r"[a-z]+", s)]
        if releases and "security" not in uri and uri.rstrip("/").endswith("/debian"):
            return DebianSource(releases[0], uri.rstrip("/"))
    raise UserError(
        f"no Debian release found in {apt_dir}/sources.list(.d); "
        "give one with --release and --mirror"
    )


def base_image_tag(release: str) -> str:
    return f"{BASE_REPOSITORY}:{release}-python3"


def _image_exists(client: Any, tag: str) -> bool:
    from docker.errors import ImageNotFound

    try:
        client.images.get(tag)
    except ImageNotFound:
        return False
    return True


def build_base_image(client: Any, source: DebianSource, log: Log, *, rebuild: bool = False) -> str:
    """`docker import` of a minbase Debian root with Python 3; reused when it exists."""
    tag = base_image_tag(source.release)
    if _image_exists(client, tag) and not rebuild:
        log(f"base image {tag} exists; reusing it")
        return tag
    if shutil.which("debootstrap") is None:
        raise UserError("debootstrap is not installed; apt-get install debootstrap (needs root)")
    with tempfile.TemporaryDirectory(prefix="fediqad-rootfs-") as tmp:
        rootfs = Path(tmp) / "rootfs"
        log(f"debootstrap --variant=minbase {source.release} from {source.mirror}")
        done = subprocess.run(
            [
                "debootstrap",
                "--variant=minbase",
                f"--include={','.join(BASE_PACKAGES)}",
                source.release,
                str(rootfs),
                source.mirror,
            ],
            capture_output=True,
            text=True,
            check=False,
        )
        if done.returncode != 0:
            last = (done.stdout + done.stderr).strip().splitlines()[-1:] or ["no output"]
            raise UserError(f"debootstrap {source.release} failed: {last[0]}")
        # No package lists or caches in the image: it is rebuilt, never apt-upgraded.
        for junk in ("var/cache/apt/archives", "var/lib/apt/lists"):
            shutil.rmtree(rootfs / junk, ignore_errors=True)
        archive = Path(tmp) / "rootfs.tar"
        with tarfile.open(archive, "w") as tar:
            tar.add(rootfs, arcname=".")
        log(f"docker import as {tag}")
        client.api.import_image_from_file(
            str(archive),
            repository=tag.split(":")[0],
            tag=tag.split(":")[1],
            changes=["ENV LANG=C.UTF-8", 'CMD ["python3"]'],
        )
    return tag


def project_requirements(pyproject: Path) -> list[str]:
    """The `[project] dependencies` the images install (the Dockerfiles read the same)."""
    return list(tomllib.loads(pyproject.read_text())["project"]["dependencies"])


def build_requirements(pyproject: Path) -> list[str]:
    return list(tomllib.loads(pyproject.read_text())["build-system"]["requires"])


def cpu_torch_wheels(search: list[Path]) -> tuple[Path, Path] | None:
    """A CPU-only torch wheel and the CPU torchvision built for it, if both are at hand.

    Both must be CPU builds: PyPI's torchvision links its operators against CUDA torch
    (libtorch_cuda.so) and fails to import next to a `+cpu` torch.
    """
    tag = f"cp{sys.version_info.major}{sys.version_info.minor}"
    found: dict[str, list[Path]] = {"torch": [], "torchvision": []}
    for folder in search:
        for name, paths in found.items():
            if folder.is_dir():
                paths += folder.glob(f"{name}-*+cpu-{tag}-{tag}-*linux*x86_64.whl")
    for torch in sorted(found["torch"], key=lambda p: _version_key(p.name), reverse=True):
        wanted = matching_torchvision(torch.name.split("-")[1]).rstrip(".*")
        for vision in found["torchvision"]:
            if vision.name.split("-")[1].startswith(wanted + "."):
                return torch, vision
    return None


def _version_key(text: str) -> tuple[int, ...]:
    version = text.split("-")[1] if "-" in text else text
    return tuple(int(x) for x in re.findall(r"\d+", version.split("+")[0]))


def matching_torchvision(torch_version: str) -> str:
    """torchvision's release for a torch release (2.N pairs with 0.N+15)."""
    major, minor = _version_key(torch_version)[:2]
    if major != 2:
        raise UserError(f"no known torchvision release for torch {torch_version}")
    return f"0.{minor + 15}.*"


def pip_find_links() -> list[Path]:
    """Local folders pip is configured to look in (`pip config` find-links)."""
    done = subprocess.run(
        [sys.executable, "-m", "pip", "config", "list"],
        capture_output=True,
        text=True,
        check=False,
    )
    folders = []
    for line in done.stdout.splitlines():
        key, _, value = line.partition("=")
        if key.endswith("find-links"):
            folders += [Path(v.removeprefix("file://")) for v in value.strip("'\"").split()]
    return [f for f in folders if f.is_dir()]


def wheelhouse_pins(pyproject: Path, cpu_pair: tuple[Path, Path] | None) -> list[str]:
    """What goes into the wheelhouse: the project's dependencies and its build backend,
    with torch and torchvision pinned to a CPU-only pair when one is given."""
    pins = project_requirements(pyproject) + build_requirements(pyproject)
    if cpu_pair is not None:
        torch, vision = (wheel.name.split("-")[1] for wheel in cpu_pair)
        pins = [p for p in pins if not re.match(r"torch(vision)?\b", p)]
        pins = [f"torch=={torch}", f"torchvision=={vision}", *pins]
    return pins


def prepare_wheelhouse(
    dest: Path, pyproject: Path, log: Log, *, cpu_pair: tuple[Path, Path] | None = None
) -> Path:
    """`pip wheel` everything the images install into `dest`; reused while the pins match."""
    pins = wheelhouse_pins(pyproject, cpu_pair)
    digest = hashlib.sha256("\n".join(pins).encode()).hexdigest()[:16]
    manifest = dest / MANIFEST
    if manifest.is_file() and json.loads(manifest.read_text()).get("digest") == digest:
        log(f"wheelhouse {dest} is up to date ({len(list(dest.glob('*.whl')))} wheels)")
        return dest
    dest.mkdir(parents=True, exist_ok=True)
    for stale in dest.glob("*.whl"):  # pins changed: start from an empty folder
        stale.unlink()
    links = sorted({str(wheel.parent) for wheel in cpu_pair or ()})
    log(f"pip wheel {len(pins)} requirements into {dest}")
    cmd = [sys.executable, "-m", "pip", "wheel", "--quiet", "--wheel-dir", str(dest)]
    for link in links:
        cmd += ["--find-links", link]
    done = subprocess.run([*cmd, *pins], capture_output=True, text=True, check=False)
    if done.returncode != 0:
        errors = [ln for ln in done.stderr.splitlines() if ln.startswith("ERROR")] or ["?"]
        raise UserError(f"pip wheel into {dest} failed: {errors[0]}")
    manifest.write_text(json.dumps({"digest": digest, "requirements": pins}, indent=1) + "\n")
    return dest
