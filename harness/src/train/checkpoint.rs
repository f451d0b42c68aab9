//! Checkpoints in safetensors: one `F32` tensor per weight (names of
//! [`tensor_names`], shape `[rows, cols]`, norm gains `[dim]`), with the
//! model config, the vocabulary and a free-form description in the metadata.

use super::{corpus::Vocab, tensor_names};
use anyhow::{bail, ensure, Context};
use safetensors::tensor::{Dtype, TensorView};
use safetensors::SafeTensors;
use std::collections::HashMap;
use std::path::Path;
use tessera_kernels::nn::ModelConfig;

/// A loaded checkpoint.
#[derive(Clone, Debug)]
pub struct Checkpoint {
    /// The model's sizes.
    pub config: ModelConfig,
    /// The vocabulary.
    pub vocab: Vocab,
    /// All weights, in the kernel layout.
    pub params: Vec<f32>,
    /// What the file says about how it was made.
    pub description: String,
}

fn config_json(c: &ModelConfig) -> serde_json::Value {
    serde_json::json!({
        "vocab": c.vocab, "dim": c.dim, "layers": c.layers, "heads": c.heads,
        "kv_heads": c.kv_heads, "ffn_hidden": c.ffn_hidden, "max_seq": c.max_seq,
        "rope_theta": c.rope_theta, "norm_eps": c.norm_eps,
    })
}

fn config_from_json(v: &serde_json::Value) -> anyhow::Result<ModelConfig> {
    let u = |k: &str| {
        v.get(k)
            .and_then(|x| x.as_u64())
            .map(|x| x as usize)
            .with_context(|| format!("checkpoint config lacks `{k}`"))
    };
    let f = |k: &str| {
        v.get(k)
            .and_then(|x| x.as_f64())
            .map(|x| x as f32)
            .with_context(|| format!("checkpoint config lacks `{k}`"))
    };
    let c = ModelConfig {
        vocab: u("vocab")?,
        dim: u("dim")?,
        layers: u("layers")?,
        heads: u("heads")?,
        kv_heads: u("kv_heads")?,
        ffn_hidden: u("ffn_hidden")?,
        max_seq: u("max_seq")?,
        rope_theta: f("rope_theta")?,
        norm_eps: f("norm_eps")?,
    };
    c.validate().context("checkpoint config is invalid")?;
    Ok(c)
}

/// Writes a checkpoint atomically.
pub fn save(
    path: &Path,
    config: &ModelConfig,
    vocab: &Vocab,
    params: &[f32],
    description: &str,
) -> anyhow::Result<()> {
    let names = tensor_names(config);
    let bytes: Vec<(String, Vec<u8>, Vec<usize>)> = names
        .iter()
        .map(|(name, r)| {
            let data: Vec<u8> = params[r.clone()]
                .iter()
                .flat_map(|x| x.to_le_bytes())
                .collect();
            let kind = config
                .tensor_at(names.iter().position(|(n, _)| n == name).unwrap_or(0))
                .map(|id| config.tensor_shape(id.kind))
                .unwrap_or((r.len(), 1));
            let shape = if kind.1 == 1 {
                vec![kind.0]
            } else {
                vec![kind.0, kind.1]
            };
            (name.clone(), data, shape)
        })
        .collect();
    let views: Vec<(String, TensorView<'_>)> = bytes
        .iter()
        .map(|(n, d, s)| {
            TensorView::new(Dtype::F32, s.clone(), d)
                .map(|v| (n.clone(), v))
                .with_context(|| format!("cannot build tensor {n}"))
        })
        .collect::<Result<_, _>>()?;
    let mut meta = HashMap::new();
    meta.insert("config".to_string(), config_json(config).to_string());
    meta.insert(
        "vocab".to_string(),
        serde_json::Value::String(vocab.to_string_lossless()).to_string(),
    );
    meta.insert("description".to_string(), description.to_string());
    meta.insert("format".to_string(), "tessera-layerskip-v1".to_string());
    let out = safetensors::serialize(views, &Some(meta)).context("cannot serialise checkpoint")?;
    // Through a temporary file and a rename: a reader never sees half a checkpoint.
    Ok(crate::fsutil::write_atomic(path, &out)?)
}

/// Reads a checkpoint written by [`save`], with a clear message for a missing, truncated or
/// foreign file.
pub fn load(path: &Path) -> anyhow::Result<Checkpoint> {
    let bytes =
        std::fs::read(path).with_context(|| format!("cannot read model {}", path.display()))?;
    parse(&bytes).with_context(|| format!("{} is not a tessera layerskip model", path.display()))
}

/// The checkpoint in the bytes of a file.
fn parse(bytes: &[u8]) -> anyhow::Result<Checkpoint> {
    let (_, header) = SafeTensors::read_metadata(bytes)?;
    let meta = header.metadata().as_ref().context("no metadata")?;
    let config_text = meta.get("config").context("no `config` metadata")?;
    let config_value: serde_json::Value = serde_json::from_str(config_text).context("config")?;
    let config = config_from_json(&config_value)?;
    let vocab_text: String = meta
        .get("vocab")
        .map(|v| serde_json::from_str(v))
        .transpose()
        .context("vocab")?
        .context("no `vocab` metadata")?;
    let vocab = Vocab {
        chars: vocab_text.chars().collect(),
    };
    ensure!(
        vocab.len() == config.vocab,
        "vocabulary has {} characters, config says {}",
        vocab.len(),
        config.vocab
    );
    let st = SafeTensors::deserialize(bytes)?;
    let total = config.param_count()?;
    let mut params = vec![0.0f32; total];
    for (name, r) in tensor_names(&config) {
        let t = st
            .tensor(&name)
            .ok()
            .with_context(|| format!("tensor `{name}` is missing"))?;
        if t.dtype() != Dtype::F32 || t.data().len() != r.len() * 4 {
            bail!("tensor `{name}` must be F32 with {} elements", r.len());
        }
        for (p, b) in params[r].iter_mut().zip(t.data().chunks_exact(4)) {
            *p = f32::from_le_bytes([b[0], b[1], b[2], b[3]]);
        }
    }
    Ok(Checkpoint {
        config,
        vocab,
        params,
        description: meta.get("description").cloned().unwrap_or_default(),
    })
}
