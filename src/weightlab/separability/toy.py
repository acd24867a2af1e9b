"""A small transformer with TransformerLens hook points, for experiments A (constraint) and C (grokking).

TransformerLens 4 removed `HookedTransformer`; its `HookedRootModule` and `HookPoint` remain, so
this model uses them and TransformerLens's parameter and hook names: ``embed.W_E``,
``pos_embed.W_pos``, ``blocks.{i}.attn.W_Q`` [heads, d_model, d_head] (``W_K``, ``W_V`` alike, with
biases ``b_Q`` [heads, d_head]...), ``blocks.{i}.attn.W_O`` [heads, d_head, d_model], ``blocks.{i}.mlp.W_in``
/ ``W_out``, ``ln_final.w`` / ``.b``, ``unembed.W_U``; hooks ``hook_embed``, ``hook_pos_embed``,
``blocks.{i}.hook_resid_pre``, ``blocks.{i}.attn.hook_pattern`` / ``hook_z``, ``blocks.{i}.hook_attn_out``,
``blocks.{i}.hook_resid_mid``, ``blocks.{i}.mlp.hook_post``, ``blocks.{i}.hook_mlp_out``,
``blocks.{i}.hook_resid_post``, ``ln_final.hook_scale``, ``ln_final.hook_out`` (the final LayerNorm's
output after its scale and bias; not a TransformerLens name). Every intervention (a clamp, an ablation) is
a forward hook on one of these names (``model.hooks(fwd_hooks=...)`` or ``run_with_hooks``), never
an edit of this code.

``mlp_positions="last"`` computes attention (its queries, pattern rows and output) and the MLP at
the final position only; the other positions keep their embeddings in the residual stream. In a
one-layer model whose loss reads only the final position (modular addition), the other positions'
attention and MLP outputs reach no logit that is used, so skipping them changes nothing that is
trained or measured (the final position's logits, pattern row and residual are the full model's,
tested) and saves most of the compute. Only one-layer models may use it (a later layer's keys
would read the skipped outputs).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any, Literal

import torch
from torch import nn
from transformer_lens import HookedRootModule
from transformer_lens.hook_points import HookPoint


@dataclass(frozen=True)
class ToyConfig:
    d_vocab: int
    n_ctx: int
    d_model: int = 128
    n_heads: int = 4
    d_head: int = 32
    n_layers: int = 1
    d_mlp: int | None = 512  # None: attention only
    normalization: Literal["LN", None] = "LN"
    mlp_positions: Literal["all", "last"] = "all"  # "last": attention queries and MLP at the final position only
    d_vocab_out: int | None = None  # None: d_vocab
    init_range: float | None = None  # std of the normal initialisation; None: 0.8 / sqrt(d_model) (TransformerLens)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


class Embed(nn.Module):
    def __init__(self, d_vocab: int, d_model: int):
        super().__init__()
        self.W_E = nn.Parameter(torch.empty(d_vocab, d_model))

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        return self.W_E[tokens]


class PosEmbed(nn.Module):
    def __init__(self, n_ctx: int, d_model: int):
        super().__init__()
        self.W_pos = nn.Parameter(torch.empty(n_ctx, d_model))

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        return self.W_pos[: tokens.shape[-1]].unsqueeze(0).expand(tokens.shape[0], -1, -1)


class LayerNorm(nn.Module):
    def __init__(self, d_model: int, eps: float = 1e-5):
        super().__init__()
        self.eps = eps
        self.w = nn.Parameter(torch.ones(d_model))
        self.b = nn.Parameter(torch.zeros(d_model))
        self.hook_scale = HookPoint()  # [batch, pos, 1]
        self.hook_normalized = HookPoint()  # x / scale, before w and b (as TransformerLens)
        self.hook_out = HookPoint()  # the output, after w and b (the site of experiment A's clamp after ln_final)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x - x.mean(-1, keepdim=True)
        scale = self.hook_scale((x.pow(2).mean(-1, keepdim=True) + self.eps).sqrt())
        return self.hook_out(self.hook_normalized(x / scale) * self.w + self.b)


class Attention(nn.Module):
    def __init__(self, cfg: ToyConfig):
        super().__init__()
        h, d, k = cfg.n_heads, cfg.d_model, cfg.d_head
        self.W_Q, self.W_K, self.W_V = (nn.Parameter(torch.empty(h, d, k)) for _ in range(3))
        self.b_Q, self.b_K, self.b_V = (nn.Parameter(torch.zeros(h, k)) for _ in range(3))
        self.W_O = nn.Parameter(torch.empty(h, k, d))
        self.b_O = nn.Parameter(torch.zeros(d))
        self.register_buffer("mask", torch.tril(torch.ones(cfg.n_ctx, cfg.n_ctx, dtype=torch.bool)), persistent=False)
        self.hook_q, self.hook_k, self.hook_v = HookPoint(), HookPoint(), HookPoint()  # [batch, pos, head, d_head]
        self.hook_attn_scores = HookPoint()  # [batch, head, query, key]
        self.hook_pattern = HookPoint()  # [batch, head, query, key]
        self.hook_z = HookPoint()  # [batch, pos, head, d_head]

    def forward(self, x: torch.Tensor, queries: int | None = None) -> torch.Tensor:
        """Attention output [batch, queries, d_model] for the last `queries` positions (None: all).
        One matmul for the projections of every head and one for the output (plain matmuls on
        reshaped weights, about half the CPU time of an einsum each); hook shapes as TransformerLens's,
        with `queries` query rows."""
        b, n, d = x.shape
        h, _, k = self.W_Q.shape
        m = n if queries is None else queries
        if m == n:
            weights = torch.stack((self.W_Q, self.W_K, self.W_V)).permute(2, 0, 1, 3).reshape(d, 3 * h * k)
            qkv = (x @ weights).view(b, n, 3, h, k) + torch.stack((self.b_Q, self.b_K, self.b_V))
            q, key, v = qkv[:, :, 0], qkv[:, :, 1], qkv[:, :, 2]
        else:
            weights = torch.stack((self.W_K, self.W_V)).permute(2, 0, 1, 3).reshape(d, 2 * h * k)
            kv = (x @ weights).view(b, n, 2, h, k) + torch.stack((self.b_K, self.b_V))
            key, v = kv[:, :, 0], kv[:, :, 1]
            q = (x[:, n - m:] @ self.W_Q.permute(1, 0, 2).reshape(d, h * k)).view(b, m, h, k) + self.b_Q
        q, key, v = self.hook_q(q), self.hook_k(key), self.hook_v(v)
        scores = (q.transpose(1, 2) @ key.permute(0, 2, 3, 1)) / math.sqrt(k)
        scores = self.hook_attn_scores(scores.masked_fill(~self.mask[n - m:n, :n], float("-inf")))
        pattern = self.hook_pattern(scores.softmax(-1))
        z = self.hook_z((pattern @ v.transpose(1, 2)).transpose(1, 2))
        return z.reshape(b, m, h * k) @ self.W_O.reshape(h * k, -1) + self.b_O


class MLP(nn.Module):
    def __init__(self, d_model: int, d_mlp: int):
        super().__init__()
        self.W_in = nn.Parameter(torch.empty(d_model, d_mlp))
        self.b_in = nn.Parameter(torch.zeros(d_mlp))
        self.W_out = nn.Parameter(torch.empty(d_mlp, d_model))
        self.b_out = nn.Parameter(torch.zeros(d_model))
        self.hook_pre, self.hook_post = HookPoint(), HookPoint()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        post = self.hook_post(torch.relu(self.hook_pre(x @ self.W_in + self.b_in)))
        return post @ self.W_out + self.b_out


class Block(nn.Module):
    def __init__(self, cfg: ToyConfig):
        super().__init__()
        norm = cfg.normalization == "LN"
        self.ln1 = LayerNorm(cfg.d_model) if norm else nn.Identity()
        self.attn = Attention(cfg)
        self.mlp = MLP(cfg.d_model, cfg.d_mlp) if cfg.d_mlp else None
        self.ln2 = LayerNorm(cfg.d_model) if norm and self.mlp is not None else nn.Identity()
        self.last_only = cfg.mlp_positions == "last"
        for name in ("hook_resid_pre", "hook_attn_out", "hook_resid_mid", "hook_mlp_out", "hook_resid_post"):
            setattr(self, name, HookPoint())

    def forward(self, resid: torch.Tensor) -> torch.Tensor:
        resid = self.hook_resid_pre(resid)
        if self.last_only:  # only the final position reads attention and the MLP (exact for one layer, see the module)
            last = resid[:, -1:] + self.hook_attn_out(self.attn(self.ln1(resid), queries=1))
            resid = self.hook_resid_mid(torch.cat([resid[:, :-1], last], dim=1))
            if self.mlp is not None:
                last = last + self.hook_mlp_out(self.mlp(self.ln2(last)))
                resid = torch.cat([resid[:, :-1], last], dim=1)
            return self.hook_resid_post(resid)
        resid = self.hook_resid_mid(resid + self.hook_attn_out(self.attn(self.ln1(resid))))
        if self.mlp is not None:
            resid = resid + self.hook_mlp_out(self.mlp(self.ln2(resid)))
        return self.hook_resid_post(resid)


class Unembed(nn.Module):
    def __init__(self, d_model: int, d_vocab_out: int):
        super().__init__()
        self.W_U = nn.Parameter(torch.empty(d_model, d_vocab_out))
        self.b_U = nn.Parameter(torch.zeros(d_vocab_out))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x @ self.W_U + self.b_U


class ToyTransformer(HookedRootModule):
    """Token ids [batch, pos] -> logits [batch, pos, d_vocab_out], with TransformerLens hook points."""

    def __init__(self, cfg: ToyConfig | None = None, **kwargs: Any):
        super().__init__()
        self.cfg = cfg if cfg is not None else ToyConfig(**kwargs)
        c = self.cfg
        if c.mlp_positions == "last" and c.n_layers != 1:
            raise ValueError(f"mlp_positions='last' is exact for one layer only (n_layers={c.n_layers}).")
        self.embed = Embed(c.d_vocab, c.d_model)
        self.hook_embed = HookPoint()
        self.pos_embed = PosEmbed(c.n_ctx, c.d_model)
        self.hook_pos_embed = HookPoint()
        self.blocks = nn.ModuleList(Block(c) for _ in range(c.n_layers))
        self.ln_final = LayerNorm(c.d_model) if c.normalization == "LN" else nn.Identity()
        self.unembed = Unembed(c.d_model, c.d_vocab_out or c.d_vocab)
        self.reset_parameters()
        self.setup()

    def reset_parameters(self) -> None:
        """Normal(0, init_range) for every weight matrix (``W_*``), as TransformerLens initialises;
        every bias (``b_*``, including the per-head [heads, d_head] ones) 0, LayerNorm scale 1."""
        std = self.cfg.init_range if self.cfg.init_range is not None else 0.8 / math.sqrt(self.cfg.d_model)
        for name, param in self.named_parameters():
            leaf = name.rsplit(".", 1)[-1]
            if leaf == "w":
                nn.init.ones_(param)
            elif leaf.startswith("W_"):
                nn.init.normal_(param, std=std)
            else:
                nn.init.zeros_(param)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        resid = self.hook_embed(self.embed(tokens)) + self.hook_pos_embed(self.pos_embed(tokens))
        for block in self.blocks:
            resid = block(resid)
        return self.unembed(self.ln_final(resid))

    def value_weights(self) -> list[torch.Tensor]:
        """W_V of every layer (the A_param observable)."""
        return [block.attn.W_V for block in self.blocks]

    def ln_final_scale(self) -> torch.Tensor | None:
        """ln_final.w, or None without LayerNorm (the A_learned observable)."""
        return self.ln_final.w if isinstance(self.ln_final, LayerNorm) else None


def build_toy_transformer(**kwargs: Any) -> ToyTransformer:
    """The checkpoint builder (arch 'toy_transformer'): the keyword arguments of ToyConfig."""
    return ToyTransformer(ToyConfig(**kwargs))


# The architectures a separability checkpoint may name, for weightlab.checkpoints.
ARCHITECTURES = {"toy_transformer": build_toy_transformer}
