"""Sample app images: tags, content labels, offline builds, failures that explain themselves.

The first group needs no Docker. Tests marked ``docker`` build and run real images and skip,
with the reason, when no Docker engine answers.
"""

from __future__ import annotations

import http.client
import shutil
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from pytest_canary import images
from pytest_canary.backends.local.docker_runtime import owner_labels
from pytest_canary.errors import BackendError, CanaryConfigError
from pytest_canary.images import ImageBuildError

# -- without Docker ----------------------------------------------------------------------------


def test_tags_carry_flavor_and_version() -> None:
    assert images.sample_image_tag("2.0") == "pytest-canary/sample-go:2.0"
    assert images.sample_image_tag("v1_rc.2", "python") == "pytest-canary/sample-python:v1_rc.2"
    assert images.parse_sample_image("pytest-canary/sample-python:3") == ("python", "3")
    assert images.parse_sample_image("registry.example/shop:3") is None
    assert images.parse_sample_image("pytest-canary/sample-go") is None


@pytest.mark.parametrize("version", ["latest", "", "two words", "-1", "a" * 64, None])
def test_latest_and_non_tags_are_refused(version: Any) -> None:
    with pytest.raises(CanaryConfigError, match=r"version=.*(never 'latest'|usable as an image)"):
        images.sample_image_tag(version)


def test_unknown_flavor_and_a_base_for_go_are_refused() -> None:
    with pytest.raises(CanaryConfigError, match="flavor='rust': must be one of go, python"):
        images.sample_image_tag("1.0", "rust")
    with pytest.raises(CanaryConfigError, match="FROM scratch and takes no base image"):
        images.build_sample_image("1.0", "go", base_image="debian:12", client=object())


