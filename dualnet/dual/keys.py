"""CurveZMQ keys for a dual-net pair: `dualnet keys --out DIR`.

    DIR/server.key, DIR/server.key_secret    net2's keypair
    DIR/client.key, DIR/client.key_secret    net1's keypair
    DIR/authorized_clients/client.key        the net1 keys net2 accepts (its allow-list)

net2 needs server.key_secret and authorized_clients/; net1 needs
client.key_secret and server.key. Copying DIR to both hosts works; a host that
runs only one role needs only its half. Secret files are written 0600, and an
existing set of keys is never overwritten.
"""
import os
import shutil
import stat
import tempfile

import zmq.auth

from ..errors import DualnetError
from ..log import get_logger

SERVER, CLIENT = "server", "client"
AUTHORIZED_CLIENTS = "authorized_clients"
log = get_logger("dualnet.dual")


class KeysError(DualnetError):
    """A key folder that is missing, incomplete or would be overwritten."""


def _key_files(folder):
    names = [f"{SERVER}.key", f"{SERVER}.key_secret", f"{CLIENT}.key", f"{CLIENT}.key_secret"]
    return [os.path.join(folder, name) for name in names]


def make_keys(folder):
    """Write a server and a client keypair and the allow-list into `folder`; returns the paths."""
    authorized = os.path.join(folder, AUTHORIZED_CLIENTS)
    existing = [path for path in _key_files(folder) if os.path.exists(path)]
    if os.path.isdir(authorized):
        existing += [os.path.join(authorized, n) for n in sorted(os.listdir(authorized)) if n.endswith(".key")]
    if existing:
        raise KeysError(f"{folder} already holds keys ({', '.join(os.path.relpath(p, folder) for p in existing)}); "
                        "refusing to overwrite them: choose another --out folder, or delete the old keys first")
    os.makedirs(authorized, exist_ok=True)
    # mkdtemp is private (0700): the secrets are never readable by others, not even briefly.
    scratch = tempfile.mkdtemp(prefix=".dualnet-keys-", dir=folder)
    try:
        for name in (SERVER, CLIENT):
            public, secret = zmq.auth.create_certificates(scratch, name)
            os.chmod(secret, stat.S_IRUSR | stat.S_IWUSR)
            os.chmod(public, 0o644)
        shutil.copy2(os.path.join(scratch, f"{CLIENT}.key"), os.path.join(authorized, f"{CLIENT}.key"))
        for path in _key_files(folder):
            os.replace(os.path.join(scratch, os.path.basename(path)), path)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    log.info("Wrote CurveZMQ keys to %s: give net2's host server.key_secret and %s/, net1's host "
             "client.key_secret and server.key (or the whole folder), and pass --keys %s to both roles",
             folder, AUTHORIZED_CLIENTS, folder)
    return _key_files(folder) + [os.path.join(authorized, f"{CLIENT}.key")]


def _load(folder, name, role, secret):
    path = os.path.join(folder, f"{name}.key_secret" if secret else f"{name}.key")
    if not os.path.isfile(path):
        raise KeysError(f"{folder} has no {os.path.basename(path)}, which {role} needs: make the keys with "
                        f"`dualnet keys --out DIR` and copy them to this host")
    try:
        public, secret_key = zmq.auth.load_certificate(path)
    except (OSError, ValueError) as error:
        raise KeysError(f"{path} is not a CurveZMQ certificate ({error}): remake it with `dualnet keys`") from error
    if secret:
        if secret_key is None:
            raise KeysError(f"{path} holds no secret key: remake the keys with `dualnet keys`")
        if os.stat(path).st_mode & 0o077:
            log.warning("%s can be read by other users: chmod 600 it", path)
    return public, secret_key


def server_keys(folder):
    """net2: (public key, secret key, allow-list folder), z85 bytes."""
    public, secret = _load(folder, SERVER, "net2", secret=True)
    authorized = os.path.join(folder, AUTHORIZED_CLIENTS)
    if not os.path.isdir(authorized) or not any(n.endswith(".key") for n in os.listdir(authorized)):
        raise KeysError(f"{authorized} holds no client keys, so net2 would accept no net1: make the keys "
                        "with `dualnet keys --out DIR` (it puts client.key there)")
    return public, secret, authorized


def client_keys(folder):
    """net1: (public key, secret key, net2's public key), z85 bytes."""
    public, secret = _load(folder, CLIENT, "net1", secret=True)
    server_public, _ = _load(folder, SERVER, "net1", secret=False)
    return public, secret, server_public


def authorized_client_keys(folder):
    """The z85 public keys in an allow-list folder."""
    return set(zmq.auth.load_certificates(folder))
