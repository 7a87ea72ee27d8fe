//! Contract tests between the Terraform in `infra/` and the code it deploys.
//!
//! They parse `infra/*.tf` with `hcl-rs` (no provider, no AWS) and check
//! what `terraform validate` cannot: that the table matches the shared
//! schema, that the dispatcher's environment is one `dispatcher::config`
//! accepts, that every IAM role grants exactly the actions its binary calls,
//! that the job definition comes from the shared template and that the
//! events queue is sized for the timeout `cargo lambda deploy` sets, that
//! the reconcile schedule sends what the dispatcher takes for a reconciler
//! pass, and that the deploy applies unconfirmed only what waits for the
//! image or the function. `terraform validate` and the mocked plans of
//! `infra/tests/` (`make infra-check`) check the rest against the provider.

use dispatcher::config::Config;
use hcl::eval::{Context, Evaluate, FuncArgs, FuncDef, ParamType};
use hcl::expr::{Expression, ObjectKey, TraversalOperator};
use hcl::{Block, Body, Value};
use labeler_core::schema::{
    attr, LABEL_INDEX, LABEL_INDEX_PK, LABEL_INDEX_SK, PK, SK, STATUS_INDEX, STATUS_INDEX_PK,
    STATUS_INDEX_SK,
};
use labeler_core::table::KEY_ATTRIBUTES;
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use worker::backend::Kind;

// ---------------------------------------------------------------------------
// What the binaries call, and what the platform calls with their roles
// ---------------------------------------------------------------------------

/// The dispatcher's SDK operations (see [`dispatcher_sources`]) and the IAM
/// action each one needs.
const DISPATCHER_SDK_ACTIONS: [(&str, &str); 10] = [
    ("batch:SubmitJob", "dispatch::submit"),
    (
        "batch:DescribeJobs",
        "the reconciler asks Batch about the jobs of old QUEUED records",
    ),
    (
        "batch:ListJobs",
        "a resubmission adopts a live job of the same deterministic name",
    ),
    ("s3:PutObject", "dispatch::submit writes a manifest"),
    (
        "s3:GetObject",
        "Run::job_ended reads a failed job's manifest; restore::current_version asks which version is current",
    ),
    ("dynamodb:PutItem", "store::claim, store::record_skipped"),
    (
        "dynamodb:UpdateItem",
        "store::record_submitted, release_claim, fail_queued",
    ),
    (
        "dynamodb:DeleteItem",
        "store::remove, then labeling::remove_stale_entries for its label entries",
    ),
    (
        "dynamodb:Query",
        "labeling::remove_stale_entries; the reconciler's by-status index",
    ),
    (
        "dynamodb:GetItem",
        "store::get_image (conflict classification)",
    ),
];

/// Calls Lambda makes with the dispatcher's role: logs, the async on-failure
/// destination, and (queued mode) the SQS event source mapping's polling.
const DISPATCHER_PLATFORM_ACTIONS: [&str; 7] = [
    "logs:CreateLogStream",
    "logs:PutLogEvents",
    "sqs:SendMessage",
    "sqs:ReceiveMessage",
    "sqs:DeleteMessage",
    "sqs:GetQueueAttributes",
    "sqs:ChangeMessageVisibility",
];

/// The worker's SDK operations (see [`worker_sources`]) and the IAM action
/// each one needs.
const WORKER_SDK_ACTIONS: [(&str, &str); 8] = [
    ("rekognition:DetectLabels", "run::label_image"),
    (
        "s3:GetObject",
        "run::read_manifest; DetectLabels reads S3Object images with the caller's permissions",
    ),
    (
        "s3:GetObjectVersion",
        "DetectLabels with S3Object.version (run::label_image)",
    ),
    ("dynamodb:GetItem", "store::get_image"),
    ("dynamodb:Query", "labeling::remove_stale_entries"),
    ("dynamodb:DeleteItem", "labeling::remove_stale_entries"),
    (
        "dynamodb:UpdateItem",
        "labeling::record_labeled (TransactWriteItems Update), labeling::record_failed",
    ),
    (
        "dynamodb:PutItem",
        "labeling::record_labeled (TransactWriteItems Put of label entries)",
    ),
];

/// Calls the ECS agent makes with the worker's execution role.
const EXECUTION_PLATFORM_ACTIONS: [&str; 5] = [
    "ecr:GetAuthorizationToken",
    "ecr:BatchGetImage",
    "ecr:GetDownloadUrlForLayer",
    "logs:CreateLogStream",
    "logs:PutLogEvents",
];

/// Actions IAM offers no resource type for: the only ones that may be
/// granted on `"*"`.
const ACTIONS_WITHOUT_RESOURCE_TYPES: [&str; 4] = [
    "rekognition:DetectLabels",
    "ecr:GetAuthorizationToken",
    "batch:DescribeJobs",
    "batch:ListJobs",
];

/// SDK fluent operations (as called on a client) and the IAM action each
/// needs. `transact_write_items` is absent on purpose: a transaction is
/// authorised per action, found through its `Put`/`Update`/`Delete`/
/// `ConditionCheck` builders in [`WRITE_BUILDERS`].
const SDK_OPERATIONS: [(&str, &str); 27] = [
    ("submit_job", "batch:SubmitJob"),
    ("describe_jobs", "batch:DescribeJobs"),
    ("list_jobs", "batch:ListJobs"),
    ("cancel_job", "batch:CancelJob"),
    ("terminate_job", "batch:TerminateJob"),
    ("get_item", "dynamodb:GetItem"),
    ("put_item", "dynamodb:PutItem"),
    ("update_item", "dynamodb:UpdateItem"),
    ("delete_item", "dynamodb:DeleteItem"),
    ("query", "dynamodb:Query"),
    ("scan", "dynamodb:Scan"),
    ("batch_get_item", "dynamodb:BatchGetItem"),
    ("batch_write_item", "dynamodb:BatchWriteItem"),
    ("describe_table", "dynamodb:DescribeTable"),
    ("get_object", "s3:GetObject"),
    ("head_object", "s3:GetObject"),
    ("put_object", "s3:PutObject"),
    ("copy_object", "s3:PutObject"),
    ("delete_object", "s3:DeleteObject"),
    ("list_objects_v2", "s3:ListBucket"),
    ("detect_labels", "rekognition:DetectLabels"),
    (
        "detect_moderation_labels",
        "rekognition:DetectModerationLabels",
    ),
    ("detect_text", "rekognition:DetectText"),
    ("send_message", "sqs:SendMessage"),
    ("receive_message", "sqs:ReceiveMessage"),
    ("delete_message", "sqs:DeleteMessage"),
    ("tag_resource", "batch:TagResource"),
];

