"""Level solver: lagged-nonlinearity SOR on the Euler-Lagrange equations, method spec §1.6.

Energy per pixel: sum_c W_c rho_a(s_c^2) + smoothness, with
s_c^2 = J11 du^2 + J22 dv^2 + 2 J12 du dv + 2 J13 du + 2 J23 dv + J33 and the generalised
Charbonnier rho_a(s^2) = (s^2 + eps)^a, linearised with lagged weights psi = a (s^2 + eps)^(a - 1)
refreshed when ``(it + 1) % update_lag == 0``. Between refreshes every coefficient of the linear
system is constant, so it is folded once into per-pixel arrays and each SOR sweep only streams
those (the arithmetic is the same as evaluating the sums inside the sweep).

Boundary: reflecting (homogeneous Neumann): neighbours outside the grid are left out of the
stencil (zero edge weights towards a one-pixel ring). Sweep order: row-major (C order), run as a
wavefront: pixel (y, x) needs the new values of (y, x-1) and (y-1, x) and the old ones of
(y, x+1) and (y+1, x), so all pixels of one anti-diagonal x + y = d can be updated at once after
diagonal d - 1, which gives exactly the row-major sweep. The level is stored diagonal by
diagonal (:func:`_to_diag`), so each diagonal is a contiguous row, its four neighbours are
contiguous rows too, and the inner loops vectorise.
"""

from __future__ import annotations

import math
import threading

import numba
import numpy as np

from ._flags import JIT

EPS = np.float32(1e-5)


@numba.njit(**JIT)
def _psi(s2, a):
    # a * (s2 + eps)^(a - 1), as exp/log in float32 (measured faster than ``**`` here)
    return a * math.exp((a - np.float32(1.0)) * math.log(s2 + EPS))


# log2 on [1, 2) (abs. error 2e-6) and exp2 on [0, 1) (rel. error 1e-7): least-squares fits
_L = tuple(
    np.float32(c)
    for c in (
        2.11724770e-06,
        1.44247547e00,
        -7.17558976e-01,
        4.55530272e-01,
        -2.74627562e-01,
        1.19300880e-01,
        -2.51237696e-02,
    )
)
_E = tuple(
    np.float32(c)
    for c in (
        0.9999999,
        0.69315462,
        0.24014079,
        0.05586326,
        0.00894622,
        0.00189511,
    )
)


@numba.njit(**JIT)
def psi_row(s2, a, out, ibuf, fbuf):
    """``out = a * (s2 + eps)^(a - 1)`` for one row, with bit-level log2/exp2 in loops that
    vectorise (relative error about 1e-6; 2.5x faster than libm exp/log here).

    No loop reads memory through one view that it writes through another (that defeats the
    vectoriser's alias checks), and the integer work stays 32-bit (numba widens to int64, which
    does not vectorise); ``fbuf`` and ``ibuf`` are scratch.
    """
    n = s2.shape[0]
    am1 = a - np.float32(1.0)
    l0, l1, l2, l3, l4, l5, l6 = _L
    e0, e1, e2, e3, e4, e5 = _E
    for x in range(n):
        out[x] = s2[x] + EPS
    ob = out.view(np.int32)
    for x in range(n):
        b = ob[x]
        fbuf[x] = np.float32(np.int32(((b >> 23) & 255) - 127))  # exponent
        ibuf[x] = np.int32((b & 0x7FFFFF) | 0x3F800000)  # mantissa in [1, 2)
    mf = ibuf.view(np.float32)
    for x in range(n):
        t = mf[x] - np.float32(1.0)
        lg = l0 + t * (l1 + t * (l2 + t * (l3 + t * (l4 + t * (l5 + t * l6)))))
        z = max(am1 * (fbuf[x] + lg), np.float32(-126.0))
        k = np.floor(z)  # float32 floor (math.floor gives int64)
        f = z - k
        out[x] = e0 + f * (e1 + f * (e2 + f * (e3 + f * (e4 + f * e5))))
        fbuf[x] = k
    for x in range(n):
        ob[x] = np.int32(ob[x] + (np.int32(fbuf[x]) << 23))
    for x in range(n):
        out[x] *= a


