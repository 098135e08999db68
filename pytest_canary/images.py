"""Container images of the sample app, built with the ``docker`` SDK and without pulling.

- :func:`build_sample_image` builds ``pytest-canary/sample-go:<version>`` (``FROM scratch``
  with a static binary compiled on the host by ``go build``, because no ``golang`` image can
  be pulled offline) or ``pytest-canary/sample-python:<version>`` (``sample_app/python``
  on a Python base image given as a build argument).
- Every image carries a content label (a hash of the app's sources, the version and the
  base image): an unchanged app is not rebuilt, a changed one is.
- :func:`make_offline_python_base` makes a Python base image with no registry at all:
  ``debootstrap`` from the configured Debian mirror, then ``docker import``; cached by tag.
- Images are always tagged with their version; nothing is ever tagged ``latest``.

Command line (what CI runs)::

    python -m pytest_canary.images go 1.0 2.0
    python -m pytest_canary.images python-base
    python -m pytest_canary.images python 1.0 2.0 --base pytest-canary/python-base:bookworm
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, Literal

from pytest_canary.errors import BackendError, CanaryConfigError
from pytest_canary.locks import LockTimeout, file_lock
from pytest_canary.spec import LABEL_VALUE

Flavor = Literal["go", "python"]
FLAVORS: tuple[str, ...] = ("go", "python")
Progress = Callable[[str], None]

REPOSITORIES: dict[str, str] = {
    "go": "pytest-canary/sample-go",
    "python": "pytest-canary/sample-python",
}
CONTENT_LABEL = "pytest-canary/content"
FLAVOR_LABEL = "pytest-canary/flavor"
BASE_LABEL = "pytest-canary/base"

PACKAGE_DIR = Path(__file__).resolve().parent
# A checkout has sample_app/ next to the package; a wheel ships it as data/sample_app.
SAMPLE_APP_DIR = next(
    (
        d
        for d in (PACKAGE_DIR.parent / "sample_app", PACKAGE_DIR / "data" / "sample_app")
        if d.is_dir()
    ),
    PACKAGE_DIR.parent / "sample_app",
)
PYTHON_APP = PACKAGE_DIR / "sample_app.py"

DEFAULT_PYTHON_BASE = "python:3.12-slim"  # sample_app/python/Dockerfile's own default
OFFLINE_PYTHON_BASE = "pytest-canary/python-base:bookworm"
# Python of each Debian release (the sample app needs >= 3.9).
DEBIAN_PYTHON = {"bullseye": "3.9", "bookworm": "3.11", "trixie": "3.13"}
DEFAULT_MIRROR = "http://deb.debian.org/debian"

GO_BUILD_TIMEOUT = 600.0
DEBOOTSTRAP_TIMEOUT = 900.0
ENGINE_TIMEOUT = 120  # seconds per Docker API call (a build streams, so this is per chunk)
BUILD_LOCK_TIMEOUT = DEBOOTSTRAP_TIMEOUT + GO_BUILD_TIMEOUT
"""Seconds a build waits for another process's build of the same tag (the longest build)."""


class ImageBuildError(BackendError):
    """An image could not be built; the message carries the build log (or its tail)."""

    def __init__(self, image: str, problem: str, log: str = "") -> None:
        self.image = image
        self.log = log
        text = f"building {image} failed: {problem}"
        if log.strip():
            text += "\n--- build log (last 40 lines) ---\n" + "\n".join(log.splitlines()[-40:])
        super().__init__(text)


def connect(timeout: int = ENGINE_TIMEOUT) -> Any:
    """A ``docker.DockerClient`` for the engine of the environment (``DOCKER_HOST`` or the
    default socket), checked with a ping.

    Raises:
        BackendError: naming the engine address and what to do when nothing answers.
    """
    import docker

    where = os.environ.get("DOCKER_HOST") or "unix:///var/run/docker.sock"
    client = None
    try:
        if where.startswith("unix://"):
            # docker-py leaks its socket when a unix socket refuses the connection: probe first.
            with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as probe:
                probe.settimeout(5)
                probe.connect(where.removeprefix("unix://"))
        client = docker.from_env(timeout=timeout)
        client.ping()
    except Exception as exc:
        if client is not None:
            client.close()
        raise BackendError(
            f"no Docker engine answers at {where} ({type(exc).__name__}: {exc}); start dockerd "
            "(or Docker Desktop) or point DOCKER_HOST at a running engine"
        ) from exc
    return client


@contextlib.contextmanager
def engine(client: Any = None) -> Iterator[Any]:
    """``client`` as is, or a fresh :func:`connect` closed on exit (no socket left open)."""
    if client is not None:
        yield client
        return
    owned = connect()
    try:
        yield owned
    finally:
        owned.close()


