import sys
import textwrap
import traceback

import numpy as np
import pytest

import dualnet
from dualnet.errors import DualnetError, LayerError
from dualnet.io import parse_net_text
from layer_harness import check_gradient

# A pycaffe-style Euclidean loss: half the mean squared distance, scaled by the loss weight.
EUCLIDEAN = """
import numpy as np
import dualnet


class EuclideanLossLayer(dualnet.Layer):
    def setup(self, bottom, top):
        if len(bottom) != 2:
            raise Exception("two inputs are needed")

    def reshape(self, bottom, top):
        if bottom[0].count != bottom[1].count:
            raise Exception("inputs must have the same size")
        self.difference = np.zeros_like(bottom[0].data)
        top[0].reshape(1)

    def forward(self, bottom, top):
        self.difference[...] = bottom[0].data - bottom[1].data
        top[0].data[...] = np.sum(self.difference ** 2) / bottom[0].num / 2.0

    def backward(self, top, propagate_down, bottom):
        for i, sign in ((0, 1), (1, -1)):
            if propagate_down[i]:
                bottom[i].diff[...] = sign * top[0].diff[0] * self.difference / bottom[i].num
"""

LOSS_NET = """
name: "pyloss" force_backward: true
layer { name: "input" type: "Input" top: "a" top: "b" input_param { shape { dim: 3 dim: 4 } } }
layer {
  name: "loss" type: "Python" bottom: "a" bottom: "b" top: "loss"
  python_param { module: "%s" layer: "%s" param_str: "%s" }
  loss_weight: %s
}
"""


@pytest.fixture
def user_module(tmp_path, monkeypatch):
    """write(name, source, folder=tmp_path) -> path; the folder goes on sys.path unless told not to."""
    written = []

    def write(name, source, folder=None, on_path=True):
        folder = folder or tmp_path
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / f"{name}.py"
        path.write_text(textwrap.dedent(source))
        if on_path:
            monkeypatch.syspath_prepend(str(folder))
        written.append(name)
        return path

    yield write
    for name in written:
        sys.modules.pop(name, None)


def make_net(text, path="x.prototxt"):
    param, origin = parse_net_text(text, str(path))
    return dualnet.Net(param, dualnet.TRAIN, origin=origin)


def test_euclidean_loss_forward_and_backward_through_a_net(user_module):
    user_module("pyloss_euclid", EUCLIDEAN)
    net = make_net(LOSS_NET % ("pyloss_euclid", "EuclideanLossLayer", "", 1))
    rng = np.random.default_rng(0)
    a, b = rng.standard_normal((3, 4)), rng.standard_normal((3, 4))
    out = net.forward(a=a, b=b)
    assert float(out["loss"][0]) == pytest.approx(((a - b) ** 2).sum() / 6, rel=1e-5)
    diffs = net.backward(diffs=["a", "b"])
    np.testing.assert_allclose(diffs["a"], (a - b) / 3, rtol=1e-5)
    np.testing.assert_allclose(diffs["b"], -(a - b) / 3, rtol=1e-5)


def test_loss_weight_reaches_the_user_backward(user_module):
    user_module("pyloss_weighted", EUCLIDEAN)
    net = make_net(LOSS_NET % ("pyloss_weighted", "EuclideanLossLayer", "", 2.5))
    a, b = np.ones((3, 4)), np.zeros((3, 4))
    net.forward(a=a, b=b)
    assert net.loss == pytest.approx(2.5 * 12 / 6)
    np.testing.assert_allclose(net.backward(diffs=["a"])["a"], 2.5 * (a - b) / 3)


def test_matches_the_builtin_euclidean_loss_in_finite_differences(user_module):
    user_module("pyloss_fd", EUCLIDEAN)
    rng = np.random.default_rng(1)
    check_gradient('type: "Python" python_param { module: "pyloss_fd" layer: "EuclideanLossLayer" }',
                   [rng.standard_normal((2, 3)), rng.standard_normal((2, 3))], num_tops=1, check_bottoms=[0, 1])


SCALE = """
import dualnet


class Scale(dualnet.Layer):
    def setup(self, bottom, top):
        self.seen_in_setup = self.param_str
        self.factor = float(self.param_str)

    def reshape(self, bottom, top):
        top[0].reshape(*bottom[0].shape)

    def forward(self, bottom, top):
        top[0].data = bottom[0].data * self.factor

    def backward(self, top, propagate_down, bottom):
        if propagate_down[0]:
            bottom[0].diff = top[0].diff * self.factor
"""

