//! The HTML the server writes itself: page shells (the embedded script fills
//! them from the JSON API) and error pages, with every piece of stored text
//! escaped, and the headers that keep the pages to their own script.

/// Escapes text for HTML content and quoted attribute values. S3 keys,
/// label names and reasons are attacker-controlled text: everything stored
/// passes through here (or, in the script, through `textContent`).
pub(crate) fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// The Content-Security-Policy of every response: scripts and styles only
/// from the server's own assets (no inline script, no inline style
/// attributes), images from the server and from S3 (`image_origin`), data
/// only from the server's API, no framing, forms only to the server.
pub(crate) fn content_security_policy(image_origin: &str) -> String {
    format!(
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' {image_origin}; \
         connect-src 'self'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
    )
}

/// The origin presigned S3 URLs point at: the custom endpoint's (a local
/// emulator), or any S3 host of AWS.
pub(crate) fn image_origin(endpoint_url: Option<&str>) -> String {
    match endpoint_url {
        Some(url) => {
            // scheme://host[:port] of the endpoint, without its path.
            let after_scheme = url.find("://").map_or(0, |i| i + 3);
            let end = url[after_scheme..]
                .find('/')
                .map_or(url.len(), |i| after_scheme + i);
            url[..end].to_owned()
        }
        None => "https://*.amazonaws.com".to_owned(),
    }
}

/// Which page a shell is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Shell {
    Gallery,
    Status,
    Image,
}

impl Shell {
    fn parts(self) -> (&'static str, &'static str, &'static str) {
        match self {
            Shell::Gallery => (
                "gallery",
                "Gallery",
                include_str!("../../assets/gallery.html"),
            ),
            Shell::Status => ("status", "Status", include_str!("../../assets/status.html")),
            Shell::Image => ("image", "Image", include_str!("../../assets/image.html")),
        }
    }
}

/// A page: the common header, then the page's own markup, which the script
/// fills in from the API.
pub(crate) fn shell(page: Shell, table: &str) -> String {
    let (id, title, body) = page.parts();
    layout(id, title, table, body)
}

/// An error page (404, 400, 502) whose message is escaped here.
pub(crate) fn error_page(table: &str, heading: &str, message: &str) -> String {
    let body = format!(
        "<h1>{}</h1>\n<p class=\"error\">{}</p>\n<p><a href=\"/\">Back to the gallery</a></p>\n",
        escape(heading),
        escape(message)
    );
    layout("error", heading, table, &body)
}

fn layout(id: &str, title: &str, table: &str, body: &str) -> String {
    format!(
        r#"<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="referrer" content="no-referrer">
<title>{title} · image-labeler</title>
<link rel="stylesheet" href="/assets/style.css">
<script src="/assets/app.js" defer></script>
</head>
<body data-page="{id}">
<header class="top">
<a class="brand" href="/">image-labeler</a>
<nav><a href="/">Gallery</a><a href="/status">Status</a></nav>
<span class="table" title="DynamoDB results table">table {table}</span>
</header>
<main>
{body}</main>
</body>
</html>
"#,
        title = escape(title),
        table = escape(table),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stored_text_cannot_open_markup() {
        let key = r#"<img src=x onerror="alert(1)">&'.jpg"#;
        let escaped = escape(key);
        assert_eq!(
            escaped,
            "&lt;img src=x onerror=&quot;alert(1)&quot;&gt;&amp;&#39;.jpg"
        );
        let page = error_page("t<b>", "Not found", &format!("no record for s3://b/{key}"));
        assert!(!page.contains("<img"), "{page}");
        assert!(page.contains("table t&lt;b&gt;"), "{page}");
        assert!(page.contains("no record for s3://b/&lt;img"), "{page}");
    }

    #[test]
    fn pages_load_only_their_own_script_and_no_inline_code() {
        for page in [Shell::Gallery, Shell::Status, Shell::Image] {
            let html = shell(page, "results");
            assert!(html.contains(r#"<script src="/assets/app.js" defer></script>"#));
            assert_eq!(html.matches("<script").count(), 1, "{html}");
            assert!(!html.contains(" style="), "{html}");
            for handler in ["onclick=", "onload=", "onerror=", "oninput=", "onsubmit="] {
                assert!(!html.contains(handler), "no inline handlers: {html}");
            }
        }
        let csp = content_security_policy("http://127.0.0.1:5000");
        assert!(csp.contains("script-src 'self';"));
        assert!(!csp.contains("unsafe-inline"));
        assert!(csp.contains("img-src 'self' http://127.0.0.1:5000;"));
    }

    #[test]
    fn images_may_come_from_the_endpoint_or_from_aws_s3() {
        assert_eq!(
            image_origin(Some("http://127.0.0.1:5000")),
            "http://127.0.0.1:5000"
        );
        assert_eq!(
            image_origin(Some("https://s3.example.com/base/")),
            "https://s3.example.com"
        );
        assert_eq!(image_origin(None), "https://*.amazonaws.com");
    }
}
