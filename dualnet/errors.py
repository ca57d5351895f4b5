"""The exceptions dualnet raises for things a user can fix.

Each carries the file, line, layer or peer it concerns, so that the command
line can print it as one line and exit 1; any other exception is a bug.
"""


class DualnetError(Exception):
    """Base class: a problem with the user's input or environment."""


class PrototxtError(DualnetError):
    """A prototxt that does not parse: names file:line:column."""

    def __init__(self, path, line, column, message):
        self.path, self.line, self.column = path, line, column
        if not line:
            where = f"{path}"
        elif column:
            where = f"{path}:{line}:{column}"
        else:
            where = f"{path}:{line}"
        super().__init__(f"{where}: {message}")


class LayerError(DualnetError):
    """A layer's parameters or inputs are wrong.

    Layers raise it with just the reason, and `field` when one field of the
    LayerParameter is at fault ("type", "inner_product_param.axis"); the net
    adds the file, line (and that field's column), layer name and type
    before it reaches the user.
    """

    def __init__(self, message, field=None):
        super().__init__(message)
        self.field = field


class NetError(DualnetError):
    """A net that cannot be built: unknown bottom, duplicate top, shapes, ..."""


class WeightsError(DualnetError):
    """A .caffemodel that does not fit the net it is copied into."""


class SolverError(DualnetError):
    """A solver prototxt or snapshot that cannot be used."""


class DataError(DualnetError):
    """A data source that is missing or malformed."""


class NumericalError(DualnetError):
    """Training produced NaN or Inf: names the iteration and the layer."""


class PeerError(DualnetError):
    """The other half of a dual net is gone, silent or misbehaving."""


class ProtocolError(PeerError):
    """A message from the peer failed validation; it was not unpacked."""


class KernelError(DualnetError):
    """The HBNN kernel was called with arguments it cannot take."""


def nearest(name, candidates):
    """The candidate closest to a misspelled `name`, or None."""
    import difflib

    matches = difflib.get_close_matches(name, list(candidates), n=1, cutoff=0.6)
    if not matches:
        lowered = {c.lower(): c for c in candidates}
        matches = difflib.get_close_matches(name.lower(), list(lowered), n=1, cutoff=0.6)
        matches = [lowered[m] for m in matches]
    return matches[0] if matches else None


def did_you_mean(name, candidates):
    """'; did you mean X?' for a misspelling, or ''."""
    guess = nearest(name, candidates)
    return f"; did you mean '{guess}'?" if guess else ""
