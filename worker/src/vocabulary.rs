//! The local model's 1,000 ImageNet classes as Rekognition-shaped labels.
//!
//! The table (`worker/model/labels.tsv`, built from WordNet 3.0 by
//! `worker/model/vocabulary.py` and compiled in) gives each class a display
//! name, its allow-listed WordNet ancestors nearest first ("Golden
//! Retriever" → Dog, Canine, Mammal, Animal) and a category.
//!
//! [`Vocabulary::labels`] turns the model's probabilities into labels the
//! way Rekognition answers: every class is a label, and every ancestor is a
//! label too, whose confidence is the **sum** of its descendants'
//! probabilities: a photo the model splits between three retrievers is a
//! confident *Dog* even when no single breed is. A parent label's own
//! parents are the ancestors above it. Then `MinConfidence` filters and
//! `MaxLabels` keeps the most confident, exactly as DetectLabels does.
//!
//! The vocabulary's limits are ImageNet-1k's: no *person* class, no boxes
//! (labels carry no instances), a few classes without a parent.

use labeler_core::schema::Label;
use labeler_core::LabelOptions;
use std::collections::HashMap;

/// The compiled-in table: one header line, then one row per class.
const TABLE: &str = include_str!("../model/labels.tsv");

/// One class of the model.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Class {
    name: String,
    /// Allow-listed ancestors, nearest first.
    parents: Vec<String>,
    categories: Vec<String>,
}

/// The model's classes, in output order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Vocabulary {
    classes: Vec<Class>,
    /// Each parent label's own parents: what follows it in **every** row
    /// that holds it (a row can join two branches: Fruit|Food|Plant does
    /// not make Plant a parent of Food).
    above: HashMap<String, Vec<String>>,
}

/// Why a vocabulary table could not be read.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("vocabulary row {row}: {problem}")]
pub struct VocabularyError {
    row: usize,
    problem: String,
}

impl Vocabulary {
    /// The table shipped with the worker, for the ImageNet-1k model.
    pub fn imagenet() -> Self {
        Self::parse(TABLE).expect("the compiled-in vocabulary is checked by its tests")
    }

    /// Reads a table: `index wnid name parents categories`, tab-separated,
    /// lists joined by `|`, rows in class order after one header line.
    pub fn parse(table: &str) -> Result<Self, VocabularyError> {
        let list = |field: &str| -> Vec<String> {
            field
                .split('|')
                .filter(|s| !s.is_empty())
                .map(str::to_owned)
                .collect()
        };
        let mut classes = Vec::new();
        for (row, line) in table.lines().enumerate().skip(1) {
            let fields: Vec<&str> = line.split('\t').collect();
            let problem = match fields.as_slice() {
                [index, _, name, parents, categories] => match index.parse::<usize>() {
                    Ok(i) if i == classes.len() && !name.is_empty() => {
                        classes.push(Class {
                            name: (*name).to_owned(),
                            parents: list(parents),
                            categories: list(categories),
                        });
                        continue;
                    }
                    _ => format!("expected class {} with a name", classes.len()),
                },
                _ => format!("expected 5 tab-separated fields, found {}", fields.len()),
            };
            return Err(VocabularyError { row, problem });
        }
        let mut above: HashMap<String, Vec<String>> = HashMap::new();
        for class in &classes {
            for (k, parent) in class.parents.iter().enumerate() {
                let after = &class.parents[k + 1..];
                above
                    .entry(parent.clone())
                    .and_modify(|kept| kept.retain(|p| after.contains(p)))
                    .or_insert_with(|| after.to_vec());
            }
        }
        Ok(Self { classes, above })
    }

    /// How many classes the model must output.
    pub fn len(&self) -> usize {
        self.classes.len()
    }

    /// Whether the table is empty.
    pub fn is_empty(&self) -> bool {
        self.classes.is_empty()
    }

    /// The display name of class `index`.
    pub fn name(&self, index: usize) -> Option<&str> {
        self.classes.get(index).map(|c| c.name.as_str())
    }

