"""The ADMM state kept by net2: penalty rho and its schedule, the z-step size,
and the per-sample scaled dual variable u.

Per batch B with cut activations a (as net2 decoded them), c = eta rho / N:
    z_0 = a + u_B
    z_{k+1} = y_k - eta grad_z l(f2(y_k)),                                    k < z_steps
        y_k = (z_k + c (a + u_B)) / (1 + c)      the penalty's proximal step;
                                                 y_0 = z_0 (z_0 - a - u_B = 0)
    target  t = z_K - u_B             (sent back to net1 as the delta z_K - z_0,
                                       so net1 adds it to its own a)
    u_B    += a - z_K                 (only with dual_memory)
The penalty (rho / 2N) ||z - a - u_B||^2 is in per-batch-mean units, like the
losses. It is taken implicitly: y_k = argmin_y penalty(y) + ||y - z_k||^2 / (2 eta)
shrinks z_k - a - u_B by 1 / (1 + c), stable for every rho, where the explicit
step z_k - eta (rho / N)(z_k - a - u_B) multiplies it by 1 - c and diverges
once c > 2 (rho > 2w with the default eta). With z_steps = 1 the penalty
plays no part (y_0 = z_0), so rho matters only for z_steps > 1; as rho grows,
z_K tends to one gradient step from a + u_B, the z_steps = 1 update.
eta defaults to N / w (w = consistency weight): with u = 0 and one z-step,
net1's consistency gradient w/N (a - t) is then exactly backpropagation's
gradient at the cut.

rho starts at dual_param.rho and is multiplied by rho_growth every
rho_interval iterations, up to rho_max: iteration i uses
min(rho * rho_growth ** (i // rho_interval), rho_max).
"""
import numpy as np


class AdmmState:
    def __init__(self, dual_param, batch_size, sample_shape):
        self.param = dual_param
        self.batch_size = batch_size
        self.sample_shape = tuple(sample_shape)
        self.rho = dual_param.rho
        weight = dual_param.consistency_weight
        self.eta = dual_param.z_step_size if dual_param.z_step_size > 0 else batch_size / weight
        self.u = {}                     # record index -> u (float32, sample_shape); only with dual_memory

    def start(self, a, ids):
        """z_0 = a + u_B; returns (z_0, u_B). Without dual_memory z_0 is `a` itself (not written to)."""
        if not self.param.dual_memory:
            return a, None
        u = np.stack([self.u.get(int(i), np.zeros(self.sample_shape, np.float32)) for i in ids])
        return a + u, u

    def proximal(self, z, a, u):
        """y = (z + c (a + u)) / (1 + c), c = eta rho / N: the penalty's implicit step from z."""
        c = self.eta * self.rho / self.batch_size
        anchor = a if u is None else a + u
        return (z + c * anchor) / (1 + c)

    def gradient_step(self, y, grad):
        """z = y - eta grad_z l(f2(y)), a new array (one, no temporary)."""
        z = np.multiply(grad, -self.eta, dtype=np.result_type(y, grad))
        z += y
        return z

    def finish(self, a, z, ids):
        """u_B += a - z_K (dual_memory only)."""
        if not self.param.dual_memory:
            return
        for row, i in enumerate(ids):
            key = int(i)
            self.u[key] = self.u.get(key, np.zeros(self.sample_shape, np.float32)) + (a[row] - z[row])

    def advance(self, iteration):
        """rho grows by rho_growth every rho_interval iterations, up to rho_max."""
        p = self.param
        if p.rho_interval > 0 and iteration > 0 and iteration % p.rho_interval == 0:
            self.rho = min(self.rho * p.rho_growth, p.rho_max)

    # ---- snapshots
    def to_proto(self, state):
        state.rho = self.rho
        if self.u:
            from ..io.blobproto import blob_to_proto

            ids = np.array(sorted(self.u), dtype=np.int64)
            state.dual_u.CopyFrom(blob_to_proto(np.stack([self.u[int(i)] for i in ids])))
            state.dual_u_ids.extend(ids.tolist())

    def from_proto(self, state):
        if state.HasField("rho"):
            self.rho = state.rho
        if state.HasField("dual_u"):
            from ..io.blobproto import proto_array

            values = proto_array(state.dual_u)
            self.u = {int(i): values[k] for k, i in enumerate(state.dual_u_ids)}
