//! The Llama decoder, also serving Qwen2/2.5 and Qwen3 through [`Config`] switches.
//!
//! Follows transformers' `modeling_llama.py` / `modeling_qwen2.py` / `modeling_qwen3.py`:
//! token embedding, `num_hidden_layers` pre-norm blocks (RMSNorm → grouped-query attention with
//! RoPE → residual, RMSNorm → SwiGLU MLP → residual), a final RMSNorm and the LM head (tied to
//! the embedding when the checkpoint has no `lm_head.weight`).
//!
//! Inference batches are left-padded: a `[batch, keys]` boolean `key_valid` marks real tokens,
//! positions are given per token, and attention never looks at padding. Training batches are
//! right-padded and may pack several examples into a row ([`TrainBatch`]). The KV cache is explicit state
//! ([`KvCache`]) preallocated for the whole generation, so decoding writes one column per step
//! and never recomputes the prefix.

use tch::{Device, Kind, Tensor, nn};

use crate::config::Config;
use crate::layers::{Linear, RmsNorm};

/// Per-layer key/value tensors, preallocated to `[batch, kv_heads, capacity, head_dim]`.
#[derive(Debug)]
pub struct KvCache {
    keys: Vec<Tensor>,
    values: Vec<Tensor>,
    len: i64,
}

impl KvCache {
    /// An empty cache able to hold `capacity` positions for `batch` sequences.
    pub fn new(cfg: &Config, batch: i64, capacity: i64, kind: Kind, device: Device) -> KvCache {
        let shape = [batch, cfg.num_key_value_heads, capacity, cfg.head_dim];
        let alloc = || {
            (0..cfg.num_hidden_layers)
                .map(|_| Tensor::zeros(shape, (kind, device)))
                .collect()
        };
        KvCache {
            keys: alloc(),
            values: alloc(),
            len: 0,
        }
    }

    /// Positions filled so far.
    pub fn len(&self) -> i64 {
        self.len
    }

    /// Whether nothing has been written yet.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Positions the cache can hold.
    pub fn capacity(&self) -> i64 {
        self.keys.first().map_or(0, |k| k.size()[2])
    }

    /// Forgets all positions, keeping the allocation.
    pub fn reset(&mut self) {
        self.len = 0;
    }

    /// Keeps only the batch rows in `rows` (in that order; rows may repeat), e.g. to drop
    /// finished sequences or to fan one prompt out to `n` samples.
    pub fn select_rows(&mut self, rows: &Tensor) {
        for t in self.keys.iter_mut().chain(self.values.iter_mut()) {
            *t = t.index_select(0, rows);
        }
    }
}

/// Rotary embedding angles for given positions.
#[derive(Debug)]
struct Rotary {
    inv_freq: Tensor,
}

impl Rotary {
    fn new(cfg: &Config, device: Device) -> Rotary {
        let inv: Vec<f32> = cfg.inv_freq().iter().map(|&f| f as f32).collect();
        Rotary {
            inv_freq: Tensor::from_slice(&inv).to_device(device),
        }
    }

    /// `(cos, sin)` of shape `[batch, 1, seq, head_dim]` in `kind`, computed in f32.
    fn cos_sin(&self, positions: &Tensor, kind: Kind) -> (Tensor, Tensor) {
        let freqs = positions.to_kind(Kind::Float).unsqueeze(-1) * &self.inv_freq;
        let emb = Tensor::cat(&[&freqs, &freqs], -1).unsqueeze(1);
        (emb.cos().to_kind(kind), emb.sin().to_kind(kind))
    }
}

fn rotate_half(x: &Tensor) -> Tensor {
    let half = x.size()[3] / 2;
    Tensor::cat(&[-x.narrow(3, half, half), x.narrow(3, 0, half)], 3)
}

fn apply_rotary(x: &Tensor, cos: &Tensor, sin: &Tensor) -> Tensor {
    x * cos + rotate_half(x) * sin
}

#[derive(Debug)]
struct Attention {
    q_proj: Linear,
    k_proj: Linear,
    v_proj: Linear,
    o_proj: Linear,
    q_norm: Option<RmsNorm>,
    k_norm: Option<RmsNorm>,
    heads: i64,
    kv_heads: i64,
    head_dim: i64,
}

