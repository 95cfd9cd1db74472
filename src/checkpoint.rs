//! A distillation saved to a file and resumed later, on any backend: the learnable tensors, Adam's
//! moments, the position of the random stream and the configuration. It holds no real image; a
//! fingerprint of the training split makes sure it is resumed on the same data.

use std::collections::HashMap;

use safetensors::{tensor::TensorView, Dtype, SafeTensors};
use serde::{Deserialize, Serialize};

use crate::config::Config;
use crate::privacy::PrivacyPlan;
use crate::error::{Error, Result};

/// Identifies the session file layout.
pub const FORMAT: &str = "anondistill-session/2";

/// The layout before the outer decay's fields changed; read with its configuration upgraded.
const FORMAT_1: &str = "anondistill-session/1";

/// A tensor read back to the host.
#[derive(Clone, Debug, PartialEq)]
pub struct HostTensor {
    /// Its shape.
    pub shape: Vec<usize>,
    /// Its values, row-major.
    pub values: Vec<f32>,
}

/// Everything but the tensors.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SessionMeta {
    /// Always [`FORMAT`].
    pub format: String,
    /// Version of the crate that wrote the file.
    pub crate_version: String,
    /// The configuration of the run.
    pub config: Config,
    /// Class names of the training split, in label order.
    pub classes: Vec<String>,
    /// Images per class in the training split.
    pub train_counts: Vec<usize>,
    /// Hash of the training split (see `Dataset::fingerprint`).
    pub data_fingerprint: String,
    /// Outer iterations done.
    pub iteration: usize,
    /// Position of the training random stream (a `u128`, as text).
    pub rng_word_pos: String,
    /// Real images not yet drawn in the current pass, in drawing order.
    pub order: Vec<usize>,
    /// Adam's step counts for images, labels and raw learning rates.
    pub adam_steps: [i32; 3],
    /// A private run's plan and what it has spent; `None` for a run without privacy.
    #[serde(default)]
    pub privacy: Option<SessionPrivacy>,
}

/// What a private session file carries so that a resume continues the same plan, never past its
/// iterations, and a second resume of the same file can be told.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SessionPrivacy {
    /// A random id of the run segment that saved the file (a resume starts a new segment): 32
    /// hex digits from the secure source. The page keeps the ids it has resumed, to flag a
    /// second resume of the same segment.
    pub id: String,
    /// ε spent by the iterations saved.
    pub epsilon_spent: f64,
    /// The plan, whose iterations a resume never passes.
    #[serde(deserialize_with = "plan_of")]
    pub plan: PrivacyPlan,
    /// Private matching: where the training random stream stood (a `u128`, as text) when each
    /// saved release's embedding network was drawn, so that a resume draws the same networks;
    /// the releases are the tensor `matching.releases`. Empty for the unrolled form.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub releases: Vec<String>,
}

/// Reads a plan through an owned JSON value (its `unit` is a `&'static str`).
fn plan_of<'de, D: serde::Deserializer<'de>>(d: D) -> std::result::Result<PrivacyPlan, D::Error> {
    PrivacyPlan::deserialize(serde_json::Value::deserialize(d)?).map_err(serde::de::Error::custom)
}

/// One learned tensor with Adam's two moments of it.
#[derive(Clone, Debug, PartialEq)]
pub struct Learned {
    /// The values.
    pub value: HostTensor,
    /// Adam's first moment (a running average of the gradients).
    pub m: HostTensor,
    /// Adam's second moment.
    pub v: HostTensor,
}

/// The tensors of a session: the distilled images, labels and raw learning rates, each with its
/// moments. In the file they are `images`, `adam.images.m`, `adam.images.v`, and so on.
#[derive(Clone, Debug, PartialEq)]
pub struct SessionTensors {
    /// `[n, 1, size, size]`, in normalised space.
    pub images: Learned,
    /// `[n, classes]`.
    pub labels: Learned,
    /// `[steps × epochs]`, before softplus.
    pub raw_lrs: Learned,
    /// Private matching's releases so far, `[releases, classes, d + 1]`: the noisy outputs of
    /// the mechanism (see `distill::matching_private`), nothing else about the members.
    pub releases: Option<HostTensor>,
}

/// The name of the releases' tensor in the file.
const RELEASES: &str = "matching.releases";

