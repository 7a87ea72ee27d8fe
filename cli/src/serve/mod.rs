//! `labeler serve`: a read-only web gallery of the results table on the
//! operator's own machine, with the operator's own credentials.
//!
//! - Pages are shells compiled into the binary; one embedded script fills
//!   them from the JSON API ([`api`]), writing stored text only through
//!   `textContent`, under a Content-Security-Policy that allows no inline
//!   script ([`page`]).
//! - Image bytes never pass through the server: pages show them through
//!   short-lived presigned S3 GET URLs.
//! - Nothing is written: the server calls Scan, Query and GetItem on the
//!   table and presigns GetObject (a local computation).
//! - Bound to loopback (the default), it answers only requests addressed to
//!   its loopback names ([`route::host_allowed`]).

mod api;
mod page;
mod route;

use crate::args::ServeArgs;
use crate::Context;
use api::{Api, ApiError};
use bytes::Bytes;
use http_body_util::Full;
use hyper::header::{self, HeaderValue};
use hyper::{Request, Response, StatusCode};
use page::Shell;
use route::{Reject, Route};
use serde::Serialize;
use std::io::Write;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

/// What every connection shares.
struct Server {
    api: Api,
    /// The address actually bound (port 0 resolved).
    bound: SocketAddr,
    page_size: u32,
    csp: String,
}

/// Serves until Ctrl-C (or SIGTERM).
pub async fn run(ctx: &Context, args: &ServeArgs, out: &mut dyn Write) -> anyhow::Result<()> {
    let table = ctx.table()?.to_owned();
    let listener = tokio::net::TcpListener::bind(args.bind)
        .await
        .map_err(|e| anyhow::anyhow!("cannot listen on {}: {e}", args.bind))?;
    let bound = listener.local_addr()?;
    let url = format!("http://{bound}/");
    let server = Arc::new(Server {
        api: Api {
            dynamodb: ctx.dynamodb().clone(),
            s3: ctx.s3(),
            table: table.clone(),
            url_expiry: Duration::from_secs(args.url_expiry),
        },
        bound,
        page_size: args.page_size,
        csp: page::content_security_policy(&page::image_origin(ctx.sdk().endpoint_url())),
    });
    writeln!(out, "Gallery of table {table} at {url}")?;
    if !bound.ip().is_loopback() {
        writeln!(
            out,
            "warning: listening on {bound}, not loopback: anyone who can reach this port sees the bucket's images and labels"
        )?;
    }
    writeln!(out, "Read-only. Ctrl-C stops it.")?;
    out.flush()?;
    if args.open {
        open_browser(&url);
    }
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    loop {
        let (stream, _) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(conn) => conn,
                Err(e) => {
                    tracing::warn!("accept: {e}");
                    continue;
                }
            },
            _ = tokio::signal::ctrl_c() => return Ok(()),
            _ = term.recv() => return Ok(()),
        };
        let server = server.clone();
        tokio::spawn(async move {
            let service = hyper::service::service_fn(move |req| {
                let server = server.clone();
                async move { Ok::<_, std::convert::Infallible>(server.answer(req).await) }
            });
            let io = hyper_util::rt::TokioIo::new(stream);
            if let Err(e) = hyper::server::conn::http1::Builder::new()
                .serve_connection(io, service)
                .await
            {
                tracing::debug!("connection: {e}");
            }
        });
    }
}

fn open_browser(url: &str) {
    let opener = if cfg!(target_os = "macos") {
        "open"
    } else {
        "xdg-open"
    };
    if let Err(e) = std::process::Command::new(opener)
        .arg(url)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
    {
        eprintln!("labeler: could not open a browser ({opener}: {e}); open {url} yourself");
    }
}

type Reply = Response<Full<Bytes>>;

impl Server {
    async fn answer<B>(&self, req: Request<B>) -> Reply {
        let head = req.method() == hyper::Method::HEAD;
        let host = req
            .headers()
            .get(header::HOST)
            .and_then(|h| h.to_str().ok());
        let routed = if route::host_allowed(host, self.bound) {
            route::route(
                req.method().as_str(),
                req.uri().path(),
                req.uri().query(),
                self.page_size,
            )
        } else {
            Err(Reject::ForbiddenHost)
        };
        let api_request = req.uri().path().starts_with("/api/");
        let mut reply = match routed {
            Ok(route) => self.serve(route).await,
            Err(reject) => self.reject(reject, api_request),
        };
        let headers = reply.headers_mut();
        let csp = HeaderValue::from_str(&self.csp).expect("the policy is ASCII");
        headers.insert(header::CONTENT_SECURITY_POLICY, csp);
        headers.insert(
            header::X_CONTENT_TYPE_OPTIONS,
            HeaderValue::from_static("nosniff"),
        );
        headers.insert(
            header::REFERRER_POLICY,
            HeaderValue::from_static("no-referrer"),
        );
        headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
        if head {
            *reply.body_mut() = Full::new(Bytes::new());
        }
        reply
    }