    /// The labels of one image from the model's `probabilities` (one per
    /// class, summing to 1), filtered and capped by `options` as
    /// DetectLabels filters and caps. See the module documentation.
    pub fn labels(&self, probabilities: &[f32], options: &LabelOptions) -> Vec<Label> {
        let mut order: Vec<usize> = (0..self.classes.len().min(probabilities.len())).collect();
        // Most probable first: a parent label takes its own parents and
        // category from its strongest descendant.
        order.sort_by(|&a, &b| probabilities[b].total_cmp(&probabilities[a]));
        let mut labels: Vec<Label> = Vec::new();
        let mut at: HashMap<&str, usize> = HashMap::new();
        for i in order {
            let class = &self.classes[i];
            let p = probabilities[i].max(0.0);
            let chain = std::iter::once(&class.name).chain(&class.parents);
            for (depth, name) in chain.enumerate() {
                let slot = *at.entry(name.as_str()).or_insert_with(|| {
                    labels.push(Label {
                        name: name.clone(),
                        confidence: 0.0,
                        parents: match depth {
                            0 => class.parents.clone(),
                            _ => self.above.get(name).cloned().unwrap_or_default(),
                        },
                        categories: class.categories.clone(),
                        instances: Vec::new(),
                    });
                    labels.len() - 1
                });
                labels[slot].confidence += p;
            }
        }
        for label in &mut labels {
            label.confidence = (label.confidence * 100.0).min(100.0);
        }
        labels.retain(|l| l.confidence >= options.min_confidence);
        labels.sort_by(|a, b| {
            b.confidence
                .total_cmp(&a.confidence)
                .then_with(|| a.name.cmp(&b.name))
        });
        labels.truncate(usize::try_from(options.max_labels).unwrap_or(usize::MAX));
        labels
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SMALL: &str = "index\twnid\tname\tparents\tcategories\n\
        0\tn1\tGolden Retriever\tDog|Canine|Mammal|Animal\tAnimals and Pets\n\
        1\tn2\tLabrador Retriever\tDog|Canine|Mammal|Animal\tAnimals and Pets\n\
        2\tn3\tTabby\tCat|Mammal|Animal\tAnimals and Pets\n\
        3\tn4\tEspresso\tBeverage|Food\tFood and Beverage\n\
        4\tn5\tGranny Smith\tFruit|Food|Plant\tFood and Beverage\n";

    fn options(max_labels: u32, min_confidence: f32) -> LabelOptions {
        LabelOptions {
            max_labels,
            min_confidence,
        }
    }

    fn by_name<'a>(labels: &'a [Label], name: &str) -> &'a Label {
        labels
            .iter()
            .find(|l| l.name == name)
            .unwrap_or_else(|| panic!("no {name} in {labels:?}"))
    }

    #[test]
    fn a_parent_label_sums_the_probabilities_of_its_descendants() {
        let v = Vocabulary::parse(SMALL).unwrap();
        let labels = v.labels(&[0.45, 0.40, 0.10, 0.05, 0.0], &options(50, 0.0));

        let dog = by_name(&labels, "Dog");
        assert!((dog.confidence - 85.0).abs() < 1e-3, "{dog:?}");
        assert_eq!(dog.parents, ["Canine", "Mammal", "Animal"]);
        assert_eq!(dog.categories, ["Animals and Pets"]);
        assert!((by_name(&labels, "Mammal").confidence - 95.0).abs() < 1e-3);
        assert_eq!(by_name(&labels, "Mammal").parents, ["Animal"]);
        assert!(by_name(&labels, "Animal").parents.is_empty());
        let golden = by_name(&labels, "Golden Retriever");
        assert!((golden.confidence - 45.0).abs() < 1e-3);
        assert_eq!(golden.parents, ["Dog", "Canine", "Mammal", "Animal"]);
        assert!(golden.instances.is_empty());
    }

    #[test]
    fn min_confidence_filters_and_max_labels_keeps_the_most_confident() {
        let v = Vocabulary::parse(SMALL).unwrap();
        let labels = v.labels(&[0.45, 0.40, 0.10, 0.05, 0.0], &options(3, 70.0));

        let names: Vec<&str> = labels.iter().map(|l| l.name.as_str()).collect();
        // Animal and Mammal 95, then Canine and Dog 85: four pass the
        // threshold, three are kept, ties by name.
        assert_eq!(names, ["Animal", "Mammal", "Canine"]);
        assert!(labels.iter().all(|l| l.confidence >= 70.0));
    }

    #[test]
    fn confidences_never_exceed_one_hundred_percent() {
        let v = Vocabulary::parse(SMALL).unwrap();
        // Rounding can make probabilities sum just above 1.
        let labels = v.labels(&[0.6, 0.400_01, 0.0, 0.0, 0.0], &options(50, 0.0));
        assert!(labels.iter().all(|l| l.confidence <= 100.0));
        assert_eq!(by_name(&labels, "Dog").confidence, 100.0);
    }

    #[test]
    fn a_parent_keeps_only_the_parents_it_has_in_every_row() {
        let v = Vocabulary::parse(SMALL).unwrap();
        let labels = v.labels(&[0.0, 0.0, 0.0, 0.5, 0.5], &options(50, 0.0));

        // Food follows Beverage in one row and precedes Plant in another:
        // Plant is a parent of the apple, not of food.
        assert!(by_name(&labels, "Food").parents.is_empty());
        assert_eq!(by_name(&labels, "Fruit").parents, ["Food", "Plant"]);
        assert_eq!(by_name(&labels, "Beverage").parents, ["Food"]);
        assert!((by_name(&labels, "Food").confidence - 100.0).abs() < 1e-3);
    }

    #[test]
    fn a_malformed_table_names_the_row() {
        let missing_field = "h\n0\tn1\tDog\tAnimal\n";
        let err = Vocabulary::parse(missing_field).unwrap_err();
        assert_eq!(
            err.to_string(),
            "vocabulary row 1: expected 5 tab-separated fields, found 4"
        );
        let out_of_order = "h\n1\tn1\tDog\tAnimal\t\n";
        assert!(Vocabulary::parse(out_of_order)
            .unwrap_err()
            .to_string()
            .contains("expected class 0"));
    }

    #[test]
    fn the_shipped_table_has_the_thousand_imagenet_classes_with_dogs_under_animal() {
        let v = Vocabulary::imagenet();
        assert_eq!(v.len(), 1000);
        // n02099601 golden retriever is class 207 of ImageNet-1k.
        assert_eq!(v.name(207), Some("Golden Retriever"));
        let mut p = vec![0.0; 1000];
        p[207] = 1.0;
        let labels = v.labels(&p, &options(50, 50.0));
        let dog = by_name(&labels, "Dog");
        assert!(dog.parents.iter().any(|p| p == "Animal"), "{dog:?}");
    }
}
