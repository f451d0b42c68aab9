//! Checkpoints in safetensors: one `F32` tensor per weight (names of
//! [`tensor_names`], shape `[rows, cols]`, norm gains `[dim]`), with the
//! model config, the vocabulary and a free-form description in the metadata.

use super::{corpus::Vocab, tensor_names};
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

fn config_from_json(v: &serde_json::Value) -> Result<ModelConfig, String> {
    let u = |k: &str| {
        v.get(k)
            .and_then(|x| x.as_u64())
            .map(|x| x as usize)
            .ok_or_else(|| format!("checkpoint config lacks `{k}`"))
    };
    let f = |k: &str| {
        v.get(k)
            .and_then(|x| x.as_f64())
            .map(|x| x as f32)
            .ok_or_else(|| format!("checkpoint config lacks `{k}`"))
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
    c.validate()
        .map_err(|e| format!("checkpoint config is invalid: {e}"))?;
    Ok(c)
}

/// Writes a checkpoint atomically.
pub fn save(
    path: &Path,
    config: &ModelConfig,
    vocab: &Vocab,
    params: &[f32],
    description: &str,
) -> Result<(), String> {
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
                .map_err(|e| format!("cannot build tensor {n}: {e:?}"))
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
    let out = safetensors::serialize(views, &Some(meta))
        .map_err(|e| format!("cannot serialise checkpoint: {e:?}"))?;
    // Through a temporary file and a rename: a reader never sees half a checkpoint.
    crate::fsutil::write_atomic(path, &out)
}

/// Reads a checkpoint written by [`save`], with a clear message for a missing, truncated or
/// foreign file.
pub fn load(path: &Path) -> Result<Checkpoint, String> {
    let bytes =
        std::fs::read(path).map_err(|e| format!("cannot read model {}: {e}", path.display()))?;
    let bad = |why: String| format!("{} is not a tessera layerskip model: {why}", path.display());
    let (_, header) = SafeTensors::read_metadata(&bytes).map_err(|e| bad(format!("{e:?}")))?;
    let meta = header
        .metadata()
        .as_ref()
        .ok_or_else(|| bad("no metadata".into()))?;
    let config_text = meta
        .get("config")
        .ok_or_else(|| bad("no `config` metadata".into()))?;
    let config_value: serde_json::Value =
        serde_json::from_str(config_text).map_err(|e| bad(format!("config: {e}")))?;
    let config = config_from_json(&config_value).map_err(bad)?;
    let vocab_text: String = meta
        .get("vocab")
        .map(|v| serde_json::from_str(v))
        .transpose()
        .map_err(|e| bad(format!("vocab: {e}")))?
        .ok_or_else(|| bad("no `vocab` metadata".into()))?;
    let vocab = Vocab {
        chars: vocab_text.chars().collect(),
    };
    if vocab.len() != config.vocab {
        return Err(bad(format!(
            "vocabulary has {} characters, config says {}",
            vocab.len(),
            config.vocab
        )));
    }
    let st = SafeTensors::deserialize(&bytes).map_err(|e| bad(format!("{e:?}")))?;
    let total = config.param_count().map_err(|e| bad(e.to_string()))?;
    let mut params = vec![0.0f32; total];
    for (name, r) in tensor_names(&config) {
        let t = st
            .tensor(&name)
            .map_err(|_| bad(format!("tensor `{name}` is missing")))?;
        if t.dtype() != Dtype::F32 || t.data().len() != r.len() * 4 {
            return Err(bad(format!(
                "tensor `{name}` must be F32 with {} elements",
                r.len()
            )));
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
