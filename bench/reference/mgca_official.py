"""MGCA (Wang et al., NeurIPS 2022) in plain PyTorch, as the official code runs it.

The structure follows HKU-MedAI/MGCA @ 680fe4a (mgca_module.py, encoder.py,
BLIP's vit.py and a Hugging Face BertModel), so that this is the baseline a
user of that code gets: a timm/BLIP ViT that keeps the last block's attention
map, a BERT with separate query/key/value projections, the heads as
Linear/Conv1d + BatchNorm1d, the subword→word aggregation loop of
`BertEncoder.aggregate_tokens`, the per-sample quantile loops, and the loss
code of `MGCA.forward` with single-process Sinkhorn. It is not a straw man:
fused attention (F.scaled_dot_product_attention, torch >= 2.0) wherever the
attention probabilities are not needed, no hooks, no anomaly detection; the
only change to the official aggregation loop is that the token ids are read
on the host once (`tolist()`) instead of one `.item()` per token, which on a
GPU would synchronize b·L times per step. `aggregation="vectorized"` swaps
the loop for an index_add a careful user could write (same result).

Shapes and options come from an mgca-hpc job file (the same presets as
include/mgca/model/config.h) so that the two sides train the same model.
Parameter names map one to one onto ours (`load_mgca_hpc_state`).
"""
import math

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

_SDPA = getattr(F, "scaled_dot_product_attention", None)  # public from torch 2.0


# ----------------------------------------------------------------------------- presets

def model_shapes(job):
    """The model of an mgca-hpc job (dict from its TOML) with our presets' shapes."""
    m = job.get("model", {})
    image = m.get("image_encoder", "vit_b16")
    text = m.get("text_encoder", "bert")
    if image == "vit_b16":
        vit = dict(image_size=224, patch=16, dim=768, depth=12, heads=12, mlp=3072)
    elif image == "vit_tiny":
        vit = dict(image_size=64, patch=8, dim=192, depth=4, heads=3, mlp=768)
    else:
        raise ValueError(f"model.image_encoder = {image!r}: the reference step covers the ViT backbones only")
    vit["image_size"] = int(m.get("image_size", vit["image_size"]))
    if text == "bert":
        bert = dict(vocab=28996, hidden=768, heads=12, intermediate=3072, max_positions=512)
    elif text == "bert_tiny":
        bert = dict(vocab=28996, hidden=128, heads=2, intermediate=512, max_positions=128)
    else:
        raise ValueError(f"model.text_encoder = {text!r} is not known")
    bert["layers"] = int(m.get("text_layers", 6))
    dropout = float(m.get("dropout", 0.1))
    o = job.get("objectives", {})
    variant = o.get("variant", "official")
    if variant != "official":
        raise ValueError("the reference step is the official code: objectives.variant must be 'official'")
    return dict(
        vit=vit, bert=bert, dropout=dropout,
        embed_dim=int(m.get("embed_dim", 128)), head_hidden=int(m.get("head_hidden", 2048)),
        num_prototypes=int(m.get("num_prototypes", 500)),
        max_length=int(job.get("text", {}).get("max_length", 112)),
        batch_size=int(job.get("data", {}).get("batch_size", 72)),
        tau_ita=float(o.get("ita_temperature", 0.07)), tau_local=float(o.get("local_temperature", 0.1)),
        tau_proto=float(o.get("proto_temperature", 0.2)), epsilon=float(o.get("sinkhorn_epsilon", 0.05)),
        sinkhorn_iterations=int(o.get("sinkhorn_iterations", 3)),
        lambdas=(float(o.get("lambda_ita", 1.0)), float(o.get("lambda_cta", 1.0)), float(o.get("lambda_cpa", 1.0))),
        freeze_prototypes_epochs=int(o.get("freeze_prototypes_epochs", 1)),
        quantiles=(float(o.get("weight_quantile_low", 0.1)), float(o.get("weight_quantile_high", 0.9))),
    )


def _at_least_fp32(x):
    return x.float() if x.dtype in (torch.float16, torch.bfloat16) else x


