"""Shared fixtures."""
import logging

import pytest


class Records(logging.Handler):
    def __init__(self):
        super().__init__(logging.INFO)
        self.records = []

    def emit(self, record):
        self.records.append(record)

    @property
    def text(self):
        return "\n".join(r.getMessage() for r in self.records)


@pytest.fixture
def dualnet_log():
    """The records of the `dualnet` logger during the test (whatever its propagation)."""
    logger = logging.getLogger("dualnet")
    handler = Records()
    previous = logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    try:
        yield handler
    finally:
        logger.removeHandler(handler)
        logger.setLevel(previous)