def sample_image_tag(version: str, flavor: str = "go") -> str:
    """``pytest-canary/sample-<flavor>:<version>``, after checking both.

    Raises:
        CanaryConfigError: for an unknown flavor or a version that is no image tag
            (``latest`` included: images are always tagged with the version they run).
    """
    if flavor not in REPOSITORIES:
        raise CanaryConfigError(f"flavor={flavor!r}: must be one of {', '.join(FLAVORS)}")
    if not isinstance(version, str) or not LABEL_VALUE.match(version):
        raise CanaryConfigError(
            f"version={version!r}: must be usable as an image tag: 1-63 letters, digits, "
            "'-', '_' or '.', starting and ending with a letter or digit"
        )
    if version == "latest":
        raise CanaryConfigError(
            "version='latest': sample images are tagged with the version they report, never "
            "'latest'; give a real version such as '2.0'"
        )
    return f"{REPOSITORIES[flavor]}:{version}"


def parse_sample_image(reference: str) -> tuple[str, str] | None:
    """(flavor, version) of a sample image reference, or None for any other image.

    Example:
        >>> parse_sample_image("pytest-canary/sample-go:2.0")
        ('go', '2.0')
    """
    repository, _, tag = reference.rpartition(":")
    for flavor, repo in REPOSITORIES.items():
        if repository == repo and tag:
            return flavor, tag
    return None


def _sources(flavor: str) -> list[Path]:
    if flavor == "go":
        go_dir = SAMPLE_APP_DIR / "go"
        files = [go_dir / "go.mod", go_dir / "main.go", go_dir / "Dockerfile.prebuilt"]
    else:
        files = [PYTHON_APP, SAMPLE_APP_DIR / "python" / "Dockerfile"]
    missing = [str(f) for f in files if not f.is_file()]
    if missing:
        raise BackendError(
            f"the {flavor} sample app's sources are not here ({', '.join(missing)}): sample "
            "images are built from a checkout of pytest-canary (pip install -e .)"
        )
    return files


def content_hash(flavor: str, version: str, base_image: str | None = None) -> str:
    """Hash of everything that makes a sample image: sources, version, flavor, base image.

    Two builds with the same hash produce the same app, so the second is skipped.
    """
    digest = hashlib.sha256()
    for part in (flavor, version, base_image or "scratch"):
        digest.update(part.encode() + b"\0")
    for path in _sources(flavor):
        digest.update(path.name.encode() + b"\0" + path.read_bytes() + b"\0")
    return digest.hexdigest()[:32]


def _existing_content(client: Any, tag: str) -> str | None:
    import docker

    try:
        image = client.images.get(tag)
    except docker.errors.ImageNotFound:
        return None
    labels = (image.attrs.get("Config") or {}).get("Labels") or {}
    return labels.get(CONTENT_LABEL)


@contextlib.contextmanager
def _build_lock(tag: str) -> Iterator[None]:
    """One build of a tag at a time across processes (xdist workers, parallel CI jobs)."""
    safe = re.sub(r"[^A-Za-z0-9_.-]+", "_", tag)
    path = os.path.join(tempfile.gettempdir(), f"pytest-canary-build-{safe}.lock")
    held = contextlib.ExitStack()
    try:
        held.enter_context(file_lock(path, timeout=BUILD_LOCK_TIMEOUT, what=f"the build of {tag}"))
    except LockTimeout as exc:
        raise ImageBuildError(tag, str(exc)) from None
    with held:
        yield


def _go_environment() -> dict[str, str]:
    env = dict(os.environ)
    env.update(
        {
            "CGO_ENABLED": "0",  # static: the image is FROM scratch, no libc
            "GOOS": "linux",
            "GOFLAGS": "-mod=mod",
            "GOPROXY": "off",  # stdlib only: never reach for the network
            "GOTOOLCHAIN": "local",  # Go >= 1.21 would otherwise try to download one
        }
    )
    if not env.get("GOCACHE") and not env.get("HOME") and not env.get("XDG_CACHE_HOME"):
        env["GOCACHE"] = os.path.join(tempfile.gettempdir(), "pytest-canary-gocache")
    return env


