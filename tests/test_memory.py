"""dualnet.memory: glibc maps large arrays (so freeing one returns it), unless the user said otherwise."""
import platform
import resource

from dualnet import memory


def test_large_arrays_are_mapped_on_glibc(monkeypatch):
    monkeypatch.delenv("MALLOC_MMAP_THRESHOLD_", raising=False)
    assert memory.map_large_arrays() is (platform.libc_ver()[0] == "glibc")


def test_a_users_own_malloc_threshold_is_left_alone(monkeypatch):
    monkeypatch.setenv("MALLOC_MMAP_THRESHOLD_", "131072")
    assert memory.map_large_arrays() is False


def test_peak_rss_is_in_megabytes():
    assert memory.peak_rss_mb() == resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
