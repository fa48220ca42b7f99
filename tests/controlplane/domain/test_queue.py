"""The placement queue as people read it: which jobs can wait in it, and how the reason says where they stand."""

import uuid

import pytest

from controlplane.domain import queue

WS = uuid.uuid4()


def test_the_reason_of_a_waiting_job_ends_with_its_place_in_the_queue():
    assert queue.describe("no eligible host: 2 lack cpu", queue.Place(3, 5)) == "no eligible host: 2 lack cpu; 3rd in the queue of 5"
    assert queue.describe("", queue.Place(1, 1)) == "1st in the queue of 1", "no reason recorded: the place alone"


@pytest.mark.parametrize(
    ("kind", "status", "host_id", "workspace_id", "waits"),
    [
        ("workspace_create", "pending", None, WS, True),
        ("workspace_create", "pending", uuid.uuid4(), WS, False),  # has a host: waits for an image build there
        ("workspace_create", "queued", None, WS, False),
        ("workspace_create", "cancelled", None, WS, False),
        ("workspace_create", "pending", None, None, False),
        ("image_build", "pending", None, None, False),  # builds wait for a host too, but not in the workspace queue
    ],
)
def test_only_a_pending_workspace_create_without_a_host_can_wait_for_placement(kind, status, host_id, workspace_id, waits):
    assert queue.waits_for_placement(kind, status, host_id, workspace_id) is waits