@numba.njit(**JIT)
def _smooth_weights(u, v, du, dv, wx, wy, hx, hy, a_smooth, beta, robust, WE, WS):
    """Padded edge weights: WE[y, x] couples (y, x)-(y, x+1), WS[y, x] couples (y, x)-(y+1, x).

    ``u``, ``v`` are (h, w); ``du``, ``dv``, ``WE``, ``WS`` are padded (h+2, w+2). Edges towards the
    ring get weight 0 (reflecting boundary).
    """
    h, w = u.shape
    WE[:, :] = 0.0
    WS[:, :] = 0.0
    if not robust:
        for y in range(1, h + 1):
            for x in range(1, w):
                WE[y, x] = wx
        for y in range(1, h):
            for x in range(1, w + 1):
                WS[y, x] = wy
        return
    psi = np.empty((h, w), np.float32)
    for y in range(h):
        ym = max(y - 1, 0)
        yp = min(y + 1, h - 1)
        dyn = np.float32((yp - ym) * hy)
        for x in range(w):
            xm = max(x - 1, 0)
            xp = min(x + 1, w - 1)
            dxn = np.float32((xp - xm) * hx)
            ux = uy = vx = vy = np.float32(0.0)
            if dxn > 0:
                ux = (u[y, xp] + du[y + 1, xp + 1] - u[y, xm] - du[y + 1, xm + 1]) / dxn
                vx = (v[y, xp] + dv[y + 1, xp + 1] - v[y, xm] - dv[y + 1, xm + 1]) / dxn
            if dyn > 0:
                uy = (u[yp, x] + du[yp + 1, x + 1] - u[ym, x] - du[ym + 1, x + 1]) / dyn
                vy = (v[yp, x] + dv[yp + 1, x + 1] - v[ym, x] - dv[ym + 1, x + 1]) / dyn
            p = _psi(ux * ux + uy * uy + vx * vx + vy * vy, a_smooth)
            if a_smooth > 0 and a_smooth < 1:
                p = (np.float32(1.0) - beta) + beta * p
            psi[y, x] = p
    for y in range(h):
        for x in range(w - 1):
            WE[y + 1, x + 1] = np.float32(0.5) * (psi[y, x] + psi[y, x + 1]) * wx
    for y in range(h - 1):
        for x in range(w):
            WS[y + 1, x + 1] = np.float32(0.5) * (psi[y, x] + psi[y + 1, x]) * wy


@numba.njit(**JIT)
def _sweep(du, dv, WE, WS, A12, inv1, inv2, Lu, Lv, omega):
    """One lexicographic SOR sweep over the interior of the padded (h+2, w+2) ``du``, ``dv``.

    ``WE``/``WS`` are padded edge weights that are zero towards the ring, so the ring values never
    contribute and no boundary branches are needed. The left neighbour is carried in registers.
    ``inv1``/``inv2`` are the plain inverse diagonals. The reference of the sweep order:
    :func:`solve_level` runs the same sweep as a vectorised wavefront (:func:`_wave_sweep`).
    """
    hp, wp = du.shape
    om1 = np.float32(1.0) - omega
    for y in range(1, hp - 1):
        du_l = du[y, 0]
        dv_l = dv[y, 0]
        for x in range(1, wp - 1):
            ww = WE[y, x - 1]
            we = WE[y, x]
            wn = WS[y - 1, x]
            ws = WS[y, x]
            ru = Lu[y, x] + we * du[y, x + 1] + wn * du[y - 1, x] + ws * du[y + 1, x]
            rv = Lv[y, x] + we * dv[y, x + 1] + wn * dv[y - 1, x] + ws * dv[y + 1, x]
            a12 = A12[y, x]
            i1 = omega * inv1[y, x]
            i2 = omega * inv2[y, x]
            dvo = dv[y, x]
            cu = om1 * du[y, x] + i1 * (ru - a12 * dvo)
            dup = cu + (i1 * ww) * du_l
            tv = (om1 * dvo + i2 * rv) - (i2 * a12) * dup
            dvp = tv + (i2 * ww) * dv_l
            du[y, x] = dup
            dv[y, x] = dvp
            du_l = dup
            dv_l = dvp


