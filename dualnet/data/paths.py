"""Where a path written in a prototxt points.

A relative path is looked up relative to the current directory first (Caffe's
rule: Caffe runs from its root folder), then relative to the prototxt's own
folder; the log says which one was used.
"""
import os

from ..log import get_logger

log = get_logger("dualnet.data")


def candidate_paths(path, source_dir=None):
    """The places a prototxt path may mean, in the order they are tried."""
    path = os.path.expanduser(path)
    if os.path.isabs(path):
        return [path]
    candidates = [os.path.abspath(path)]
    if source_dir:
        beside = os.path.abspath(os.path.join(source_dir, path))
        if beside not in candidates:
            candidates.append(beside)
    return candidates


def log_resolution(given, resolved, what="data source"):
    """Say, for a relative `given` path, which folder it was found in."""
    if os.path.isabs(os.path.expanduser(given)):
        return
    if resolved == os.path.abspath(given):
        log.info("%s '%s' found relative to the current directory: %s", what, given, resolved)
    else:
        log.info("%s '%s' found relative to the prototxt's folder: %s", what, given, resolved)


def resolve_file(path, source_dir=None, what="file"):
    """The first existing candidate for `path`, or None and the candidates tried."""
    tried = candidate_paths(path, source_dir)
    for candidate in tried:
        if os.path.isfile(candidate):
            log_resolution(path, candidate, what)
            return candidate, tried
    return None, tried
