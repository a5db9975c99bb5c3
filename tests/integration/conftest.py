"""Fixtures for integration tests on the kind-shaped test bed (issue #3).

Every module here sets `pytestmark = pytest.mark.docker`. The session fixture makes sure an
engine answers and the images exist (built once, cached by recipe hash); `make_bed` creates
beds and always destroys them, also when the test fails; stale beds of killed runs are swept
at session start.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

import docker
import pytest

from testbed import images as img
from testbed.bed import Bed, create_bed, sweep_stale
from testbed.engine import ensure_engine


@pytest.fixture(scope="session")
def engine() -> docker.DockerClient:
    client = ensure_engine()
    sweep_stale(client)
    return client


@pytest.fixture(scope="session")
def bed_images(engine: docker.DockerClient) -> img.Images:
    return img.ensure_images().images


@pytest.fixture
def make_bed(engine: docker.DockerClient, bed_images: img.Images) -> Iterator[Callable[..., Bed]]:
    beds: list[Bed] = []

    def make(**kwargs: object) -> Bed:
        bed = create_bed(client=engine, images=bed_images, **kwargs)  # type: ignore[arg-type]
        beds.append(bed)
        return bed

    yield make
    for bed in beds:
        bed.destroy()
