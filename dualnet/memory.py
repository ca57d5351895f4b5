"""Process memory: the peak resident set, and large arrays given back when freed.

glibc's malloc serves a request from its heap, which it seldom shrinks, unless
the request is at least M_MMAP_THRESHOLD bytes; and each time it frees such a
mapped block it raises that threshold to the block's size (up to 32 MiB). So
after the first iteration a large batch's activations and their temporaries
(tens of MB each) come from the heap, and the memory of every one freed stays
with the process: cnn4 at batch 1024 peaked at 782 MB where its arrays never
held more than about 720 MB at once. `map_large_arrays` fixes the threshold at
LARGE_ARRAY_BYTES, so every array that large is mapped and returned to the
system when freed, while smaller ones (all of LeNet's at batch 64) keep the
heap's faster path. The dualnet command calls it at start; a user's own
MALLOC_MMAP_THRESHOLD_ setting is left as it is.
"""
import ctypes
import os
import platform
import resource

LARGE_ARRAY_BYTES = 8 << 20
M_MMAP_THRESHOLD = -3               # glibc's mallopt parameter number


def map_large_arrays(threshold=LARGE_ARRAY_BYTES):
    """Have glibc map every allocation of `threshold` bytes or more; False where that cannot be set."""
    if "MALLOC_MMAP_THRESHOLD_" in os.environ or platform.libc_ver()[0] != "glibc":
        return False
    mallopt = getattr(ctypes.CDLL(None), "mallopt", None)
    return bool(mallopt and mallopt(M_MMAP_THRESHOLD, int(threshold)))


def peak_rss_mb():
    """This process's peak resident set size in MB (Linux reports kB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0