def _attention(q, k, v, mask, dropout_p, need_probs):
    """q, k, v [B, H, L, Dh]; mask additive [B, 1, 1, L] or None. Returns (context, probs or None)."""
    if _SDPA is not None and not need_probs:
        if mask is not None:
            mask = mask.to(q.dtype)
        return _SDPA(q, k, v, attn_mask=mask, dropout_p=dropout_p), None
    scores = (q @ k.transpose(-2, -1)) * (q.size(-1) ** -0.5)
    if mask is not None:
        scores = scores + mask
    probs = scores.softmax(dim=-1)
    probs_dropped = F.dropout(probs, dropout_p, training=dropout_p > 0)
    return probs_dropped @ v, probs_dropped


# ----------------------------------------------------------------------------- ViT (BLIP vit.py)

class PatchEmbed(nn.Module):
    def __init__(self, patch, dim):
        super().__init__()
        self.proj = nn.Conv2d(3, dim, kernel_size=patch, stride=patch)

    def forward(self, x):
        return self.proj(x).flatten(2).transpose(1, 2)


class Attention(nn.Module):
    def __init__(self, dim, heads):
        super().__init__()
        self.heads = heads
        self.qkv = nn.Linear(dim, dim * 3, bias=True)
        self.proj = nn.Linear(dim, dim)
        self.attention_map = None

    def forward(self, x, register_hook=False):
        B, N, C = x.shape
        qkv = self.qkv(x).reshape(B, N, 3, self.heads, C // self.heads).permute(2, 0, 3, 1, 4)
        q, k, v = qkv[0], qkv[1], qkv[2]
        x, attn = _attention(q, k, v, None, 0.0, need_probs=register_hook)
        if register_hook:
            self.attention_map = attn  # BLIP's save_attention_map
        return self.proj(x.transpose(1, 2).reshape(B, N, C))


class Mlp(nn.Module):
    def __init__(self, dim, hidden):
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(hidden, dim)

    def forward(self, x):
        return self.fc2(self.act(self.fc1(x)))


class Block(nn.Module):
    def __init__(self, dim, heads, mlp):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, eps=1e-6)
        self.attn = Attention(dim, heads)
        self.norm2 = nn.LayerNorm(dim, eps=1e-6)
        self.mlp = Mlp(dim, mlp)

    def forward(self, x, register_hook=False):
        x = x + self.attn(self.norm1(x), register_hook=register_hook)
        return x + self.mlp(self.norm2(x))