impl Attention {
    fn new(cfg: &Config, p: nn::Path) -> Attention {
        let (h, kv, d) = (
            cfg.num_attention_heads,
            cfg.num_key_value_heads,
            cfg.head_dim,
        );
        let norm = |name: &str| {
            cfg.qk_norm
                .then(|| RmsNorm::new(&p / name, d, cfg.rms_norm_eps))
        };
        Attention {
            q_proj: Linear::new(&p / "q_proj", cfg.hidden_size, h * d, cfg.qkv_bias),
            k_proj: Linear::new(&p / "k_proj", cfg.hidden_size, kv * d, cfg.qkv_bias),
            v_proj: Linear::new(&p / "v_proj", cfg.hidden_size, kv * d, cfg.qkv_bias),
            o_proj: Linear::new(&p / "o_proj", h * d, cfg.hidden_size, cfg.o_bias),
            q_norm: norm("q_norm"),
            k_norm: norm("k_norm"),
            heads: h,
            kv_heads: kv,
            head_dim: d,
        }
    }

    /// `mask: None` is plain causal attention (libtorch's fused kernels), for batches whose
    /// padding, if any, is on the right of every row: no real token can see it.
    fn forward(
        &self,
        x: &Tensor,
        cos_sin: &(Tensor, Tensor),
        mask: Option<&Tensor>,
        cache: Option<(&mut Tensor, &mut Tensor, i64)>,
    ) -> Tensor {
        let (b, t, _) = x.size3().expect("hidden states are [batch, seq, hidden]");
        let split = |y: Tensor, heads: i64, norm: &Option<RmsNorm>| {
            let y = y.view([b, t, heads, self.head_dim]);
            let y = match norm {
                Some(n) => n.forward(&y),
                None => y,
            };
            y.transpose(1, 2)
        };
        let q = split(self.q_proj.forward(x), self.heads, &self.q_norm);
        let k = split(self.k_proj.forward(x), self.kv_heads, &self.k_norm);
        let v = split(self.v_proj.forward(x), self.kv_heads, &None);
        let (cos, sin) = cos_sin;
        let q = apply_rotary(&q, cos, sin);
        let k = apply_rotary(&k, cos, sin);
        let (k, v) = match cache {
            Some((kc, vc, offset)) => {
                kc.narrow(2, offset, t).copy_(&k);
                vc.narrow(2, offset, t).copy_(&v);
                (kc.narrow(2, 0, offset + t), vc.narrow(2, 0, offset + t))
            }
            None => (k, v),
        };
        let y = Tensor::scaled_dot_product_attention(
            &q,
            &k,
            &v,
            mask,
            0.0,
            mask.is_none(),
            None,
            self.kv_heads != self.heads,
        );
        let y = y
            .transpose(1, 2)
            .reshape([b, t, self.heads * self.head_dim]);
        self.o_proj.forward(&y)
    }
}

#[derive(Debug)]
struct Mlp {
    gate_proj: Linear,
    up_proj: Linear,
    down_proj: Linear,
}

impl Mlp {
    fn new(cfg: &Config, p: nn::Path) -> Mlp {
        let (h, i) = (cfg.hidden_size, cfg.intermediate_size);
        Mlp {
            gate_proj: Linear::new(&p / "gate_proj", h, i, cfg.mlp_bias),
            up_proj: Linear::new(&p / "up_proj", h, i, cfg.mlp_bias),
            down_proj: Linear::new(&p / "down_proj", i, h, cfg.mlp_bias),
        }
    }

    fn forward(&self, x: &Tensor) -> Tensor {
        let gate = self.gate_proj.forward(x).silu();
        self.down_proj.forward(&(gate * self.up_proj.forward(x)))
    }
}

#[derive(Debug)]
struct Block {
    input_layernorm: RmsNorm,
    self_attn: Attention,
    post_attention_layernorm: RmsNorm,
    mlp: Mlp,
}

