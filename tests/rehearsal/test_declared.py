"""What the program declares, checked against what the Docker engine accepts (found by rehearsing it)."""

from __future__ import annotations

import pytest

from config.settings import STACKS
from tests.program.harness import run_stack


@pytest.mark.parametrize("stack", STACKS)
def test_no_container_receives_uploads_into_a_read_only_root(stack: str) -> None:
    # The provider copies uploads to "/" of the created container, and the Docker daemon refuses
    # that on a read-only root ("container rootfs is marked read-only"): `pulumi up` would fail.
    refused = [name for name, c in run_stack(stack).containers.items()
               if c.inputs.get("readOnly") and c.inputs.get("uploads")]
    assert refused == []


@pytest.mark.parametrize("stack", STACKS)
def test_containers_without_uploads_keep_their_read_only_root(stack: str) -> None:
    containers = run_stack(stack).containers
    for name in ("webhook-receiver", "backup"):
        if name in containers and not containers[name].inputs.get("uploads"):
            assert containers[name].inputs["readOnly"] is True, name


@pytest.mark.parametrize("stack", STACKS)
def test_upload_owners_are_strings_as_the_provider_schema_types_them(stack: str) -> None:
    for name, c in run_stack(stack).containers.items():
        for upload in c.inputs.get("uploads") or []:
            for key in ("owner", "group"):
                assert key not in upload or isinstance(upload[key], str), (name, upload["file"], key)
