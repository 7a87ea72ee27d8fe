//! What a request asks for, decided without any AWS call: the pure part of
//! `labeler serve`, carrying its tests.
//!
//! Every parameter is checked here, so a handler only ever sees valid input
//! and a bad one gets a 400 naming the parameter.

use crate::s3uri::S3Uri;
use percent_encoding::percent_decode_str;
use std::net::SocketAddr;

/// A request the server answers.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Route {
    /// The gallery page (`/`, optionally `?label=…&min=…`: the page reads
    /// its own parameters).
    Gallery,
    /// The status page.
    Status,
    /// One image's page.
    Image(S3Uri),
    /// An embedded asset.
    Asset(&'static Asset),
    /// `/api/images`: image records, a page at a time.
    ApiImages(Page),
    /// `/api/labels/{name}`: images carrying a label, most confident first.
    ApiLabel {
        /// The label, as typed (matched case-insensitively).
        name: String,
        /// Lowest confidence shown, in percent.
        min_confidence: f64,
        /// Which page.
        page: Page,
    },
    /// `/api/images/{uri}`: one record in full.
    ApiImage(S3Uri),
    /// `/api/status`: counts and the newest failures and skips.
    ApiStatus {
        /// Also count every status with a Scan of the table.
        scan: bool,
        /// How many failures and skips to list.
        limit: u32,
    },
}

/// A page of a paginated listing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Page {
    /// Where the previous page ended (opaque to clients).
    pub(crate) cursor: Option<String>,
    /// Items per page.
    pub(crate) limit: u32,
}

/// Why a request gets no answer but an error.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Reject {
    /// 400, with what was wrong.
    BadRequest(String),
    /// 404.
    NotFound,
    /// 405: only GET and HEAD exist.
    MethodNotAllowed,
    /// 403: a Host header other than the loopback names of the bound port.
    ForbiddenHost,
}

/// A file compiled into the binary.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Asset {
    /// Path under `/assets/`.
    pub(crate) name: &'static str,
    /// Its Content-Type.
    pub(crate) content_type: &'static str,
    /// Its bytes.
    pub(crate) body: &'static str,
}

/// The pages' script and style sheet.
pub(crate) const ASSETS: [Asset; 2] = [
    Asset {
        name: "app.js",
        content_type: "text/javascript; charset=utf-8",
        body: include_str!("../../assets/app.js"),
    },
    Asset {
        name: "style.css",
        content_type: "text/css; charset=utf-8",
        body: include_str!("../../assets/style.css"),
    },
];

/// Most items a client may ask for in one page.
pub(crate) const MAX_PAGE: u32 = 500;

/// Decides what `method path?query` asks for; `default_page` is the page
/// size when the request names none.
pub(crate) fn route(
    method: &str,
    path: &str,
    query: Option<&str>,
    default_page: u32,
) -> Result<Route, Reject> {
    if method != "GET" && method != "HEAD" {
        return Err(Reject::MethodNotAllowed);
    }
    let params = Params::parse(query.unwrap_or(""))?;
    let page = |p: &Params| -> Result<Page, Reject> {
        Ok(Page {
            cursor: p.get("cursor").map(str::to_owned),
            limit: p.number("limit", 1, MAX_PAGE)?.unwrap_or(default_page),
        })
    };
    match path {
        "/" => Ok(Route::Gallery),
        "/status" => Ok(Route::Status),
        "/image" => {
            let raw = params
                .get("uri")
                .ok_or_else(|| bad("missing parameter uri (s3://BUCKET/KEY)"))?;
            Ok(Route::Image(object_uri(raw)?))
        }
        "/api/images" => Ok(Route::ApiImages(page(&params)?)),
        "/api/status" => Ok(Route::ApiStatus {
            scan: params.flag("scan")?,
            limit: params.number("limit", 1, MAX_PAGE)?.unwrap_or(20),
        }),
        _ => {
            if let Some(name) = path.strip_prefix("/assets/") {
                return ASSETS
                    .iter()
                    .find(|a| a.name == name)
                    .map(Route::Asset)
                    .ok_or(Reject::NotFound);
            }
            if let Some(raw) = path.strip_prefix("/api/images/") {
                return Ok(Route::ApiImage(object_uri(&segment(raw)?)?));
            }
            if let Some(raw) = path.strip_prefix("/api/labels/") {
                let name = segment(raw)?;
                if name.trim().is_empty() {
                    return Err(bad("the label name is empty"));
                }
                let min_confidence = match params.get("min") {
                    None => 0.0,
                    Some(v) => match v.parse::<f64>() {
                        Ok(c) if (0.0..=100.0).contains(&c) => c,
                        _ => {
                            return Err(bad(format!(
                                "min must be a confidence between 0 and 100, not {v:?}"
                            )))
                        }
                    },
                };
                return Ok(Route::ApiLabel {
                    name,
                    min_confidence,
                    page: page(&params)?,
                });
            }
            Err(Reject::NotFound)
        }
    }
}

