"""Shared test set-up.

Guard (pre-commit's `dont_write_to_home_directory` idea): a test that is not marked `docker`
must not reach a real Docker engine. DOCKER_HOST points nowhere and the SDK's client refuses to
be built, so an accidental real call fails loudly instead of touching the machine.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest


@pytest.fixture(autouse=True)
def _no_real_engine_unless_marked(request: pytest.FixtureRequest,
                                  monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    if request.node.get_closest_marker("docker"):
        yield
        return
    import docker.api.client

    def refuse(*_args: object, **_kwargs: object) -> None:
        raise AssertionError(
            "this test touched a real Docker engine; mark it @pytest.mark.docker")

    monkeypatch.setenv("DOCKER_HOST", "unix:///nonexistent/kindfix-test-guard.sock")
    monkeypatch.setattr(docker.api.client.APIClient, "__init__", refuse)
    yield
