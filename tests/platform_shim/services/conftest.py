"""The ``backend`` fixture (the query path on each store) for the query property tests."""

from tests.support.query_backends import backend

__all__ = ["backend"]