impl Block {
    fn new(cfg: &Config, p: nn::Path) -> Block {
        Block {
            input_layernorm: RmsNorm::new(
                &p / "input_layernorm",
                cfg.hidden_size,
                cfg.rms_norm_eps,
            ),
            self_attn: Attention::new(cfg, &p / "self_attn"),
            post_attention_layernorm: RmsNorm::new(
                &p / "post_attention_layernorm",
                cfg.hidden_size,
                cfg.rms_norm_eps,
            ),
            mlp: Mlp::new(cfg, &p / "mlp"),
        }
    }

    fn forward(
        &self,
        x: &Tensor,
        cos_sin: &(Tensor, Tensor),
        mask: Option<&Tensor>,
        cache: Option<(&mut Tensor, &mut Tensor, i64)>,
    ) -> Tensor {
        let h = x + self
            .self_attn
            .forward(&self.input_layernorm.forward(x), cos_sin, mask, cache);
        &h + self.mlp.forward(&self.post_attention_layernorm.forward(&h))
    }
}

/// Which positions the LM head is applied to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Logits {
    /// No logits (only hidden states are wanted).
    None,
    /// Only the last position of each row (generation).
    Last,
    /// Every position.
    All,
}

/// A decoder-only transformer with its weights (declared under `model.*` and `lm_head.*`).
#[derive(Debug)]
pub struct Transformer {
    embed_tokens: Tensor,
    layers: Vec<Block>,
    norm: RmsNorm,
    lm_head: Option<Linear>,
    rotary: Rotary,
    cfg: Config,
}

impl Transformer {
    /// Declares every weight under `root` (HF names) on `root`'s device.
    pub fn new(cfg: &Config, root: nn::Path) -> Transformer {
        let m = &root / "model";
        Transformer {
            embed_tokens: (&m / "embed_tokens")
                .zeros_no_train("weight", &[cfg.vocab_size, cfg.hidden_size]),
            layers: (0..cfg.num_hidden_layers)
                .map(|i| Block::new(cfg, &m / "layers" / i))
                .collect(),
            norm: RmsNorm::new(&m / "norm", cfg.hidden_size, cfg.rms_norm_eps),
            lm_head: (!cfg.tie_word_embeddings)
                .then(|| Linear::new(&root / "lm_head", cfg.hidden_size, cfg.vocab_size, false)),
            rotary: Rotary::new(cfg, root.device()),
            cfg: cfg.clone(),
        }
    }

    /// The configuration the model was built from.
    pub fn config(&self) -> &Config {
        &self.cfg
    }

    /// Runs the decoder on `input_ids` (`[batch, seq]`, i64).
    ///
    /// - `positions`: `[batch, seq]` RoPE positions of those tokens.
    /// - `key_valid`: `[batch, keys]` bool, `keys` = cached positions + `seq`; false marks
    ///   left padding, which no real token attends to.
    /// - `cache`: when given, new keys/values are written at `cache.len()` and the cache grows
    ///   by `seq`.
    /// - `capture`: indices of residual-stream states to return, as transformers'
    ///   `hidden_states[i]`: `i < num_hidden_layers` is the input of block `i` (0 = embeddings),
    ///   `i == num_hidden_layers` the final-normed output.
    ///
    /// Returns f32 logits (`[batch, seq or 1, vocab]`, or `None`) and the captured states in
    /// the order of `capture`.
    pub fn forward(
        &self,
        input_ids: &Tensor,
        positions: &Tensor,
        key_valid: &Tensor,
        cache: Option<&mut KvCache>,
        capture: &[usize],
        logits: Logits,
    ) -> (Option<Tensor>, Vec<Tensor>) {
        let _guard = tch::no_grad_guard();
        self.run(input_ids, positions, key_valid, cache, capture, logits)
    }

    /// Final-normed hidden states (`[batch, seq, hidden]`) of a training batch with autograd
    /// on: gradients flow to whatever requires them (adapters, or every weight in full
    /// finetuning). [`Transformer::logits`] turns them into logits.
    pub fn forward_train(&self, batch: &TrainBatch) -> Tensor {
        let mask = batch.mask();
        let mask = mask.as_ref();
        let cos_sin = self
            .rotary
            .cos_sin(&batch.positions, self.embed_tokens.kind());
        let mut h = Tensor::embedding(&self.embed_tokens, &batch.ids, -1, false, false);
        for layer in &self.layers {
            h = layer.forward(&h, &cos_sin, mask, None);
        }
        self.norm.forward(&h)
    }