# ---------------------------------------------------------------------------------------------
# Diagonal layout. Anti-diagonal d = x + y of an (h, w) level is row D = d + 1 (rows 0 and h + w
# are padding), indexed by Y = y + 1; all rows are packed into one flat array, pixel (y, x) at
# ``base[D] + Y``. Each row stores Y = Y0(D) - 1 .. Yend(D) + 8 (:func:`_diag_range`), so the
# neighbours of a pixel -- left (D-1, Y), right (D+1, Y), up (D-1, Y-1), down (D+1, Y+1) -- are
# stored, and each of them is a contiguous run along the row. Entries off the grid hold 0 (values
# and coefficients), which gives the reflecting boundary without branches, and lets the sweeps run
# whole vectors past the end of a row (those entries have zero coefficients and stay 0).


@numba.njit(**JIT)
def _diag_range(D, h, w):
    """First index Y0 and count n of the grid pixels on diagonal row D."""
    d = D - 1
    y0 = max(0, d - (w - 1))
    y1 = min(h - 1, d)
    return y0 + 1, max(y1 - y0 + 1, 0)


@numba.njit(**JIT)
def _diag_bases(h, w):
    """``base`` (h + w + 1,) of the packed diagonal layout and its total size."""
    R = h + w + 1
    base = np.empty(R, np.int64)
    off = 0
    for D in range(R):
        Y0, n = _diag_range(D, h, w)
        base[D] = off - (Y0 - 1)
        off += n + 10  # Y0 - 1 .. Y0 + n + 8
    return base, off


@numba.njit(**JIT)
def _to_diag(a, oy, ox, h, w, base, T):
    """``T[base[x + y + 1] + y + 1] = a[oy + y, ox + x]`` for the (h, w) grid."""
    for D in range(1, h + w):
        Y0, n = _diag_range(D, h, w)
        row = T[base[D] + Y0 : base[D] + Y0 + n]
        x0 = D - Y0  # x of the first pixel (d - y0)
        for i in range(n):
            row[i] = a[oy + Y0 - 1 + i, ox + x0 - i]


@numba.njit(**JIT)
def _from_diag(T, h, w, base, a, oy, ox):
    """``a[oy + y, ox + x] = T[base[x + y + 1] + y + 1]`` for the (h, w) grid."""
    for D in range(1, h + w):
        Y0, n = _diag_range(D, h, w)
        row = T[base[D] + Y0 : base[D] + Y0 + n]
        x0 = D - Y0
        for i in range(n):
            a[oy + Y0 - 1 + i, ox + x0 - i] = row[i]


@numba.njit(**JIT)
def _smooth_fold(us, vs, WE, WS, h, w, base, SW, Su, Sv):
    """Smoothness part of the system in the diagonal layout (grid entries written).

    ``WE``/``WS`` are the edge weights towards the right/lower neighbour (0 towards the ring).
    ``SW`` = sum of the four edge weights, ``Su``/``Sv`` = sum_n w_n (u_n - u_p).
    """
    for D in range(1, h + w):
        Y0, n = _diag_range(D, h, w)
        c = base[D] + Y0
        lf = base[D - 1] + Y0
        up = base[D - 1] + Y0 - 1
        rt = base[D + 1] + Y0
        dn = base[D + 1] + Y0 + 1
        wwr = WE[lf:]
        wer = WE[c:]
        wnr = WS[up:]
        wsr = WS[c:]
        uc = us[c:]
        ul = us[lf:]
        ur = us[rt:]
        un = us[up:]
        ud = us[dn:]
        vc = vs[c:]
        vl = vs[lf:]
        vr = vs[rt:]
        vn = vs[up:]
        vd = vs[dn:]
        swr = SW[c:]
        sur = Su[c:]
        svr = Sv[c:]
        for i in range(n):
            ww = wwr[i]
            we = wer[i]
            wn = wnr[i]
            ws = wsr[i]
            u0 = uc[i]
            v0 = vc[i]
            sur[i] = ww * (ul[i] - u0) + we * (ur[i] - u0) + wn * (un[i] - u0) + ws * (ud[i] - u0)
            svr[i] = ww * (vl[i] - v0) + we * (vr[i] - v0) + wn * (vn[i] - v0) + ws * (vd[i] - v0)
            swr[i] = ww + we + wn + ws