/// Builders of writes and the permission each needs: the `TransactWriteItems`
/// actions, and the constructors of core's typed write layer
/// (`core/src/write.rs`), whose values only `Table::apply*` sends: a built
/// `Write` is a sent one.
const WRITE_BUILDERS: [(&str, &str); 6] = [
    ("Write::put(", "dynamodb:PutItem"),
    ("Write::update(", "dynamodb:UpdateItem"),
    ("Put::builder()", "dynamodb:PutItem"),
    ("Update::builder()", "dynamodb:UpdateItem"),
    ("Delete::builder()", "dynamodb:DeleteItem"),
    ("ConditionCheck::builder()", "dynamodb:ConditionCheckItem"),
];

/// Every variable `dispatcher::config` reads (checked against its source).
const DISPATCHER_VARIABLES: [&str; 21] = [
    "JOB_QUEUE",
    "JOB_DEFINITION",
    "TABLE_NAME",
    "IMAGE_SUFFIXES",
    "INCLUDE_PREFIXES",
    "EXCLUDE_PREFIXES",
    "MAX_OBJECT_BYTES",
    "DELETE_ON_REMOVE",
    "IMAGES_PER_JOB",
    "MAX_LABELS",
    "MIN_CONFIDENCE",
    "MANIFEST_BUCKET",
    "MANIFEST_PREFIX",
    "SUBMIT_CONCURRENCY",
    "WRITE_CONCURRENCY",
    "MAX_ATTEMPTS",
    "CLAIM_LEASE_SECONDS",
    "RECONCILE_AFTER_SECONDS",
    "RECONCILE_LIMIT",
    "RECONCILE_GIVE_UP_SECONDS",
    "TOMBSTONE_TTL_DAYS",
];

/// Variables without which the dispatcher does not start.
const REQUIRED_DISPATCHER_VARIABLES: [&str; 3] = ["JOB_QUEUE", "JOB_DEFINITION", "TABLE_NAME"];

// ---------------------------------------------------------------------------
// Reading the repository and the Terraform
// ---------------------------------------------------------------------------

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ has a parent")
        .to_path_buf()
}

fn read(relative: &str) -> String {
    let path = repo().join(relative);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()))
}

/// Rust sources under `dir` (recursively), tests modules cut off.
fn sources_under(relative: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut stack = vec![repo().join(relative)];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).expect("source directory is readable") {
            let path = entry.expect("directory entry").path();
            if path.is_dir() {
                stack.push(path);
            } else if path.extension().is_some_and(|e| e == "rs") {
                out.push(without_tests(&std::fs::read_to_string(&path).unwrap()));
            }
        }
    }
    assert!(!out.is_empty(), "no Rust sources under {relative}");
    out
}

/// A source file without its `#[cfg(test)]` module.
fn without_tests(source: &str) -> String {
    source
        .split("#[cfg(test)]")
        .next()
        .unwrap_or_default()
        .to_owned()
}

/// Identifier characters of a Rust path segment.
fn is_ident(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '_'
}

/// The top-level functions of `source` (lines starting with `fn`, `pub fn`,
/// `async fn`…), each from its signature to its closing brace.
fn top_level_functions(source: &str) -> Vec<(String, String)> {
    let mut functions = Vec::new();
    let mut offset = 0;
    for line in source.split_inclusive('\n') {
        let signature = ["pub(crate) ", "pub ", "async ", "const "]
            .iter()
            .fold(line, |rest, prefix| {
                rest.strip_prefix(prefix).unwrap_or(rest)
            });
        if let Some(rest) = signature.strip_prefix("fn ") {
            let name: String = rest.chars().take_while(|&c| is_ident(c)).collect();
            let end = source[offset..]
                .find("\n}\n")
                .map_or(source.len(), |e| offset + e + 3);
            functions.push((name, source[offset..end].to_owned()));
        }
        offset += line.len();
    }
    functions
}

/// Names `source` calls as functions (`name(` or `name::<`, with or without
/// a path), excluding method calls (`.name(`) and definitions; `qualified`
/// tells whether a path (`module::name(`) preceded the name.
fn called_functions(source: &str) -> Vec<(String, bool)> {
    let mut calls = Vec::new();
    let bytes = source.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        if !is_ident(bytes[i] as char) || (i > 0 && is_ident(bytes[i - 1] as char)) {
            i += 1;
            continue;
        }
        let end = source[i..]
            .find(|c: char| !is_ident(c))
            .map_or(source.len(), |e| i + e);
        let name = &source[i..end];
        let rest = &source[end..];
        let before = source[..i].trim_end();
        if (rest.starts_with('(') || rest.starts_with("::<"))
            && !before.ends_with('.')
            && !before.ends_with("fn")
        {
            calls.push((name.to_owned(), before.ends_with("::")));
        }
        i = end;
    }
    calls
}