class VisionTransformer(nn.Module):
    def __init__(self, image_size, patch, dim, depth, heads, mlp):
        super().__init__()
        self.patch_embed = PatchEmbed(patch, dim)
        n = (image_size // patch) ** 2
        self.cls_token = nn.Parameter(torch.zeros(1, 1, dim))
        self.pos_embed = nn.Parameter(torch.zeros(1, n + 1, dim))
        self.blocks = nn.ModuleList([Block(dim, heads, mlp) for _ in range(depth)])
        self.norm = nn.LayerNorm(dim, eps=1e-6)
        nn.init.trunc_normal_(self.pos_embed, std=0.02)
        nn.init.trunc_normal_(self.cls_token, std=0.02)
        for m in self.modules():
            if isinstance(m, nn.Linear):
                nn.init.trunc_normal_(m.weight, std=0.02)
                nn.init.zeros_(m.bias)

    def forward(self, x, register_blk=-1):
        B = x.shape[0]
        x = self.patch_embed(x)
        x = torch.cat((self.cls_token.expand(B, -1, -1), x), dim=1)
        x = x + self.pos_embed[:, :x.size(1), :]
        for i, blk in enumerate(self.blocks):
            x = blk(x, register_blk == i)
        return self.norm(x)


# ----------------------------------------------------------------------------- BERT (Hugging Face layout)

class BertSelfAttention(nn.Module):
    def __init__(self, hidden, heads, dropout):
        super().__init__()
        self.heads, self.dropout = heads, dropout
        self.query = nn.Linear(hidden, hidden)
        self.key = nn.Linear(hidden, hidden)
        self.value = nn.Linear(hidden, hidden)

    def _split(self, x):
        B, L, C = x.shape
        return x.view(B, L, self.heads, C // self.heads).permute(0, 2, 1, 3)

    def forward(self, x, mask, output_attentions):
        q, k, v = self._split(self.query(x)), self._split(self.key(x)), self._split(self.value(x))
        p = self.dropout if self.training else 0.0
        ctx, probs = _attention(q, k, v, mask, p, need_probs=output_attentions)
        B, H, L, D = ctx.shape
        return ctx.permute(0, 2, 1, 3).reshape(B, L, H * D), probs


class BertLayer(nn.Module):
    def __init__(self, hidden, heads, intermediate, dropout):
        super().__init__()
        self.attention = nn.Module()
        self.attention.self = BertSelfAttention(hidden, heads, dropout)
        self.attention.output = nn.Module()
        self.attention.output.dense = nn.Linear(hidden, hidden)
        self.attention.output.LayerNorm = nn.LayerNorm(hidden, eps=1e-12)
        self.intermediate = nn.Module()
        self.intermediate.dense = nn.Linear(hidden, intermediate)
        self.output = nn.Module()
        self.output.dense = nn.Linear(intermediate, hidden)
        self.output.LayerNorm = nn.LayerNorm(hidden, eps=1e-12)
        self.drop = nn.Dropout(dropout)

    def forward(self, x, mask, output_attentions):
        a, probs = self.attention.self(x, mask, output_attentions)
        a = self.attention.output.LayerNorm(self.drop(self.attention.output.dense(a)) + x)
        h = F.gelu(self.intermediate.dense(a))
        return self.output.LayerNorm(self.drop(self.output.dense(h)) + a), probs


class BertModel(nn.Module):
    def __init__(self, vocab, hidden, layers, heads, intermediate, max_positions, dropout):
        super().__init__()
        self.embeddings = nn.Module()
        self.embeddings.word_embeddings = nn.Embedding(vocab, hidden)
        self.embeddings.position_embeddings = nn.Embedding(max_positions, hidden)
        self.embeddings.token_type_embeddings = nn.Embedding(2, hidden)
        self.embeddings.LayerNorm = nn.LayerNorm(hidden, eps=1e-12)
        self.embeddings.register_buffer("position_ids", torch.arange(max_positions).unsqueeze(0), persistent=False)
        self.drop = nn.Dropout(dropout)
        self.encoder = nn.Module()
        self.encoder.layer = nn.ModuleList(
            [BertLayer(hidden, heads, intermediate, dropout) for _ in range(layers)])
        for m in self.modules():
            if isinstance(m, (nn.Linear, nn.Embedding)):
                nn.init.normal_(m.weight, std=0.02)
            if isinstance(m, nn.Linear):
                nn.init.zeros_(m.bias)

    def forward(self, input_ids, attention_mask, token_type_ids):
        """Returns (last_hidden_state [B, L, H], last layer's attention probabilities [B, heads, L, L])."""
        L = input_ids.size(1)
        e = self.embeddings
        x = (e.word_embeddings(input_ids) + e.position_embeddings(e.position_ids[:, :L])
             + e.token_type_embeddings(token_type_ids))
        x = self.drop(e.LayerNorm(x))
        # Hugging Face's extended attention mask (the value of the transformers
        # versions MGCA used).
        mask = (1.0 - attention_mask[:, None, None, :].to(x.dtype)) * -10000.0
        probs = None
        last = len(self.encoder.layer) - 1
        for i, layer in enumerate(self.encoder.layer):
            # output_attentions=True in MGCA's config; only the last layer's map is read.
            x, p = layer(x, mask, output_attentions=(i == last))
            if p is not None:
                probs = p
        return x, probs


# ----------------------------------------------------------------------------- heads (MGCA encoder.py)

class GlobalEmbedding(nn.Module):
    def __init__(self, input_dim, hidden_dim, output_dim):
        super().__init__()
        self.head = nn.Sequential(
            nn.Linear(input_dim, hidden_dim), nn.BatchNorm1d(hidden_dim), nn.ReLU(inplace=True),
            nn.Linear(hidden_dim, output_dim), nn.BatchNorm1d(output_dim, affine=False))

    def forward(self, x):
        return self.head(x)


class LocalEmbedding(nn.Module):
    def __init__(self, input_dim, hidden_dim, output_dim):
        super().__init__()
        self.head = nn.Sequential(
            nn.Conv1d(input_dim, hidden_dim, kernel_size=1, stride=1, padding=0), nn.BatchNorm1d(hidden_dim),
            nn.ReLU(inplace=True),
            nn.Conv1d(hidden_dim, output_dim, kernel_size=1, stride=1, padding=0),
            nn.BatchNorm1d(output_dim, affine=False))

    def forward(self, x):
        return self.head(x.permute(0, 2, 1)).permute(0, 2, 1)


class ImageEncoder(nn.Module):
    def __init__(self, s):
        super().__init__()
        v = s["vit"]
        self.model = VisionTransformer(v["image_size"], v["patch"], v["dim"], v["depth"], v["heads"], v["mlp"])
        self.global_embed = GlobalEmbedding(v["dim"], s["head_hidden"], s["embed_dim"])
        self.local_embed = LocalEmbedding(v["dim"], s["head_hidden"], s["embed_dim"])
        self.depth = v["depth"]

    def forward(self, x):
        img_feat = self.model(x, register_blk=self.depth - 1)
        return img_feat[:, 0].contiguous(), img_feat[:, 1:].contiguous()


class BertEncoder(nn.Module):
    def __init__(self, s, idxtoword, aggregation):
        super().__init__()
        b = s["bert"]
        self.model = BertModel(b["vocab"], b["hidden"], b["layers"], b["heads"], b["intermediate"],
                               b["max_positions"], s["dropout"])
        self.global_embed = GlobalEmbedding(b["hidden"], s["head_hidden"], s["embed_dim"])
        self.local_embed = LocalEmbedding(b["hidden"], s["head_hidden"], s["embed_dim"])
        self.idxtoword = idxtoword
        self.aggregation = aggregation

    def aggregate_tokens(self, embeddings, caption_ids, last_layer_attn):
        """The official loop (embeddings [B, L, D]); returns ([B, L, D], words, [B, L])."""
        num_words, dim = embeddings.size(1), embeddings.size(2)
        agg_embs_batch, sentences, last_attns = [], [], []
        for embs, caption_id, last_attn in zip(embeddings, caption_ids.tolist(), last_layer_attn):
            agg_embs, token_bank, words, word_bank, attns, attn_bank = [], [], [], [], [], []
            # zip stops at the L-1 attention entries: the official off-by-one.
            for word_emb, word_id, attn in zip(embs, caption_id, last_attn):
                word = self.idxtoword[word_id]
                if word == "[SEP]":
                    new_emb = torch.stack(token_bank)
                    new_emb = new_emb.sum(axis=0)
                    agg_embs.append(new_emb)
                    words.append("".join(word_bank))
                    attns.append(sum(attn_bank))
                    agg_embs.append(word_emb)
                    words.append(word)
                    attns.append(attn)
                    break
                if not word.startswith("##"):
                    if len(word_bank) == 0:
                        token_bank.append(word_emb)
                        word_bank.append(word)
                        attn_bank.append(attn)
                    else:
                        new_emb = torch.stack(token_bank)
                        new_emb = new_emb.sum(axis=0)
                        agg_embs.append(new_emb)
                        words.append("".join(word_bank))
                        attns.append(sum(attn_bank))
                        token_bank = [word_emb]
                        word_bank = [word]
                        attn_bank = [attn]
                else:
                    token_bank.append(word_emb)
                    word_bank.append(word[2:])
                    attn_bank.append(attn)
            agg_embs = torch.stack(agg_embs)
            padding_size = num_words - len(agg_embs)
            paddings = torch.zeros(padding_size, dim).type_as(agg_embs)
            words = words + ["[PAD]"] * padding_size
            last_attns.append(torch.cat([torch.tensor(attns), torch.zeros(padding_size)], dim=0))
            agg_embs_batch.append(torch.cat([agg_embs, paddings]))
            sentences.append(words)
        agg_embs_batch = torch.stack(agg_embs_batch)
        last_atten_pt = torch.stack(last_attns).type_as(agg_embs_batch)
        return agg_embs_batch, sentences, last_atten_pt

    def aggregate_tokens_vectorized(self, embeddings, caption_ids, last_layer_attn):
        """The same result with one index_add: word slots found on the host from the ids."""
        B, L, D = embeddings.shape
        idx, words = self._word_slots(caption_ids, B, L)
        idx = idx.to(embeddings.device)
        feat = embeddings.new_zeros(B * L + 1, D).index_add(0, idx, embeddings.reshape(B * L, D))[:-1]
        attn = torch.cat([last_layer_attn, last_layer_attn.new_zeros(B, 1)], 1).reshape(-1)
        weight = attn.new_zeros(B * L + 1).index_add(0, idx, attn)[:-1]
        return feat.view(B, L, D), words, weight.view(B, L)

    # Host-side Python over token ids: under torch.compile it stays eager (Dynamo would trace the
    # per-token loop into numpy ops on values read from the ids), as a user compiling this model would mark it.
    @torch.compiler.disable
    def _word_slots(self, caption_ids, B, L):
        slot = np.full((B, L), B * L, dtype=np.int64)  # B·L = a dump row for tokens that are not read
        pad = np.ones((B, L), dtype=bool)
        for i, ids in enumerate(caption_ids.tolist()):
            n = -1
            for t in range(L - 1):  # official pairing: tokens 0..L-2
                word = self.idxtoword[ids[t]]
                if word == "[SEP]":
                    n += 1
                    slot[i, t] = i * L + n
                    break
                if n < 0 or not word.startswith("##"):
                    n += 1
                slot[i, t] = i * L + n
            else:
                # no [SEP]: the last word still open is dropped, as in the loop
                slot[i][slot[i] == i * L + n] = B * L
                n -= 1
            pad[i, :n + 1] = False
        return torch.from_numpy(slot.reshape(-1)), [["[PAD]" if p else "w" for p in row] for row in pad]

    def forward(self, ids, attn_mask, token_type):
        last_hidden, attentions_last = self.model(ids, attn_mask, token_type)
        last_layer_attn = attentions_last[:, :, 0, 1:].mean(dim=1)
        if self.aggregation == "official":
            all_feat, sents, last_atten_pt = self.aggregate_tokens(last_hidden, ids, last_layer_attn)
        else:
            all_feat, sents, last_atten_pt = self.aggregate_tokens_vectorized(last_hidden, ids, last_layer_attn)
        last_atten_pt = last_atten_pt[:, 1:].contiguous()
        report_feat = all_feat[:, 0].contiguous()
        word_feat = all_feat[:, 1:].contiguous()
        return report_feat, word_feat, last_atten_pt, sents


# ----------------------------------------------------------------------------- MGCA (mgca_module.py)

@torch.compiler.disable  # strings on the host: eager under torch.compile
def _pad_mask(sents):
    return torch.from_numpy(np.array(sents)[:, 1:] == "[PAD]").bool()


# The official per-sample quantile loops, unchanged. Eager under torch.compile: `nonzero` has a
# data-dependent shape, and a graph break inside a loop makes Dynamo run the whole loss eagerly.
@torch.compiler.disable
def _clipped_word_weights(word_attn_q, bz, low_q, high_q):
    with torch.no_grad():
        atten_weights = word_attn_q.detach()
        word_atten_weights = []
        for i in range(bz):
            atten_weight = atten_weights[i]
            nonzero = atten_weight.nonzero().squeeze()
            low = torch.quantile(atten_weight[nonzero], low_q)
            high = torch.quantile(atten_weight[nonzero], high_q)
            atten_weight[nonzero] = atten_weight[nonzero].clip(low, high)
            word_atten_weights.append(atten_weight.clone())
        return torch.stack(word_atten_weights)


@torch.compiler.disable
def _clipped_patch_weights(img_attn_map, bz, low_q, high_q):
    with torch.no_grad():
        atten_weights = img_attn_map[:, :, 0, 1:].mean(dim=1)
        patch_atten_weights = []
        for i in range(bz):
            atten_weight = atten_weights[i]
            atten_weight = atten_weight.clip(torch.quantile(atten_weight, low_q),
                                             torch.quantile(atten_weight, high_q))
            patch_atten_weights.append(atten_weight.clone())
        return torch.stack(patch_atten_weights)


class MGCA(nn.Module):
    def __init__(self, shapes, idxtoword, aggregation="official"):
        super().__init__()
        self.hp = shapes
        self.img_encoder_q = ImageEncoder(shapes)
        self.text_encoder_q = BertEncoder(shapes, idxtoword, aggregation)
        self.prototype_layer = nn.Linear(shapes["embed_dim"], shapes["num_prototypes"], bias=False)

    @staticmethod
    def precision_at_k(output, target, top_k=(1,)):
        with torch.no_grad():
            maxk = max(top_k)
            batch_size = target.size(0)
            _, pred = output.topk(maxk, 1, True, True)
            pred = pred.t()
            correct = pred.eq(target.view(1, -1).expand_as(pred))
            return [correct[:k].reshape(-1).float().sum(0, keepdim=True).mul_(100.0 / batch_size) for k in top_k]

    @staticmethod
    def sinkhorn(Q, nmb_iters):
        with torch.no_grad():
            Q = Q.clone()
            Q /= torch.sum(Q)
            K, B = Q.shape
            r = torch.ones(K, device=Q.device) / K
            c = torch.ones(B, device=Q.device) / B
            for _ in range(nmb_iters):
                u = torch.sum(Q, dim=1)
                Q *= (r / u).unsqueeze(1)
                Q *= (c / torch.sum(Q, dim=0)).unsqueeze(0)
            return (Q / torch.sum(Q, dim=0, keepdim=True)).t().float()

    def forward(self, batch):
        img_feat_q, patch_feat_q = self.img_encoder_q(batch["imgs"])
        patch_emb_q = self.img_encoder_q.local_embed(patch_feat_q)
        patch_emb_q = F.normalize(patch_emb_q, dim=-1)
        img_emb_q = self.img_encoder_q.global_embed(img_feat_q)
        img_emb_q = F.normalize(img_emb_q, dim=-1)

        report_feat_q, word_feat_q, word_attn_q, sents = self.text_encoder_q(
            batch["caption_ids"], batch["attention_mask"], batch["token_type_ids"])
        word_emb_q = self.text_encoder_q.local_embed(word_feat_q)
        word_emb_q = F.normalize(word_emb_q, dim=-1)
        report_emb_q = self.text_encoder_q.global_embed(report_feat_q)
        report_emb_q = F.normalize(report_emb_q, dim=-1)

        # official: pad words are the "[PAD]" entries of the aggregated sentences
        mask = _pad_mask(sents).to(img_emb_q.device)
        img_attn_map = self.img_encoder_q.model.blocks[-1].attn.attention_map.detach()
        return self.loss(img_emb_q, report_emb_q, patch_emb_q, word_emb_q, word_attn_q, mask, img_attn_map)

    def loss(self, img_emb_q, report_emb_q, patch_emb_q, word_emb_q, word_attn_q, mask, img_attn_map):
        """The loss part of the official forward, from normalized embeddings: the ViT branch, or the
        ResNet branch (`"vit" not in img_encoder`) when img_attn_map is None."""
        hp = self.hp
        bz = img_emb_q.size(0)
        labels = torch.arange(bz).type_as(report_emb_q).long()
        scores = img_emb_q.mm(report_emb_q.t())
        scores /= hp["tau_ita"]
        scores1 = scores.transpose(0, 1)
        loss0 = F.cross_entropy(scores, labels)
        loss1 = F.cross_entropy(scores1, labels)
        loss_ita = loss0 + loss1
        i2t_acc1, i2t_acc5 = self.precision_at_k(scores, labels, top_k=(1, min(5, bz)))

        # ---- token-level alignment
        atten_sim = torch.bmm(word_emb_q, patch_emb_q.permute(0, 2, 1))
        atten_scores = F.softmax(atten_sim / hp["tau_local"], dim=-1)
        word_atten_output = torch.bmm(atten_scores, patch_emb_q)
        word_atten_output = F.normalize(word_atten_output, dim=-1)

        low_q, high_q = hp["quantiles"]
        word_atten_weights = _clipped_word_weights(word_attn_q, bz, low_q, high_q)
        word_atten_weights /= word_atten_weights.sum(dim=1, keepdims=True)

        word_sim = torch.bmm(word_emb_q, word_atten_output.permute(0, 2, 1)) / hp["tau_local"]
        word_num = word_sim.size(1)
        word_sim_1 = word_sim.reshape(bz * word_num, word_num)  # rearrange "b n1 n2 -> (b n1) n2"
        targets = torch.arange(word_num).type_as(word_emb_q).long().repeat(bz)
        loss_word_1 = torch.sum(F.cross_entropy(word_sim_1, targets, reduction="none")
                                * word_atten_weights.view(-1)) / bz
        word_sim_2 = word_sim.permute(0, 2, 1).reshape(bz * word_num, word_num)  # "b n1 n2 -> (b n2) n1"
        loss_word_2 = torch.sum(F.cross_entropy(word_sim_2, targets, reduction="none")
                                * word_atten_weights.view(-1)) / bz
        loss_word = (loss_word_1 + loss_word_2) / 2.

        atten_sim = torch.bmm(patch_emb_q, word_emb_q.permute(0, 2, 1))
        patch_num = patch_emb_q.size(1)
        atten_sim[mask.unsqueeze(1).repeat(1, patch_num, 1)] = float("-inf")
        atten_scores = F.softmax(atten_sim / hp["tau_local"], dim=-1)
        patch_atten_output = torch.bmm(atten_scores, word_emb_q)
        if img_attn_map is None:
            # ResNet: the output normalized, uniform patch weights (official)
            patch_atten_output = F.normalize(patch_atten_output, dim=-1)
            patch_num = patch_atten_output.size(1)
            patch_atten_weights = torch.ones(bz, patch_num).type_as(patch_emb_q) / patch_num
        else:
            # ViT: the patch→word output is not normalized (official)
            patch_atten_weights = _clipped_patch_weights(img_attn_map, bz, low_q, high_q)
            patch_atten_weights /= patch_atten_weights.sum(dim=1, keepdims=True)

        patch_sim = torch.bmm(patch_emb_q, patch_atten_output.permute(0, 2, 1)) / hp["tau_local"]
        patch_num = patch_sim.size(1)
        patch_sim_1 = patch_sim.reshape(bz * patch_num, patch_num)
        targets = torch.arange(patch_num).type_as(patch_emb_q).long().repeat(bz)
        loss_patch_1 = torch.sum(F.cross_entropy(patch_sim_1, targets, reduction="none")
                                 * patch_atten_weights.view(-1)) / bz
        patch_sim_2 = patch_sim.permute(0, 2, 1).reshape(bz * patch_num, patch_num)
        loss_patch_2 = torch.sum(F.cross_entropy(patch_sim_2, targets, reduction="none")
                                 * patch_atten_weights.view(-1)) / bz
        loss_patch = (loss_patch_1 + loss_patch_2) / 2.
        loss_local = loss_patch + loss_word

        # ---- prototype-level alignment
        with torch.no_grad():
            w = self.prototype_layer.weight.data.clone()
            w = F.normalize(w, dim=1, p=2)
            self.prototype_layer.weight.copy_(w)
        img_proto_out = self.prototype_layer(img_emb_q)
        report_proto_out = self.prototype_layer(report_emb_q)
        with torch.no_grad():
            # codes in at least fp32 under autocast (docs/contract.md §2.3); the official code keeps the input dtype
            img_code = torch.exp(_at_least_fp32(img_proto_out) / hp["epsilon"]).t()
            img_code = self.sinkhorn(img_code, hp["sinkhorn_iterations"])
            report_code = torch.exp(_at_least_fp32(report_proto_out) / hp["epsilon"]).t()
            report_code = self.sinkhorn(report_code, hp["sinkhorn_iterations"])
        img_proto_prob = F.softmax(img_proto_out / hp["tau_proto"], dim=1)
        report_proto_prob = F.softmax(report_proto_out / hp["tau_proto"], dim=1)
        loss_i2t_proto = -torch.mean(torch.sum(img_code * torch.log(report_proto_prob), dim=1))
        loss_t2i_proto = -torch.mean(torch.sum(report_code * torch.log(img_proto_prob), dim=1))
        loss_proto = (loss_i2t_proto + loss_t2i_proto) / 2.

        parts = dict(loss_ita=loss_ita, loss_ita_i2t=loss0, loss_ita_t2i=loss1, loss_cta=loss_local,
                     loss_word=loss_word, loss_patch=loss_patch, loss_cpa=loss_proto,
                     acc1=i2t_acc1, acc5=i2t_acc5)
        return loss_ita, loss_local, loss_proto, parts

    def on_after_backward(self, epoch):
        if epoch < self.hp["freeze_prototypes_epochs"]:
            for param in self.prototype_layer.parameters():
                param.grad = None


# ----------------------------------------------------------------------------- weights from mgca-hpc

def _head_map(ours, theirs, conv):
    """Our ProjectionHead (fc1, bn1, fc2, bn2) -> the official Sequential (0, 1, 3, 4)."""
    m = {}
    for a, b in (("fc1", "0"), ("fc2", "3")):
        m[f"{ours}.{a}.weight"] = (f"{theirs}.head.{b}.weight", (lambda t: t[:, :, None]) if conv else None)
    for a, b in (("bn1", "1"), ("bn2", "4")):
        for n in ("weight", "bias", "running_mean", "running_var", "num_batches_tracked"):
            m[f"{ours}.{a}.{n}"] = (f"{theirs}.head.{b}.{n}", None)
    return m


def load_mgca_hpc_state(model, tensors):
    """Loads our model's state (mgca-hpc names, numpy arrays) into `model`; strict both ways."""
    state = model.state_dict()
    out = {}
    for name, array in tensors.items():
        t = torch.from_numpy(np.ascontiguousarray(array))
        if name.startswith("image."):
            out["img_encoder_q.model." + name[len("image."):]] = t
        elif name.startswith("text."):
            rest = name[len("text."):]
            if rest.startswith("embeddings."):
                rest = rest.replace("embeddings.norm.", "embeddings.LayerNorm.")
                out["text_encoder_q.model." + rest] = t
                continue
            _, i, part = rest.split(".", 2)
            pre = f"text_encoder_q.model.encoder.layer.{i}."
            if part.startswith("attn.qkv."):
                kind = part.rsplit(".", 1)[1]
                q, k, v = t.chunk(3, dim=0)
                for which, piece in (("query", q), ("key", k), ("value", v)):
                    out[f"{pre}attention.self.{which}.{kind}"] = piece.contiguous()
                continue
            table = {"attn.proj.": "attention.output.dense.", "norm1.": "attention.output.LayerNorm.",
                     "fc1.": "intermediate.dense.", "fc2.": "output.dense.", "norm2.": "output.LayerNorm."}
            for a, b in table.items():
                if part.startswith(a):
                    out[pre + b + part[len(a):]] = t
                    break
            else:
                raise KeyError(f"no reference parameter for {name}")
        elif name == "prototypes.weight":
            out["prototype_layer.weight"] = t
        else:
            heads = {}
            heads.update(_head_map("image_global_head", "img_encoder_q.global_embed", False))
            heads.update(_head_map("image_local_head.head", "img_encoder_q.local_embed", True))
            heads.update(_head_map("text_global_head", "text_encoder_q.global_embed", False))
            heads.update(_head_map("text_local_head.head", "text_encoder_q.local_embed", True))
            if name not in heads:
                raise KeyError(f"no reference parameter for {name}")
            target, fn = heads[name]
            out[target] = fn(t) if fn else t
    # Our heads have no Linear bias before their BatchNorms (a training-mode
    # BatchNorm cancels any bias, so its true gradient is 0): the official
    # heads' biases there are zero, the same function.
    for key in set(state) - set(out):
        if key.endswith((".head.0.bias", ".head.3.bias")) and "_embed." in key:
            out[key] = torch.zeros_like(state[key])
    missing = sorted(set(state) - set(out))
    unexpected = sorted(set(out) - set(state))
    if missing or unexpected:
        raise KeyError(f"weights do not match the reference model: missing {missing[:8]}, unexpected {unexpected[:8]}")
    for k, v in out.items():
        if tuple(state[k].shape) != tuple(v.shape):
            if state[k].numel() == v.numel() == 1:  # a scalar buffer stored as [1]
                out[k] = v.reshape(state[k].shape)
                continue
            raise ValueError(f"{k}: reference shape {tuple(state[k].shape)}, file {tuple(v.shape)}")
    model.load_state_dict(out, strict=True)