    /// Residual-stream states (`capture` numbered as in [`Transformer::forward`]) of an
    /// unpacked right-padded batch, without gradients. Blocks after the deepest requested
    /// state are not run.
    pub fn states(&self, batch: &TrainBatch, capture: &[usize]) -> Vec<Tensor> {
        let _g = tch::no_grad_guard();
        let mask = batch.mask();
        let mask = mask.as_ref();
        let cos_sin = self
            .rotary
            .cos_sin(&batch.positions, self.embed_tokens.kind());
        let deepest = capture.iter().copied().max().unwrap_or(0);
        let mut out: Vec<Option<Tensor>> = capture.iter().map(|_| None).collect();
        let mut keep = |i: usize, h: &Tensor| {
            for (slot, _) in out.iter_mut().zip(capture).filter(|(_, c)| **c == i) {
                *slot = Some(h.shallow_clone());
            }
        };
        let mut h = Tensor::embedding(&self.embed_tokens, &batch.ids, -1, false, false);
        for (i, layer) in self.layers.iter().enumerate().take(deepest) {
            keep(i, &h);
            h = layer.forward(&h, &cos_sin, mask, None);
        }
        if deepest == self.layers.len() {
            h = self.norm.forward(&h);
        }
        keep(deepest, &h);
        out.into_iter()
            .map(|t| t.expect("capture index checked by caller"))
            .collect()
    }

    /// One forward and backward pass over a training batch: `loss` maps the final-normed
    /// hidden states (`[batch, seq, hidden]`) to the scalar to differentiate, and gradients
    /// accumulate into whatever requires them.
    ///
    /// Libtorch's generator is reseeded from `dropout_seed` and the layer index before each
    /// block runs, so adapter dropout draws the same masks whether or not the block is
    /// recomputed. With `checkpoint`, blocks run without keeping their activations and are
    /// recomputed one at a time during the backward pass: memory holds one block's graph
    /// plus each block's input instead of every block's graph, for one more forward pass.
    pub fn train_pass(
        &self,
        batch: &TrainBatch,
        checkpoint: bool,
        dropout_seed: i64,
        loss: impl FnOnce(&Transformer, &Tensor) -> Tensor,
    ) {
        let mask = batch.mask();
        let mask = mask.as_ref();
        let cos_sin = self
            .rotary
            .cos_sin(&batch.positions, self.embed_tokens.kind());
        let reseed = |i: usize| {
            tch::manual_seed(
                dropout_seed.wrapping_add((i as i64 + 1).wrapping_mul(0x9e37_79b9)) & i64::MAX,
            )
        };
        let embedded = Tensor::embedding(&self.embed_tokens, &batch.ids, -1, false, false);
        if !checkpoint {
            let mut h = embedded;
            for (i, layer) in self.layers.iter().enumerate() {
                reseed(i);
                h = layer.forward(&h, &cos_sin, mask, None);
            }
            let l = loss(self, &self.norm.forward(&h));
            l.backward();
            return;
        }
        // Forward without a graph, keeping each block's input.
        let mut inputs = Vec::with_capacity(self.layers.len());
        let mut h = embedded.detach();
        {
            let _g = tch::no_grad_guard();
            for (i, layer) in self.layers.iter().enumerate() {
                reseed(i);
                let next = layer.forward(&h, &cos_sin, mask, None);
                inputs.push(std::mem::replace(&mut h, next));
            }
        }
        let top = h.set_requires_grad(true);
        let l = loss(self, &self.norm.forward(&top));
        l.backward();
        // Backward block by block: rebuild block i's graph from its input and push the
        // gradient of its output through it; (y * g).sum() has exactly g as y's gradient.
        let mut grad = top.grad();
        for (i, layer) in self.layers.iter().enumerate().rev() {
            let x = inputs[i].detach().set_requires_grad(true);
            reseed(i);
            let y = layer.forward(&x, &cos_sin, mask, None);
            (y * &grad).sum(Kind::Float).backward();
            grad = x.grad();
        }
        if embedded.requires_grad() {
            (embedded * grad).sum(Kind::Float).backward();
        }
    }