/// Whether a request's Host header may be answered. Bound to a loopback
/// address, the server answers only its own loopback names: a web page
/// elsewhere that rebinds its DNS name to 127.0.0.1 cannot read the API.
/// Bound to any other address the operator chose to be reachable, and the
/// header is not checked.
pub(crate) fn host_allowed(host: Option<&str>, bound: SocketAddr) -> bool {
    if !bound.ip().is_loopback() {
        return true;
    }
    let Some(host) = host else {
        return false;
    };
    let port = bound.port();
    [
        format!("127.0.0.1:{port}"),
        format!("localhost:{port}"),
        format!("[::1]:{port}"),
    ]
    .iter()
    .any(|allowed| allowed.eq_ignore_ascii_case(host))
}

/// One path segment, percent-decoded exactly: `+` stays a plus, and the
/// bytes must be UTF-8 (S3 keys are).
fn segment(raw: &str) -> Result<String, Reject> {
    percent_decode_str(raw)
        .decode_utf8()
        .map(|s| s.into_owned())
        .map_err(|_| bad("the path is not percent-encoded UTF-8"))
}

fn object_uri(raw: &str) -> Result<S3Uri, Reject> {
    let uri: S3Uri = raw.parse().map_err(bad)?;
    uri.object_key().map_err(bad)?;
    Ok(uri)
}

fn bad(message: impl Into<String>) -> Reject {
    Reject::BadRequest(message.into())
}

/// Query parameters, form-decoded (`+` is a space there, `%2B` a plus).
struct Params(Vec<(String, String)>);

impl Params {
    fn parse(query: &str) -> Result<Self, Reject> {
        let mut pairs: Vec<(String, String)> = Vec::new();
        for (name, value) in form_urlencoded::parse(query.as_bytes()) {
            if pairs.iter().any(|(n, _)| *n == name) {
                return Err(bad(format!("parameter {name} is given twice")));
            }
            pairs.push((name.into_owned(), value.into_owned()));
        }
        Ok(Self(pairs))
    }