/// The sources whose SDK calls run with a binary's role: its crate (tests
/// cut off) and every function of the shared core it reaches, transitively.
/// A core function is reached through a path (`store::claim(`), or by name
/// when the crate defines no function of that name itself.
fn reachable_sources(crate_dir: &str) -> Vec<String> {
    let mut sources = sources_under(crate_dir);
    let own: BTreeSet<String> = sources
        .iter()
        .flat_map(|s| top_level_functions(s))
        .map(|(name, _)| name)
        .collect();
    let mut core: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for source in sources_under("core/src") {
        for (name, body) in top_level_functions(&source) {
            core.entry(name).or_default().push(body);
        }
    }
    let mut reached = BTreeSet::new();
    let mut pending: Vec<String> = sources
        .iter()
        .flat_map(|s| called_functions(s))
        .filter(|(name, qualified)| *qualified || !own.contains(name))
        .map(|(name, _)| name)
        .collect();
    while let Some(name) = pending.pop() {
        let Some(bodies) = core.get(&name) else {
            continue;
        };
        if !reached.insert(name) {
            continue;
        }
        for body in bodies {
            pending.extend(called_functions(body).into_iter().map(|(n, _)| n));
            sources.push(body.clone());
        }
    }
    sources
}

/// The sources whose SDK calls run with the dispatcher's role.
fn dispatcher_sources() -> Vec<String> {
    reachable_sources("dispatcher/src")
}

/// The sources whose SDK calls run with the worker's job role.
fn worker_sources() -> Vec<String> {
    reachable_sources("worker/src")
}

/// Every block of every `infra/*.tf` file.
fn infra() -> Vec<Block> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(repo().join("infra"))
        .expect("infra/ is readable")
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "tf"))
        .collect();
    files.sort();
    assert!(!files.is_empty(), "no .tf files in infra/");
    files
        .iter()
        .flat_map(|path| {
            let text = std::fs::read_to_string(path).unwrap();
            let body: Body = hcl::parse(&text)
                .unwrap_or_else(|e| panic!("{} does not parse: {e}", path.display()));
            body.into_blocks().collect::<Vec<_>>()
        })
        .collect()
}

fn labels(block: &Block) -> Vec<&str> {
    block.labels().iter().map(|l| l.as_str()).collect()
}

/// The top-level block `kind "a" "b"` (resource, data, variable, output…).
fn block<'a>(blocks: &'a [Block], kind: &str, names: &[&str]) -> &'a Block {
    blocks
        .iter()
        .find(|b| b.identifier() == kind && labels(b) == names)
        .unwrap_or_else(|| panic!("infra/ has no {kind} {names:?}"))
}

fn attr<'a>(block: &'a Block, key: &str) -> &'a Expression {
    block
        .body()
        .attributes()
        .find(|a| a.key() == key)
        .map(|a| a.expr())
        .unwrap_or_else(|| panic!("{} {:?} has no {key}", block.identifier(), labels(block)))
}

fn string_attr(block: &Block, key: &str) -> String {
    match attr(block, key) {
        Expression::String(s) => s.clone(),
        other => panic!("{key} is not a string literal: {other:?}"),
    }
}

fn nested<'a>(block: &'a Block, kind: &str) -> Vec<&'a Block> {
    block
        .body()
        .blocks()
        .filter(|b| b.identifier() == kind)
        .collect()
}

/// `local.<name>` definitions across every `locals` block.
fn locals(blocks: &[Block]) -> BTreeMap<String, Expression> {
    blocks
        .iter()
        .filter(|b| b.identifier() == "locals")
        .flat_map(|b| b.body().attributes())
        .map(|a| (a.key().to_owned(), a.expr().clone()))
        .collect()
}

/// The dotted path of a traversal such as `aws_iam_role.job.arn`.
fn traversal_path(expr: &Expression) -> Option<String> {
    let Expression::Traversal(t) = expr else {
        return None;
    };
    let Expression::Variable(root) = &t.expr else {
        return None;
    };
    let mut path = root.to_string();
    for op in &t.operators {
        match op {
            TraversalOperator::GetAttr(name) => {
                path.push('.');
                path.push_str(name.as_str());
            }
            _ => return None,
        }
    }
    Some(path)
}

fn object_entries(expr: &Expression) -> Vec<(String, &Expression)> {
    let Expression::Object(object) = expr else {
        panic!("not an object: {expr:?}");
    };
    object
        .iter()
        .map(|(k, v)| {
            let key = match k {
                ObjectKey::Identifier(id) => id.to_string(),
                ObjectKey::Expression(Expression::String(s)) => s.clone(),
                other => panic!("unsupported object key {other:?}"),
            };
            (key, v)
        })
        .collect()
}

/// Actions granted by `data "aws_iam_policy_document" "<name>"`, with the
/// literal resources of each statement (static and `dynamic "statement"`).
fn policy_statements(blocks: &[Block], name: &str) -> Vec<(BTreeSet<String>, Vec<Expression>)> {
    let document = block(blocks, "data", &["aws_iam_policy_document", name]);
    let mut statements: Vec<&Block> = nested(document, "statement");
    for dynamic in nested(document, "dynamic") {
        assert_eq!(labels(dynamic), ["statement"]);
        statements.extend(nested(dynamic, "content"));
    }
    statements
        .into_iter()
        .map(|s| {
            let effect = s
                .body()
                .attributes()
                .find(|a| a.key() == "effect")
                .map(|a| a.expr().clone());
            assert!(
                effect.is_none() || effect == Some(Expression::String("Allow".into())),
                "policy {name} has a non-Allow statement"
            );
            let Expression::Array(actions) = attr(s, "actions") else {
                panic!("actions of policy {name} must be a literal list");
            };
            let actions = actions
                .iter()
                .map(|a| match a {
                    Expression::String(s) => s.clone(),
                    other => panic!("action {other:?} of policy {name} is not a literal"),
                })
                .collect();
            let Expression::Array(resources) = attr(s, "resources") else {
                panic!("resources of policy {name} must be a list");
            };
            (actions, resources.clone())
        })
        .collect()
}