def go_binary(version: str, output: Path) -> None:
    """Compile the Go sample app with ``version`` baked in, statically, into ``output``.

    Raises:
        ImageBuildError: when ``go`` is missing (with what to do) or the build fails.
    """
    tag = sample_image_tag(version, "go")
    go = shutil.which("go")
    if go is None:
        raise ImageBuildError(
            tag,
            "the Go toolchain (`go`) is not on PATH. The Go image is FROM scratch with a static "
            "binary compiled on this machine, because no golang image can be pulled offline: "
            "install Go >= 1.19 (e.g. apt-get install golang-go), or, with network access to "
            "pull the golang image, build it from sample_app/go/Dockerfile: docker build "
            f"--build-arg VERSION={version} -t {tag} {SAMPLE_APP_DIR / 'go'}",
        )
    command = [
        go,
        "build",
        "-trimpath",
        "-ldflags",
        f"-s -w -X main.version={version}",
        "-o",
        str(output),
        ".",
    ]
    try:
        done = subprocess.run(
            command,
            cwd=SAMPLE_APP_DIR / "go",
            env=_go_environment(),
            capture_output=True,
            text=True,
            timeout=GO_BUILD_TIMEOUT,
            check=False,
        )
    except subprocess.TimeoutExpired as exc:
        raise ImageBuildError(tag, f"go build took more than {GO_BUILD_TIMEOUT:.0f}s") from exc
    if done.returncode != 0:
        raise ImageBuildError(
            tag,
            f"`{' '.join(command)}` exited with {done.returncode}",
            done.stdout + done.stderr,
        )


def _docker_build(
    client: Any,
    context: Path,
    tag: str,
    buildargs: dict[str, str],
    labels: dict[str, str],
    progress: Progress,
) -> str:
    """Build ``context`` (with its ``Dockerfile``) as ``tag``; return the image id."""
    log: list[str] = []
    image_id = ""
    failure = ""
    try:
        # Read the stream to its end even after an error chunk: the build is over then, and
        # a fully read response gives its connection back.
        for chunk in client.api.build(
            path=str(context),
            tag=tag,
            buildargs=buildargs,
            labels=labels,
            rm=True,
            forcerm=True,
            pull=False,
            decode=True,
        ):
            if "stream" in chunk and str(chunk["stream"]).strip():
                log.append(str(chunk["stream"]).rstrip("\n"))
            if "aux" in chunk and isinstance(chunk["aux"], dict):
                image_id = str(chunk["aux"].get("ID", image_id))
            if "error" in chunk:
                detail = (chunk.get("errorDetail") or {}).get("message") or chunk["error"]
                log.append(str(detail))
                failure = failure or str(detail).strip()
    except Exception as exc:  # the engine refused the request itself
        raise ImageBuildError(tag, f"{type(exc).__name__}: {exc}", "\n".join(log)) from exc
    if failure:
        raise ImageBuildError(tag, failure, "\n".join(log))
    if not image_id:
        image_id = str(client.images.get(tag).id)
    progress(f"built {tag} ({image_id[:19]})")
    return image_id


def build_sample_image(
    version: str,
    flavor: str = "go",
    *,
    base_image: str | None = None,
    client: Any = None,
    progress: Progress = print,
    force: bool = False,
) -> str:
    """Build the sample app image of ``version`` and return its tag.

    Args:
        version: the version the app reports (baked in: Go ``-ldflags -X``, Python ``ENV``).
        flavor: ``"go"`` (``FROM scratch``, static binary compiled on the host with ``go``)
            or ``"python"`` (needs ``base_image``, any local image with ``python`` >= 3.9,
            e.g. the one :func:`make_offline_python_base` makes).
        base_image: Python base image (a build argument, so an offline user points at a
            local image); default ``$PYTEST_CANARY_PYTHON_BASE`` or ``python:3.12-slim``.
        client: a ``docker.DockerClient`` (default: :func:`connect`).
        progress: called with one line per step.
        force: rebuild even when the content label matches.

    Returns:
        ``pytest-canary/sample-go:<version>`` or ``pytest-canary/sample-python:<version>``.

    Raises:
        CanaryConfigError: bad version or flavor.
        ImageBuildError: with the build log, when the build fails.

    Guarantee: an image whose content label equals the hash of the current sources, version
    and base is reused as is; nothing is pulled and nothing is tagged ``latest``.

    Example:
        >>> build_sample_image("2.0")  # doctest: +SKIP
        'pytest-canary/sample-go:2.0'
    """
    tag = sample_image_tag(version, flavor)
    if flavor == "python":
        base_image = (
            base_image or os.environ.get("PYTEST_CANARY_PYTHON_BASE") or DEFAULT_PYTHON_BASE
        )
    elif base_image is not None:
        raise CanaryConfigError(
            f"base_image={base_image!r}: the Go sample image is FROM scratch and takes no base "
            "image"
        )
    content = content_hash(flavor, version, base_image)
    with engine(client) as client, _build_lock(tag):
        if not force and _existing_content(client, tag) == content:
            progress(f"{tag} is up to date (content {content[:12]})")
            return tag
        started = time.perf_counter()
        labels = {CONTENT_LABEL: content, FLAVOR_LABEL: flavor, BASE_LABEL: base_image or "scratch"}
        with tempfile.TemporaryDirectory(prefix="pytest-canary-image-") as tmp:
            context = Path(tmp)
            buildargs = {"VERSION": version}
            if flavor == "go":
                progress(f"compiling the Go sample app {version} (static, CGO_ENABLED=0)")
                go_binary(version, context / "sample-app")
                shutil.copyfile(
                    SAMPLE_APP_DIR / "go" / "Dockerfile.prebuilt", context / "Dockerfile"
                )
            else:
                shutil.copyfile(PYTHON_APP, context / "sample_app.py")
                shutil.copyfile(SAMPLE_APP_DIR / "python" / "Dockerfile", context / "Dockerfile")
                buildargs["BASE_IMAGE"] = base_image or DEFAULT_PYTHON_BASE
            progress(f"building {tag}")
            try:
                _docker_build(client, context, tag, buildargs, labels, progress)
            except ImageBuildError as exc:
                if flavor == "python" and not image_exists(client, base_image or ""):
                    raise ImageBuildError(
                        tag,
                        f"the base image {base_image} is not on "
                        "this engine (pulling it needs a registry): make one offline with "
                        f"`python -m pytest_canary.images python-base` and pass base_image="
                        f"'{OFFLINE_PYTHON_BASE}' (or set PYTEST_CANARY_PYTHON_BASE)",
                        exc.log,
                    ) from exc
                raise
        progress(f"{tag} ready in {time.perf_counter() - started:.1f}s")
    return tag


