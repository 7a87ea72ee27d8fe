//! DetectLabels output → the labels stored in DynamoDB.

use aws_sdk_rekognition::operation::detect_labels::DetectLabelsOutput;
use aws_sdk_rekognition::types;
use labeler_core::labeling::prepare_labels;
use labeler_core::schema::{BoundingBox, Instance, Label};

/// Converts Rekognition labels to the stored shape: name, confidence,
/// parents, categories and the instances that have a bounding box. Labels
/// without a name are dropped; absent numbers read as 0.
pub fn from_rekognition(labels: &[types::Label]) -> Vec<Label> {
    labels
        .iter()
        .filter_map(|label| {
            let name = label.name().filter(|n| !n.is_empty())?;
            Some(Label {
                name: name.to_owned(),
                confidence: label.confidence().unwrap_or(0.0),
                parents: label
                    .parents()
                    .iter()
                    .filter_map(|p| p.name().map(str::to_owned))
                    .collect(),
                categories: label
                    .categories()
                    .iter()
                    .filter_map(|c| c.name().map(str::to_owned))
                    .collect(),
                instances: label
                    .instances()
                    .iter()
                    .filter_map(|i| {
                        let b = i.bounding_box()?;
                        Some(Instance {
                            confidence: i.confidence().unwrap_or(0.0),
                            bounding_box: BoundingBox {
                                left: b.left().unwrap_or(0.0),
                                top: b.top().unwrap_or(0.0),
                                width: b.width().unwrap_or(0.0),
                                height: b.height().unwrap_or(0.0),
                            },
                        })
                    })
                    .collect(),
            })
        })
        .collect()
}

/// The labels of a DetectLabels answer as they will be stored: converted,
/// then capped ([`prepare_labels`]) so the record fits DynamoDB's item and
/// transaction limits.
pub fn stored_labels(output: &DetectLabelsOutput) -> Vec<Label> {
    prepare_labels(from_rekognition(output.labels()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use labeler_core::labeling::MAX_LABELS_PER_RECORD;
    use labeler_core::schema::LIMITS;

    fn dog() -> types::Label {
        types::Label::builder()
            .name("Dog")
            .confidence(98.25)
            .parents(types::Parent::builder().name("Animal").build())
            .parents(types::Parent::builder().name("Pet").build())
            .categories(
                types::LabelCategory::builder()
                    .name("Animals and Pets")
                    .build(),
            )
            .instances(
                types::Instance::builder()
                    .confidence(97.5)
                    .bounding_box(
                        types::BoundingBox::builder()
                            .left(0.1)
                            .top(0.2)
                            .width(0.3)
                            .height(0.4)
                            .build(),
                    )
                    .build(),
            )
            .instances(types::Instance::builder().confidence(50.0).build())
            .aliases(types::LabelAlias::builder().name("Canine").build())
            .build()
    }

    #[test]
    fn converts_names_parents_categories_and_boxed_instances() {
        let labels = from_rekognition(&[dog()]);

        assert_eq!(
            labels,
            vec![Label {
                name: "Dog".into(),
                confidence: 98.25,
                parents: vec!["Animal".into(), "Pet".into()],
                categories: vec!["Animals and Pets".into()],
                instances: vec![Instance {
                    confidence: 97.5,
                    bounding_box: BoundingBox {
                        left: 0.1,
                        top: 0.2,
                        width: 0.3,
                        height: 0.4,
                    },
                }],
            }]
        );
    }

    #[test]
    fn labels_without_a_name_are_dropped() {
        let nameless = types::Label::builder().confidence(99.0).build();
        let empty = types::Label::builder().name("").confidence(99.0).build();

        let labels = from_rekognition(&[nameless, dog(), empty]);

        assert_eq!(labels.len(), 1);
        assert_eq!(labels[0].name, "Dog");
    }

    #[test]
    fn a_huge_answer_is_capped_to_what_one_record_holds() {
        let many: Vec<types::Label> = (0..1000)
            .map(|i| {
                let mut label = types::Label::builder()
                    .name(format!("Label {i} {}", "x".repeat(100)))
                    .confidence(i as f32 / 10.0);
                for j in 0..50 {
                    label = label
                        .parents(types::Parent::builder().name(format!("P{j}")).build())
                        .instances(
                            types::Instance::builder()
                                .confidence(j as f32)
                                .bounding_box(types::BoundingBox::builder().left(0.5).build())
                                .build(),
                        );
                }
                label.build()
            })
            .collect();
        let output = DetectLabelsOutput::builder()
            .set_labels(Some(many))
            .label_model_version("3.0")
            .build();

        let labels = stored_labels(&output);

        assert_eq!(labels.len(), MAX_LABELS_PER_RECORD);
        assert!(labels[0].confidence >= labels[1].confidence);
        assert_eq!(labels[0].confidence, 99.9);
        assert!(labels.iter().all(|l| l.name.len() <= LIMITS.name_bytes));
        assert!(labels.iter().all(|l| l.parents.len() <= LIMITS.parents));
        assert!(labels.iter().all(|l| l.instances.len() <= LIMITS.instances));
        assert_eq!(labels[0].instances[0].confidence, 49.0);
    }
}