fn granted_actions(blocks: &[Block], name: &str) -> BTreeSet<String> {
    policy_statements(blocks, name)
        .into_iter()
        .flat_map(|(actions, _)| actions)
        .collect()
}

/// IAM actions the given sources need, found from the SDK operations and
/// transaction actions they contain.
fn actions_called_in(sources: &[String]) -> BTreeSet<String> {
    let mut actions = BTreeSet::new();
    for source in sources {
        for (operation, action) in SDK_OPERATIONS {
            if source.contains(&format!(".{operation}()")) {
                actions.insert(action.to_owned());
            }
        }
        for (builder, action) in WRITE_BUILDERS {
            if source.contains(builder) {
                actions.insert(action.to_owned());
            }
        }
        // Rekognition reads an S3Object with the caller's permissions.
        if source.contains("S3Object::builder()") {
            actions.insert("s3:GetObject".to_owned());
            if source.contains(".set_version(") || source.contains(".version(") {
                actions.insert("s3:GetObjectVersion".to_owned());
            }
        }
    }
    actions
}

fn set<'a>(items: impl IntoIterator<Item = &'a str>) -> BTreeSet<String> {
    items.into_iter().map(str::to_owned).collect()
}

// ---------------------------------------------------------------------------
// Evaluating the few Terraform expressions the contract depends on
// ---------------------------------------------------------------------------

fn tostring(args: FuncArgs) -> Result<Value, String> {
    Ok(match &args[0] {
        Value::String(s) => Value::String(s.clone()),
        other => Value::String(other.to_string()),
    })
}

fn join(args: FuncArgs) -> Result<Value, String> {
    let separator = args[0].as_str().ok_or("join: separator is not a string")?;
    let items = args[1].as_array().ok_or("join: not a list")?;
    let parts: Result<Vec<&str>, String> = items
        .iter()
        .map(|v| v.as_str().ok_or_else(|| "join: not a string".to_owned()))
        .collect();
    Ok(Value::String(parts?.join(separator)))
}

fn length(args: FuncArgs) -> Result<Value, String> {
    let n = match &args[0] {
        Value::Array(items) => items.len(),
        Value::Object(map) => map.len(),
        Value::String(s) => s.chars().count(),
        other => return Err(format!("length: {other} has no length")),
    };
    Ok(Value::from(n as u64))
}

/// Stand-in for the job queue ARN, known only after apply.
const SAMPLE_JOB_QUEUE_ARN: &str =
    "arn:aws:batch:us-east-1:123456789012:job-queue/image-labeler-jobs";
/// Stand-in for the table name, known only after apply.
const SAMPLE_TABLE_NAME: &str = "image-labeler-labels";

/// A context with every variable at its default, the locals that can be
/// evaluated from them, sample resource attributes and the functions used.
fn context(blocks: &[Block]) -> Context<'static> {
    let mut ctx = Context::new();
    for (name, func) in [
        (
            "tostring",
            tostring as fn(FuncArgs) -> Result<Value, String>,
        ),
        ("length", length),
    ] {
        ctx.declare_func(name, FuncDef::new(func, [ParamType::Any]));
    }

    ctx.declare_func(
        "join",
        FuncDef::new(join, [ParamType::String, ParamType::Any]),
    );

    let mut vars = hcl::Map::new();
    for variable in blocks.iter().filter(|b| b.identifier() == "variable") {
        if let Some(default) = variable.body().attributes().find(|a| a.key() == "default") {
            let value = default
                .expr()
                .evaluate(&ctx)
                .expect("variable defaults are literals");
            vars.insert(labels(variable)[0].to_owned(), value);
        }
    }
    ctx.declare_var("var", Value::Object(vars));
    ctx.declare_var(
        "aws_batch_job_queue",
        hcl::value!({ this = { arn = (SAMPLE_JOB_QUEUE_ARN) } }),
    );
    ctx.declare_var(
        "aws_dynamodb_table",
        hcl::value!({ results = { name = (SAMPLE_TABLE_NAME) } }),
    );

    // Locals may refer to one another: evaluate until nothing changes.
    let definitions = locals(blocks);
    let mut known = hcl::Map::new();
    loop {
        let before = known.len();
        let mut scope = ctx.clone();
        scope.declare_var("local", Value::Object(known.clone()));
        for (name, expr) in &definitions {
            if !known.contains_key(name) {
                if let Ok(value) = expr.evaluate(&scope) {
                    known.insert(name.clone(), value);
                }
            }
        }
        if known.len() == before {
            break;
        }
    }
    ctx.declare_var("local", Value::Object(known));
    ctx
}

fn local_value(blocks: &[Block], name: &str) -> Value {
    let expr = locals(blocks)
        .remove(name)
        .unwrap_or_else(|| panic!("infra/ has no local.{name}"));
    expr.evaluate(&context(blocks))
        .unwrap_or_else(|e| panic!("local.{name} cannot be evaluated offline: {e}"))
}

/// The dispatcher environment as Terraform renders it with the defaults.
fn dispatcher_env(blocks: &[Block]) -> BTreeMap<String, String> {
    let Value::Object(env) = local_value(blocks, "dispatcher_env") else {
        panic!("local.dispatcher_env is not an object");
    };
    env.into_iter()
        .map(|(k, v)| match v {
            Value::String(s) => (k, s),
            other => panic!("{k} is not a string: {other}"),
        })
        .collect()
}

// ---------------------------------------------------------------------------
// Tests
// ---------------------------------------------------------------------------

