"""Python: a layer written by the user in Python, with pycaffe's contract.

    layer { type: "Python" python_param { module: "my_layers" layer: "MyLoss" param_str: "..." } }

The class `layer` of module `module` (imported from sys.path, else from the
prototxt's folder, else the current directory) is instantiated once; it
subclasses dualnet.Layer (constructed with (param, phase, source_dir)) or is
any class with pycaffe's methods (constructed with the LayerParameter when its
constructor takes an argument, as pycaffe does, else with none). Before
setup it gets `param_str` and `phase`, and `blobs` (a list with pycaffe's
`add_blob(*shape)`) when it has none. A dualnet.Layer subclass may declare
blob counts and a default loss weight (e.g. by subclassing dualnet.layer.LossLayer). Then the Net calls, as in pycaffe:

    setup(bottom, top)   reshape(bottom, top)   forward(bottom, top)
    backward(top, propagate_down, bottom)

with dualnet Blobs (.data, .diff, .reshape(*shape), .num, .count). The user's
exceptions propagate unchanged, with the user's frames in the traceback and a
note naming the layer. A top with `loss_weight` set in the prototxt makes the
layer a loss, as in pycaffe; its backward finds the weight in top[k].diff.
"""
import importlib
import inspect
import os
import sys

from ..blob import Blob
from ..errors import DualnetError, LayerError, did_you_mean
from ..layer import Layer, register


class ParamBlobs(list):
    """A Python layer's parameter blobs; pycaffe's `self.blobs.add_blob(*shape)` works."""

    def add_blob(self, *shape):
        blob = Blob(shape[0] if len(shape) == 1 and isinstance(shape[0], (tuple, list)) else shape)
        self.append(blob)
        return blob


def import_user_module(module_name, places):
    """Import `module_name` from sys.path, else from the first folder in `places`
    ([(description, folder)]) that has it."""
    try:
        return importlib.import_module(module_name)
    except ModuleNotFoundError as error:
        if not _is_the_module(error, module_name):
            raise  # the user's module was found but one of its own imports failed
    searched = []
    for description, folder in places:
        if not folder or any(folder == f for _, f in searched):
            continue
        searched.append((description, folder))
        sys.path.insert(0, folder)
        try:
            importlib.invalidate_caches()
            return importlib.import_module(module_name)
        except ModuleNotFoundError as error:
            if not _is_the_module(error, module_name):
                raise
        finally:
            sys.path.remove(folder)
    places_tried = ["on sys.path (PYTHONPATH)"] + [f"in {description} {folder}" for description, folder in searched]
    where = " or ".join([", ".join(places_tried[:-1]), places_tried[-1]]) if len(places_tried) > 1 else places_tried[0]
    raise LayerError(
        f"cannot import Python layer module '{module_name}': not found {where}; "
        f"put {module_name.replace('.', '/')}.py next to the prototxt or add its folder to PYTHONPATH"
    )


def _is_the_module(error, module_name):
    """True when `error` says `module_name` (or a package above it) does not exist."""
    parts = module_name.split(".")
    return error.name in {".".join(parts[: i + 1]) for i in range(len(parts))}


CONTRACT = ("exact_num_bottom", "min_bottom", "max_bottom", "exact_num_top", "min_top", "max_top",
            "equal_num_bottom_top", "auto_top_blobs", "default_loss_weight")


@register("Python")
class Python(Layer):
    def __init__(self, param, phase=None, source_dir=None):
        self._user = None
        super().__init__(param, phase, source_dir)
        p = param.python_param
        if not p.module or not p.layer:
            raise LayerError("python_param needs both module (a Python module name) and layer (a class in it)")
        self.qualified_name = f"{p.module}.{p.layer}"
        module = self._noting("importing its module", import_user_module, p.module,
                             [("the prototxt's folder", source_dir), ("the current directory", os.getcwd())])
        cls = getattr(module, p.layer, None)
        if cls is None:
            classes = [n for n, v in vars(module).items() if inspect.isclass(v) and not n.startswith("_")]
            raise LayerError(
                f"module '{p.module}' ({getattr(module, '__file__', '?')}) has no class '{p.layer}'"
                f"{did_you_mean(p.layer, classes)}"
            )
        for method in ("reshape", "forward"):
            if not callable(getattr(cls, method, None)) or getattr(cls, method) is getattr(Layer, method):
                raise LayerError(f"Python layer class {self.qualified_name} must define {method}()")
        self._user = self._noting("constructing it", self._construct, cls, param, phase, source_dir)
        user = self._user
        user.param_str = p.param_str
        user.phase = phase
        if isinstance(user, Layer):
            # A dualnet.Layer subclass declares its blob counts and loss weight as built-in layers do.
            user.type = "Python"
            for name in CONTRACT:
                setattr(self, name, getattr(user, name))
        if not isinstance(getattr(user, "blobs", None), list) or not user.blobs:
            user.blobs = ParamBlobs()
        self.blobs = user.blobs

    @staticmethod
    def _construct(cls, param, phase, source_dir):
        if isinstance(cls, type) and issubclass(cls, Layer):
            return cls(param, phase, source_dir)
        try:
            takes_param = any(
                p.default is p.empty and p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)
                for p in inspect.signature(cls).parameters.values()
            )
        except (TypeError, ValueError):
            takes_param = False
        return cls(param) if takes_param else cls()

    def _noting(self, doing, function, *args):
        """Call user code; its exceptions go up unchanged, noted with this layer's name."""
        try:
            return function(*args)
        except DualnetError:
            raise
        except Exception as error:
            if hasattr(error, "add_note"):
                error.add_note(f"(while {doing} for Python layer '{self.name}', {self.qualified_name})")
            raise

    # The Net sets which parameters learn; the user's object sees the same list.
    @property
    def param_propagate_down(self):
        return self._param_propagate_down

    @param_propagate_down.setter
    def param_propagate_down(self, value):
        self._param_propagate_down = value
        if self._user is not None:
            self._user.param_propagate_down = value

    def setup(self, bottom, top):
        if hasattr(self._user, "setup"):
            self._noting("running setup()", self._user.setup, bottom, top)
        self.blobs = self._user.blobs

    def load_blobs_from_param(self):
        loaded = super().load_blobs_from_param()
        if loaded:
            self._user.blobs[:] = self.blobs
            self.blobs = self._user.blobs
        return loaded

    def reshape(self, bottom, top):
        self._noting("running reshape()", self._user.reshape, bottom, top)

    def forward(self, bottom, top):
        self._noting("running forward()", self._user.forward, bottom, top)

    def backward(self, top, propagate_down, bottom):
        backward = getattr(self._user, "backward", None)
        if backward is None or getattr(type(self._user), "backward", None) is Layer.backward:
            if any(propagate_down):
                raise LayerError(f"Python layer class {self.qualified_name} defines no backward()")
            return
        self._noting("running backward()", backward, top, propagate_down, bottom)

    def allow_force_backward(self, bottom_index):
        allow = getattr(self._user, "allow_force_backward", None)
        return allow(bottom_index) if callable(allow) else True
