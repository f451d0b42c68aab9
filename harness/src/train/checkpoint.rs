//! Checkpoints in safetensors: one `F32` tensor per weight (names of
//! [`tensor_names`], shape `[rows, cols]`, norm gains `[dim]`), with the
//! model config, the vocabulary and a free-form description in the metadata.

use super::{corpus::Vocab, tensor_names};
use anyhow::{anyhow, bail, ensure, Context};
use safetensors::tensor::{Dtype, TensorView};
use safetensors::{SafeTensorError, SafeTensors};
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
    let field = |k: &str| {
        v.get(k)
            .with_context(|| format!("checkpoint config lacks `{k}`"))
    };
    let u = |k: &str| {
        let x = field(k)?;
        x.as_u64()
            .and_then(|n| usize::try_from(n).ok())
            .with_context(|| {
                format!("checkpoint config field `{k}` is {x}, not a size (a non-negative integer)")
            })
    };
    let f = |k: &str| {
        let x = field(k)?;
        x.as_f64()
            .map(|n| n as f32)
            .with_context(|| format!("checkpoint config field `{k}` is {x}, not a number"))
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

/// What is wrong with a file that safetensors refused, in words.
fn describe(e: &SafeTensorError) -> String {
    use SafeTensorError as E;
    match e {
        E::HeaderTooSmall => "it is shorter than a safetensors header (empty or truncated)".into(),
        E::InvalidHeaderLength => {
            "its header length points past the end of the file (truncated, or not safetensors)"
                .into()
        }
        E::HeaderTooLarge => {
            "its header length is over safetensors' 100 MB limit (not a safetensors file?)".into()
        }
        E::InvalidHeader | E::InvalidHeaderStart => {
            "its header is not UTF-8 JSON (not a safetensors file)".into()
        }
        E::InvalidHeaderDeserialization | E::JsonError(_) => {
            "its header is not valid safetensors JSON".into()
        }
        E::MetadataIncompleteBuffer => {
            "the tensors' data does not match the file's length (truncated or padded)".into()
        }
        E::InvalidOffset(name) => format!("tensor `{name}` has offsets outside the file"),
        E::TensorInvalidInfo | E::InvalidTensorView(..) => {
            "a tensor's shape and type disagree with its bytes".into()
        }
        E::ValidationOverflow => "a tensor's shape overflows".into(),
        E::TensorNotFound(name) => format!("tensor `{name}` is missing"),
        E::IoError(io) => io.to_string(),
    }
}

/// Writes a checkpoint atomically.
pub fn save(
    path: &Path,
    config: &ModelConfig,
    vocab: &Vocab,
    params: &[f32],
    description: &str,
) -> anyhow::Result<()> {
    // `load` refuses non-finite weights, so none is written: every file saved can be loaded.
    if let Some(i) = params.iter().position(|p| !p.is_finite()) {
        bail!(
            "weight {i} is {}: a model with non-finite weights is not saved (a diverged run?)",
            params[i]
        );
    }
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

/// Reads a checkpoint written by [`save`], with a clear message for a missing, truncated,
/// foreign or inconsistent file. Every tensor is checked against the file before the weights
/// are allocated, so the file's size bounds the memory a config can ask for, and a model with a
/// NaN or infinite weight (a diverged run) is refused.
pub fn load(path: &Path) -> anyhow::Result<Checkpoint> {
    let bytes = crate::fsutil::read_input(path)
        .with_context(|| format!("cannot read model {}", path.display()))?;
    parse(&bytes)
        .with_context(|| format!("{} is not a usable tessera layerskip model", path.display()))
}

/// The checkpoint in the bytes of a file.
fn parse(bytes: &[u8]) -> anyhow::Result<Checkpoint> {
    let (_, header) = SafeTensors::read_metadata(bytes).map_err(|e| anyhow!(describe(&e)))?;
    let meta = header
        .metadata()
        .as_ref()
        .context("it has no metadata (not written by tessera)")?;
    let config_text = meta.get("config").context("it has no `config` metadata")?;
    let config_value: serde_json::Value =
        serde_json::from_str(config_text).context("its `config` metadata is not JSON")?;
    let config = config_from_json(&config_value)?;
    let vocab_text: String = meta
        .get("vocab")
        .context("it has no `vocab` metadata")
        .and_then(|v| {
            serde_json::from_str(v).context("its `vocab` metadata is not a JSON string")
        })?;
    let vocab = Vocab {
        chars: vocab_text.chars().collect(),
    };
    ensure!(
        vocab.len() == config.vocab,
        "its vocabulary has {} characters, its config says vocab {}",
        vocab.len(),
        config.vocab
    );
    // The config's sizes are checked against the file before anything is sized by them.
    let st = SafeTensors::deserialize(bytes).map_err(|e| anyhow!(describe(&e)))?;
    ensure!(
        st.len() == config.tensor_count(),
        "it holds {} tensors, its config (layers {}) needs {}",
        st.len(),
        config.layers,
        config.tensor_count()
    );
    let total = config.param_count()?;
    ensure!(
        total.checked_mul(4).is_some_and(|b| b <= bytes.len()),
        "its config needs {total} weights ({} bytes of F32), more than the file's {} bytes",
        total as u128 * 4,
        bytes.len()
    );
    let names = tensor_names(&config);
    for (name, r) in &names {
        let t = st
            .tensor(name)
            .ok()
            .with_context(|| format!("tensor `{name}` is missing"))?;
        ensure!(
            t.dtype() == Dtype::F32 && t.data().len() == r.len() * 4,
            "tensor `{name}` must be F32 with {} elements (the config's shape), it is {:?} {:?}",
            r.len(),
            t.dtype(),
            t.shape()
        );
    }
    let mut params = vec![0.0f32; total];
    for (name, r) in names {
        let t = st.tensor(&name)?;
        for (i, (p, b)) in params[r]
            .iter_mut()
            .zip(t.data().chunks_exact(4))
            .enumerate()
        {
            *p = f32::from_le_bytes([b[0], b[1], b[2], b[3]]);
            ensure!(
                p.is_finite(),
                "tensor `{name}` holds {p} at element {i}: the weights are broken (a diverged run?)"
            );
        }
    }
    Ok(Checkpoint {
        config,
        vocab,
        params,
        description: meta.get("description").cloned().unwrap_or_default(),
    })
}