#[test]
fn the_table_declares_the_shared_keys_indexes_and_time_to_live() {
    let blocks = infra();

    let table = block(&blocks, "resource", &["aws_dynamodb_table", "results"]);

    assert_eq!(string_attr(table, "hash_key"), PK);
    assert_eq!(string_attr(table, "range_key"), SK);
    assert_eq!(string_attr(table, "billing_mode"), "PAY_PER_REQUEST");
    let attributes: BTreeSet<(String, String)> = nested(table, "attribute")
        .into_iter()
        .map(|a| (string_attr(a, "name"), string_attr(a, "type")))
        .collect();
    let expected: BTreeSet<(String, String)> = KEY_ATTRIBUTES
        .iter()
        .map(|(n, t)| (n.to_string(), t.to_string()))
        .collect();
    assert_eq!(attributes, expected);
    let indexes: BTreeSet<[String; 4]> = nested(table, "global_secondary_index")
        .into_iter()
        .map(|i| {
            ["name", "hash_key", "range_key", "projection_type"].map(|key| string_attr(i, key))
        })
        .collect();
    let expected_indexes: BTreeSet<[String; 4]> = [
        [LABEL_INDEX, LABEL_INDEX_PK, LABEL_INDEX_SK, "ALL"],
        [STATUS_INDEX, STATUS_INDEX_PK, STATUS_INDEX_SK, "ALL"],
    ]
    .into_iter()
    .map(|index| index.map(str::to_owned))
    .collect();
    assert_eq!(indexes, expected_indexes);
    let ttl = nested(table, "ttl");
    assert_eq!(ttl.len(), 1, "the table expires tombstones with a TTL");
    assert_eq!(string_attr(ttl[0], "attribute_name"), attr::EXPIRES_AT);
    assert_eq!(attr(ttl[0], "enabled"), &Expression::Bool(true));
}

#[test]
fn the_dispatcher_list_of_variables_is_exactly_what_its_config_reads() {
    let config = without_tests(&read("dispatcher/src/config.rs"));

    let quoted: BTreeSet<String> = config
        .split('"')
        .skip(1)
        .step_by(2)
        .filter(|s| {
            s.len() > 2 && s.chars().all(|c| c.is_ascii_uppercase() || c == '_') && s.contains('_')
        })
        .map(str::to_owned)
        .collect();

    assert_eq!(quoted, set(DISPATCHER_VARIABLES));
}

#[test]
fn the_dispatcher_environment_sets_the_required_variables_and_only_known_ones() {
    let blocks = infra();

    let env = dispatcher_env(&blocks);

    let keys: BTreeSet<String> = env.keys().cloned().collect();
    assert!(
        keys.is_superset(&set(REQUIRED_DISPATCHER_VARIABLES)),
        "missing required variables: {:?}",
        set(REQUIRED_DISPATCHER_VARIABLES)
            .difference(&keys)
            .collect::<Vec<_>>()
    );
    assert!(
        keys.is_subset(&set(DISPATCHER_VARIABLES)),
        "variables the dispatcher does not read: {:?}",
        keys.difference(&set(DISPATCHER_VARIABLES))
            .collect::<Vec<_>>()
    );
}

#[test]
fn each_backend_s_default_min_confidence_is_the_one_the_worker_documents() {
    let blocks = infra();
    let Value::Object(defaults) = local_value(&blocks, "default_min_confidence") else {
        panic!("local.default_min_confidence is not an object");
    };
    for kind in <Kind as clap::ValueEnum>::value_variants() {
        assert_eq!(
            defaults.get(kind.as_str()).and_then(Value::as_f64),
            Some(f64::from(kind.default_min_confidence())),
            "{kind:?}"
        );
    }
    let env = dispatcher_env(&blocks);
    assert_eq!(
        env["MIN_CONFIDENCE"], "70",
        "label_backend defaults to rekognition"
    );
}

#[test]
fn the_dispatcher_starts_with_exactly_the_environment_terraform_renders() {
    let blocks = infra();
    let env = dispatcher_env(&blocks);
    let vars = context(&blocks);
    let default = |name: &str| -> Value {
        let expr: Expression = format!("var.{name}").parse().unwrap();
        expr.evaluate(&vars).unwrap()
    };

    let cfg = Config::from_lookup(|name| env.get(name).cloned())
        .expect("the dispatcher accepts the environment Terraform renders");

    assert_eq!(cfg.job_queue, SAMPLE_JOB_QUEUE_ARN);
    assert_eq!(cfg.table, SAMPLE_TABLE_NAME);
    assert_eq!(
        cfg.job_definition,
        local_value(&blocks, "job_definition_name")
            .as_str()
            .unwrap()
    );
    assert_eq!(
        Value::from(cfg.images_per_job as u64),
        default("images_per_job")
    );
    assert_eq!(
        Value::from(cfg.manifests.prefix.clone()),
        default("manifest_prefix")
    );
    let suffixes: Vec<Value> = cfg.suffixes.iter().cloned().map(Value::from).collect();
    assert_eq!(Value::Array(suffixes), default("image_suffixes"));
}

#[test]
fn the_job_definition_in_the_dispatcher_environment_is_the_one_terraform_registers() {
    let blocks = infra();

    let definition = block(&blocks, "resource", &["aws_batch_job_definition", "worker"]);

    assert_eq!(
        traversal_path(attr(definition, "name")).as_deref(),
        Some("local.job_definition_name")
    );
    let env = locals(&blocks).remove("dispatcher_env").unwrap();
    let entries = object_entries(&env);
    let lookup = |key: &str| {
        entries
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| traversal_path(v))
            .unwrap_or_else(|| panic!("dispatcher_env has no {key}"))
    };
    assert_eq!(
        lookup("JOB_DEFINITION").as_deref(),
        Some("local.job_definition_name")
    );
    assert_eq!(
        lookup("JOB_QUEUE").as_deref(),
        Some("aws_batch_job_queue.this.arn")
    );
    assert_eq!(
        lookup("TABLE_NAME").as_deref(),
        Some("aws_dynamodb_table.results.name")
    );
}