def image_exists(client: Any, reference: str) -> bool:
    """Whether ``reference`` is on the engine (nothing is pulled)."""
    import docker

    try:
        client.images.get(reference)
    except docker.errors.ImageNotFound:
        return False
    return True


def image_size(client: Any, reference: str) -> int:
    """Size in bytes of a local image."""
    return int(client.images.get(reference).attrs.get("Size", 0))


# -- an offline Python base ------------------------------------------------------------------


def apt_mirror() -> str:
    """The Debian mirror apt is configured with (deb822 ``.sources`` or ``sources.list``),
    so debootstrap reaches the same place apt does; ``deb.debian.org`` otherwise."""
    candidates: list[str] = []
    sources_dir = Path("/etc/apt/sources.list.d")
    files = sorted(sources_dir.glob("*.sources")) if sources_dir.is_dir() else []
    for path in files:
        for line in path.read_text(errors="replace").splitlines():
            if line.startswith("URIs:"):
                candidates += line.split()[1:]
    legacy = [Path("/etc/apt/sources.list"), *sorted(sources_dir.glob("*.list"))]
    for path in legacy:
        if path.is_file():
            for line in path.read_text(errors="replace").splitlines():
                parts = line.split()
                if len(parts) >= 3 and parts[0] == "deb":
                    candidates.append(next(p for p in parts[1:] if not p.startswith("[")))
    for uri in candidates:
        if "debian" in uri and "security" not in uri and uri.startswith(("http://", "https://")):
            return uri.rstrip("/")
    return DEFAULT_MIRROR


def make_offline_python_base(
    tag: str = OFFLINE_PYTHON_BASE,
    *,
    suite: str = "bookworm",
    mirror: str | None = None,
    client: Any = None,
    progress: Progress = print,
    timeout: float = DEBOOTSTRAP_TIMEOUT,
) -> str:
    """Make a Python base image without any registry: a minimal Debian root file system
    from ``debootstrap`` (the mirror apt uses) with Python only, imported with
    ``docker import``. Returns ``tag``; an existing image of that tag is reused.

    Needs root, ``debootstrap`` on PATH and the Debian mirror; takes about half a minute
    on a good connection and gives a ~100 MB image.

    Raises:
        BackendError: naming what is missing (root, debootstrap, the mirror) or the
            debootstrap log when it fails.
    """
    if suite not in DEBIAN_PYTHON:
        raise CanaryConfigError(f"suite={suite!r}: must be one of {', '.join(DEBIAN_PYTHON)}")
    if tag.endswith(":latest") or ":" not in tag.rpartition("/")[2]:
        raise CanaryConfigError(f"tag={tag!r}: give an explicit tag other than 'latest'")
    with engine(client) as client:
        if image_exists(client, tag):
            progress(f"{tag} exists (offline Python base, reused)")
            return tag
        _debootstrap_and_import(tag, suite, mirror, client, progress, timeout)
    return tag