    /// The projections LoRA can wrap, under their Hugging Face names
    /// (`model.layers.0.self_attn.q_proj`), in layer order.
    pub fn projections_mut(&mut self) -> Vec<(String, &mut Linear)> {
        let mut out = vec![];
        for (i, b) in self.layers.iter_mut().enumerate() {
            let a = &mut b.self_attn;
            let m = &mut b.mlp;
            for (name, lin) in [
                ("self_attn.q_proj", &mut a.q_proj),
                ("self_attn.k_proj", &mut a.k_proj),
                ("self_attn.v_proj", &mut a.v_proj),
                ("self_attn.o_proj", &mut a.o_proj),
                ("mlp.gate_proj", &mut m.gate_proj),
                ("mlp.up_proj", &mut m.up_proj),
                ("mlp.down_proj", &mut m.down_proj),
            ] {
                out.push((format!("model.layers.{i}.{name}"), lin));
            }
        }
        out
    }

    fn run(
        &self,
        input_ids: &Tensor,
        positions: &Tensor,
        key_valid: &Tensor,
        mut cache: Option<&mut KvCache>,
        capture: &[usize],
        logits: Logits,
    ) -> (Option<Tensor>, Vec<Tensor>) {
        let seq = input_ids.size()[1];
        let offset = cache.as_ref().map_or(0, |c| c.len);
        let kind = self.embed_tokens.kind();
        let device = self.embed_tokens.device();
        let mask = attention_mask(key_valid, offset, seq, device);
        let cos_sin = self.rotary.cos_sin(positions, kind);
        let mut h = Tensor::embedding(&self.embed_tokens, input_ids, -1, false, false);
        let mut captured: Vec<Option<Tensor>> = capture.iter().map(|_| None).collect();
        let mut keep = |i: usize, h: &Tensor| {
            for (slot, &want) in captured.iter_mut().zip(capture) {
                if want == i {
                    *slot = Some(h.shallow_clone());
                }
            }
        };
        for (i, layer) in self.layers.iter().enumerate() {
            keep(i, &h);
            let layer_cache = cache
                .as_deref_mut()
                .map(|c| (&mut c.keys[i], &mut c.values[i], offset));
            h = layer.forward(&h, &cos_sin, Some(&mask), layer_cache);
        }
        let h = self.norm.forward(&h);
        keep(self.layers.len(), &h);
        if let Some(c) = cache {
            c.len += seq;
        }
        let logits = match logits {
            Logits::None => None,
            Logits::Last => Some(self.logits(&h.narrow(1, seq - 1, 1))),
            Logits::All => Some(self.logits(&h)),
        };
        (
            logits,
            captured
                .into_iter()
                .map(|c| c.expect("capture index checked by caller"))
                .collect(),
        )
    }

    /// f32 logits of final-normed hidden states (the LM head, or the tied embedding).
    pub fn logits(&self, h: &Tensor) -> Tensor {
        let logits = match &self.lm_head {
            Some(head) => head.forward(h),
            None => h.linear::<Tensor>(&self.embed_tokens, None),
        };
        logits.to_kind(Kind::Float)
    }
}

/// A training batch: `[batch, seq]` token ids, RoPE positions and segment ids. Segment 0 is
/// padding; segments 1, 2, ... are the examples packed into a row, in order, each with
/// positions from 0. A token attends to the earlier tokens of its own segment only, so packed
/// examples never see each other.
#[derive(Debug)]
pub struct TrainBatch {
    /// Token ids (i64).
    pub ids: Tensor,
    /// RoPE positions (i64), restarting at 0 for each segment.
    pub positions: Tensor,
    /// Segment ids (i64), 0 for padding.
    pub segments: Tensor,
    /// Whether any row holds more than one example. Without packing, padding is only ever
    /// on the right, plain causal attention is exact for every real token, and no mask is
    /// built (the fused attention kernels then apply).
    pub packed: bool,
}