@pytest.fixture
def sources_copy(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A private copy of sample_app/ the image functions read instead of the real one."""
    copy = tmp_path / "sample_app"
    shutil.copytree(images.SAMPLE_APP_DIR, copy, ignore=shutil.ignore_patterns("sample-app"))
    monkeypatch.setattr(images, "SAMPLE_APP_DIR", copy)
    return copy


def test_content_hash_follows_sources_version_and_base(sources_copy: Path) -> None:
    go = images.content_hash("go", "1.0")
    assert images.content_hash("go", "1.0") == go
    assert images.content_hash("go", "2.0") != go
    assert images.content_hash("python", "1.0", "a:1") != images.content_hash(
        "python", "1.0", "b:1"
    )
    main = sources_copy / "go" / "main.go"
    main.write_text(main.read_text() + "\n// changed\n")
    assert images.content_hash("go", "1.0") != go


def test_missing_sources_say_a_checkout_is_needed(sources_copy: Path) -> None:
    (sources_copy / "go" / "main.go").unlink()
    with pytest.raises(BackendError, match=r"sources are not here .*main\.go.*pip install -e"):
        images.content_hash("go", "1.0")


def test_missing_go_says_to_install_it_or_build_with_network(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))  # nothing on PATH: no go
    with pytest.raises(ImageBuildError) as info:
        images.go_binary("2.0", tmp_path / "sample-app")
    message = str(info.value)
    assert "building pytest-canary/sample-go:2.0 failed" in message
    assert "install Go >= 1.19" in message
    assert "sample_app/go/Dockerfile" in message and "network access" in message


@pytest.mark.skipif(shutil.which("go") is None, reason="needs Go (apt-get install golang-go)")
def test_go_compile_error_shows_the_compiler_output(sources_copy: Path, tmp_path: Path) -> None:
    main = sources_copy / "go" / "main.go"
    main.write_text(main.read_text() + "\nfunc broken( {\n")
    with pytest.raises(ImageBuildError) as info:
        images.go_binary("2.0", tmp_path / "sample-app")
    assert "go build -trimpath" in str(info.value)
    assert "--- build log" in str(info.value)
    assert "main.go" in info.value.log and "syntax error" in info.value.log


def test_apt_mirror_is_an_http_debian_uri() -> None:
    mirror = images.apt_mirror()
    assert mirror.startswith(("http://", "https://")) and "debian" in mirror


def test_offline_base_refuses_latest_and_unknown_suites() -> None:
    with pytest.raises(CanaryConfigError, match="other than 'latest'"):
        images.make_offline_python_base("me/python:latest", client=object())
    with pytest.raises(CanaryConfigError, match="suite='sid': must be one of"):
        images.make_offline_python_base(suite="sid", client=object())


def test_cli_reports_errors_without_a_traceback(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("DOCKER_HOST", "unix:///nonexistent/docker.sock")
    assert images.main(["go", "1.0"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("error: no Docker engine answers at unix:///nonexistent/docker.sock")


# -- with Docker -------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def docker_client() -> Iterator[Any]:
    try:
        client = images.connect(timeout=60)
    except BackendError as exc:
        pytest.skip(f"needs a Docker engine: {exc}")
    try:
        yield client
    finally:
        client.close()


def _get(port: int, path: str = "/") -> tuple[int, dict[str, str], bytes]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
    try:
        conn.request("GET", path)
        response = conn.getresponse()
        return response.status, dict(response.getheaders()), response.read()
    finally:
        conn.close()


@pytest.fixture
def run_container(docker_client: Any) -> Iterator[Any]:
    """Runs an image on 127.0.0.1 (labelled like our pods, so a sweep would catch it) and
    removes it at the end; returns the published port."""
    started: list[Any] = []

    def run(image: str, **env: str) -> int:
        container = docker_client.containers.run(
            image,
            detach=True,
            environment=env,
            labels=owner_labels("test-images"),
            ports={"8080/tcp": ("127.0.0.1",)},
        )
        started.append(container)
        container.reload()
        port = int(container.attrs["NetworkSettings"]["Ports"]["8080/tcp"][0]["HostPort"])
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            try:
                if _get(port, "/health")[0] == 200:
                    return port
            except OSError:
                pass
            time.sleep(0.05)
        raise AssertionError(f"{image} not healthy: {container.logs(tail=20)!r}")

    try:
        yield run
    finally:
        for container in started:
            container.remove(force=True)


@pytest.mark.docker
def test_go_image_is_from_scratch_and_reports_its_version(
    docker_client: Any, run_container: Any
) -> None:
    lines: list[str] = []
    tag = images.build_sample_image("2.0", client=docker_client, progress=lines.append)
    assert tag == "pytest-canary/sample-go:2.0"
    image = docker_client.images.get(tag)
    labels = image.attrs["Config"]["Labels"]
    assert labels[images.CONTENT_LABEL] == images.content_hash("go", "2.0")
    assert labels["org.opencontainers.image.version"] == "2.0"
    assert len(image.attrs["RootFS"]["Layers"]) == 1  # FROM scratch: the binary only
    assert image.attrs["Size"] < 20_000_000
    assert not [t for t in image.tags if t.endswith(":latest")]
    port = run_container(tag, APP_TRACK="canary")
    status, headers, body = _get(port)
    assert status == 200 and headers["X-App-Version"] == "2.0"
    assert b'"track":"canary"' in body


@pytest.mark.docker
def test_unchanged_app_is_not_rebuilt(docker_client: Any) -> None:
    images.build_sample_image("1.0", client=docker_client, progress=lambda line: None)
    before = docker_client.images.get("pytest-canary/sample-go:1.0").id
    lines: list[str] = []
    started = time.perf_counter()
    images.build_sample_image("1.0", client=docker_client, progress=lines.append)
    assert time.perf_counter() - started < 5
    assert lines == [
        f"pytest-canary/sample-go:1.0 is up to date (content "
        f"{images.content_hash('go', '1.0')[:12]})"
    ]
    assert docker_client.images.get("pytest-canary/sample-go:1.0").id == before


@pytest.mark.docker
def test_changed_sources_are_rebuilt(docker_client: Any, sources_copy: Path) -> None:
    version = "0.0.0-rebuild-test"
    tag = images.sample_image_tag(version)
    made: list[str] = [tag]
    try:
        first = images.build_sample_image(version, client=docker_client, progress=lambda _: None)
        first_id = docker_client.images.get(first).id
        made.append(first_id)  # untagged by the rebuild: removed by id
        dockerfile = sources_copy / "go" / "Dockerfile.prebuilt"
        dockerfile.write_text(dockerfile.read_text() + 'LABEL test.changed="yes"\n')
        lines: list[str] = []
        images.build_sample_image(version, client=docker_client, progress=lines.append)
        rebuilt = docker_client.images.get(tag)
        assert rebuilt.id != first_id
        assert rebuilt.attrs["Config"]["Labels"]["test.changed"] == "yes"
        assert any(line.startswith(f"built {tag}") for line in lines), lines
    finally:
        for reference in made:
            if _image_exists(docker_client, reference):
                docker_client.images.remove(reference, force=True)


@pytest.mark.docker
def test_failed_build_shows_the_build_log_and_the_offline_way(docker_client: Any) -> None:
    with pytest.raises(ImageBuildError) as info:
        images.build_sample_image(
            "1.0",
            "python",
            base_image="pytest-canary/no-such-base:1",
            client=docker_client,
            progress=lambda _: None,
        )
    message = str(info.value)
    assert message.startswith("building pytest-canary/sample-python:1.0 failed")
    assert "--- build log" in message and "Step 2/13 : FROM ${BASE_IMAGE}" in message
    assert "python -m pytest_canary.images python-base" in message
    assert not _image_exists(docker_client, "pytest-canary/sample-python:1.0@broken")


def _image_exists(client: Any, reference: str) -> bool:
    import docker

    try:
        client.images.get(reference)
    except (docker.errors.ImageNotFound, docker.errors.APIError):
        return False
    return True


@pytest.mark.docker
def test_python_image_on_the_offline_base(docker_client: Any, run_container: Any) -> None:
    base = images.OFFLINE_PYTHON_BASE
    if not _image_exists(docker_client, base):
        pytest.skip(
            f"the offline Python base {base} is not on this engine; make it (about 35 s, needs "
            "root, debootstrap and the Debian mirror) with: python -m pytest_canary.images "
            "python-base"
        )
    tag = images.build_sample_image(
        "2.0", "python", base_image=base, client=docker_client, progress=lambda _: None
    )
    labels = docker_client.images.get(tag).attrs["Config"]["Labels"]
    assert labels[images.BASE_LABEL] == base
    port = run_container(tag)
    status, headers, _ = _get(port, "/version")
    assert status == 200 and headers["X-App-Version"] == "2.0"