    /// The value, with an empty one meaning absent (what an empty form field sends).
    fn get(&self, name: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(n, v)| n == name && !v.is_empty())
            .map(|(_, v)| v.as_str())
    }

    fn number(&self, name: &str, min: u32, max: u32) -> Result<Option<u32>, Reject> {
        let Some(raw) = self.get(name) else {
            return Ok(None);
        };
        match raw.parse::<u32>() {
            Ok(n) if (min..=max).contains(&n) => Ok(Some(n)),
            _ => Err(bad(format!(
                "{name} must be a whole number from {min} to {max}, not {raw:?}"
            ))),
        }
    }

    fn flag(&self, name: &str) -> Result<bool, Reject> {
        match self.get(name) {
            None | Some("0" | "false") => Ok(false),
            Some("1" | "true") => Ok(true),
            Some(other) => Err(bad(format!("{name} must be true or false, not {other:?}"))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn get(path: &str, query: Option<&str>) -> Result<Route, Reject> {
        route("GET", path, query, 50)
    }

    fn uri(bucket: &str, key: &str) -> S3Uri {
        S3Uri {
            bucket: bucket.into(),
            key: key.into(),
        }
    }

    #[test]
    fn a_key_with_spaces_plus_percent_and_unicode_round_trips_through_the_api_path() {
        // What the page's encodeURIComponent("s3://photos/café/λ+1 50%.jpg") sends.
        let path = "/api/images/s3%3A%2F%2Fphotos%2Fcaf%C3%A9%2F%CE%BB%2B1%2050%25.jpg";
        assert_eq!(
            get(path, None),
            Ok(Route::ApiImage(uri("photos", "café/λ+1 50%.jpg")))
        );
        // A literal plus in a path segment is a plus, not a space.
        assert_eq!(
            get("/api/images/s3:%2F%2Fphotos%2Fa+b.jpg", None),
            Ok(Route::ApiImage(uri("photos", "a+b.jpg")))
        );
    }

    #[test]
    fn the_image_page_takes_its_uri_form_encoded() {
        assert_eq!(
            get("/image", Some("uri=s3%3A%2F%2Fphotos%2Fa%2Bb+c.jpg")),
            Ok(Route::Image(uri("photos", "a+b c.jpg")))
        );
        let longest = format!("uri=s3://photos/{}", "k".repeat(1024));
        assert!(matches!(get("/image", Some(&longest)), Ok(Route::Image(_))));
        let too_long = format!("uri=s3://photos/{}", "k".repeat(1025));
        assert!(matches!(
            get("/image", Some(&too_long)),
            Err(Reject::BadRequest(m)) if m.contains("1024")
        ));
    }

    #[test]
    fn bad_parameters_are_named_in_a_400() {
        let message = |r: Result<Route, Reject>| match r {
            Err(Reject::BadRequest(m)) => m,
            other => panic!("expected a 400, got {other:?}"),
        };
        assert!(message(get("/image", None)).contains("uri"));
        assert!(message(get("/image", Some("uri=https://x/y"))).contains("not an S3 URI"));
        assert!(message(get("/image", Some("uri=s3://photos"))).contains("names a bucket"));
        assert!(message(get("/api/labels/Dog", Some("min=101"))).contains("min"));
        assert!(message(get("/api/labels/Dog", Some("min=high"))).contains("min"));
        assert!(message(get("/api/images", Some("limit=0"))).contains("limit"));
        assert!(message(get("/api/images", Some("limit=501"))).contains("limit"));
        assert!(message(get("/api/images", Some("limit=1&limit=2"))).contains("twice"));
        assert!(message(get("/api/status", Some("scan=maybe"))).contains("scan"));
        assert!(message(get("/api/images/s3%3A%2F%2Fb%2F%FF", None)).contains("UTF-8"));
        assert!(message(get("/api/labels/%20", None)).contains("empty"));
    }

    #[test]
    fn label_search_reads_its_confidence_and_page() {
        assert_eq!(
            get(
                "/api/labels/Golden%20Retriever",
                Some("min=90.5&limit=10&cursor=abc")
            ),
            Ok(Route::ApiLabel {
                name: "Golden Retriever".into(),
                min_confidence: 90.5,
                page: Page {
                    cursor: Some("abc".into()),
                    limit: 10
                },
            })
        );
        assert_eq!(
            get("/api/labels/Dog", Some("min=&cursor=")),
            Ok(Route::ApiLabel {
                name: "Dog".into(),
                min_confidence: 0.0,
                page: Page {
                    cursor: None,
                    limit: 50
                },
            })
        );
    }

    #[test]
    fn only_get_and_head_of_known_paths_are_answered() {
        assert_eq!(route("POST", "/", None, 50), Err(Reject::MethodNotAllowed));
        assert_eq!(route("HEAD", "/", None, 50), Ok(Route::Gallery));
        assert_eq!(get("/status", None), Ok(Route::Status));
        assert_eq!(get("/assets/app.js", None), Ok(Route::Asset(&ASSETS[0])));
        assert_eq!(get("/assets/../Cargo.toml", None), Err(Reject::NotFound));
        assert_eq!(get("/api", None), Err(Reject::NotFound));
        assert_eq!(get("/favicon.ico", None), Err(Reject::NotFound));
        assert_eq!(
            get("/api/status", Some("scan=true&limit=5")),
            Ok(Route::ApiStatus {
                scan: true,
                limit: 5
            })
        );
    }

    #[test]
    fn on_loopback_only_the_loopback_names_of_the_port_are_answered() {
        let bound: SocketAddr = "127.0.0.1:8080".parse().unwrap();
        assert!(host_allowed(Some("127.0.0.1:8080"), bound));
        assert!(host_allowed(Some("LOCALHOST:8080"), bound));
        assert!(host_allowed(Some("[::1]:8080"), bound));
        assert!(!host_allowed(Some("evil.example:8080"), bound));
        assert!(!host_allowed(Some("127.0.0.1:9090"), bound));
        assert!(!host_allowed(None, bound));
        let everywhere: SocketAddr = "0.0.0.0:8080".parse().unwrap();
        assert!(host_allowed(Some("gallery.internal:8080"), everywhere));
    }
}