@numba.njit(**JIT)
def _refresh(Js, Ws, du, dv, a_data, beta, use_psi, SW, Su, Sv, omega, A12, inv1, inv2, Lu, Lv):
    """Data term folded with the smoothness part: pointwise over the flattened diagonal layout.

    ``Js`` (C, 6, n), ``Ws`` (C, n) and everything else (n,): the diagonal layout flattened (the
    data term has no neighbours, so the layout does not matter; off-grid entries are zero in,
    zero out). With ``use_psi`` the lagged robust weights psi_c = a (s_c^2 + eps)^(a - 1) at the
    current increments (``du``, ``dv``) multiply the channel weights. Writes ``A12``,
    ``inv1/2`` = omega / diagonal (0 where the diagonal is 0) and ``Lu/Lv`` = S - B. Works in
    chunks that stay in L1 (few loop set-ups, every loop vectorises).
    """
    nc = Js.shape[0]
    n = du.shape[0]
    two = np.float32(2.0)
    one = np.float32(1.0)
    zero = np.float32(0.0)
    CH = 512
    s2 = np.empty(CH, np.float32)
    psi = np.empty(CH, np.float32)
    ibuf = np.empty(CH, np.int32)
    fbuf = np.empty(CH, np.float32)
    a11 = np.empty(CH, np.float32)
    a22 = np.empty(CH, np.float32)
    b1 = np.empty(CH, np.float32)
    b2 = np.empty(CH, np.float32)
    for s0 in range(0, n, CH):
        m = min(CH, n - s0)
        dur = du[s0 : s0 + m]
        dvr = dv[s0 : s0 + m]
        a12 = A12[s0 : s0 + m]
        for c in range(nc):
            j11 = Js[c, 0, s0 : s0 + m]
            j22 = Js[c, 1, s0 : s0 + m]
            j33 = Js[c, 2, s0 : s0 + m]
            j12 = Js[c, 3, s0 : s0 + m]
            j13 = Js[c, 4, s0 : s0 + m]
            j23 = Js[c, 5, s0 : s0 + m]
            wr = Ws[c, s0 : s0 + m]
            if use_psi:
                for x in range(m):
                    d_u = dur[x]
                    d_v = dvr[x]
                    r = (
                        j11[x] * d_u * d_u
                        + j22[x] * d_v * d_v
                        + two * j12[x] * d_u * d_v
                        + two * j13[x] * d_u
                        + two * j23[x] * d_v
                        + j33[x]
                    )
                    s2[x] = max(r, zero)
                a = a_data[c]
                psi_row(s2[:m], a, psi[:m], ibuf[:m], fbuf[:m])
                if a > 0 and a < 1:
                    for x in range(m):
                        s2[x] = ((one - beta) + beta * psi[x]) * wr[x]
                else:
                    for x in range(m):
                        s2[x] = psi[x] * wr[x]
            else:
                for x in range(m):
                    s2[x] = wr[x]
            if c == 0:
                for x in range(m):
                    pw = s2[x]
                    a11[x] = pw * j11[x]
                    a22[x] = pw * j22[x]
                    a12[x] = pw * j12[x]
                    b1[x] = pw * j13[x]
                    b2[x] = pw * j23[x]
            else:
                for x in range(m):
                    pw = s2[x]
                    a11[x] += pw * j11[x]
                    a22[x] += pw * j22[x]
                    a12[x] += pw * j12[x]
                    b1[x] += pw * j13[x]
                    b2[x] += pw * j23[x]
        swr = SW[s0 : s0 + m]
        sur = Su[s0 : s0 + m]
        svr = Sv[s0 : s0 + m]
        i1 = inv1[s0 : s0 + m]
        i2 = inv2[s0 : s0 + m]
        lu = Lu[s0 : s0 + m]
        lv = Lv[s0 : s0 + m]
        for x in range(m):
            d1 = swr[x] + a11[x]
            d2 = swr[x] + a22[x]
            i1[x] = omega / d1 if d1 != zero else zero
            i2[x] = omega / d2 if d2 != zero else zero
            lu[x] = sur[x] - b1[x]
            lv[x] = svr[x] - b2[x]


