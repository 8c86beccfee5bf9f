"""A slow, literal RS2 encoder (one codec call per row and column, recursive Merkle
trees) used only to check the fast batched one against the specification."""

import hashlib

import reed_solomon_leopard as rsl


def H(b):
    return hashlib.blake2b(b, digest_size=32).digest()


def root(leaves):
    level = [H(b"\x00" + x) for x in leaves]
    while len(level) > 1:
        if len(level) % 2:
            level.append(bytes(32))
        level = [H(b"\x01" + level[k] + level[k + 1]) for k in range(0, len(level), 2)]
    return level[0]


def reference_encode(data: bytes, n: int):
    f = (n - 1) // 3
    R, C = n - 2 * f, n - f
    s = -(-max(len(data), 1) // (R * C))
    s += s & 1
    padded = data + bytes(R * C * s - len(data))
    sym = lambda r, c: padded[(r * C + c) * s:(r * C + c + 1) * s]
    rows = []
    for r in range(R):
        src = [sym(r, c) for c in range(C)]
        rows.append(src + rsl.encode(src, n - C))
    E = [[None] * n for _ in range(n)]
    for r in range(R):
        E[r] = rows[r]
    for j in range(n):
        col = [rows[r][j] for r in range(R)]
        rec = rsl.encode(col, n - R)
        for i in range(R, n):
            E[i][j] = rec[i - R]
    prim = [root(E[i]) for i in range(n)]
    sec = [root([E[r][n - 1 - i] for r in range(n)]) for i in range(n)]
    pair_root = root([p + q for p, q in zip(prim, sec)])
    blob_id = H(bytes([1]) + len(data).to_bytes(8, "little") + pair_root)
    return blob_id, E