SCALE_NET = """
name: "pyscale"
layer { name: "input" type: "Input" top: "x" input_param { shape { dim: 2 dim: 3 } } }
layer { name: "scale" type: "Python" bottom: "x" top: "y"
        python_param { module: "%s" layer: "%s" param_str: "%s" } }
"""


def test_param_str_and_phase_are_set_before_setup(user_module):
    user_module("pyparam_scale", SCALE)
    net = make_net(SCALE_NET % ("pyparam_scale", "Scale", "3"))
    user = net.layer_dict["scale"]._user
    assert user.seen_in_setup == "3"
    assert user.phase == dualnet.TRAIN
    np.testing.assert_allclose(net.forward(x=np.ones((2, 3)))["y"], 3 * np.ones((2, 3)))


def test_gradient_of_a_layer_without_loss(user_module):
    user_module("pyparam_grad", SCALE)
    check_gradient('type: "Python" python_param { module: "pyparam_grad" layer: "Scale" param_str: "-1.5" }',
                   [np.random.default_rng(2).standard_normal((2, 3))])


def test_plain_class_with_pycaffe_constructor(user_module):
    user_module("pyplain_ctor", """
        class Double:
            def __init__(self, layer_param):
                self.layer_name = layer_param.name

            def setup(self, bottom, top):
                pass

            def reshape(self, bottom, top):
                top[0].reshape(bottom[0].shape)

            def forward(self, bottom, top):
                top[0].data[...] = 2 * bottom[0].data

            def backward(self, top, propagate_down, bottom):
                pass
        """)
    net = make_net(SCALE_NET % ("pyplain_ctor", "Double", ""))
    assert net.layer_dict["scale"]._user.layer_name == "scale"
    np.testing.assert_allclose(net.forward(x=np.ones((2, 3)))["y"], 2 * np.ones((2, 3)))


def test_parameters_from_add_blob_are_learnable(user_module):
    user_module("pyparam_blobs", """
        import dualnet

        class Bias(dualnet.Layer):
            def setup(self, bottom, top):
                self.blobs.add_blob(bottom[0].shape[1])
                self.blobs[0].data[...] = 0.5

            def reshape(self, bottom, top):
                top[0].reshape(bottom[0].shape)

            def forward(self, bottom, top):
                top[0].data = bottom[0].data + self.blobs[0].data

            def backward(self, top, propagate_down, bottom):
                self.blobs[0].diff += top[0].diff.sum(axis=0)
                if propagate_down[0]:
                    bottom[0].diff = top[0].diff.copy()
        """)
    net = make_net(SCALE_NET % ("pyparam_blobs", "Bias", ""))
    assert [b.shape for b in net.params["scale"]] == [(3,)]
    assert net.params["scale"][0] in net.learnable_params
    np.testing.assert_allclose(net.forward(x=np.zeros((2, 3)))["y"], 0.5)


def test_module_next_to_the_prototxt_is_found(user_module, tmp_path, monkeypatch):
    models = tmp_path / "models"
    user_module("pyfolder_scale", SCALE, folder=models, on_path=False)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    net = make_net(SCALE_NET % ("pyfolder_scale", "Scale", "2"), models / "net.prototxt")
    np.testing.assert_allclose(net.forward(x=np.ones((2, 3)))["y"], 2.0)
    assert str(models) not in sys.path


def test_module_in_the_current_directory_is_found(user_module, tmp_path, monkeypatch):
    here = tmp_path / "here"
    user_module("pycwd_scale", SCALE, folder=here, on_path=False)
    monkeypatch.chdir(here)
    net = make_net(SCALE_NET % ("pycwd_scale", "Scale", "4"), tmp_path / "models" / "net.prototxt")
    np.testing.assert_allclose(net.forward(x=np.ones((2, 3)))["y"], 4.0)


