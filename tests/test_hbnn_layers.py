"""HBNNInnerProduct and HBNNConvolution: forward against loop math, the gradient split into
its alpha/beta terms (finite differences where the signs are locally constant) and its
straight-through term (computed here from dC/dW~), packed weights, bad hbnn_param."""
import numpy as np
import pytest

from dualnet.errors import LayerError
from dualnet.hbnn import kernel
from dualnet.io.blobproto import proto_array
from layer_harness import build, check_gradient, check_param_diffs_accumulate, forward

SEGMENT_SIZES = (0, 8, 16, 32, 64)


# ---------------------------------------------------------------- independent math

def loop_binarize(rows, segment_size):
    """alpha (.) sign(rows), alpha = mean |.| per segment, with plain loops (sign(0) = +1)."""
    rows = np.asarray(rows, dtype=np.float64)
    K = rows.shape[1]
    step = K if segment_size == 0 else segment_size
    out = np.empty_like(rows)
    for r in range(rows.shape[0]):
        for start in range(0, K, step):
            segment = rows[r, start:start + step]
            alpha = sum(abs(v) for v in segment) / len(segment)
            out[r, start:start + step] = [alpha if v >= 0 else -alpha for v in segment]
    return out


def away_from_zero(shape, seed, low=0.2, high=1.6):
    """Random signs times magnitudes in [low, high]: no sign flips under finite differences,
    and with high > 1 some entries are past the default clip."""
    rng = np.random.default_rng(seed)
    return rng.choice([-1.0, 1.0], size=shape) * rng.uniform(low, high, size=shape)


def blobs_text(*arrays):
    """`blobs { ... }` entries that give a layer its weights inside the prototxt."""
    out = []
    for array in arrays:
        dims = " ".join(f"dim: {d}" for d in array.shape)
        out.append(f"blobs {{ shape {{ {dims} }} " + " ".join(f"data: {float(v)!r}" for v in array.ravel()) + " }")
    return "\n".join(out)


def ip_text(hbnn="", blobs=""):
    return f"""
    name: "ip" type: "HBNNInnerProduct"
    inner_product_param {{ num_output: 3 weight_filler {{ type: "gaussian" std: 0.5 }}
                          bias_filler {{ type: "uniform" min: -1 max: 1 }} }}
    hbnn_param {{ {hbnn} }}
    {blobs}"""


CONV_GEOMETRY = "kernel_size: 3 stride: 2 pad: 1 group: 2"


def conv_text(hbnn="", blobs="", geometry=CONV_GEOMETRY):
    return f"""
    name: "conv" type: "HBNNConvolution"
    convolution_param {{ num_output: 4 {geometry} weight_filler {{ type: "gaussian" std: 0.5 }}
                        bias_filler {{ type: "uniform" min: -1 max: 1 }} }}
    hbnn_param {{ {hbnn} }}
    {blobs}"""


def ip_reference(x, W, b, segment_size, binarize_input):
    rows = x.reshape(x.shape[0], -1)
    if binarize_input:
        rows = loop_binarize(rows, 0)
    W_binary = loop_binarize(W, segment_size)
    return np.array([[sum(rows[m, k] * W_binary[n, k] for k in range(rows.shape[1])) + b[n]
                      for n in range(W.shape[0])] for m in range(rows.shape[0])])


def patches(x, kernel_hw, stride, pad, dilation, group):
    """p[n, g, i, j] = the (C/G, KH, KW) input window of output (i, j), group g (zero padded)."""
    N, C, H, W = x.shape
    KH, KW = kernel_hw
    xpad = np.pad(x, ((0, 0), (0, 0), (pad, pad), (pad, pad)))
    OH = (H + 2 * pad - dilation * (KH - 1) - 1) // stride + 1
    OW = (W + 2 * pad - dilation * (KW - 1) - 1) // stride + 1
    Cg = C // group
    out = np.empty((N, group, OH, OW, Cg, KH, KW))
    for n in range(N):
        for g in range(group):
            for i in range(OH):
                for j in range(OW):
                    out[n, g, i, j] = xpad[n, g * Cg:(g + 1) * Cg,
                                           i * stride:i * stride + dilation * (KH - 1) + 1:dilation,
                                           j * stride:j * stride + dilation * (KW - 1) + 1:dilation]
    return out