/// Counterexample: the notifications filtered on each suffix in lower and
/// upper case, and S3 matches suffixes case-sensitively, so `IMG_0001.Jpg`
/// or `scan.Tiff` raised no event, got no record and raised no alarm. S3
/// now filters on prefixes only, and the dispatcher, which matches suffixes
/// without regard to case, sees every key.
#[test]
fn s3_notifications_filter_on_prefixes_only_and_the_dispatcher_labels_every_case_of_a_suffix() {
    let blocks = infra();
    let notification = block(
        &blocks,
        "resource",
        &["aws_s3_bucket_notification", "images"],
    );
    for target in ["queue", "lambda_function"] {
        let dynamic = nested(notification, "dynamic")
            .into_iter()
            .find(|d| labels(d) == [target])
            .unwrap_or_else(|| panic!("no dynamic {target} notification"));
        let content = nested(dynamic, "content");
        let keys: Vec<&str> = content[0].body().attributes().map(|a| a.key()).collect();
        assert!(
            keys.contains(&"filter_prefix") && !keys.contains(&"filter_suffix"),
            "{target} notifications must filter on prefixes only: {keys:?}"
        );
    }
    let Value::Array(prefixes) = local_value(&blocks, "notification_prefixes") else {
        panic!("local.notification_prefixes is not a list");
    };
    assert_eq!(prefixes, [Value::from("")], "the whole bucket by default");

    let env = dispatcher_env(&blocks);
    let cfg = Config::from_lookup(|name| env.get(name).cloned()).unwrap();
    for key in ["IMG_0001.Jpg", "scan.Tiff", "holiday/Beach.JPEG", "x.HeIc"] {
        let change = dispatcher::event::ObjectChange {
            change: dispatcher::event::Change::Created,
            bucket: "photos".into(),
            key: key.into(),
            revision: labeler_core::Revision::from_sequencer("0A").unwrap(),
            version_id: None,
            etag: None,
            size: Some(4321),
            delete_marker: false,
        };
        assert!(
            matches!(
                dispatcher::plan::decide(&change, &cfg),
                dispatcher::plan::Decision::Label(_)
            ),
            "{key}"
        );
    }
}

#[test]
fn the_dispatcher_role_grants_exactly_what_the_dispatcher_and_lambda_call() {
    let blocks = infra();

    let called = actions_called_in(&dispatcher_sources());
    let granted = granted_actions(&blocks, "dispatcher");

    assert_eq!(
        called,
        set(DISPATCHER_SDK_ACTIONS.map(|(a, _)| a)),
        "the dispatcher's SDK calls changed: update DISPATCHER_SDK_ACTIONS and infra/iam.tf"
    );
    let mut expected = called;
    expected.extend(set(DISPATCHER_PLATFORM_ACTIONS));
    assert_eq!(granted, expected);
}

#[test]
fn the_worker_job_role_grants_exactly_what_the_worker_calls() {
    let blocks = infra();

    let called = actions_called_in(&worker_sources());
    let granted = granted_actions(&blocks, "job");

    assert_eq!(
        called,
        set(WORKER_SDK_ACTIONS.map(|(a, _)| a)),
        "the worker's SDK calls changed: update WORKER_SDK_ACTIONS and infra/iam.tf"
    );
    assert_eq!(granted, called);
}

#[test]
fn the_execution_role_grants_only_image_pulls_and_logs() {
    let blocks = infra();

    let granted = granted_actions(&blocks, "execution");

    assert_eq!(granted, set(EXECUTION_PLATFORM_ACTIONS));
}

#[test]
fn wildcard_resources_are_granted_only_for_actions_without_resource_types() {
    let blocks = infra();

    for policy in ["dispatcher", "job", "execution"] {
        for (actions, resources) in policy_statements(&blocks, policy) {
            let wildcard = resources
                .iter()
                .any(|r| matches!(r, Expression::String(s) if s.contains('*') && !s.contains(':')));
            if wildcard {
                assert!(
                    actions.is_subset(&set(ACTIONS_WITHOUT_RESOURCE_TYPES)),
                    "policy {policy} grants {actions:?} on \"*\""
                );
            }
        }
    }
}

#[test]
fn the_roles_the_job_definition_names_are_the_roles_whose_policies_are_checked() {
    let blocks = infra();
    let templatefile = templatefile_call(&blocks);

    let vars: BTreeMap<String, Option<String>> = object_entries(&templatefile.args[1])
        .into_iter()
        .map(|(k, v)| (k, traversal_path(v)))
        .collect();

    assert_eq!(
        vars["job_role_arn"].as_deref(),
        Some("aws_iam_role.job.arn")
    );
    assert_eq!(
        vars["execution_role_arn"].as_deref(),
        Some("aws_iam_role.execution.arn")
    );
    assert_eq!(
        vars["log_group"].as_deref(),
        Some("aws_cloudwatch_log_group.worker.name")
    );
    assert_eq!(
        vars["table_name"].as_deref(),
        Some("aws_dynamodb_table.results.name")
    );
    for (role, policy) in [
        ("job", "job"),
        ("execution", "execution"),
        ("dispatcher", "dispatcher"),
    ] {
        let attachment = blocks
            .iter()
            .find(|b| {
                b.identifier() == "resource"
                    && labels(b)[0] == "aws_iam_role_policy"
                    && traversal_path(attr(b, "role")).as_deref()
                        == Some(format!("aws_iam_role.{role}.id").as_str())
            })
            .unwrap_or_else(|| panic!("no inline policy on aws_iam_role.{role}"));
        assert_eq!(
            traversal_path(attr(attachment, "policy")).as_deref(),
            Some(format!("data.aws_iam_policy_document.{policy}.json").as_str())
        );
    }
    let role_output = block(&blocks, "output", &["dispatcher_role_arn"]);
    assert_eq!(
        traversal_path(attr(role_output, "value")).as_deref(),
        Some("aws_iam_role.dispatcher.arn")
    );
}