def test_missing_module_names_the_module_and_folders(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    prototxt = tmp_path / "models" / "net.prototxt"
    with pytest.raises(DualnetError) as info:
        make_net(SCALE_NET % ("no_such_layer_module", "Scale", ""), prototxt)
    message = str(info.value)
    assert "cannot import Python layer module 'no_such_layer_module'" in message
    assert str(tmp_path / "models") in message and str(tmp_path) in message
    assert "layer 'scale' (Python)" in message


def test_missing_class_suggests_the_nearest(user_module):
    user_module("pyclass_missing", SCALE)
    with pytest.raises(DualnetError, match="has no class 'Scael'; did you mean 'Scale'"):
        make_net(SCALE_NET % ("pyclass_missing", "Scael", "1"))


def test_class_without_forward_is_refused(user_module):
    user_module("pyno_forward", """
        import dualnet

        class Half(dualnet.Layer):
            def reshape(self, bottom, top):
                top[0].reshape(bottom[0].shape)
        """)
    with pytest.raises(DualnetError, match=r"pyno_forward.Half must define forward\(\)"):
        make_net(SCALE_NET % ("pyno_forward", "Half", ""))


def test_failing_import_inside_the_user_module_is_not_hidden(user_module):
    path = user_module("pybroken_import", "import a_package_that_is_not_installed\n")
    with pytest.raises(ModuleNotFoundError, match="a_package_that_is_not_installed") as info:
        make_net(SCALE_NET % ("pybroken_import", "Scale", ""))
    assert str(path) in [frame.filename for frame in traceback.extract_tb(info.value.__traceback__)]


BOOM = """
import dualnet


class Boom(dualnet.Layer):
    def reshape(self, bottom, top):
        top[0].reshape(bottom[0].shape)

    def forward(self, bottom, top):
        raise ValueError("user code failed on purpose")
"""


def test_user_exception_surfaces_with_the_user_traceback(user_module):
    path = user_module("pyboom_forward", BOOM)
    net = make_net(SCALE_NET % ("pyboom_forward", "Boom", ""))
    with pytest.raises(ValueError, match="user code failed on purpose") as info:
        net.forward(x=np.ones((2, 3)))
    frames = traceback.extract_tb(info.value.__traceback__)
    assert frames[-1].filename == str(path) and frames[-1].name == "forward"
    assert any("Python layer 'scale'" in note for note in getattr(info.value, "__notes__", []))


def test_user_exception_in_setup_surfaces_unchanged(user_module):
    path = user_module("pyboom_setup", """
        import dualnet

        class Picky(dualnet.Layer):
            def setup(self, bottom, top):
                raise KeyError("param_str needs a key")

            def reshape(self, bottom, top):
                pass

            def forward(self, bottom, top):
                pass
        """)
    with pytest.raises(KeyError) as info:
        make_net(SCALE_NET % ("pyboom_setup", "Picky", ""))
    assert traceback.extract_tb(info.value.__traceback__)[-1].filename == str(path)


def test_user_layer_error_gets_the_net_location(user_module):
    user_module("pylayer_error", """
        import dualnet
        from dualnet.errors import LayerError

        class Strict(dualnet.Layer):
            def reshape(self, bottom, top):
                raise LayerError("needs a 4-D input")

            def forward(self, bottom, top):
                pass
        """)
    with pytest.raises(DualnetError, match=r"x.prototxt:\d+: layer 'scale' \(Python\): needs a 4-D input"):
        make_net(SCALE_NET % ("pylayer_error", "Strict", ""))


def test_missing_module_or_layer_field_is_refused():
    with pytest.raises(DualnetError, match="python_param needs both module"):
        make_net(SCALE_NET % ("", "Scale", ""))


def test_backward_without_user_backward_is_refused(user_module):
    user_module("pyno_backward", """
        class Forward:
            def reshape(self, bottom, top):
                top[0].reshape(bottom[0].shape)

            def forward(self, bottom, top):
                top[0].data = bottom[0].data.copy()
        """)
    net = make_net(SCALE_NET % ("pyno_backward", "Forward", ""))
    layer = net.layer_dict["scale"]
    with pytest.raises(LayerError, match="defines no backward"):
        layer.backward([net.blobs["y"]], [True], [net.blobs["x"]])


def test_loss_layer_subclass_is_a_loss_without_loss_weight(user_module):
    user_module("pyloss_subclass", """
        import numpy as np
        from dualnet.layer import LossLayer

        class MeanAbsolute(LossLayer):
            def forward(self, bottom, top):
                top[0].data = np.asarray(np.abs(bottom[0].data - bottom[1].data).mean())
        """)
    net = make_net("""
        name: "pyloss2"
        layer { name: "input" type: "Input" top: "a" top: "b" input_param { shape { dim: 2 dim: 2 } } }
        layer { name: "loss" type: "Python" bottom: "a" bottom: "b"
                python_param { module: "pyloss_subclass" layer: "MeanAbsolute" } }
        """)
    net.forward(a=np.ones((2, 2)), b=np.zeros((2, 2)))
    assert net.loss == pytest.approx(1.0)


def test_declared_blob_counts_are_checked(user_module):
    user_module("pycounts", """
        import dualnet

        class TwoInputs(dualnet.Layer):
            exact_num_bottom = 2

            def reshape(self, bottom, top):
                pass

            def forward(self, bottom, top):
                pass
        """)
    with pytest.raises(DualnetError, match="Python takes 2 blobs as bottom, got 1"):
        make_net(SCALE_NET % ("pycounts", "TwoInputs", ""))
