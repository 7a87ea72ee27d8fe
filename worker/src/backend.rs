//! Who labels an image: Amazon Rekognition, the worker's own model, or the
//! local model first and Rekognition for what it is unsure of.
//!
//! | backend | per image | labels |
//! |---|---|---|
//! | `rekognition` | one DetectLabels call | Rekognition's (thousands of labels, people, boxes) |
//! | `local` | CPU inference in the worker ([`crate::model`]) | ImageNet-1k classes and their WordNet parents ([`crate::vocabulary`]) |
//! | `cascade` | local; DetectLabels only when the local model's most probable class is below `--cascade-below` and the period's budget allows | whichever answered |
//!
//! Every answer is recorded with the version of the model that produced it
//! (`local:efficientnet-lite0@<sha256 prefix>`, or Rekognition's
//! `LabelModelVersion`), and content reuse is keyed by the backend
//! ([`Backend::reuse_scope`]), so switching backend never serves another
//! model's labels.

use crate::model::LocalModel;
use crate::vocabulary::Vocabulary;
use labeler_core::budget::Budget;
use std::sync::Arc;

/// The backend a process labels with, its model loaded once.
#[derive(Debug, Clone, Default)]
pub enum Backend {
    /// Amazon Rekognition DetectLabels.
    #[default]
    Rekognition,
    /// The local model only: no Rekognition call, ever.
    Local(Arc<Local>),
    /// The local model, then Rekognition for the images it is unsure of.
    Cascade(Arc<Cascade>),
}

/// The local model and the vocabulary of its outputs.
#[derive(Debug)]
pub struct Local {
    /// The loaded model.
    pub model: LocalModel,
    /// Its classes as labels.
    pub vocabulary: Vocabulary,
}

/// When the cascade asks Rekognition.
#[derive(Debug)]
pub struct Cascade {
    /// The first opinion.
    pub local: Local,
    /// Rekognition is asked when the local model's most probable class is
    /// below this confidence, in percent.
    pub below: f32,
    /// The fleet's spending cap on those calls; none: no cap.
    pub budget: Option<Budget>,
}

/// Which backend `--backend` names.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum Kind {
    /// Amazon Rekognition DetectLabels.
    #[default]
    Rekognition,
    /// The worker's own model (EfficientNet-Lite0, ImageNet-1k).
    Local,
    /// Local first, Rekognition below a confidence, under a budget.
    Cascade,
}

impl Kind {
    /// The `MinConfidence` a deployment uses unless told otherwise:
    /// Rekognition's answers sit near 100% for what is clearly in a
    /// picture; the local model spreads its probability over 1,000
    /// classes, so a right answer can be 30%. `infra/main.tf` renders the
    /// same values (`local.default_min_confidence`).
    pub fn default_min_confidence(self) -> f32 {
        match self {
            Kind::Rekognition => 70.0,
            Kind::Local | Kind::Cascade => 25.0,
        }
    }

    /// The name `--backend` and `LABELER_BACKEND` take.
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Rekognition => "rekognition",
            Kind::Local => "local",
            Kind::Cascade => "cascade",
        }
    }
}

impl Backend {
    /// The key part that keeps content entries of different backends
    /// apart (`None` for Rekognition, whose entries predate backends).
    pub fn reuse_scope(&self) -> Option<String> {
        match self {
            Backend::Rekognition => None,
            Backend::Local(local) => Some(local.model.version().to_owned()),
            Backend::Cascade(c) => Some(format!("cascade:{}<{}", c.local.model.version(), c.below)),
        }
    }
}

/// Backends are equal when they would label alike: the same kind, model
/// and thresholds.
impl PartialEq for Backend {
    fn eq(&self, other: &Self) -> bool {
        self.reuse_scope() == other.reuse_scope()
            && match (self, other) {
                (Backend::Cascade(a), Backend::Cascade(b)) => a.budget == b.budget,
                _ => true,
            }
    }
}
