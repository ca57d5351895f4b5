"""Read prototxt files into NetParameter / SolverParameter with useful errors.

A parse error names file:line:column, the layer it occurred in, and the
nearest valid field or enum value when a name is misspelled. Legacy formats
are upgraded on load as Caffe does (V1 `layers`, deprecated net inputs, data
transformation fields); a file mixing `layer` and `layers` is refused.
"""
import os
import re
from typing import NamedTuple

from google.protobuf import text_format

from .. import dualnet_pb2 as pb
from ..errors import PrototxtError, did_you_mean, nearest
from .upgrade import UpgradeError, upgrade_net, upgrade_solver


class Origin:
    """Where a net came from: its file and the line of each layer block.

    `block_lines[i]` is the line of the i-th layer of the (upgraded)
    NetParameter, so layers that share a name across phases keep their own
    lines; `layer_lines` maps a name to its first line. `block_fields[i]`
    maps a field path inside that block ("type", "bottom",
    "inner_product_param.axis") to the (line, column) of each occurrence.
    """

    def __init__(self, path=None, layer_lines=None, fallback_line=None, block_lines=None, block_fields=None):
        self.path = path
        self.layer_lines = dict(layer_lines or {})
        self.fallback_line = fallback_line
        self.block_lines = list(block_lines or [])
        self.block_fields = list(block_fields or [])

    @property
    def folder(self):
        return os.path.dirname(os.path.abspath(self.path)) if self.path else None

    def line_of(self, layer_name):
        return self.layer_lines.get(layer_name, self.fallback_line)

    def where(self, layer_name=None):
        """'file:line' for a layer (or just the file), as errors print it."""
        path = self.path or "<net>"
        line = self.line_of(layer_name) if layer_name is not None else None
        return f"{path}:{line}" if line else path


# ---------------------------------------------------------------- scanning

_TOKEN = re.compile(
    r"""(?P<comment>\#[^\n]*)
      | (?P<string>"(?:[^"\\\n]|\\.)*"|'(?:[^'\\\n]|\\.)*')
      | (?P<open>[{<])
      | (?P<close>[}>])
      | (?P<number>-?\.?\d(?:[eE][-+]?\d|[\w.])*)
      | (?P<ident>[A-Za-z_][A-Za-z0-9_.]*)
      | (?P<newline>\n)
      | (?P<other>.)""",
    re.VERBOSE,
)


class Block(NamedTuple):
    """A top-level `layer { ... }` (or `layers`) block of a prototxt."""

    field: str
    start: int                  # line of the block's field name
    end: int                    # line of its closing brace
    name: str | None            # its `name:` value, when given
    fields: dict                # field path -> [(line, column)], in file order
    type: str | None = None     # its `type:` string, when given


def scan_blocks(text, field_names=("layer", "layers")):
    """Top-level blocks of `field_names`, as Block tuples.

    A light tokenizer (strings, comments, braces) that tolerates text that
    does not parse, so it can also place a parse error inside its layer, and
    a build error at the field it concerns.
    """
    blocks = []
    depth, line, line_start = 0, 1, 0
    pending = None        # (field, line) waiting for its '{'
    current = None        # [field, start, end, name, fields, type]
    expect = None         # saw `name` or `type` at depth 1, waiting for its string
    path = []             # names of the messages open inside the current block
    last_field = None     # the field name a following '{' opens
    in_value = False      # after ':', until the value ends
    in_list = False       # inside `[ ... ]`
    for match in _TOKEN.finditer(text):
        kind = match.lastgroup
        value = match.group()
        if kind == "newline":
            line, line_start = line + 1, match.end()
            continue
        if kind == "comment" or (kind == "other" and value.isspace()):
            continue
        if kind == "string":
            if "\n" in value:
                line, line_start = line + value.count("\n"), match.start() + value.rfind("\n") + 1
            slot = {"name": 3, "type": 5}.get(expect)
            if slot and current is not None and current[slot] is None:
                current[slot] = value[1:-1]
            expect = None
            in_value = in_list
            continue
        if kind == "other":
            if value == ":":
                in_value = True
            elif value == "[" and in_value:
                in_list = True
            elif value == "]":
                in_list = in_value = False
            elif value != "-" and value != ",":
                in_value = in_list
            continue
        if kind == "open":
            if depth == 0 and pending is not None:
                current = [pending[0], pending[1], None, None, {}, None]
            elif current is not None:
                path.append(last_field or "?")      # "?": a brace with no field name (text that will not parse)
            pending = last_field = expect = None
            depth += 1
            in_value = in_list = False
            continue
        if kind == "close":
            depth = max(0, depth - 1)
            if depth == 0 and current is not None:
                current[2] = line
                blocks.append(Block(*current))
                current, path = None, []
            elif current is not None and path:
                path.pop()
            in_value = in_list = False
            last_field = expect = None
            continue
        if kind == "ident" and not in_value:
            if depth == 0:
                pending = (value, line) if value in field_names else None
            elif current is not None:
                key = ".".join(path + [value])
                current[4].setdefault(key, []).append((line, match.start() - line_start + 1))
                last_field = value
            expect = value if depth == 1 and value in ("name", "type") else None
            continue
        # a value: a number, or an identifier such as an enum value or `true`
        if expect == "type" and kind == "ident" and current is not None and current[5] is None:
            current[5] = value            # a V1 layer's type enum, e.g. INNER_PRODUCT
        expect = None
        in_value = in_list
    if current is not None:
        current[2] = line
        blocks.append(Block(*current))
    return blocks