@numba.njit(**JIT)
def _wave_sweep(du, dv, WE, WS, A12, inv1, inv2, Lu, Lv, omega, h, w, base):
    """One row-major SOR sweep, run diagonal by diagonal (diagonal layout, in place).

    ``inv1``/``inv2`` hold omega / diagonal. Each diagonal's loop has no dependence between its
    iterations and vectorises; it runs whole vectors past the grid pixels (see the layout notes).
    du first, then dv with the new du. Direct unsigned indexing of the flat arrays (no row views,
    no negative-index handling): one base pointer per array keeps the vectoriser's run-time alias
    checks few (15-20 % faster than row views).
    """
    om1 = np.float32(1.0) - omega
    one = np.uint64(1)
    for D in range(1, h + w):
        Y0, n = _diag_range(D, h, w)
        n = (n + 7) // 8 * 8
        c = np.uint64(base[D] + Y0)
        lf = np.uint64(base[D - 1] + Y0)
        rt = np.uint64(base[D + 1] + Y0)
        for j in range(n):
            i = np.uint64(j)
            ci = c + i
            li = lf + i  # left (D-1, Y); up is li - 1
            ri = rt + i  # right (D+1, Y); down is ri + 1
            ww = WE[li]
            we = WE[ci]
            wn = WS[li - one]
            ws = WS[ci]
            ru = Lu[ci] + ww * du[li] + we * du[ri] + wn * du[li - one] + ws * du[ri + one]
            rv = Lv[ci] + ww * dv[li] + we * dv[ri] + wn * dv[li - one] + ws * dv[ri + one]
            a12 = A12[ci]
            dvo = dv[ci]
            dun = om1 * du[ci] + inv1[ci] * (ru - a12 * dvo)
            du[ci] = dun
            dv[ci] = om1 * dvo + inv2[ci] * (rv - a12 * dun)


@numba.njit(**JIT)
def _wave_sweep_const(du, dv, wx, wy, A12, inv1, inv2, Lu, Lv, omega, h, w, base):
    """:func:`_wave_sweep` for constant edge weights ``wx`` (horizontal), ``wy`` (vertical).

    Exact for the reflecting boundary although edges towards the ring are not zeroed here: the
    off-grid values are 0, so those edges add nothing to the right-hand side, and the diagonals
    (in ``inv1``/``inv2``) leave them out. Streams 13 rows instead of 19.
    """
    om1 = np.float32(1.0) - omega
    one = np.uint64(1)
    for D in range(1, h + w):
        Y0, n = _diag_range(D, h, w)
        n = (n + 7) // 8 * 8
        c = np.uint64(base[D] + Y0)
        lf = np.uint64(base[D - 1] + Y0)
        rt = np.uint64(base[D + 1] + Y0)
        for j in range(n):
            i = np.uint64(j)
            ci = c + i
            li = lf + i
            ri = rt + i
            ru = Lu[ci] + wx * (du[li] + du[ri]) + wy * (du[li - one] + du[ri + one])
            rv = Lv[ci] + wx * (dv[li] + dv[ri]) + wy * (dv[li - one] + dv[ri + one])
            a12 = A12[ci]
            dvo = dv[ci]
            dun = om1 * du[ci] + inv1[ci] * (ru - a12 * dvo)
            du[ci] = dun
            dv[ci] = om1 * dvo + inv2[ci] * (rv - a12 * dun)


