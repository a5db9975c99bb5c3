from __future__ import annotations

import docker
import pytest


def test_unmarked_test_cannot_reach_a_real_engine() -> None:
    with pytest.raises(AssertionError, match="mark it @pytest.mark.docker"):
        docker.APIClient()
