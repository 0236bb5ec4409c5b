"""The Triton kernels of :mod:`normrnn.kernels.triton`; this module imports Triton, so it is imported only on
first use. Under ``TRITON_INTERPRET=1`` (set before that first use) they run on CPU tensors."""



import triton
import triton.language as tl


@triton.jit
def _compute(x, FP64: tl.constexpr):
    return x.to(tl.float64) if FP64 else x.to(tl.float32)


@triton.jit
def _tanh(x):
    # tanh from exp: a series near 0, where (1 - e^-2|x|) / (1 + e^-2|x|) would cancel
    ax = tl.abs(x)
    t = tl.exp(-2.0 * ax)
    big = (1.0 - t) / (1.0 + t)
    x2 = x * x
    small = ax * (1.0 + x2 * (-1.0 / 3.0 + x2 * (2.0 / 15.0 + x2 * (-17.0 / 315.0 + x2 * (62.0 / 2835.0)))))
    r = tl.where(ax < 0.0625, small, big)
    return tl.where(x < 0, -r, r)


@triton.jit
def stats(x_ptr, mean_ptr, rstd_ptr, L, eps, RMS: tl.constexpr, FP64: tl.constexpr, BLOCK: tl.constexpr):
    # one program per (sample, group): the group's L = channels × positions values are contiguous
    row = tl.program_id(0)
    base = x_ptr + row.to(tl.int64) * L
    offs = tl.arange(0, BLOCK)
    mean = 0.0
    if not RMS:
        acc = tl.zeros([BLOCK], dtype=tl.float64 if FP64 else tl.float32)
        for start in range(0, L, BLOCK):
            x = _compute(tl.load(base + start + offs, mask=start + offs < L, other=0.0), FP64)
            acc += x
        mean = tl.sum(acc, axis=0) / L
    acc2 = tl.zeros([BLOCK], dtype=tl.float64 if FP64 else tl.float32)
    for start in range(0, L, BLOCK):
        m = start + offs < L
        x = _compute(tl.load(base + start + offs, mask=m, other=0.0), FP64)
        d = tl.where(m, x - mean, 0.0)
        acc2 += d * d
    var = tl.sum(acc2, axis=0) / L
    tl.store(mean_ptr + row, mean)
    tl.store(rstd_ptr + row, 1.0 / tl.sqrt(var + eps))


@triton.jit
def _gate(p, w, b, mu, rs, k, bb, ch, s, m, C, S, Cg, Gt,
          NORM: tl.constexpr, HAS_W: tl.constexpr, HAS_B: tl.constexpr, FP64: tl.constexpr):
    # gate k's pre-activation at (sample bb, channel ch, position s), normalized and affine; and x-hat
    chan = k * C + ch
    x = _compute(tl.load(p + (bb * 4 * C + chan) * S + s, mask=m, other=0.0), FP64)
    xhat = x
    if NORM:
        row = bb * Gt + chan // Cg
        xhat = (x - _compute(tl.load(mu + row, mask=m, other=0.0), FP64)) * _compute(
            tl.load(rs + row, mask=m, other=1.0), FP64)
    a = xhat
    if HAS_W:
        a = a * _compute(tl.load(w + chan, mask=m, other=1.0), FP64)
    if HAS_B:
        a = a + _compute(tl.load(b + chan, mask=m, other=0.0), FP64)
    return a, xhat


@triton.jit
def _state_gates(p, w, b, mu, rs, N, C, S, Cg, Gt, NORM: tl.constexpr, HAS_W: tl.constexpr, HAS_B: tl.constexpr,
                 FP64: tl.constexpr, BLOCK: tl.constexpr):
    # this program's state elements (sample, channel, position) and their four gates' a and x-hat
    idx = tl.program_id(0).to(tl.int64) * BLOCK + tl.arange(0, BLOCK)
    m = idx < N
    bb, ch, s = idx // (C * S), (idx // S) % C, idx % S
    ai, xi = _gate(p, w, b, mu, rs, 0, bb, ch, s, m, C, S, Cg, Gt, NORM, HAS_W, HAS_B, FP64)
    af, xf = _gate(p, w, b, mu, rs, 1, bb, ch, s, m, C, S, Cg, Gt, NORM, HAS_W, HAS_B, FP64)
    ag, xg = _gate(p, w, b, mu, rs, 2, bb, ch, s, m, C, S, Cg, Gt, NORM, HAS_W, HAS_B, FP64)
    ao, xo = _gate(p, w, b, mu, rs, 3, bb, ch, s, m, C, S, Cg, Gt, NORM, HAS_W, HAS_B, FP64)
    return idx, m, bb, ch, s, ai, af, ag, ao, xi, xf, xg, xo


