//! The pure core against committed real-event fixtures: recognition, key
//! decoding, filters, deduplication within a batch and job packing.

use dispatcher::config::Config;
use dispatcher::event::{recognise, Change, Notice, ObjectChange};
use dispatcher::plan::{self, decide, Decision};
use labeler_core::job::{is_valid_job_name, ImageSource, INLINE_JOB_MAX_BYTES};
use labeler_core::{ImageRef, Revision};
use serde_json::Value;

fn fixture(name: &str) -> Value {
    let path = format!("{}/tests/fixtures/{name}", env!("CARGO_MANIFEST_DIR"));
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
    serde_json::from_str(&text).unwrap()
}

fn config() -> Config {
    Config::from_lookup(|k| match k {
        "JOB_QUEUE" => Some("image-labeler".into()),
        "JOB_DEFINITION" => Some("image-labeler-worker".into()),
        "TABLE_NAME" => Some("image-labels".into()),
        _ => None,
    })
    .unwrap()
}

fn objects(payload: &Value) -> Vec<ObjectChange> {
    recognise(payload)
        .deliveries
        .into_iter()
        .flat_map(|d| d.notices.unwrap())
        .filter_map(|n| match n {
            Notice::Object(o) => Some(o),
            _ => None,
        })
        .collect()
}

#[test]
fn direct_put_is_decoded_with_its_identity() {
    let inv = recognise(&fixture("s3-put.json"));
    assert!(!inv.from_sqs);
    let o = &objects(&fixture("s3-put.json"))[0];
    assert_eq!(o.change, Change::Created);
    assert_eq!(o.bucket, "photos-bucket");
    assert_eq!(o.key, "holiday/beach day+sun.jpg");
    assert_eq!(o.size, Some(245123));
    assert_eq!(
        o.revision,
        Revision::from_sequencer("0062E99A88DC407460").unwrap()
    );
    assert!(o.etag.is_some() && o.version_id.is_some());
}