def _block_at(blocks, line):
    for block in blocks:
        if block.start <= line <= (block.end or block.start):
            return block
    return None


# ---------------------------------------------------------------- errors

_NO_FIELD = re.compile(r'Message type "([\w.]+)" has no field named "?([\w.\[\]]+)"?')
_NO_ENUM = re.compile(r'Enum type "([\w.]+)" has no value named "?(\w+)"?')
_ECHO = re.compile(r"^\d+:\d+ : (?:'[^\n]*?': )?")


def _type_name(full_name):
    return full_name.split(".", 1)[1] if full_name.startswith("dualnet.") else full_name


def _explain(message, layer_type=None):
    """Turn protobuf's parse message into a sentence with a suggestion.

    `layer_type` (the `type:` of the layer block the error is in) picks the
    parameter message to suggest for a field given at the wrong level.
    """
    body = _ECHO.sub("", message).strip()
    found = _NO_FIELD.search(body)
    if found:
        type_name, field = found.groups()
        descriptor = _message_descriptor(type_name)
        fields = [f.name for f in descriptor.fields] if descriptor else []
        hint = did_you_mean(field, fields) or _belongs_in(descriptor, field, layer_type)
        return f"unknown field '{field}' in {_type_name(type_name)}{hint}"
    found = _NO_ENUM.search(body)
    if found:
        enum_name, value = found.groups()
        values = _enum_values(enum_name)
        hint = did_you_mean(value, values)
        return f"'{value}' is not a {_type_name(enum_name)} value{hint} (expected one of {', '.join(values)})"
    if body.startswith("Expected string"):
        return body + "; string values need double quotes, e.g. bottom: \"data\""
    if body.endswith("got }."):
        return "unexpected '}': no block is open here (an extra '}', or a missing '{' before it?)"
    return body.replace('"dualnet.', '"')


def _unclosed_brace_line(text):
    """The line of the outermost '{' (or '<') that the text never closes, or None."""
    opened, line = [], 1
    for match in _TOKEN.finditer(text):
        kind = match.lastgroup
        if kind == "newline":
            line += 1
        elif kind == "string":
            line += match.group().count("\n")
        elif kind == "open":
            opened.append(line)
        elif kind == "close" and opened:
            opened.pop()
    return opened[0] if opened else None


def _message_descriptor(full_name):
    from google.protobuf import descriptor_pool

    try:
        return descriptor_pool.Default().FindMessageTypeByName(full_name)
    except KeyError:
        return None


# Layer types whose parameters are in a message not named after the type.
_PARAM_OF_TYPE = {"Deconvolution": "convolution_param"}


def _belongs_in(descriptor, field, layer_type=None):
    """'; it belongs in x_param: ...' for a field of one of `descriptor`'s sub-messages.

    `num_output` given at layer level is found one level down, in
    inner_product_param, convolution_param, ... (a misspelling by its
    nearest name); when the layer's type has its own parameter message
    among them (InnerProduct: inner_product_param), that one is named.
    """
    if descriptor is None:
        return ""
    owners = {}                       # sub-message field name -> the fields of `descriptor` holding it
    for outer in descriptor.fields:
        if outer.message_type is not None:
            for inner in outer.message_type.fields:
                owners.setdefault(inner.name, []).append(outer.name)
    guess = field if field in owners else nearest(field, owners)
    if guess is None:
        return ""
    candidates = owners[guess]
    own = _PARAM_OF_TYPE.get(layer_type, f"{(layer_type or '').lower()}param")
    candidates = [c for c in candidates if c.replace("_", "") == own.replace("_", "")] or candidates
    example = f"{candidates[0]} {{ {guess}: ... }}"
    if len(candidates) == 1:
        return f"; it belongs in {candidates[0]}: {example}"
    return f"; it belongs in one of {', '.join(candidates)}, e.g. {example}"


