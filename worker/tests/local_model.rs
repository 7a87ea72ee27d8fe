//! The local backend on real photographs (`samples/photos`, licences in
//! its LICENSES.md) with the real model (`make model`): the labels describe
//! the pictures, and tract's probabilities match an independent
//! implementation, onnxruntime (`worker/model/reference.py`, from the
//! project's virtualenv), on the same input tensor.
//!
//! Needs `make model` (and `make setup` for the reference): a missing model
//! or virtualenv fails the test, naming the command.

use labeler_core::LabelOptions;
use std::path::{Path, PathBuf};
use worker::model::{self, LocalModel};
use worker::vocabulary::Vocabulary;

/// Largest difference allowed between tract's and onnxruntime's
/// probability of any class: both run the same float32 graph, and differ
/// only in the order of their sums.
const TOLERANCE: f32 = 1e-3;

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn model_path() -> PathBuf {
    root().join("target/model/efficientnet-lite0.onnx")
}

fn load() -> LocalModel {
    LocalModel::load(&model_path(), 1).unwrap_or_else(|e| panic!("{e} (run `make model`)"))
}

fn photo(name: &str) -> Vec<u8> {
    std::fs::read(root().join("samples/photos").join(name)).unwrap()
}

async fn labels_of(model: &LocalModel, name: &str) -> Vec<labeler_core::schema::Label> {
    let probabilities = model.classify(photo(name)).await.unwrap();
    Vocabulary::imagenet().labels(&probabilities, &LabelOptions::default())
}

fn has(labels: &[labeler_core::schema::Label], name: &str) -> bool {
    labels.iter().any(|l| l.name == name)
}

#[tokio::test]
async fn the_cat_photo_is_labeled_cat_with_parent_animal() {
    let model = load();
    let labels = labels_of(&model, "chelsea.png").await;

    let cat = labels
        .iter()
        .find(|l| l.name == "Cat")
        .unwrap_or_else(|| panic!("{labels:?}"));
    assert!(cat.confidence >= 80.0, "{cat:?}");
    assert!(cat.parents.iter().any(|p| p == "Animal"), "{cat:?}");
    assert!(!has(&labels, "Dog") && !has(&labels, "Food"), "{labels:?}");
    assert!(model
        .version()
        .starts_with("local:efficientnet-lite0@ebff25b4216a"));
}

#[tokio::test]
async fn the_coffee_photo_is_an_espresso_and_a_beverage_not_an_animal() {
    let model = load();
    let labels = labels_of(&model, "coffee.jpg").await;

    assert_eq!(labels[0].name, "Food", "{labels:?}");
    assert!(
        has(&labels, "Espresso") && has(&labels, "Beverage"),
        "{labels:?}"
    );
    assert!(
        !has(&labels, "Animal") && !has(&labels, "Cat"),
        "{labels:?}"
    );
}

#[tokio::test]
async fn the_palace_photo_is_a_building() {
    let model = load();
    let labels = labels_of(&model, "china.jpg").await;
    let all = Vocabulary::imagenet().labels(
        &model.classify(photo("china.jpg")).await.unwrap(),
        &LabelOptions {
            max_labels: 50,
            min_confidence: 20.0,
        },
    );
    assert!(
        has(&all, "Building") || has(&all, "Architecture"),
        "{all:?}"
    );
    assert!(!has(&labels, "Animal"), "{labels:?}");
}

#[test]
fn tract_matches_onnxruntime_on_the_same_pixels() {
    let model = load();
    let python = root().join(".venv/bin/python");
    assert!(
        python.exists(),
        "{} missing: run `make setup`",
        python.display()
    );
    for name in ["chelsea.png", "coffee.jpg", "rocket.jpg"] {
        let input = model::input(&photo(name)).unwrap();
        let ours = model.classify_input(&input).unwrap();
        let tensor =
            std::env::temp_dir().join(format!("labeler-ref-{}-{name}.f32", std::process::id()));
        let view = input.to_plain_array_view::<f32>().unwrap();
        let raw: Vec<u8> = view.iter().flat_map(|v| v.to_le_bytes()).collect();
        std::fs::write(&tensor, raw).unwrap();
        let out = std::process::Command::new(&python)
            .arg(root().join("worker/model/reference.py"))
            .arg("--model")
            .arg(model_path())
            .arg("--tensor")
            .arg(&tensor)
            .output()
            .unwrap();
        std::fs::remove_file(&tensor).ok();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let reference: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        let theirs: Vec<f32> = reference["probabilities"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| p.as_f64().unwrap() as f32)
            .collect();
        assert_eq!(theirs.len(), ours.len());
        let worst = ours
            .iter()
            .zip(&theirs)
            .map(|(a, b)| (a - b).abs())
            .fold(0.0, f32::max);
        assert!(
            worst <= TOLERANCE,
            "{name}: tract and onnxruntime differ by {worst}"
        );
        let top = |p: &[f32]| (0..p.len()).max_by(|&a, &b| p[a].total_cmp(&p[b])).unwrap();
        assert_eq!(top(&ours), top(&theirs), "{name}: different top class");
    }
}