/// The single `templatefile("${path.module}/job-definition.json", {...})`.
fn templatefile_call(blocks: &[Block]) -> hcl::expr::FuncCall {
    let calls: Vec<hcl::expr::FuncCall> = locals(blocks)
        .into_values()
        .flat_map(|e| find_calls(&e, "templatefile"))
        .collect();
    assert_eq!(calls.len(), 1, "exactly one templatefile() call in infra/");
    calls.into_iter().next().unwrap()
}

fn find_calls(expr: &Expression, name: &str) -> Vec<hcl::expr::FuncCall> {
    let mut found = Vec::new();
    match expr {
        Expression::FuncCall(call) => {
            if call.name.name.as_str() == name {
                found.push((**call).clone());
            }
            for arg in &call.args {
                found.extend(find_calls(arg, name));
            }
        }
        Expression::Object(object) => {
            for value in object.values() {
                found.extend(find_calls(value, name));
            }
        }
        Expression::Array(items) => {
            for item in items {
                found.extend(find_calls(item, name));
            }
        }
        Expression::Parenthesis(inner) => found.extend(find_calls(inner, name)),
        _ => {}
    }
    found
}

#[test]
fn the_job_definition_is_rendered_from_the_shared_template_not_a_copy() {
    let blocks = infra();
    let template = read("infra/job-definition.json");
    let call = templatefile_call(&blocks);

    let path = hcl::format::to_string(&call.args[0]).unwrap();
    assert_eq!(path, "\"${path.module}/job-definition.json\"");
    let placeholders: BTreeSet<String> = template
        .split("${")
        .skip(1)
        .map(|rest| rest.split('}').next().unwrap().trim().to_owned())
        .collect();
    let passed: BTreeSet<String> = object_entries(&call.args[1])
        .into_iter()
        .map(|(k, _)| k)
        .collect();
    assert_eq!(
        passed, placeholders,
        "templatefile() variables vs. the template's placeholders"
    );

    let definition = block(&blocks, "resource", &["aws_batch_job_definition", "worker"]);
    let retry = nested(definition, "retry_strategy");
    assert_eq!(retry.len(), 1);
    assert_eq!(
        traversal_path(attr(retry[0], "attempts")).as_deref(),
        Some("local.job_definition_template.retryStrategy.attempts")
    );
    assert!(
        nested(retry[0], "evaluate_on_exit").is_empty(),
        "evaluate_on_exit rules must come from the template, not be restated"
    );
    let dynamic = nested(retry[0], "dynamic");
    assert_eq!(dynamic.len(), 1);
    assert_eq!(labels(dynamic[0]), ["evaluate_on_exit"]);
    assert_eq!(
        traversal_path(attr(dynamic[0], "for_each")).as_deref(),
        Some("local.job_definition_template.retryStrategy.evaluateOnExit")
    );
    let timeout = nested(definition, "timeout");
    assert_eq!(
        traversal_path(attr(timeout[0], "attempt_duration_seconds")).as_deref(),
        Some("local.job_definition_template.timeout.attemptDurationSeconds")
    );
    assert_eq!(
        traversal_path(attr(definition, "propagate_tags")).as_deref(),
        Some("local.job_definition_template.propagateTags")
    );
    let container = hcl::format::to_string(attr(definition, "container_properties")).unwrap();
    assert_eq!(container, "jsonencode(local.container_properties)");
    let rendered = hcl::format::to_string(&locals(&blocks)["container_properties"]).unwrap();
    assert!(
        rendered.contains("local.job_definition_template.containerProperties"),
        "container properties must come from the template: {rendered}"
    );
}

#[test]
fn the_events_queue_outlasts_six_dispatcher_timeouts_as_cargo_lambda_deploys_them() {
    let blocks = infra();
    let cargo = read("dispatcher/Cargo.toml");
    let deploy = cargo
        .split("[package.metadata.lambda.deploy]")
        .nth(1)
        .expect("dispatcher/Cargo.toml has [package.metadata.lambda.deploy]");
    let timeout: u64 = deploy
        .lines()
        .take_while(|l| !l.trim_start().starts_with('['))
        .find_map(|l| {
            l.trim()
                .strip_prefix("timeout")?
                .trim()
                .strip_prefix('=')?
                .trim()
                .parse()
                .ok()
        })
        .expect("a timeout in [package.metadata.lambda.deploy]");
    let ctx = context(&blocks);

    let variable = block(&blocks, "variable", &["dispatcher_timeout_seconds"]);
    let default = attr(variable, "default").evaluate(&ctx).unwrap();
    let queue = block(&blocks, "resource", &["aws_sqs_queue", "events"]);
    let visibility = attr(queue, "visibility_timeout_seconds")
        .evaluate(&ctx)
        .unwrap();

    assert_eq!(
        default,
        Value::from(timeout),
        "Terraform's default differs from Cargo.toml's"
    );
    let visibility = visibility.as_u64().expect("a whole number of seconds");
    assert!(
        visibility >= 6 * timeout,
        "visibility timeout {visibility}s is under six dispatcher timeouts ({timeout}s)"
    );
    assert!(visibility <= 43_200, "SQS allows at most 12 hours");
}