def _debootstrap_and_import(
    tag: str, suite: str, mirror: str | None, client: Any, progress: Progress, timeout: float
) -> None:
    debootstrap = shutil.which("debootstrap")
    if debootstrap is None:
        raise BackendError(
            "making an offline Python base needs debootstrap: apt-get install debootstrap"
        )
    if os.geteuid() != 0:
        raise BackendError("making an offline Python base needs root (debootstrap chroots)")
    mirror = mirror or apt_mirror()
    python = DEBIAN_PYTHON[suite]
    started = time.perf_counter()
    with _build_lock(tag), tempfile.TemporaryDirectory(prefix="pytest-canary-rootfs-") as tmp:
        root = Path(tmp) / "root"
        command = [
            debootstrap,
            "--variant=minbase",
            f"--include=python{python}-minimal,libpython{python}-stdlib",
            suite,
            str(root),
            mirror,
        ]
        progress(f"debootstrap {suite} from {mirror} (Python {python})")
        try:
            done = subprocess.run(
                command, capture_output=True, text=True, timeout=timeout, check=False
            )
        except subprocess.TimeoutExpired as exc:
            raise BackendError(
                f"debootstrap from {mirror} took more than {timeout:.0f}s: the mirror is too "
                "slow for this budget"
            ) from exc
        if done.returncode != 0:
            tail = "\n".join((done.stdout + done.stderr).splitlines()[-25:])
            raise BackendError(
                f"`{' '.join(command)}` exited with {done.returncode} (is {mirror} reachable?):"
                f"\n{tail}"
            )
        for name in ("python3", "python"):
            link = root / "usr" / "bin" / name
            if not link.exists():
                link.symlink_to(f"python{python}")
        # What a runtime image does not need: package caches, indexes, docs, locales.
        for junk in (
            "var/cache/apt",
            "var/lib/apt/lists",
            "usr/share/doc",
            "usr/share/man",
            "usr/share/info",
            "usr/share/locale",
            "var/log",
        ):
            path = root / junk
            if path.is_dir():
                shutil.rmtree(path)
                path.mkdir()
        archive = Path(tmp) / "rootfs.tar"
        subprocess.run(
            ["tar", "--numeric-owner", "-C", str(root), "-cf", str(archive), "."],
            check=True,
            capture_output=True,
            timeout=timeout,
        )
        repository, _, version_tag = tag.rpartition(":")
        client.api.import_image_from_file(
            str(archive),
            repository=repository,
            tag=version_tag,
            changes=[
                f'LABEL {BASE_LABEL}="debootstrap {suite} python{python}"',
                "ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
                'CMD ["python3"]',
            ],
        )
    progress(f"made {tag} in {time.perf_counter() - started:.1f}s")


# -- command line ------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    """``python -m pytest_canary.images {go,python} VERSION... | python-base``."""
    parser = argparse.ArgumentParser(
        prog="python -m pytest_canary.images",
        description="Build pytest-canary's sample app images offline (nothing is pulled).",
    )
    sub = parser.add_subparsers(dest="what", required=True)
    for flavor in FLAVORS:
        one = sub.add_parser(flavor, help=f"build {REPOSITORIES[flavor]}:<version>")
        one.add_argument("versions", nargs="+", metavar="VERSION")
        one.add_argument("--force", action="store_true", help="rebuild even if up to date")
        if flavor == "python":
            one.add_argument("--base", default=None, help="base image with python >= 3.9")
    base = sub.add_parser("python-base", help="make an offline Python base (debootstrap)")
    base.add_argument("--tag", default=OFFLINE_PYTHON_BASE)
    base.add_argument("--suite", default="bookworm", choices=sorted(DEBIAN_PYTHON))
    base.add_argument("--mirror", default=None, help="Debian mirror (default: apt's)")
    base.add_argument("--timeout", type=float, default=DEBOOTSTRAP_TIMEOUT)
    args = parser.parse_args(argv)
    try:
        with engine() as client:
            if args.what == "python-base":
                make_offline_python_base(
                    args.tag,
                    suite=args.suite,
                    mirror=args.mirror,
                    client=client,
                    timeout=args.timeout,
                )
                return 0
            for version in args.versions:
                tag = build_sample_image(
                    version,
                    args.what,
                    base_image=getattr(args, "base", None),
                    client=client,
                    force=args.force,
                )
                print(f"{tag}: {image_size(client, tag) / 1e6:.1f} MB")
    except (BackendError, CanaryConfigError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
