"""Blob: output_data / output_diff hand a layer the blob's own array to compute into
when it can take the result, and a new one when it cannot (read-only, strided,
another dtype, or memory the layer still reads)."""
import numpy as np

from dualnet.blob import Blob


def test_output_data_is_the_current_array_when_it_can_take_the_result():
    blob = Blob((2, 3))
    current = blob.data
    assert blob.output_data(np.ones((2, 3), np.float32)) is current


def test_output_data_is_new_when_the_current_array_is_read_only():
    blob = Blob((2, 3))
    frozen = np.zeros((2, 3), np.float32)
    frozen.flags.writeable = False
    blob.data = frozen
    out = blob.output_data()
    assert out is not frozen and blob.data is out and out.shape == (2, 3) and out.flags.writeable


def test_output_data_is_new_when_it_shares_memory_with_what_is_read():
    # an in-place layer whose bottom array another blob may hold (a Split's tops share one)
    blob = Blob((4,))
    x = blob.data
    out = blob.output_data(x)
    assert out is not x and not np.shares_memory(out, x)


def test_output_data_is_new_when_the_current_array_is_strided():
    blob = Blob()
    blob.data = np.zeros((4, 6), np.float32)[:, ::2]
    out = blob.output_data()
    assert out.flags.c_contiguous and out.shape == (4, 3)


def test_output_data_takes_the_dtype_of_what_is_read():
    blob = Blob((3,))                               # float32
    out = blob.output_data(np.ones(3, np.float64))
    assert out.dtype == np.float64 and blob.data is out


def test_output_diff_has_the_data_shape_even_if_the_old_diff_had_another():
    blob = Blob((2, 2))
    blob.diff = np.zeros(7, np.float32)
    out = blob.output_diff(np.ones((2, 2), np.float32))
    assert out.shape == (2, 2) and blob.diff is out