@numba.njit(**JIT)
def _zero_offgrid(T, h, w, base, nf0):
    """Zero the off-grid slots of a flat diagonal-layout array and its tail past the ``nf0``
    used entries (grid entries untouched)."""
    zero = np.float32(0.0)
    for D in range(h + w + 1):
        Y0, n = _diag_range(D, h, w)
        T[base[D] + Y0 - 1] = zero
        for k in range(9):
            T[base[D] + Y0 + n + k] = zero
    for i in range(nf0, T.shape[0]):
        T[i] = zero


def _round16(n: int) -> int:
    return (n + 15) // 16 * 16


def workspace_size(h: int, w: int, nc: int) -> int:
    """float32 elements of the scratch that :func:`solve_level_ws` needs for an (h, w) level
    with ``nc`` channels."""
    nf = _round16(h * w + 10 * (h + w + 1))  # packed diagonal layout, see _diag_bases
    return nf * (7 * nc + 14) + 4 * _round16((h + 2) * (w + 2))


#: workspaces up to this many bytes are kept per thread between calls (fresh memory costs page
#: faults: 20 live scratch arrays of a 256x256 level took 2.9 ms to fault in, 30 % of the solve)
WORKSPACE_KEEP_BYTES = 128 * 2**20
_tls = threading.local()


def workspace(need: int) -> np.ndarray:
    """A float32 scratch of at least ``need`` elements for :func:`solve_level_ws`: the calling
    thread's kept buffer (grown on demand, up to :data:`WORKSPACE_KEEP_BYTES`), else a fresh
    one."""
    ws = getattr(_tls, "ws", None)
    if ws is None or ws.size < need:
        ws = np.empty(need, np.float32)
        if need * 4 <= WORKSPACE_KEEP_BYTES:
            _tls.ws = ws
    return ws


def solve_level(
    J,
    W,
    u,
    v,
    alpha_x,
    alpha_y,
    hx,
    hy,
    iterations,
    update_lag,
    a_data,
    a_smooth,
    beta,
    omega,
    du,
    dv,
):
    """Solve one pyramid level for the increments; writes ``du``, ``dv`` (h, w) float32.

    J (C, 6, h, w) motion tensors, W (C, h, w) channel weights, u, v (h, w) current flow
    (full-res px units), ``alpha_x``/``alpha_y`` smoothness weights, ``hx``/``hy`` grid
    spacings, ``a_data`` (C,) Charbonnier exponents, ``a_smooth`` smoothness exponent
    (1 = quadratic), ``beta`` GNC blend (1 = fully robust), ``omega`` SOR relaxation.

    Runs :func:`solve_level_ws` (nogil) with a scratch buffer kept per thread (grown on demand,
    up to :data:`WORKSPACE_KEEP_BYTES`; larger levels get a fresh buffer per call).
    """
    h, w = u.shape
    ws = workspace(workspace_size(h, w, J.shape[0]))
    solve_level_ws(
        J,
        W,
        u,
        v,
        alpha_x,
        alpha_y,
        hx,
        hy,
        iterations,
        update_lag,
        a_data,
        a_smooth,
        beta,
        omega,
        du,
        dv,
        ws,
    )