def binarize_patches(p):
    """beta (.) sign(patch), beta = mean |patch| (padding zeros included, sign(0) = +1)."""
    flat = p.reshape(-1, int(np.prod(p.shape[-3:])))
    return loop_binarize(flat, 0).reshape(p.shape)


def conv_reference(x, W, b, segment_size, binarize_input, stride=2, pad=1, dilation=1, group=2):
    O = W.shape[0]
    W_binary = loop_binarize(W.reshape(O, -1), segment_size).reshape(W.shape)
    p = patches(x, W.shape[2:], stride, pad, dilation, group)
    if binarize_input:
        p = binarize_patches(p)
    N, _, OH, OW = p.shape[:4]
    y = np.empty((N, O, OH, OW))
    for n in range(N):
        for o in range(O):
            for i in range(OH):
                for j in range(OW):
                    y[n, o, i, j] = (p[n, o // (O // group), i, j] * W_binary[o]).sum() + b[o]
    return y


# ---------------------------------------------------------------- forward

@pytest.mark.parametrize("binarize_input", [False, True])
@pytest.mark.parametrize("s", SEGMENT_SIZES)
def test_inner_product_forward_matches_loop_math(s, binarize_input):
    # K = 70: not a multiple of any segment size (a short last segment)
    x = np.random.default_rng(s).standard_normal((4, 7, 10))
    layer, bottom, top = build(ip_text(f"segment_size: {s} binarize_input: {str(binarize_input).lower()}"), [x])
    W, b = layer.blobs[0].data, layer.blobs[1].data
    (y,) = forward(layer, bottom, top)
    np.testing.assert_allclose(y, ip_reference(x, W, b, s, binarize_input), rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("binarize_input", [False, True])
@pytest.mark.parametrize("s", SEGMENT_SIZES)
def test_convolution_forward_matches_loop_math_with_groups_stride_pad(s, binarize_input):
    # K = C/G * 3 * 3 = 18 weights per row: segments of 8 are 8, 8, 2
    x = np.random.default_rng(10 + s).standard_normal((2, 4, 6, 5))
    layer, bottom, top = build(conv_text(f"segment_size: {s} binarize_input: {str(binarize_input).lower()}"), [x])
    W, b = layer.blobs[0].data, layer.blobs[1].data
    (y,) = forward(layer, bottom, top)
    assert y.shape == (2, 4, 3, 3)
    np.testing.assert_allclose(y, conv_reference(x, W, b, s, binarize_input), rtol=1e-12, atol=1e-12)


def test_convolution_forward_with_dilation_matches_loop_math():
    x = np.random.default_rng(3).standard_normal((1, 4, 7, 7))
    geometry = "kernel_size: 2 stride: 1 pad: 1 dilation: 2 group: 2"
    layer, bottom, top = build(conv_text("segment_size: 8 binarize_input: true", geometry=geometry), [x])
    (y,) = forward(layer, bottom, top)
    expected = conv_reference(x, layer.blobs[0].data, layer.blobs[1].data, 8, True, stride=1, pad=1, dilation=2)
    np.testing.assert_allclose(y, expected, rtol=1e-12, atol=1e-12)


@pytest.fixture
def gemm_calls(monkeypatch):
    """Count the calls of the kernel's XOR/popcount GEMM."""
    calls = []
    original = kernel.binary_gemm

    def counting(*args, **kwargs):
        calls.append(args[4])  # K
        return original(*args, **kwargs)

    monkeypatch.setattr(kernel, "binary_gemm", counting)
    return calls


@pytest.mark.parametrize("s", SEGMENT_SIZES)
def test_inner_product_binary_input_float32_runs_the_kernel_and_matches_float_math(s, gemm_calls):
    x = np.random.default_rng(20 + s).standard_normal((5, 130))
    layer, bottom, top = build(ip_text(f"segment_size: {s} binarize_input: true"), [x], dtype=np.float32)
    (y,) = forward(layer, bottom, top)
    assert gemm_calls == [130] and y.dtype == np.float32
    W, b = layer.blobs[0].data, layer.blobs[1].data
    expected = ip_reference(x.astype(np.float32), W, b, s, True)
    np.testing.assert_allclose(y, expected, rtol=1e-5, atol=1e-5 * np.abs(expected).max())


@pytest.mark.parametrize("s", SEGMENT_SIZES)
def test_convolution_binary_input_float32_runs_the_kernel_and_matches_float_math(s, gemm_calls):
    x = np.random.default_rng(30 + s).standard_normal((2, 4, 6, 5))
    layer, bottom, top = build(conv_text(f"segment_size: {s} binarize_input: true"), [x], dtype=np.float32)
    (y,) = forward(layer, bottom, top)
    assert gemm_calls == [18, 18] and y.dtype == np.float32  # one GEMM per group
    expected = conv_reference(x.astype(np.float32), layer.blobs[0].data, layer.blobs[1].data, s, True)
    np.testing.assert_allclose(y, expected, rtol=1e-5, atol=1e-5 * np.abs(expected).max())


def test_float_inputs_do_not_run_the_kernel(gemm_calls):
    x = np.random.default_rng(4).standard_normal((2, 4, 6, 5))
    layer, bottom, top = build(conv_text("segment_size: 16"), [x], dtype=np.float32)
    (y,) = forward(layer, bottom, top)
    assert gemm_calls == []
    expected = conv_reference(x.astype(np.float32), layer.blobs[0].data, layer.blobs[1].data, 16, False)
    np.testing.assert_allclose(y, expected, rtol=1e-5, atol=1e-6)


# ---------------------------------------------------------------- gradient

# every segment size on each layer; K = 70 inputs per weight row of the inner product
IP_CASES = [("segment_size: 8", False), ("segment_size: 0 binarize_input: true", True),
            ("segment_size: 16 binarize_input: true", True), ("segment_size: 32 binarize_input: true", True),
            ("segment_size: 64", False)]
# (hbnn_param, binarize_input, input channels): 4 channels give K = 2 * 3 * 3 = 18 weights per row
# (segments of 8: 8, 8, 2); 16 channels give K = 72 (segments of 32: 32, 32, 8; of 64: 64, 8)
CONV_CASES = [("segment_size: 8", False, 4), ("segment_size: 0 binarize_input: true", True, 4),
              ("segment_size: 16 binarize_input: true", True, 4), ("segment_size: 32", False, 16),
              ("segment_size: 64 binarize_input: true", True, 16)]


def ip_setup(hbnn, seed, clip="1"):
    x = away_from_zero((4, 70), seed)
    W, b = away_from_zero((3, 70), seed + 1), away_from_zero((3,), seed + 2)
    return ip_text(f"{hbnn} clip: {clip}", blobs_text(W, b)), x


def conv_setup(hbnn, seed, clip="1", channels=4):
    x = away_from_zero((2, channels, 6, 5), seed)
    W, b = away_from_zero((4, channels // 2, 3, 3), seed + 1), away_from_zero((4,), seed + 2)
    return conv_text(f"{hbnn} clip: {clip}", blobs_text(W, b)), x


@pytest.mark.parametrize("hbnn,_", IP_CASES)
def test_inner_product_alpha_terms_match_finite_differences_when_clip_is_0(hbnn, _):
    # clip 0 switches the straight-through term off (no weight or input is exactly 0):
    # what is left is the exact derivative where the signs are locally constant
    text, x = ip_setup(hbnn, 40, clip="0")
    check_gradient(text, [x])


@pytest.mark.parametrize("hbnn,_,channels", CONV_CASES)
def test_convolution_alpha_terms_match_finite_differences_when_clip_is_0(hbnn, _, channels):
    text, x = conv_setup(hbnn, 50, clip="0", channels=channels)
    check_gradient(text, [x])


def test_convolution_of_two_bottoms_sums_their_weight_gradients():
    text, x = conv_setup("segment_size: 8 binarize_input: true", 55, clip="0")
    check_gradient(text, [x, away_from_zero(x.shape, 56)], num_tops=2)


def finite_differences(layer, bottom, top, R, array, eps=1e-6):
    """d/d array of L = <top, R> by central differences, element by element."""
    grad = np.empty_like(array)
    for index in np.ndindex(array.shape):
        original = array[index]
        array[index] = original + eps
        plus = (forward(layer, bottom, top)[0] * R).sum()
        array[index] = original - eps
        minus = (forward(layer, bottom, top)[0] * R).sum()
        array[index] = original
        grad[index] = (plus - minus) / (2 * eps)
    return grad


def analytic(text, x, seed=7):
    """(layer, bottom, top, R, dW, dx) of L = <top, R> from the layer's backward."""
    layer, bottom, top = build(text, [x])
    forward(layer, bottom, top)
    R = np.random.default_rng(seed).standard_normal(top[0].shape)
    top[0].diff = R.copy()
    for blob in layer.blobs:
        blob.diff[...] = 0
    layer.backward(top, [True], bottom)
    return layer, bottom, top, R, layer.blobs[0].diff.copy(), bottom[0].diff.copy()


def ip_straight_through(x, W, R, segment_size, binarize_input, clip):
    """alpha 1{|W| <= clip} dC/dW~ and beta 1{|x| <= clip} dC/dx~, from L = <x~ W~^T, R>."""
    x_binary = loop_binarize(x, 0) if binarize_input else x
    W_binary = loop_binarize(W, segment_size)
    d_W_binary = np.einsum("mn,mk->nk", R, x_binary)
    d_x_binary = np.einsum("mn,nk->mk", R, W_binary)
    # |W~| is alpha spread over its segment, |x~| is beta over its row
    through_W = np.abs(W_binary) * (np.abs(W) <= clip) * d_W_binary
    through_x = np.abs(x_binary) * (np.abs(x) <= clip) * d_x_binary if binarize_input else None
    return through_W, through_x


def conv_straight_through(x, W, R, segment_size, binarize_input, clip, stride=2, pad=1, group=2):
    O, Cg, KH, KW = W.shape
    W_binary = loop_binarize(W.reshape(O, -1), segment_size).reshape(W.shape)
    p = patches(x, (KH, KW), stride, pad, 1, group)
    p_binary = binarize_patches(p) if binarize_input else p
    N, _, OH, OW = p.shape[:4]
    d_W_binary = np.zeros_like(W)
    through_x = np.zeros((N, x.shape[1], x.shape[2] + 2 * pad, x.shape[3] + 2 * pad))
    for n in range(N):
        for i in range(OH):
            for j in range(OW):
                for g in range(group):
                    outputs = range(g * O // group, (g + 1) * O // group)
                    d_patch = sum(R[n, o, i, j] * W_binary[o] for o in outputs)
                    for o in outputs:
                        d_W_binary[o] += R[n, o, i, j] * p_binary[n, g, i, j]
                    beta = np.abs(p_binary[n, g, i, j]).flat[0]
                    window = (n, slice(g * Cg, (g + 1) * Cg), slice(i * stride, i * stride + KH),
                              slice(j * stride, j * stride + KW))
                    through_x[window] += beta * (np.abs(p[n, g, i, j]) <= clip) * d_patch
    through_W = np.abs(W_binary) * (np.abs(W) <= clip) * d_W_binary
    return through_W, (through_x[:, :, pad:-pad, pad:-pad] if binarize_input else None)


@pytest.mark.parametrize("hbnn,binarize_input", IP_CASES)
def test_inner_product_gradient_minus_straight_through_term_matches_finite_differences(hbnn, binarize_input):
    text, x = ip_setup(hbnn, 60)
    layer, bottom, top, R, dW, dx = analytic(text, x)
    W = layer.blobs[0].data
    through_W, through_x = ip_straight_through(x, W, R, layer.segment_size, binarize_input, 1.0)
    assert np.count_nonzero(through_W) and not np.all(through_W)  # some |W| past the clip
    np.testing.assert_allclose(dW - through_W, finite_differences(layer, bottom, top, R, W), rtol=1e-6, atol=1e-7)
    fd_x = finite_differences(layer, bottom, top, R, bottom[0].data)
    np.testing.assert_allclose(dx - (through_x if binarize_input else 0), fd_x, rtol=1e-6, atol=1e-7)


@pytest.mark.parametrize("hbnn,binarize_input,channels", CONV_CASES)
def test_convolution_gradient_minus_straight_through_term_matches_finite_differences(hbnn, binarize_input, channels):
    text, x = conv_setup(hbnn, 70, channels=channels)
    layer, bottom, top, R, dW, dx = analytic(text, x)
    W = layer.blobs[0].data
    through_W, through_x = conv_straight_through(x, W, R, layer.segment_size, binarize_input, 1.0)
    np.testing.assert_allclose(dW - through_W, finite_differences(layer, bottom, top, R, W), rtol=1e-6, atol=1e-7)
    fd_x = finite_differences(layer, bottom, top, R, bottom[0].data)
    np.testing.assert_allclose(dx - (through_x if binarize_input else 0), fd_x, rtol=1e-6, atol=1e-7)


@pytest.mark.parametrize("layer_setup,straight_through", [(ip_setup, ip_straight_through),
                                                          (conv_setup, conv_straight_through)])
def test_straight_through_term_matches_direct_computation_from_d_binary(layer_setup, straight_through):
    # the gradient with clip 0.7 minus the gradient with clip 0 is the straight-through term alone
    hbnn = "segment_size: 8 binarize_input: true"
    layer, _, _, R, dW, dx = analytic(*layer_setup(hbnn, 80, clip="0.7"))
    _, _, _, _, dW_alpha, dx_beta = analytic(*layer_setup(hbnn, 80, clip="0"))
    text, x = layer_setup(hbnn, 80)
    through_W, through_x = straight_through(x, layer.blobs[0].data, R, 8, True, 0.7)
    np.testing.assert_allclose(dW - dW_alpha, through_W, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(dx - dx_beta, through_x, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("hbnn", ["segment_size: 16", "segment_size: 8 binarize_input: true"])
def test_param_diffs_accumulate(hbnn):
    x = np.random.default_rng(5).standard_normal((2, 4, 6, 5))
    check_param_diffs_accumulate(ip_text(hbnn), [x])
    check_param_diffs_accumulate(conv_text(hbnn), [x])


# ---------------------------------------------------------------- packed weights, bad parameters

@pytest.mark.parametrize("text", [ip_text("segment_size: 16"), conv_text("segment_size: 16")])
def test_packed_blob_holds_the_sign_bits_and_alpha_of_the_weights(text):
    layer, _, _ = build(text, [np.ones((2, 4, 6, 5))], dtype=np.float32)
    proto = layer.packed_blob(0)
    W = layer.blobs[0].data
    assert tuple(proto.shape.dim) == W.shape and not proto.data and proto.packed.segment_size == 16
    expected = loop_binarize(W.reshape(W.shape[0], -1), 16).astype(np.float32).reshape(W.shape)
    np.testing.assert_array_equal(proto_array(proto), expected)
    assert layer.packed_blob(1) is None  # the bias is saved as floats


@pytest.mark.parametrize("make_text", [ip_text, conv_text])
@pytest.mark.parametrize("hbnn,message", [("segment_size: 12", "segment_size must be 0"),
                                          ("segment_size: 128", "segment_size must be 0"),
                                          ("clip: -1", "clip must be >= 0"),
                                          ("clip: nan", "clip must be >= 0")])
def test_bad_hbnn_param_is_refused_at_setup(make_text, hbnn, message):
    with pytest.raises(LayerError, match=message):
        build(make_text(hbnn), [np.ones((2, 4, 6, 5))])


def test_transposed_inner_product_weights_are_refused():
    text = ip_text().replace("num_output: 3", "num_output: 3 transpose: true")
    with pytest.raises(LayerError, match="transpose"):
        build(text, [np.ones((2, 8))])
