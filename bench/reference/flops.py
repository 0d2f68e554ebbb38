"""Analytic FLOP count of one MGCA training step: the one place both sides use.

Counts the matrix products (2 FLOPs per multiply-add) of the model as defined
(ViT patch embedding on 3 channels, attention over all L tokens including
pads, the heads on every token, the loss matrices), the way model FLOP
utilisation (MFU) is usually defined: elementwise work (softmax, LayerNorm,
GELU, BatchNorm, the optimizer) is left out, so MFU is a lower bound on how
busy the matrix units are. Backward = 2 × forward for every product whose
input and weight both need a gradient; 1 × for the patch embedding (the
image needs no gradient). The no-grad Sinkhorn and weight clipping are left
out (O(b·K) and O(b·L)).

    flops.mgca_step(shapes, batch, world=1) -> dict(forward=, backward=, total=, parts={...})

`shapes` is mgca_official.model_shapes(job) (or the same keys).
"""


def _mm(m, n, k):
    return 2.0 * m * n * k


def _transformer(batch, tokens, dim, depth, mlp):
    """One pre- or post-norm transformer stack: (forward FLOPs, of which attention matrices)."""
    per_layer = (_mm(batch * tokens, 3 * dim, dim) + _mm(batch * tokens, dim, dim)
                 + _mm(batch * tokens, mlp, dim) + _mm(batch * tokens, dim, mlp))
    attention = 2 * _mm(batch * tokens, tokens, dim)  # q·kᵀ and p·v over all heads
    return depth * (per_layer + attention), depth * attention


def _head(rows, d_in, hidden, d_out):
    return _mm(rows, hidden, d_in) + _mm(rows, d_out, hidden)


def mgca_step(shapes, batch, world=1):
    v, t = shapes["vit"], shapes["bert"]
    b, n_global = batch, batch * world
    p = (v["image_size"] // v["patch"]) ** 2
    length = shapes["max_length"]
    s = length - 1  # words after aggregation
    d, hid, k = shapes["embed_dim"], shapes["head_hidden"], shapes["num_prototypes"]

    patch_embed = _mm(b * p, v["dim"], 3 * v["patch"] ** 2)
    vit, vit_attn = _transformer(b, p + 1, v["dim"], v["depth"], v["mlp"])
    bert, bert_attn = _transformer(b, length, t["hidden"], t["layers"], t["intermediate"])
    heads = (_head(b, v["dim"], hid, d) + _head(b * p, v["dim"], hid, d)
             + _head(b, t["hidden"], hid, d) + _head(b * s, t["hidden"], hid, d))
    ita = 2 * _mm(b, n_global, d)  # both directions: local rows × gathered columns
    cta = (2 * _mm(b * s, p, d) + _mm(b * s, s, d)    # word→patch attention, output, word_sim
           + 2 * _mm(b * p, s, d) + _mm(b * p, p, d))  # patch→word attention, output, patch_sim
    cpa = 2 * _mm(b, k, d)
    forward = patch_embed + vit + bert + heads + ita + cta + cpa
    backward = patch_embed + 2 * (forward - patch_embed)
    return dict(
        forward=forward, backward=backward, total=forward + backward,
        parts=dict(patch_embed=patch_embed, vit=vit, vit_attention=vit_attn, bert=bert,
                   bert_attention=bert_attn, heads=heads, ita=ita, cta=cta, cpa=cpa),
    )


def mgca_parameters(shapes):
    """Parameters of the model (BatchNorm running statistics excluded), by part."""
    v, t = shapes["vit"], shapes["bert"]
    D, M, P = v["dim"], v["mlp"], (v["image_size"] // v["patch"]) ** 2
    block = 4 * D + 3 * D * D + 3 * D + D * D + D + D * M + M + M * D + D
    vit = D * 3 * v["patch"] ** 2 + D + D + (P + 1) * D + v["depth"] * block + 2 * D
    H, I = t["hidden"], t["intermediate"]
    layer = 3 * H * H + 3 * H + H * H + H + 2 * H + H * I + I + I * H + H + 2 * H
    bert = t["vocab"] * H + t["max_positions"] * H + 2 * H + 2 * H + t["layers"] * layer
    hid, d = shapes["head_hidden"], shapes["embed_dim"]

    def head(n_in):
        return n_in * hid + hid + 2 * hid + hid * d + d

    heads = 2 * head(D) + 2 * head(H)
    prototypes = shapes["num_prototypes"] * d
    return dict(vit=vit, bert=bert, heads=heads, prototypes=prototypes, total=vit + bert + heads + prototypes)


if __name__ == "__main__":
    import json
    import sys

    from mgca_official import model_shapes
    from jobfile import load_job

    job = load_job(sys.argv[1], sys.argv[3:])
    r = mgca_step(model_shapes(job), int(sys.argv[2]))
    print(json.dumps({k: (v / 1e9 if isinstance(v, float) else {a: c / 1e9 for a, c in v.items()})
                      for k, v in r.items()}, indent=1))