@triton.jit
def forward(p, c_ptr, w, b, mu, rs, h_ptr, c_out_ptr, N, C, S, Cg, Gt,
            NORM: tl.constexpr, HAS_W: tl.constexpr, HAS_B: tl.constexpr, FP64: tl.constexpr,
            BLOCK: tl.constexpr):
    idx, m, _, _, _, ai, af, ag, ao, _, _, _, _ = _state_gates(p, w, b, mu, rs, N, C, S, Cg, Gt, NORM, HAS_W, HAS_B,
                                                              FP64, BLOCK)
    c = _compute(tl.load(c_ptr + idx, mask=m, other=0.0), FP64)
    c_new = tl.sigmoid(af) * c + tl.sigmoid(ai) * _tanh(ag)
    tl.store(c_out_ptr + idx, c_new, mask=m)
    tl.store(h_ptr + idx, tl.sigmoid(ao) * _tanh(c_new), mask=m)


@triton.jit
def backward_gates(p, c_ptr, w, b, mu, rs, dh_ptr, dcn_ptr, da_ptr, dax_ptr, dc_ptr, N, C, S, Cg, Gt,
                   NORM: tl.constexpr, HAS_W: tl.constexpr, HAS_B: tl.constexpr, HAS_DC: tl.constexpr,
                   DAX: tl.constexpr, FP64: tl.constexpr, BLOCK: tl.constexpr):
    # recompute the gates; write d(a) per gate, d(a)·x-hat (DAX: for γ's gradient and the norm's) and d(c)
    idx, m, bb, ch, s, ai, af, ag, ao, xi, xf, xg, xo = _state_gates(p, w, b, mu, rs, N, C, S, Cg, Gt, NORM, HAS_W,
                                                                      HAS_B, FP64, BLOCK)
    i, f, g, o = tl.sigmoid(ai), tl.sigmoid(af), _tanh(ag), tl.sigmoid(ao)
    c = _compute(tl.load(c_ptr + idx, mask=m, other=0.0), FP64)
    tanh_c = _tanh(f * c + i * g)
    dh = _compute(tl.load(dh_ptr + idx, mask=m, other=0.0), FP64)
    dc_total = dh * o * (1.0 - tanh_c * tanh_c)
    if HAS_DC:
        dc_total += _compute(tl.load(dcn_ptr + idx, mask=m, other=0.0), FP64)
    da_i = dc_total * g * i * (1.0 - i)
    da_f = dc_total * c * f * (1.0 - f)
    da_g = dc_total * i * (1.0 - g * g)
    da_o = dh * tanh_c * o * (1.0 - o)
    out = (bb * 4 * C + ch) * S + s  # gate 0's offset; gate k adds k·C·S
    tl.store(da_ptr + out, da_i, mask=m)
    tl.store(da_ptr + out + C * S, da_f, mask=m)
    tl.store(da_ptr + out + 2 * C * S, da_g, mask=m)
    tl.store(da_ptr + out + 3 * C * S, da_o, mask=m)
    if DAX:
        tl.store(dax_ptr + out, da_i * xi, mask=m)
        tl.store(dax_ptr + out + C * S, da_f * xf, mask=m)
        tl.store(dax_ptr + out + 2 * C * S, da_g * xg, mask=m)
        tl.store(dax_ptr + out + 3 * C * S, da_o * xo, mask=m)
    tl.store(dc_ptr + idx, dc_total * f, mask=m)


@triton.jit
def backward_norm(pre_ptr, da_ptr, w_ptr, mean_ptr, rstd_ptr, sdy_ptr, sdyx_ptr, dpre_ptr, N, C4, S, Cg, Gt, L,
                  RMS: tl.constexpr, HAS_W: tl.constexpr, FP64: tl.constexpr, BLOCK: tl.constexpr):
    # d(pre) = rstd · (γ d(a) - mean_g(γ d(a)) - x-hat · mean_g(γ d(a) x-hat)), elementwise over (B, 4C, S)
    idx = tl.program_id(0).to(tl.int64) * BLOCK + tl.arange(0, BLOCK)
    m = idx < N
    bb, chan = idx // (C4 * S), (idx // S) % C4
    row = bb * Gt + chan // Cg
    x = _compute(tl.load(pre_ptr + idx, mask=m, other=0.0), FP64)
    mean = _compute(tl.load(mean_ptr + row, mask=m, other=0.0), FP64)
    rstd = _compute(tl.load(rstd_ptr + row, mask=m, other=1.0), FP64)
    dy = _compute(tl.load(da_ptr + idx, mask=m, other=0.0), FP64)
    if HAS_W:
        dy = dy * _compute(tl.load(w_ptr + chan, mask=m, other=1.0), FP64)
    xhat = (x - mean) * rstd
    out = dy - xhat * _compute(tl.load(sdyx_ptr + row, mask=m, other=0.0), FP64) / L
    if not RMS:
        out -= _compute(tl.load(sdy_ptr + row, mask=m, other=0.0), FP64) / L
    tl.store(dpre_ptr + idx, rstd * out, mask=m)
