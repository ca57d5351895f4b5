"""Caffe's glog-style log lines: `I1121 12:00:00.000000  1234 solver.py:123] ...`.

Caffe's tools/extra/parse_log.py reads these lines, so the training log keeps
Caffe's wording and this prefix.
"""
import logging
import os
import sys
import time

_LETTERS = {logging.DEBUG: "I", logging.INFO: "I", logging.WARNING: "W", logging.ERROR: "E", logging.CRITICAL: "F"}


class GlogFormatter(logging.Formatter):
    def __init__(self, role=None):
        super().__init__()
        self.role = role

    def format(self, record):
        stamp = time.localtime(record.created)
        micros = int((record.created % 1) * 1e6)
        prefix = "%s%02d%02d %02d:%02d:%02d.%06d %5d %s:%d] " % (
            _LETTERS.get(record.levelno, "I"),
            stamp.tm_mon, stamp.tm_mday, stamp.tm_hour, stamp.tm_min, stamp.tm_sec, micros,
            os.getpid(), os.path.basename(record.pathname), record.lineno,
        )
        text = record.getMessage()
        if self.role:
            # After the prefix, so parse_log.py still reads the timestamp.
            text = f"[{self.role}] {text}"
        return prefix + text


def get_logger(name="dualnet"):
    return logging.getLogger(name)


def setup_logging(stream=None, level=logging.INFO, role=None):
    """Send dualnet's log to `stream` (stderr by default) in glog format."""
    logger = logging.getLogger("dualnet")
    for handler in list(logger.handlers):
        logger.removeHandler(handler)
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(GlogFormatter(role))
    logger.addHandler(handler)
    logger.setLevel(level)
    logger.propagate = False
    return logger