impl TrainBatch {
    fn mask(&self) -> Option<Tensor> {
        self.packed.then(|| segment_mask(&self.segments))
    }
}

/// `[batch, 1, seq, seq]` boolean mask for a [`TrainBatch`]: query `t` sees key `j` when
/// `j <= t` and both are in the same segment. A padding query sees the padding before it
/// and itself, so no softmax row is empty.
fn segment_mask(segments: &Tensor) -> Tensor {
    let (_, t) = segments.size2().expect("segments are [batch, seq]");
    let device = segments.device();
    let j = Tensor::arange(t, (Kind::Int64, device)).view([1, 1, t]);
    let q = Tensor::arange(t, (Kind::Int64, device)).view([1, t, 1]);
    let same = segments.unsqueeze(2).eq_tensor(&segments.unsqueeze(1));
    j.le_tensor(&q).logical_and(&same).unsqueeze(1)
}

/// `[batch, 1, seq, keys]` boolean mask: query `t` (at key index `offset + t`) sees key `j`
/// when `j <= offset + t` and key `j` is real. A padding query sees only itself, so its softmax
/// row is never empty (an all-masked row would produce NaN that later layers spread into the
/// padding keys).
fn attention_mask(key_valid: &Tensor, offset: i64, seq: i64, device: Device) -> Tensor {
    let keys = key_valid.size()[1];
    let j = Tensor::arange(keys, (Kind::Int64, device)).view([1, 1, keys]);
    let q = (Tensor::arange(seq, (Kind::Int64, device)) + offset).view([1, seq, 1]);
    let causal = j.le_tensor(&q);
    let own = j.eq_tensor(&q);
    let valid = key_valid.to_kind(Kind::Bool).unsqueeze(1);
    (causal.logical_and(&valid.logical_or(&own))).unsqueeze(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mask_hides_padding_and_future() {
        let valid = Tensor::from_slice(&[false, true, true]).view([1, 3]);
        let m = attention_mask(&valid, 0, 3, Device::Cpu);
        let got: Vec<bool> = Vec::try_from(m.flatten(0, -1)).unwrap();
        #[rustfmt::skip]
        let want = [true, false, false,
                    false, true, false,
                    false, true, true];
        assert_eq!(got, want);
    }

    #[test]
    fn segments_see_only_themselves() {
        // Row: example 1 (2 tokens), example 2 (2 tokens), one padding token.
        let seg = Tensor::from_slice(&[1i64, 1, 2, 2, 0]).view([1, 5]);
        let m = segment_mask(&seg);
        let got: Vec<bool> = Vec::try_from(m.flatten(0, -1)).unwrap();
        #[rustfmt::skip]
        let want = [true,  false, false, false, false,
                    true,  true,  false, false, false,
                    false, false, true,  false, false,
                    false, false, true,  true,  false,
                    false, false, false, false, true];
        assert_eq!(got, want);
    }

    #[test]
    fn kv_cache_grows_and_resets() {
        let cfg = crate::testing::tiny_config();
        let vs = nn::VarStore::new(Device::Cpu);
        let model = Transformer::new(&cfg, vs.root());
        let mut cache = KvCache::new(&cfg, 2, 8, Kind::Float, Device::Cpu);
        let ids = Tensor::from_slice(&[1i64, 2, 3, 4, 5, 6]).view([2, 3]);
        let pos = Tensor::arange(3, (Kind::Int64, Device::Cpu)).repeat([2, 1]);
        let valid = Tensor::ones([2, 3], (Kind::Bool, Device::Cpu));
        model.forward(&ids, &pos, &valid, Some(&mut cache), &[], Logits::Last);
        assert_eq!(cache.len(), 3);
        cache.select_rows(&Tensor::from_slice(&[1i64, 1, 0]));
        assert_eq!(cache.keys[0].size()[0], 3);
        cache.reset();
        assert!(cache.is_empty());
        assert_eq!(cache.capacity(), 8);
    }
}
