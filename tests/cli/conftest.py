from tests.e2e.conftest import workspace_image  # noqa: F401 - the busybox httpd image, shared with e2e