    async fn serve(&self, route: Route) -> Reply {
        let table = &self.api.table;
        match route {
            Route::Gallery => html(StatusCode::OK, page::shell(Shell::Gallery, table)),
            Route::Status => html(StatusCode::OK, page::shell(Shell::Status, table)),
            Route::Image(uri) => match self.api.image(&uri).await {
                Ok(Some(_)) => html(StatusCode::OK, page::shell(Shell::Image, table)),
                Ok(None) => self.reject_page(
                    StatusCode::NOT_FOUND,
                    "Not found",
                    &format!("No record for {uri} in table {table}: it was never uploaded under that exact key, or it was deleted."),
                ),
                Err(e) => self.api_failure_page(&e),
            },
            Route::Asset(asset) => {
                let mut reply = Response::new(Full::new(Bytes::from_static(asset.body.as_bytes())));
                reply.headers_mut().insert(
                    header::CONTENT_TYPE,
                    HeaderValue::from_static(asset.content_type),
                );
                reply
            }
            Route::ApiImages(page) => json_result(self.api.images(&page).await),
            Route::ApiLabel {
                name,
                min_confidence,
                page,
            } => json_result(self.api.label(&name, min_confidence, &page).await),
            Route::ApiImage(uri) => match self.api.image(&uri).await {
                Ok(Some(detail)) => json(StatusCode::OK, &detail),
                Ok(None) => json_error(
                    StatusCode::NOT_FOUND,
                    &format!("no record for {uri} in table {table}"),
                ),
                Err(e) => json_result::<()>(Err(e)),
            },
            Route::ApiStatus { scan, limit } => json_result(self.api.status(scan, limit).await),
        }
    }

    fn reject(&self, reject: Reject, api_request: bool) -> Reply {
        let (status, message) = match reject {
            Reject::BadRequest(m) => (StatusCode::BAD_REQUEST, m),
            Reject::NotFound => (StatusCode::NOT_FOUND, "There is no such page.".to_owned()),
            Reject::MethodNotAllowed => (
                StatusCode::METHOD_NOT_ALLOWED,
                "Only GET and HEAD: the gallery is read-only.".to_owned(),
            ),
            Reject::ForbiddenHost => (
                StatusCode::FORBIDDEN,
                format!(
                    "This server answers only http://{}/ (and localhost): the Host header named another.",
                    self.bound
                ),
            ),
        };
        let mut reply = if api_request {
            json_error(status, &message)
        } else {
            let heading = status.canonical_reason().unwrap_or("Error");
            self.reject_page(status, heading, &message)
        };
        if status == StatusCode::METHOD_NOT_ALLOWED {
            reply
                .headers_mut()
                .insert(header::ALLOW, HeaderValue::from_static("GET, HEAD"));
        }
        reply
    }

    fn reject_page(&self, status: StatusCode, heading: &str, message: &str) -> Reply {
        html(status, page::error_page(&self.api.table, heading, message))
    }

    fn api_failure_page(&self, e: &ApiError) -> Reply {
        let (status, _) = failure_status(e);
        self.reject_page(
            status,
            "Could not read the table",
            &crate::error_line(&anyhow::anyhow!("{e:#}")),
        )
    }
}

fn failure_status(e: &ApiError) -> (StatusCode, String) {
    match e {
        ApiError::BadCursor => (StatusCode::BAD_REQUEST, e.to_string()),
        ApiError::Upstream(inner) => (StatusCode::BAD_GATEWAY, crate::error_line(inner)),
    }
}

fn html(status: StatusCode, body: String) -> Reply {
    let mut reply = Response::new(Full::new(Bytes::from(body)));
    *reply.status_mut() = status;
    reply.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    reply
        .headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    reply
}

fn json<T: Serialize>(status: StatusCode, value: &T) -> Reply {
    let body = serde_json::to_vec(value).expect("views serialize");
    let mut reply = Response::new(Full::new(Bytes::from(body)));
    *reply.status_mut() = status;
    reply.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    // Presigned URLs expire: never reuse an old answer.
    reply
        .headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    reply
}

fn json_error(status: StatusCode, message: &str) -> Reply {
    json(status, &serde_json::json!({ "error": message }))
}

fn json_result<T: Serialize>(result: Result<T, ApiError>) -> Reply {
    match result {
        Ok(value) => json(StatusCode::OK, &value),
        Err(e) => {
            let (status, message) = failure_status(&e);
            json_error(status, &message)
        }
    }
}