@numba.njit(**JIT)
def solve_level_ws(
    J,
    W,
    u,
    v,
    alpha_x,
    alpha_y,
    hx,
    hy,
    iterations,
    update_lag,
    a_data,
    a_smooth,
    beta,
    omega,
    du,
    dv,
    ws,
):
    """:func:`solve_level` with its scratch carved from ``ws`` (float32, at least
    :func:`workspace_size` elements; contents on entry do not matter)."""
    h, w = u.shape
    nc = J.shape[0]
    base, nf0 = _diag_bases(h, w)
    nf = (nf0 + 15) // 16 * 16
    pp = ((h + 2) * (w + 2) + 15) // 16 * 16
    o = 0
    Js = ws[o : o + nc * 6 * nf].reshape((nc, 6, nf))
    o += nc * 6 * nf
    Ws = ws[o : o + nc * nf].reshape((nc, nf))
    o += nc * nf
    us = ws[o : o + nf]
    vs = ws[o + nf : o + 2 * nf]
    dWE = ws[o + 2 * nf : o + 3 * nf]
    dWS = ws[o + 3 * nf : o + 4 * nf]
    SW = ws[o + 4 * nf : o + 5 * nf]
    Su = ws[o + 5 * nf : o + 6 * nf]
    Sv = ws[o + 6 * nf : o + 7 * nf]
    A12 = ws[o + 7 * nf : o + 8 * nf]
    inv1 = ws[o + 8 * nf : o + 9 * nf]
    inv2 = ws[o + 9 * nf : o + 10 * nf]
    Lu = ws[o + 10 * nf : o + 11 * nf]
    Lv = ws[o + 11 * nf : o + 12 * nf]
    ddu = ws[o + 12 * nf : o + 13 * nf]
    ddv = ws[o + 13 * nf : o + 14 * nf]
    o += 14 * nf
    WE = ws[o : o + (h + 2) * (w + 2)].reshape((h + 2, w + 2))
    WS = ws[o + pp : o + pp + (h + 2) * (w + 2)].reshape((h + 2, w + 2))
    dup = ws[o + 2 * pp : o + 2 * pp + (h + 2) * (w + 2)].reshape((h + 2, w + 2))
    dvp = ws[o + 3 * pp : o + 3 * pp + (h + 2) * (w + 2)].reshape((h + 2, w + 2))
    # off-grid entries must be 0; the refresh writes every entry of A12, inv1/2, Lu/Lv
    for c in range(nc):
        for k in range(6):
            _zero_offgrid(Js[c, k], h, w, base, nf0)
        _zero_offgrid(Ws[c], h, w, base, nf0)
    for T in (us, vs, dWE, dWS, SW, Su, Sv):
        _zero_offgrid(T, h, w, base, nf0)
    ddu[:] = 0.0
    ddv[:] = 0.0
    dup[:, :] = 0.0
    dvp[:, :] = 0.0
    for c in range(nc):
        for k in range(6):
            _to_diag(J[c, k], 0, 0, h, w, base, Js[c, k])
        _to_diag(W[c], 0, 0, h, w, base, Ws[c])
    _to_diag(u, 0, 0, h, w, base, us)
    _to_diag(v, 0, 0, h, w, base, vs)
    wx = np.float32(alpha_x / (hx * hx))
    wy = np.float32(alpha_y / (hy * hy))
    omega = np.float32(omega)
    robust = a_smooth != 1.0
    _smooth_weights(u, v, dup, dvp, wx, wy, hx, hy, a_smooth, beta, False, WE, WS)
    _to_diag(WE, 1, 1, h, w, base, dWE)
    _to_diag(WS, 1, 1, h, w, base, dWS)
    _smooth_fold(us, vs, dWE, dWS, h, w, base, SW, Su, Sv)
    _refresh(Js, Ws, ddu, ddv, a_data, beta, False, SW, Su, Sv, omega, A12, inv1, inv2, Lu, Lv)
    for it in range(iterations):
        if (it + 1) % update_lag == 0:
            if robust:
                _from_diag(ddu, h, w, base, dup, 1, 1)
                _from_diag(ddv, h, w, base, dvp, 1, 1)
                _smooth_weights(u, v, dup, dvp, wx, wy, hx, hy, a_smooth, beta, True, WE, WS)
                _to_diag(WE, 1, 1, h, w, base, dWE)
                _to_diag(WS, 1, 1, h, w, base, dWS)
                _smooth_fold(us, vs, dWE, dWS, h, w, base, SW, Su, Sv)
            _refresh(
                Js, Ws, ddu, ddv, a_data, beta, True, SW, Su, Sv, omega, A12, inv1, inv2, Lu, Lv
            )
        if robust:
            _wave_sweep(ddu, ddv, dWE, dWS, A12, inv1, inv2, Lu, Lv, omega, h, w, base)
        else:
            _wave_sweep_const(ddu, ddv, wx, wy, A12, inv1, inv2, Lu, Lv, omega, h, w, base)
    _from_diag(ddu, h, w, base, du, 0, 0)
    _from_diag(ddv, h, w, base, dv, 0, 0)
