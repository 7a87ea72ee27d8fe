//! `labeler serve` against moto on loopback, looked at in a real headless
//! Chromium (Debian's, driven through ChromeDriver): what a person sees on
//! each page, and what the server answers requests a page would never send.
//! Screenshots of every page are saved under `target/screenshots/`.

use aws_config::SdkConfig;
use integration_tests::browser::{fetch, Browser};
use integration_tests::served::Served;
use integration_tests::{provision, repo_root, s3_client, seed, Moto, Stack};
use labeler_core::schema::{BoundingBox, Instance, Label};
use labeler_core::{ImageRef, Revision};
use serde_json::{json, Value};

const BIN: &str = env!("CARGO_BIN_EXE_labeler");

/// A key with a space, a `+`, a `%` and unicode.
const ODD_KEY: &str = "café/λ+1 50% sunset.jpg";
/// A failure reason that would run script if it were ever written as markup.
const HOSTILE_REASON: &str =
    "DetectLabels: <img src=x onerror=\"document.title='pwned'\"><script>document.title='pwned'</script>";

struct World {
    _moto: Moto,
    sdk: SdkConfig,
    stack: Stack,
    served: Served,
}

fn label(name: &str, confidence: f32, boxes: &[[f32; 4]]) -> Label {
    Label {
        name: name.into(),
        confidence,
        parents: vec!["Outdoors".into()],
        categories: vec!["Nature and Outdoors".into()],
        instances: boxes
            .iter()
            .map(|[left, top, width, height]| Instance {
                confidence: confidence - 1.0,
                bounding_box: BoundingBox {
                    left: *left,
                    top: *top,
                    width: *width,
                    height: *height,
                },
            })
            .collect(),
    }
}

impl World {
    async fn start() -> World {
        let moto = Moto::start_for_tests();
        let sdk = moto.sdk_config().await;
        let stack = provision(&sdk).await;
        let w = World {
            served: Served::start(std::path::Path::new(BIN), &moto, &stack.table)
                .expect("labeler serve starts"),
            _moto: moto,
            sdk,
            stack,
        };
        w.seed().await;
        w
    }

    fn image(&self, key: &str) -> ImageRef {
        ImageRef {
            bucket: self.stack.bucket.clone(),
            key: key.to_owned(),
            revision: Revision::from_sequencer("0100").unwrap(),
            version_id: None,
            etag: None,
            size: None,
        }
    }

    async fn upload(&self, key: &str, sample: &str) {
        let body = std::fs::read(repo_root().join("samples").join(sample)).unwrap();
        s3_client(&self.sdk)
            .put_object()
            .bucket(&self.stack.bucket)
            .key(key)
            .body(body.into())
            .send()
            .await
            .unwrap_or_else(|e| panic!("upload {key}: {e}"));
    }

    /// Three labeled photos (one under an awkward key), a failure with a
    /// hostile reason, a skipped text file.
    async fn seed(&self) {
        let db = aws_sdk_dynamodb::Client::new(&self.sdk);
        let table = &self.stack.table;
        let photos = [
            (
                "beach day.png",
                "beach day.png",
                vec![label("Beach", 99.1, &[]), label("Sky", 92.0, &[])],
            ),
            (
                ODD_KEY,
                "sunset.jpg",
                vec![
                    label("Sunset", 97.0, &[]),
                    label("Dog", 91.5, &[[0.25, 0.5, 0.5, 0.25]]),
                ],
            ),
            (
                "forest/tall trees.png",
                "forest.png",
                vec![label("Tree", 95.0, &[]), label("Dog", 60.0, &[])],
            ),
        ];
        for (key, sample, labels) in photos {
            self.upload(key, sample).await;
            seed::labeled(&db, table, &self.image(key), &labels)
                .await
                .unwrap();
        }
        self.upload("broken.jpg", "sunset.jpg").await;
        seed::failed(&db, table, &self.image("broken.jpg"), HOSTILE_REASON)
            .await
            .unwrap();
        seed::skipped(
            &db,
            table,
            &self.image("notes/readme.txt"),
            "not an image: .txt",
        )
        .await
        .unwrap();
    }

