//! The pages' files, compiled into the binary: each with its path, type, caching, and the
//! encodings it is stored in. Our own files (`console/`, `docs/`) are small and sent as
//! they are; Swagger UI's (`vendor/swagger-ui/`, written by
//! `scripts/pages/vendor-swagger-ui.py`) also come gzipped and brotli-compressed, done once
//! by that script rather than on every answer.

use std::sync::OnceLock;

/// Swagger UI's version: part of its files' paths, so that they can be cached for good.
pub const SWAGGER_UI_VERSION: &str = "5.33.1";

/// The path of Swagger UI's script.
pub const SWAGGER_UI_BUNDLE: &str = "/ui/swagger-ui/5.33.1/swagger-ui-bundle.js";

/// How long a client may keep a file without asking again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Caching {
    /// Ask every time (`no-cache`); the ETag makes the answer a 304 when nothing changed.
    /// Our own pages and files, which change with the binary under the same path.
    Revalidate,
    /// A year, unchanged (`immutable`): a vendored release, whose path names its version.
    Versioned,
}

impl Caching {
    /// The `Cache-Control` value.
    pub fn header(self) -> &'static str {
        match self {
            Self::Revalidate => "no-cache",
            Self::Versioned => "max-age=31536000, immutable",
        }
    }
}

/// How a body is encoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Encoding {
    Identity,
    Gzip,
    Brotli,
}

impl Encoding {
    /// The `Content-Encoding` value; `None` for identity.
    pub fn header(self) -> Option<&'static str> {
        match self {
            Self::Identity => None,
            Self::Gzip => Some("gzip"),
            Self::Brotli => Some("br"),
        }
    }

    /// The suffix of its ETag, so that each encoding's body has a tag of its own.
    fn tag_suffix(self) -> &'static str {
        match self {
            Self::Identity => "",
            Self::Gzip => "-gz",
            Self::Brotli => "-br",
        }
    }
}

/// One file.
#[derive(Debug)]
pub struct Asset {
    /// The request path it answers.
    pub path: &'static str,
    /// Its `Content-Type`.
    pub content_type: &'static str,
    /// How long a client may keep it.
    pub caching: Caching,
    identity: &'static [u8],
    gzip: Option<&'static [u8]>,
    brotli: Option<&'static [u8]>,
    /// Its ETags (identity, gzip, brotli), made from its content on first use.
    etags: OnceLock<[String; 3]>,
}

impl Asset {
    const fn plain(
        path: &'static str,
        content_type: &'static str,
        identity: &'static [u8],
    ) -> Self {
        Self {
            path,
            content_type,
            caching: Caching::Revalidate,
            identity,
            gzip: None,
            brotli: None,
            etags: OnceLock::new(),
        }
    }

    /// The encoding to send, given whether the client takes `(gzip, brotli)`: the smallest
    /// it takes that this file is stored in.
    pub fn best_encoding(&self, (gzip, brotli): (bool, bool)) -> Encoding {
        if brotli && self.brotli.is_some() {
            Encoding::Brotli
        } else if gzip && self.gzip.is_some() {
            Encoding::Gzip
        } else {
            Encoding::Identity
        }
    }

    /// Whether it is stored in more than one encoding (so answers vary with
    /// `Accept-Encoding`).
    pub fn has_encodings(&self) -> bool {
        self.gzip.is_some() || self.brotli.is_some()
    }

    /// Its body in `encoding` (identity when it is not stored so).
    pub fn body(&self, encoding: Encoding) -> &'static [u8] {
        match encoding {
            Encoding::Gzip => self.gzip,
            Encoding::Brotli => self.brotli,
            Encoding::Identity => None,
        }
        .unwrap_or(self.identity)
    }

    /// Its bytes as sent without an encoding.
    pub fn identity(&self) -> &'static [u8] {
        self.identity
    }

    /// Its strong ETag in `encoding`: a digest of its content, and the encoding.
    pub fn etag(&self, encoding: Encoding) -> &str {
        let tags = self.etags.get_or_init(|| {
            let digest = xxhash_rust::xxh3::xxh3_64(self.identity);
            [Encoding::Identity, Encoding::Gzip, Encoding::Brotli]
                .map(|e| format!("\"{digest:016x}{}\"", e.tag_suffix()))
        });
        match encoding {
            Encoding::Identity => &tags[0],
            Encoding::Gzip => &tags[1],
            Encoding::Brotli => &tags[2],
        }
    }
}

