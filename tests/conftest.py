"""Root of the test suite: loads the harness, whose components start only when a test asks for them."""

pytest_plugins = [
    "tests.harness.fixtures_run",
    "tests.harness.fixtures_shared",
    "tests.harness.fixtures_docker",
    "tests.harness.fixtures_kafka",
    "tests.harness.fixtures_search",
    "tests.harness.fixtures_postgres",
    # pytester runs inner sessions, to prove what the harness does across modules and at session end.
    "pytester",
]