    fn uri(&self, key: &str) -> String {
        format!("s3://{}/{key}", self.stack.bucket)
    }
}

fn screenshot(name: &str) -> std::path::PathBuf {
    repo_root().join("target/screenshots").join(name)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_person_browses_labels_searches_sees_failures_and_boxes_in_chromium() {
    let w = World::start().await;
    let base = &w.served.url;
    let browser = Browser::start(1280, 900).await.unwrap();

    // Gallery: every non-deleted record, real thumbnails, labels shown.
    browser.goto(&format!("{base}/")).await.unwrap();
    browser
        .wait_for(
            "five cards whose labeled thumbnails have loaded",
            "const cards = [...document.querySelectorAll('#grid .card')];
             if (cards.length !== 5) return null;
             const imgs = [...document.querySelectorAll('#grid .card img')];
             return imgs.length === 4 && imgs.every(i => i.complete && i.naturalWidth > 0);",
        )
        .await
        .unwrap();
    let seen = browser
        .eval(
            "return [...document.querySelectorAll('#grid .card')].map(c => {
               const img = c.querySelector('img');
               return { uri: c.dataset.uri, width: img ? img.naturalWidth : 0, text: c.innerText };
             })",
            json!([]),
        )
        .await
        .unwrap();
    let card = |key: &str| -> Value {
        seen.as_array()
            .unwrap()
            .iter()
            .find(|c| c["uri"] == w.uri(key))
            .cloned()
            .unwrap_or_else(|| panic!("no card for {key}: {seen}"))
    };
    assert_eq!(card("beach day.png")["width"], 320, "{seen}");
    assert_eq!(card(ODD_KEY)["width"], 320, "{seen}");
    let beach = card("beach day.png")["text"].as_str().unwrap().to_owned();
    assert!(
        beach.contains("Beach") && beach.contains("99.1%"),
        "{beach}"
    );
    let failed = card("broken.jpg")["text"].as_str().unwrap().to_owned();
    assert!(
        failed.contains("FAILED") && failed.contains("<script>"),
        "{failed}"
    );
    // A skipped text file has no picture: the card says so.
    let skipped = card("notes/readme.txt")["text"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(
        skipped.contains("no preview") && skipped.contains("not an image: .txt"),
        "{skipped}"
    );
    browser
        .screenshot(&screenshot("gallery.png"))
        .await
        .unwrap();

    // Search: "dog" at 90% or more narrows the grid to the sunset.
    browser
        .eval(
            "document.getElementById('label').value = 'dog';
             const min = document.getElementById('min');
             min.value = '90';
             min.dispatchEvent(new Event('input'));
             document.querySelector('#search button').click();",
            json!([]),
        )
        .await
        .unwrap();
    let hits = browser
        .wait_for(
            "the search results",
            "if (!location.search.includes('label=dog')) return null;
             const cards = [...document.querySelectorAll('#grid .card')];
             if (cards.length === 0 && !/No image/.test(document.body.innerText)) return null;
             return cards.map(c => c.innerText);",
        )
        .await
        .unwrap();
    let hits = hits.as_array().unwrap();
    assert_eq!(hits.len(), 1, "{hits:?}");
    let hit = hits[0].as_str().unwrap();
    assert!(
        hit.contains("Dog") && hit.contains("91.5%") && hit.contains(ODD_KEY),
        "{hit}"
    );
    assert_eq!(
        browser
            .eval(
                "return document.getElementById('min-value').textContent",
                json!([])
            )
            .await
            .unwrap(),
        "90"
    );
    browser.screenshot(&screenshot("search.png")).await.unwrap();

    // The awkward key opens its own detail page, boxes drawn over the image.
    browser
        .eval("document.querySelector('#grid .card a').click()", json!([]))
        .await
        .unwrap();
    let geometry = browser
        .wait_for(
            "the detail image and its box",
            "const img = document.getElementById('full');
             const box = document.querySelector('.box[data-label=\"Dog\"]');
             if (!img || !box || !img.complete || img.naturalWidth === 0) return null;
             const i = img.getBoundingClientRect(), b = box.getBoundingClientRect();
             if (i.width === 0) return null;
             return { title: document.getElementById('title').textContent,
                      facts: document.getElementById('facts').innerText,
                      labels: document.querySelector('#labels').innerText,
                      img: [i.left, i.top, i.width, i.height],
                      box: [b.left, b.top, b.width, b.height] };",
        )
        .await
        .unwrap();
    assert_eq!(geometry["title"], ODD_KEY, "{geometry}");
    let facts = geometry["facts"].as_str().unwrap();
    assert!(facts.contains(&w.uri(ODD_KEY)), "{facts}");
    assert!(facts.contains(seed::JOB_ID), "{facts}");
    let labels = geometry["labels"].as_str().unwrap();
    assert!(
        labels.contains("Sunset") && labels.contains("Outdoors"),
        "{labels}"
    );
    let f = |v: &Value, i: usize| v.as_array().unwrap()[i].as_f64().unwrap();
    let (img, bx) = (&geometry["img"], &geometry["box"]);
    // The box is [0.25, 0.5, 0.5, 0.25] of the image, within the 2 px border.
    let close = |a: f64, b: f64| (a - b).abs() <= 3.0;
    assert!(close(f(bx, 0), f(img, 0) + 0.25 * f(img, 2)), "{geometry}");
    assert!(close(f(bx, 1), f(img, 1) + 0.5 * f(img, 3)), "{geometry}");
    assert!(close(f(bx, 2), 0.5 * f(img, 2)), "{geometry}");
    assert!(close(f(bx, 3), 0.25 * f(img, 3)), "{geometry}");
    browser.screenshot(&screenshot("image.png")).await.unwrap();

    // Status: the failure's reason is shown as text and runs nothing.
    browser.goto(&format!("{base}/status")).await.unwrap();
    let status = browser
        .wait_for(
            "the failures table",
            "const row = document.querySelector('#failed tbody tr[data-uri]');
             const counts = document.querySelector('#counts tr[data-status=FAILED]');
             if (!row || !counts) return null;
             return { reason: row.querySelector('.reason').textContent,
                      uri: row.dataset.uri,
                      failed: counts.innerText,
                      skipped: document.querySelector('#skipped').innerText,
                      scripts: document.scripts.length,
                      images: document.images.length,
                      title: document.title };",
        )
        .await
        .unwrap();
    assert_eq!(status["reason"], HOSTILE_REASON, "{status}");
    assert_eq!(status["uri"], w.uri("broken.jpg"), "{status}");
    assert!(status["failed"].as_str().unwrap().contains('1'), "{status}");
    assert!(
        status["skipped"]
            .as_str()
            .unwrap()
            .contains("not an image: .txt"),
        "{status}"
    );
    assert_eq!(status["scripts"], 1, "only the page's own script: {status}");
    assert_eq!(status["images"], 0, "no injected image: {status}");
    assert_ne!(status["title"], "pwned");
    browser.screenshot(&screenshot("status.png")).await.unwrap();

    // Counting every status scans and fills LABELED.
    browser
        .eval("document.getElementById('count-all').click()", json!([]))
        .await
        .unwrap();
    let labeled = browser
        .wait_for(
            "the scanned counts",
            "const b = document.getElementById('count-all');
             if (!b.disabled || b.textContent !== 'Counted every status') return null;
             return document.querySelector('#counts tr[data-status=LABELED]').innerText;",
        )
        .await
        .unwrap();
    assert!(labeled.as_str().unwrap().contains('3'), "{labeled}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_server_answers_bad_requests_plainly_and_only_on_its_own_name() {
    let w = World::start().await;
    let base = &w.served.url;
    let port = base.rsplit(':').next().unwrap();

    // Every page carries the policy; no page allows inline script.
    let home = fetch("GET", &format!("{base}/"), None).await.unwrap();
    assert_eq!(home.status, 200);
    let csp = home.headers["content-security-policy"].to_str().unwrap();
    assert!(
        csp.contains("script-src 'self'") && !csp.contains("unsafe-inline"),
        "{csp}"
    );
    assert_eq!(home.headers["x-content-type-options"], "nosniff");

    // A missing record is a 404 page that names it, escaped.
    let missing = format!(
        "{base}/image?uri=s3%3A%2F%2F{}%2F%3Cb%3Enope.jpg",
        w.stack.bucket
    );
    let page = fetch("GET", &missing, None).await.unwrap();
    assert_eq!(page.status, 404, "{}", page.body);
    assert!(page.body.contains("&lt;b&gt;nope.jpg"), "{}", page.body);
    assert!(!page.body.contains("<b>nope"), "{}", page.body);

    // Bad parameters: 400 with what was wrong, as JSON under /api.
    let bad = fetch("GET", &format!("{base}/api/labels/Dog?min=200"), None)
        .await
        .unwrap();
    assert_eq!(bad.status, 400);
    let body: Value = serde_json::from_str(&bad.body).unwrap();
    assert!(body["error"].as_str().unwrap().contains("min"), "{body}");
    let forged = fetch("GET", &format!("{base}/api/images?cursor=7b7d"), None)
        .await
        .unwrap();
    assert_eq!(forged.status, 400, "{}", forged.body);

    // Read-only, and only for its own loopback name (DNS rebinding).
    let post = fetch("POST", &format!("{base}/api/images"), None)
        .await
        .unwrap();
    assert_eq!(post.status, 405);
    assert_eq!(post.headers["allow"], "GET, HEAD");
    let rebound = fetch(
        "GET",
        &format!("{base}/api/images"),
        Some(&format!("evil.example:{port}")),
    )
    .await
    .unwrap();
    assert_eq!(rebound.status, 403, "{}", rebound.body);

    // A key of 1,024 bytes, with unicode, round-trips through the API.
    let long_key = format!("long/{}", "ü".repeat(509)); // 5 + 2 × 509 = 1,023 bytes
    let long_key = format!("{long_key}x");
    assert_eq!(long_key.len(), 1024);
    let db = aws_sdk_dynamodb::Client::new(&w.sdk);
    seed::labeled(
        &db,
        &w.stack.table,
        &w.image(&long_key),
        &[label("Text", 88.0, &[])],
    )
    .await
    .unwrap();
    let encoded: String = percent_encoding::utf8_percent_encode(
        &w.uri(&long_key),
        percent_encoding::NON_ALPHANUMERIC,
    )
    .to_string();
    let detail = fetch("GET", &format!("{base}/api/images/{encoded}"), None)
        .await
        .unwrap();
    assert_eq!(detail.status, 200, "{}", detail.body);
    let record: Value = serde_json::from_str(&detail.body).unwrap();
    assert_eq!(record["key"], long_key.as_str());
    assert_eq!(record["labels"][0]["name"], "Text");
    let url = record["url"].as_str().unwrap();
    assert!(url.contains("X-Amz-Signature="), "presigned: {url}");
    assert!(url.contains("X-Amz-Expires=900"), "short-lived: {url}");

    // Pagination: pages of 2 cover every record once.
    let mut seen = Vec::new();
    let mut cursor: Option<String> = None;
    for _ in 0..10 {
        let q = cursor
            .as_ref()
            .map_or(String::new(), |c| format!("&cursor={c}"));
        let page = fetch("GET", &format!("{base}/api/images?limit=2{q}"), None)
            .await
            .unwrap();
        let page: Value = serde_json::from_str(&page.body).unwrap();
        for image in page["images"].as_array().unwrap() {
            seen.push(image["key"].as_str().unwrap().to_owned());
        }
        match page["next"].as_str() {
            Some(c) => cursor = Some(c.to_owned()),
            None => break,
        }
    }
    seen.sort();
    let mut expected = vec![
        "beach day.png".to_owned(),
        "broken.jpg".into(),
        ODD_KEY.into(),
        "forest/tall trees.png".into(),
        long_key,
        "notes/readme.txt".into(),
    ];
    expected.sort();
    assert_eq!(seen, expected);
    let _ = port;
}
