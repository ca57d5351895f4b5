"""Process memory: the peak resident set, and large arrays given back when freed.

glibc's malloc serves a request from its heap, which it seldom shrinks, unless
the request is at least M_MMAP_THRESHOLD bytes; and each time it frees such a
mapped block it raises that threshold to the block's size (up to 32 MiB). So
after the first iteration a large batch's activations and their temporaries
(tens of MB each) come from the heap, and the memory of every one freed stays
with the process: cnn4 at batch 1024 peaked at 782 MB where its arrays never
held more than about 720 MB at once. `map_large_arrays` fixes the threshold at
LARGE_ARRAY_BYTES, so every array that large is mapped and returned to the
system when freed, while smaller ones keep the heap's faster path. Mapping
costs page faults on every new array, about a tenth of cnn4's iteration at
batch 64, where memory is not what limits the run: so the dualnet command
maps large arrays from its start (building the nets is when the heap would
start to grow) and, once the nets are built, `keep_small_nets_on_the_heap`
moves the threshold up to glibc's largest unless a blob of LARGE_BLOB_BYTES
or more says the batch is large (with the heap's trim threshold at twice
that, where glibc's own adjustment leaves it: a lower one returns and refaults
the heap's top every iteration). A user's own MALLOC_MMAP_THRESHOLD_ setting
is left as it is.
"""
import ctypes
import os
import platform
import resource

from .log import get_logger

log = get_logger("dualnet.memory")
LARGE_ARRAY_BYTES = 8 << 20
LARGE_BLOB_BYTES = 32 << 20         # glibc's largest threshold: such arrays are always mapped
M_MMAP_THRESHOLD = -3               # glibc's mallopt parameter numbers
M_TRIM_THRESHOLD = -1


def map_large_arrays():
    """Have glibc map every allocation of LARGE_ARRAY_BYTES or more; False where that cannot be set."""
    return _set_mmap_threshold(LARGE_ARRAY_BYTES)


def keep_small_nets_on_the_heap(net):
    """After map_large_arrays: unless `net` has a blob of LARGE_BLOB_BYTES or more, serve every
    array below that from the heap again (the speed of glibc's default). Whether it did."""
    name, blob = max(net.blobs.items(), key=lambda item: item[1].data.nbytes, default=(None, None))
    if blob is not None and blob.data.nbytes >= LARGE_BLOB_BYTES:
        if _adjustable():
            log.info("Blob '%s' holds %.0f MB: arrays of %d MiB or more go back to the system when freed",
                     name, blob.data.nbytes / 1e6, LARGE_ARRAY_BYTES >> 20)
        return False
    return _set_mmap_threshold(LARGE_BLOB_BYTES, trim=2 * LARGE_BLOB_BYTES)


def _adjustable():
    return "MALLOC_MMAP_THRESHOLD_" not in os.environ and platform.libc_ver()[0] == "glibc"


def _set_mmap_threshold(threshold, trim=None):
    """Fix glibc's mmap threshold (and with `trim`, the free bytes at the heap's top it keeps)."""
    if not _adjustable():
        return False
    libc = ctypes.CDLL(None)
    if not (hasattr(libc, "mallopt") and libc.mallopt(M_MMAP_THRESHOLD, int(threshold))):
        return False
    return trim is None or bool(libc.mallopt(M_TRIM_THRESHOLD, int(trim)))


def peak_rss_mb():
    """This process's peak resident set size in MB (Linux reports kB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0