#[test]
fn batch_failures_of_our_queue_reach_the_dispatcher() {
    let blocks = infra();
    let rule = block(
        &blocks,
        "resource",
        &["aws_cloudwatch_event_rule", "batch_job_failed"],
    );

    let Expression::FuncCall(call) = attr(rule, "event_pattern") else {
        panic!("event_pattern must be jsonencode({{...}})");
    };
    let pattern: BTreeMap<String, Expression> = object_entries(&call.args[0])
        .into_iter()
        .map(|(k, v)| (k, v.clone()))
        .collect();

    assert_eq!(call.name.name.as_str(), "jsonencode");
    assert_eq!(
        pattern["source"],
        Expression::Array(vec!["aws.batch".into()])
    );
    assert_eq!(
        pattern["detail-type"],
        Expression::Array(vec!["Batch Job State Change".into()])
    );
    let detail: BTreeMap<String, Expression> = object_entries(&pattern["detail"])
        .into_iter()
        .map(|(k, v)| (k, v.clone()))
        .collect();
    assert_eq!(detail["status"], Expression::Array(vec!["FAILED".into()]));
    let Expression::Array(queues) = &detail["jobQueue"] else {
        panic!("detail.jobQueue must be a list");
    };
    assert_eq!(
        queues.iter().map(traversal_path).collect::<Vec<_>>(),
        [Some("aws_batch_job_queue.this.arn".to_owned())]
    );
    let target = block(
        &blocks,
        "resource",
        &["aws_cloudwatch_event_target", "dispatcher"],
    );
    assert_eq!(
        traversal_path(attr(target, "arn")).as_deref(),
        Some("local.function_arn")
    );
}

#[test]
fn every_variable_is_typed_described_and_every_output_described() {
    let blocks = infra();
    let mut untyped = Vec::new();

    for variable in blocks.iter().filter(|b| b.identifier() == "variable") {
        for key in ["type", "description"] {
            if !variable.body().attributes().any(|a| a.key() == key) {
                untyped.push(format!("variable {} has no {key}", labels(variable)[0]));
            }
        }
    }
    for output in blocks.iter().filter(|b| b.identifier() == "output") {
        if !output.body().attributes().any(|a| a.key() == "description") {
            untyped.push(format!("output {} has no description", labels(output)[0]));
        }
    }

    assert!(untyped.is_empty(), "{untyped:#?}");
}

/// Resources created only once something outside Terraform exists: the image
/// (`var.worker_image_tag`) or the dispatcher function
/// (`local.function_exists`), as `resource_type.name[0]`; and resources that
/// change when the function appears (an alarm whose `actions_enabled` follows
/// it), as `resource_type.name`.
fn deferred_resources(blocks: &[Block]) -> BTreeSet<String> {
    let refers = |b: &Block, key: &str, to: &[&str]| {
        b.body()
            .attributes()
            .find(|a| a.key() == key)
            .and_then(|a| hcl::format::to_string(a.expr()).ok())
            .is_some_and(|expr| to.iter().any(|t| expr.contains(t)))
    };
    let resources = || blocks.iter().filter(|b| b.identifier() == "resource");
    let created = resources()
        .filter(|b| {
            refers(
                b,
                "count",
                &["local.function_exists", "var.worker_image_tag"],
            )
        })
        .map(|b| format!("{}.{}[0]", labels(b)[0], labels(b)[1]));
    let changed = resources()
        .filter(|b| refers(b, "actions_enabled", &["local.function_exists"]))
        .map(|b| format!("{}.{}", labels(b)[0], labels(b)[1]));
    created.chain(changed).collect()
}

#[test]
fn the_deploy_applies_unconfirmed_only_what_waits_for_the_image_or_the_function() {
    let blocks = infra();
    let script = read("scripts/deploy.sh");

    let list = script
        .split("followup_resources=(")
        .nth(1)
        .and_then(|rest| rest.split("\n)").next())
        .expect("scripts/deploy.sh declares followup_resources=( ... )");
    let followups: BTreeSet<String> = list
        .lines()
        .map(|l| l.trim().trim_matches('\'').to_owned())
        .filter(|l| !l.is_empty())
        .collect();

    let deferred = deferred_resources(&blocks);
    assert!(
        deferred.contains("aws_batch_job_definition.worker[0]")
            && deferred.contains("aws_lambda_event_source_mapping.events[0]")
            && deferred.contains("aws_cloudwatch_metric_alarm.backlog_age"),
        "the gating expressions changed: {deferred:?}"
    );
    assert_eq!(followups, deferred);
}

#[test]
fn the_reconcile_schedule_sends_an_input_the_dispatcher_takes_for_a_reconciler_pass() {
    let blocks = infra();
    let target = block(
        &blocks,
        "resource",
        &["aws_cloudwatch_event_target", "reconcile"],
    );

    let Expression::FuncCall(call) = attr(target, "input") else {
        panic!("the reconcile target's input must be jsonencode({{...}})");
    };
    assert_eq!(call.name.name.as_str(), "jsonencode");
    let input = serde_json::to_value(call.args[0].evaluate(&Context::new()).unwrap()).unwrap();

    let notices = dispatcher::event::parse_notices(&input).expect("the dispatcher recognises it");
    assert!(
        matches!(notices.as_slice(), [dispatcher::event::Notice::Reconcile]),
        "{input} is not a reconciler pass: {notices:?}"
    );
}

/// The dispatcher reads a job that failed on the worker's retryable or
/// job-unusable exit code as an outage (its images stay QUEUED), and the
/// job definition lets Batch retry the retryable one first.
#[test]
fn the_exit_codes_the_dispatcher_treats_as_outages_are_the_worker_s() {
    use dispatcher::failure::{JOB_UNUSABLE_EXIT, RETRYABLE_EXIT};
    assert_eq!(
        RETRYABLE_EXIT,
        i64::from(worker::ExitCode::Retryable.code())
    );
    assert_eq!(
        JOB_UNUSABLE_EXIT,
        i64::from(worker::ExitCode::JobUnusable.code())
    );
    let definition: serde_json::Value =
        serde_json::from_str(&read("infra/job-definition.json")).unwrap();
    let retried: Vec<&str> = definition["retryStrategy"]["evaluateOnExit"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|rule| rule["action"] == "RETRY")
        .filter_map(|rule| rule["onExitCode"].as_str())
        .collect();
    assert_eq!(retried, [RETRYABLE_EXIT.to_string()]);
}
