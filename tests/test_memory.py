"""dualnet.memory: glibc maps large arrays (so freeing one returns it), unless the user said otherwise."""
import platform
import resource
import subprocess
import sys

import dualnet
from dualnet import memory


def test_large_arrays_are_mapped_on_glibc(monkeypatch):
    # in a child: the setting is process-wide
    monkeypatch.delenv("MALLOC_MMAP_THRESHOLD_", raising=False)
    child = subprocess.run([sys.executable, "-c", "from dualnet import memory; print(memory.map_large_arrays())"],
                           capture_output=True, text=True, check=True)
    assert child.stdout.strip() == str(platform.libc_ver()[0] == "glibc")


def test_a_users_own_malloc_threshold_is_left_alone(monkeypatch):
    monkeypatch.setenv("MALLOC_MMAP_THRESHOLD_", "131072")
    assert memory.map_large_arrays() is False


def test_peak_rss_is_in_megabytes():
    assert memory.peak_rss_mb() == resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def test_a_net_without_a_blob_of_32_mib_goes_back_to_the_heap(monkeypatch):
    # the threshold is process-wide: record what would be set instead of setting it
    thresholds = []

    def record(threshold, trim=None):
        thresholds.append((threshold, trim))
        return True

    monkeypatch.setattr(memory, "_set_mmap_threshold", record)
    small = dualnet.Net(net_with_input((64, 32, 28, 28)), dualnet.TRAIN)          # 6.4 MB
    large = dualnet.Net(net_with_input((1024, 32, 28, 28)), dualnet.TRAIN)        # 103 MB
    assert memory.keep_small_nets_on_the_heap(large) is False and thresholds == []
    assert memory.keep_small_nets_on_the_heap(small) is True and thresholds == [(32 << 20, 64 << 20)]


def net_with_input(shape):
    from dualnet.io import parse_net_text

    dims = " ".join(f"dim: {d}" for d in shape)
    param, _ = parse_net_text(f'layer {{ name: "x" type: "Input" top: "x" input_param {{ shape {{ {dims} }} }} }}',
                              "net.prototxt")
    return param