def _enum_values(full_name):
    from google.protobuf import descriptor_pool

    try:
        descriptor = descriptor_pool.Default().FindEnumTypeByName(full_name)
    except KeyError:
        return []
    return [v.name for v in descriptor.values]


def _parse(text, message, path, blocks=None):
    try:
        text_format.Parse(text, message)
    except text_format.ParseError as error:
        line, column = error.GetLine() or 0, error.GetColumn() or 0
        block = _block_at(blocks, line) if blocks else None
        reason = _explain(str(error), block.type if block else None)
        if reason.startswith('Expected "}"'):
            opened = _unclosed_brace_line(text)
            if opened is not None:
                reason = (f"missing '}}': the file ends before the block opened at line {opened} "
                          "is closed")
        if block is not None:
            label = f"layer '{block.name}'" if block.name else f"a '{block.field}' block"
            reason = f"in {label}: {reason}"
        raise PrototxtError(path, line, column, reason) from None
    return message


# ---------------------------------------------------------------- public API

# Control characters never found in a prototxt (tab, newlines, form feed are fine).
_BINARY = re.compile(r"[\x00-\x08\x0e-\x1f\x7f]")


def _read_text(path, what):
    try:
        with open(path, "rb") as handle:
            payload = handle.read()
    except FileNotFoundError:
        raise PrototxtError(path, 0, 0, f"no such {what} file") from None
    except IsADirectoryError:
        raise PrototxtError(path, 0, 0, f"is a folder, not a {what} file") from None
    except PermissionError:
        raise PrototxtError(path, 0, 0, f"cannot read the {what} file (permission denied)") from None
    try:
        text = payload.decode("utf-8-sig")
    except UnicodeDecodeError:
        text = None
    # Binary protobuf is often valid UTF-8 too; its control bytes give it away.
    if text is None or _BINARY.search(text[:65536]):
        raise PrototxtError(
            path, 0, 0,
            f"is a binary file, not a text {what} (a .caffemodel or .solverstate? "
            "weights go to --weights / Net(model, phase, weights=...), snapshots to --snapshot)",
        )
    return text.replace("\r\n", "\n").replace("\r", "\n")   # as text mode reads it


def parse_net_text(text, path="<string>"):
    """NetParameter and Origin from prototxt text; legacy formats upgraded."""
    blocks = scan_blocks(text)
    net = _parse(text, pb.NetParameter(), path, blocks)
    if net.layer and net.layers:
        first_v1 = next((b for b in blocks if b.field == "layers"), None)
        line = first_v1.start if first_v1 else 0
        raise PrototxtError(
            path, line, 0,
            "the file mixes 'layer' (current format) and 'layers' (legacy V1 format) blocks; "
            "write every block as 'layer { type: \"...\" }' (V1 files are upgraded only when "
            "they use 'layers' throughout)",
        )
    lines = {}
    for block in blocks:
        if block.name is not None and block.name not in lines:
            lines[block.name] = block.start
    block_lines = [block.start for block in blocks]
    block_fields = [block.fields for block in blocks]
    input_line = _first_line_of(text, ("input", "input_shape", "input_dim"))
    try:
        upgrade_net(net, source=path)
    except UpgradeError as error:
        line = input_line if error.subject == "input" else None
        if isinstance(error.subject, int) and error.subject < len(block_lines):
            line = block_lines[error.subject]
        raise PrototxtError(path, line or 0, 0, error.reason) from None
    if input_line and "input" not in lines:
        lines["input"] = input_line
    if len(net.layer) == len(block_lines) + 1 and net.layer[0].type == "Input" and input_line:
        block_lines.insert(0, input_line)       # the Input layer made from deprecated net inputs
        block_fields.insert(0, {})
    if len(block_lines) != len(net.layer):
        block_lines, block_fields = [], []
    return net, Origin(path, lines, block_lines=block_lines, block_fields=block_fields)


def _first_line_of(text, names):
    for number, content in enumerate(text.splitlines(), 1):
        stripped = content.split("#", 1)[0].strip()
        if any(re.match(rf"{n}\s*[:{{]", stripped) for n in names):
            return number
    return None


def read_net_param(path):
    """Read a net prototxt file: (NetParameter, Origin)."""
    return parse_net_text(_read_text(path, "net prototxt"), path)


def parse_solver_text(text, path="<string>"):
    solver = _parse(text, pb.SolverParameter(), path)
    try:
        upgrade_solver(solver, source=path)
    except UpgradeError as error:
        line = _first_line_of(text, (error.subject,)) if error.subject == "solver_type" else None
        raise PrototxtError(path, line or 0, 0, error.reason) from None
    return solver


def read_solver_param(path):
    """Read a solver prototxt file into a SolverParameter."""
    return parse_solver_text(_read_text(path, "solver prototxt"), path)