/// A vendored Swagger UI file, with its precompressed forms.
macro_rules! swagger_ui {
    ($file:literal, $type:literal) => {
        Asset {
            path: concat!("/ui/swagger-ui/5.33.1/", $file),
            content_type: $type,
            caching: Caching::Versioned,
            identity: include_bytes!(concat!("vendor/swagger-ui/", $file)),
            gzip: Some(include_bytes!(concat!("vendor/swagger-ui/", $file, ".gz"))),
            brotli: Some(include_bytes!(concat!("vendor/swagger-ui/", $file, ".br"))),
            etags: OnceLock::new(),
        }
    };
}

const HTML: &str = "text/html; charset=utf-8";
const CSS: &str = "text/css; charset=utf-8";
const JS: &str = "text/javascript; charset=utf-8";

/// Every file, by path. `/docs/` is `/docs` (see [`find`]).
pub static ASSETS: [Asset; 10] = [
    Asset::plain("/", HTML, include_bytes!("console/index.html")),
    Asset::plain(
        "/ui/console.css",
        CSS,
        include_bytes!("console/console.css"),
    ),
    Asset::plain("/ui/console.js", JS, include_bytes!("console/console.js")),
    Asset::plain(
        "/ui/favicon.svg",
        "image/svg+xml",
        include_bytes!("console/favicon.svg"),
    ),
    Asset::plain("/docs", HTML, include_bytes!("docs/index.html")),
    Asset::plain("/ui/docs.css", CSS, include_bytes!("docs/docs.css")),
    Asset::plain("/ui/docs.js", JS, include_bytes!("docs/docs.js")),
    swagger_ui!("swagger-ui-bundle.js", "text/javascript; charset=utf-8"),
    swagger_ui!("swagger-ui.css", "text/css; charset=utf-8"),
    Asset {
        path: "/ui/swagger-ui/5.33.1/LICENSE",
        content_type: "text/plain; charset=utf-8",
        caching: Caching::Versioned,
        identity: include_bytes!("vendor/swagger-ui/LICENSE"),
        gzip: None,
        brotli: None,
        etags: OnceLock::new(),
    },
];

/// The file at `path`; `/docs/` is `/docs`.
pub fn find(path: &str) -> Option<&'static Asset> {
    let path = if path == "/docs/" { "/docs" } else { path };
    ASSETS.iter().find(|a| a.path == path)
}

/// The files of the console (`/` and what it loads): the page weight the console's budget
/// counts.
pub fn console() -> impl Iterator<Item = &'static Asset> {
    ASSETS.iter().filter(|a| {
        a.path == "/" || a.path.starts_with("/ui/console") || a.path == "/ui/favicon.svg"
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_are_unique_and_swagger_ui_paths_name_its_version() {
        for (i, a) in ASSETS.iter().enumerate() {
            assert!(
                ASSETS[..i].iter().all(|b| b.path != a.path),
                "{} twice",
                a.path
            );
            if a.caching == Caching::Versioned {
                assert!(a.path.contains(SWAGGER_UI_VERSION), "{}", a.path);
            }
        }
        assert!(find(SWAGGER_UI_BUNDLE).is_some());
        assert_eq!(find("/docs/").map(|a| a.path), Some("/docs"));
    }

    #[test]
    fn etags_differ_by_encoding_and_content() {
        let bundle = find(SWAGGER_UI_BUNDLE).unwrap();
        let css = find("/ui/swagger-ui/5.33.1/swagger-ui.css").unwrap();
        assert_ne!(bundle.etag(Encoding::Gzip), bundle.etag(Encoding::Brotli));
        assert_ne!(
            bundle.etag(Encoding::Identity),
            css.etag(Encoding::Identity)
        );
        assert!(bundle.etag(Encoding::Brotli).ends_with("-br\""));
    }

    #[test]
    fn the_console_keeps_to_its_weight_budget() {
        // ui.md: the console, every file it loads included, at most 50 KB uncompressed.
        let weight: usize = console().map(|a| a.identity().len()).sum();
        assert!(weight <= 50_000, "the console weighs {weight} bytes");
        assert!(console().count() >= 4);
    }

    #[test]
    fn pages_load_only_what_the_table_serves() {
        // Every src= and href= in our own pages names a file served here or a route of the
        // API: no CDN, no file left out.
        let served = |target: &str| {
            let route = crate::http::route_of(target);
            find(target).is_some()
                || (route.protocol != crate::http::route::Protocol::Page
                    && !std::ptr::eq(route, &crate::http::UNKNOWN))
        };
        for page in ["/", "/docs"] {
            let html = std::str::from_utf8(find(page).unwrap().identity()).unwrap();
            for attr in ["src=\"", "href=\""] {
                for rest in html.split(attr).skip(1) {
                    let target = &rest[..rest.find('"').unwrap()];
                    assert!(
                        target.starts_with('#') || served(target),
                        "{page} loads {target}, which is not served"
                    );
                }
            }
        }
    }
}