impl SessionTensors {
    /// Every tensor with its name in the file.
    pub fn named(&self) -> Vec<(String, &HostTensor)> {
        [("images", &self.images), ("labels", &self.labels), ("raw_lrs", &self.raw_lrs)]
            .into_iter()
            .flat_map(|(name, l)| [(name.to_string(), &l.value), (format!("adam.{name}.m"), &l.m), (format!("adam.{name}.v"), &l.v)])
            .chain(self.releases.iter().map(|r| (RELEASES.to_string(), r)))
            .collect()
    }

    fn read(st: &SafeTensors<'_>) -> Result<Self> {
        let tensor = |name: &str| -> Result<HostTensor> {
            let t = st.tensor(name).map_err(|e| bad(format!("{name}: {e}")))?;
            if t.dtype() != Dtype::F32 {
                return Err(bad(format!("{name} is not f32")));
            }
            let values = t.data().chunks_exact(4).map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]])).collect();
            Ok(HostTensor { shape: t.shape().to_vec(), values })
        };
        let learned = |name: &str| -> Result<Learned> {
            Ok(Learned { value: tensor(name)?, m: tensor(&format!("adam.{name}.m"))?, v: tensor(&format!("adam.{name}.v"))? })
        };
        let releases = if st.names().iter().any(|n| n.as_str() == RELEASES) { Some(tensor(RELEASES)?) } else { None };
        Ok(Self { images: learned("images")?, labels: learned("labels")?, raw_lrs: learned("raw_lrs")?, releases })
    }
}

/// A distillation's whole state on the host.
#[derive(Clone, Debug, PartialEq)]
pub struct Checkpoint {
    /// Configuration, data identity, progress and random state.
    pub meta: SessionMeta,
    /// The distilled tensors and Adam's moments.
    pub tensors: SessionTensors,
}

fn bad(e: impl std::fmt::Display) -> Error {
    Error::Session(format!("not a session file of this tool ({e})"))
}

impl Checkpoint {
    /// The session file: safetensors with the metadata as JSON.
    pub fn to_bytes(&self) -> Result<Vec<u8>> {
        let meta = serde_json::to_string(&self.meta).map_err(|e| Error::Session(e.to_string()))?;
        self.to_bytes_with_meta(meta)
    }

    /// The session file of these tensors with `meta` as its metadata document, as it is or as an
    /// older format wrote it (the tests of reading older formats write those with this).
    #[doc(hidden)]
    pub fn to_bytes_with_meta(&self, meta: String) -> Result<Vec<u8>> {
        let named = self.tensors.named();
        let bytes: Vec<Vec<u8>> = named.iter().map(|(_, t)| t.values.iter().flat_map(|v| v.to_le_bytes()).collect()).collect();
        let mut views = Vec::with_capacity(named.len());
        for ((name, t), b) in named.iter().zip(&bytes) {
            views.push((name.clone(), TensorView::new(Dtype::F32, t.shape.clone(), b).map_err(|e| Error::Session(e.to_string()))?));
        }
        let info: HashMap<String, String> = [("anondistill-session".to_string(), meta)].into();
        safetensors::serialize(views, &Some(info)).map_err(|e| Error::Session(e.to_string()))
    }

    /// Reads a session file written by [`Checkpoint::to_bytes`].
    pub fn from_bytes(bytes: &[u8]) -> Result<Self> {
        let (_, header) = SafeTensors::read_metadata(bytes).map_err(bad)?;
        let json = header.metadata().as_ref().and_then(|m| m.get("anondistill-session")).ok_or_else(|| bad("no session metadata"))?;
        let mut value: serde_json::Value = serde_json::from_str(json).map_err(bad)?;
        crate::config::upgrade_document(&mut value, FORMAT_1, FORMAT);
        let meta: SessionMeta = serde_json::from_value(value).map_err(bad)?;
        if meta.format != FORMAT {
            return Err(Error::Session(format!("format {} is not {FORMAT}", meta.format)));
        }
        let st = SafeTensors::deserialize(bytes).map_err(bad)?;
        let tensors = SessionTensors::read(&st)?;
        Ok(Self { meta, tensors })
    }

    /// The configuration of a session file, without checking its tensors.
    pub fn config_of(bytes: &[u8]) -> Result<Config> {
        Ok(Self::from_bytes(bytes)?.meta.config)
    }
}