#[test]
fn awkward_keys_decode_to_their_true_names() {
    let expected: Vec<Value> = serde_json::from_value(fixture("awkward-keys.json")).unwrap();
    let decoded: Vec<String> = objects(&fixture("s3-put-awkward-keys.json"))
        .into_iter()
        .map(|o| o.key)
        .collect();
    let want: Vec<String> = expected
        .iter()
        .map(|e| e["decoded"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(decoded, want);
    assert!(want.iter().any(|k| k.len() == 1024));
}

#[test]
fn moto_shape_without_identity_or_sequencer_is_read() {
    let o = &objects(&fixture("moto-s3-to-sqs-put.json"))[0];
    assert_eq!(o.key, "my photos/a+b ü.jpg");
    assert_eq!(o.size, Some(10));
    assert!(
        o.revision.as_str().starts_with("1."),
        "falls back to event time"
    );
    let via_sqs = recognise(&fixture("moto-sqs-event.json"));
    assert!(via_sqs.from_sqs);
    assert_eq!(objects(&fixture("moto-sqs-event.json"))[0].key, o.key);
}

#[test]
fn sqs_batch_reads_each_message_on_its_own() {
    let inv = recognise(&fixture("sqs-s3-batch.json"));
    assert!(inv.from_sqs);
    let ids: Vec<_> = inv
        .deliveries
        .iter()
        .map(|d| d.message_id.clone().unwrap())
        .collect();
    assert_eq!(ids, ["msg-put-1", "msg-test", "msg-put-2", "msg-garbage"]);
    assert!(
        matches!(&inv.deliveries[0].notices, Ok(n) if matches!(&n[0], Notice::Object(o) if o.key == "cats/tabby cat.jpg"))
    );
    assert_eq!(inv.deliveries[1].notices, Ok(vec![Notice::TestEvent]));
    assert!(inv.deliveries[2].notices.is_ok());
    assert!(inv.deliveries[3].notices.is_err());
}

#[test]
fn test_events_are_recognised_direct_and_from_moto() {
    for f in ["s3-test-event.json", "moto-s3-test-event.json"] {
        let inv = recognise(&fixture(f));
        assert_eq!(
            inv.deliveries[0].notices,
            Ok(vec![Notice::TestEvent]),
            "{f}"
        );
    }
}

#[test]
fn deletes_are_recognised_from_s3_moto_and_eventbridge() {
    for f in [
        "s3-delete.json",
        "moto-s3-to-sqs-delete.json",
        "eventbridge-s3-object-deleted.json",
    ] {
        let o = &objects(&fixture(f))[0];
        assert_eq!(o.change, Change::Removed, "{f}");
    }
}

#[test]
fn eventbridge_keys_are_taken_verbatim() {
    let o = &objects(&fixture("eventbridge-s3-object-created.json"))[0];
    assert_eq!(o.change, Change::Created);
    assert_eq!(o.key, "events/sunset+view.png");
    assert_eq!(o.size, Some(318264));
}

#[test]
fn batch_failure_events_carry_reason_and_job() {
    let inv = recognise(&fixture("batch-job-failed.json"));
    let Ok(notices) = &inv.deliveries[0].notices else {
        panic!("unreadable")
    };
    let Notice::JobEnded(job) = &notices[0] else {
        panic!("not a job event: {notices:?}")
    };
    assert_eq!(job.status, "FAILED");
    let reason = job.failure.to_string();
    assert!(reason.contains("OutOfMemoryError"), "{reason}");
    assert!(reason.contains("exit code 137"), "{reason}");
    assert_eq!(job.failure.exit_code, Some(137));
    assert!(job.parameters.contains_key("job"));
    assert!(plan::is_our_queue(&job.job_queue, "image-labeler"));

    let inv = recognise(&fixture("batch-array-child-failed.json"));
    let Ok(notices) = &inv.deliveries[0].notices else {
        panic!()
    };
    let Notice::JobEnded(child) = &notices[0] else {
        panic!()
    };
    assert_eq!(child.array_index, Some(1));
    assert_eq!(
        plan::parent_job_id(&child.job_id),
        "4c7599ae-0a82-49aa-ba5a-4727fcce14a8"
    );
}

#[test]
fn unknown_payloads_are_errors_and_other_events_are_ignored() {
    assert!(
        recognise(&serde_json::json!({"hello": "world"})).deliveries[0]
            .notices
            .is_err()
    );
    let other = serde_json::json!({"source": "aws.ec2", "detail-type": "EC2 Instance State-change Notification", "detail": {}});
    assert!(matches!(
        &recognise(&other).deliveries[0].notices,
        Ok(n) if matches!(n[0], Notice::Ignored(_))
    ));
}

#[test]
fn filters_skip_non_images_empty_and_oversized_objects_with_reasons() {
    let cfg = config();
    for (f, needle) in [
        ("s3-put-not-image.json", "not an image"),
        ("s3-put-zero-byte.json", "empty"),
        ("s3-put-too-large.json", "at most 104857600 bytes"),
    ] {
        let o = &objects(&fixture(f))[0];
        match decide(o, &cfg) {
            Decision::Skip(image, reason) => {
                assert!(reason.contains(needle), "{f}: {reason}");
                assert_eq!(image.key, o.key);
            }
            other => panic!("{f}: {other:?}"),
        }
    }
    let put = &objects(&fixture("s3-put.json"))[0];
    assert!(matches!(decide(put, &cfg), Decision::Label(_)));
}

#[test]
fn suffixes_match_case_insensitively() {
    let objs = objects(&fixture("s3-put-awkward-keys.json"));
    let upper = objs.iter().find(|o| o.key.ends_with(".JPG")).unwrap();
    assert!(matches!(decide(upper, &config()), Decision::Label(_)));
}

#[test]
fn prefixes_and_manifests_are_ignored_and_removal_is_switchable() {
    let mut o = objects(&fixture("s3-put.json"))[0].clone();
    let mut cfg = config();
    o.key = "labeler-manifests/x.json".into();
    assert!(matches!(decide(&o, &cfg), Decision::Ignore(_)));
    o.key = "holiday/a.jpg".into();
    cfg.include_prefixes = vec!["uploads/".into()];
    assert!(matches!(decide(&o, &cfg), Decision::Ignore(_)));
    cfg.include_prefixes = vec!["holiday/".into()];
    cfg.exclude_prefixes.push("holiday/".into());
    assert!(matches!(decide(&o, &cfg), Decision::Ignore(_)));

    let del = &objects(&fixture("s3-delete.json"))[0];
    let mut cfg = config();
    assert!(matches!(decide(del, &cfg), Decision::Remove(_)));
    cfg.delete_on_remove = false;
    assert!(matches!(decide(del, &cfg), Decision::Ignore(_)));
}

fn image(key: &str, seq: &str) -> ImageRef {
    ImageRef {
        bucket: "photos-bucket".into(),
        key: key.into(),
        revision: Revision::from_sequencer(seq).unwrap(),
        version_id: None,
        etag: None,
        size: Some(1),
    }
}

#[test]
fn only_the_newest_upload_of_a_key_in_one_batch_is_kept() {
    let (kept, dropped) = plan::newest_per_key(vec![
        (0, image("a.jpg", "02")),
        (1, image("a.jpg", "01")),
        (2, image("b.jpg", "01")),
        (3, image("a.jpg", "03")),
    ]);
    let kept: Vec<_> = kept.into_iter().map(|(d, i)| (d, i.key)).collect();
    assert_eq!(kept, [(2, "b.jpg".to_owned()), (3, "a.jpg".to_owned())]);
    assert_eq!(dropped.len(), 2);
}

#[test]
fn ten_thousand_images_become_one_array_job_with_a_manifest() {
    let mut cfg = config();
    cfg.images_per_job = 100;
    let images: Vec<_> = (0..10_000)
        .map(|i| image(&format!("bulk/{i:05}.jpg"), &format!("{i:08X}")))
        .collect();
    let jobs = plan::plan_jobs(images, &cfg).unwrap();
    assert_eq!(jobs.len(), 1);
    let job = &jobs[0];
    assert_eq!(job.array_size, Some(100));
    assert!(job.manifest.is_some());
    assert!(matches!(job.spec.images, ImageSource::Manifest(_)));
    assert!(job.spec.to_parameter().len() <= INLINE_JOB_MAX_BYTES);
    assert!(is_valid_job_name(&job.name));
}

#[test]
fn one_chunk_is_a_plain_inline_job_and_more_than_ten_thousand_chunks_split() {
    let mut cfg = config();
    let jobs = plan::plan_jobs(vec![image("a.jpg", "01"), image("b.jpg", "02")], &cfg).unwrap();
    assert_eq!(jobs.len(), 1);
    assert_eq!(jobs[0].array_size, None);
    assert!(jobs[0].manifest.is_none());

    cfg.images_per_job = 1;
    let images: Vec<_> = (0..10_001)
        .map(|i| image(&format!("{i}.png"), &format!("{i:08X}")))
        .collect();
    let jobs = plan::plan_jobs(images, &cfg).unwrap();
    assert_eq!(
        jobs.iter().map(|j| j.array_size).collect::<Vec<_>>(),
        [Some(10_000), None]
    );
}

#[test]
fn ended_jobs_map_to_their_chunks() {
    let chunks = vec![vec![image("a.jpg", "01")], vec![image("b.jpg", "02")]];
    assert_eq!(plan::chunks_of_ended_job(&chunks, None).len(), 2);
    let child = plan::chunks_of_ended_job(&chunks, Some(1));
    assert_eq!(child.len(), 1);
    assert_eq!(child[0].1[0].key, "b.jpg");
    assert!(plan::chunks_of_ended_job(&chunks, Some(7)).is_empty());
}

#[test]
fn s3_notifications_fanned_out_through_sns_are_read_directly_and_through_sqs() {
    for name in ["sns-s3-put.json", "sqs-sns-s3-put.json"] {
        let changes = objects(&fixture(name));

        assert_eq!(changes.len(), 1, "{name}");
        assert_eq!(changes[0].key, "shared/café au lait.jpg", "{name}");
        assert_eq!(changes[0].change, Change::Created, "{name}");
    }
    assert!(recognise(&fixture("sqs-sns-s3-put.json")).from_sqs);
}

#[test]
fn lifecycle_expirations_and_delete_markers_are_removals_of_the_right_kind() {
    let changes = objects(&fixture("s3-removals-versioned-and-lifecycle.json"));
    let cfg = config();

    let decided: Vec<(String, Option<String>)> = changes
        .iter()
        .map(|c| match decide(c, &cfg) {
            Decision::Remove(removal) => (removal.key, removal.version),
            other => panic!("{}: {other:?}", c.key),
        })
        .collect();

    assert_eq!(
        decided,
        [
            ("old/expired.jpg".to_owned(), None),
            ("old/hidden.jpg".to_owned(), None),
            ("old/marked.jpg".to_owned(), None),
            (
                "old/version.jpg".to_owned(),
                Some("3HL4kqtJlcpXroDTDmJ+rmSpXd3dIbrHY+MTRCxf3vjVBH40Nr8X8gdRQBpUMLUo".to_owned())
            ),
        ]
    );
}

#[test]
fn unreadable_messages_are_told_apart_from_readable_neighbours() {
    let payload = serde_json::json!({"Records": [
        {"messageId": "a", "eventSource": "aws:sqs", "body": "not json"},
        {"messageId": "b", "eventSource": "aws:sqs", "body": "{\"Type\":\"Notification\",\"Message\":\"[1,2\"}"},
        {"messageId": "c", "eventSource": "aws:sqs", "body": fixture("s3-put.json").to_string()}
    ]});

    let deliveries = recognise(&payload).deliveries;

    assert!(deliveries[0].notices.is_err());
    assert!(deliveries[1].notices.is_err());
    assert_eq!(deliveries[2].notices.as_ref().unwrap().len(), 1);
}

#[test]
fn the_reconciler_is_asked_for_by_its_schedule_or_by_name() {
    let scheduled =
        serde_json::json!({"detail-type": "Scheduled Event", "source": "aws.events", "detail": {}});
    for payload in [scheduled, serde_json::json!({"reconcile": {}})] {
        let notices = recognise(&payload).deliveries[0].notices.clone().unwrap();
        assert_eq!(notices, vec![Notice::Reconcile], "{payload}");
    }
}
