"""Fixtures shared by the whole suite live in tests/support and are registered here."""

pytest_plugins = [
    "tests.support.redis_fixtures",
    "tests.support.sentinel_fixtures",
    "tests.support.cluster_fixtures",
    "tests.support.operator_fixtures",
    "tests.support.django_fixtures",
]
