//! HTTP/1.x heads (httparse): the first request's method, target, Host, WebSocket upgrade and
//! whether it carried credentials, and the first response's status.
//!
//! Secrets never leave this module: Authorization, Cookie and Sec-WebSocket-Key are reduced
//! to "present", and query parameters whose names look like credentials lose their values.

/// Most headers parsed in one head.
const MAX_HEADERS: usize = 64;

/// The HTTP/2 connection preface (RFC 9113 §3.4).
pub const H2_PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// The first request on a connection, secrets reduced to their presence.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Request {
    /// Method.
    pub method: String,
    /// Request target, with credential-like query values redacted.
    pub target: String,
    /// Host header (or the authority of an absolute target), port included as sent.
    pub host: Option<String>,
    /// `Upgrade: websocket` with `Connection: upgrade`.
    pub ws_upgrade: bool,
    /// An Authorization header was present.
    pub authorization: bool,
    /// A Cookie header was present.
    pub cookie: bool,
    /// A Sec-WebSocket-Key header was present.
    pub ws_key: bool,
}

/// Parsing a head from the bytes so far.
pub enum Head<T> {
    /// A complete head, and its length in bytes.
    Done(T, usize),
    /// Not complete yet.
    Partial,
    /// Not HTTP.
    Invalid,
}

/// True when `b` starts like an HTTP/1.x request line (an uppercase token and a space).
pub fn looks_like_request(b: &[u8]) -> bool {
    let token = b.iter().take_while(|c| c.is_ascii_uppercase()).count();
    (3..=10).contains(&token) && b.get(token) == Some(&b' ')
}

/// Parse a request head.
pub fn request(b: &[u8]) -> Head<Request> {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut req = httparse::Request::new(&mut headers);
    match req.parse(b) {
        Ok(httparse::Status::Complete(n)) => {
            let mut r = Request {
                method: req.method.unwrap_or_default().to_string(),
                target: redact_target(req.path.unwrap_or_default()),
                ..Request::default()
            };
            let (mut upgrade_ws, mut conn_upgrade) = (false, false);
            for h in req.headers.iter() {
                let v = String::from_utf8_lossy(h.value);
                match h.name.to_ascii_lowercase().as_str() {
                    "host" => r.host = Some(v.trim().to_ascii_lowercase()),
                    "upgrade" => upgrade_ws |= v.to_ascii_lowercase().contains("websocket"),
                    "connection" => {
                        conn_upgrade |= v
                            .split(',')
                            .any(|t| t.trim().eq_ignore_ascii_case("upgrade"))
                    }
                    "authorization" | "proxy-authorization" => r.authorization = true,
                    "cookie" => r.cookie = true,
                    "sec-websocket-key" => r.ws_key = true,
                    _ => {}
                }
            }
            if r.host.is_none() {
                r.host = authority(&r.target);
            }
            r.ws_upgrade = upgrade_ws && conn_upgrade;
            Head::Done(r, n)
        }
        Ok(httparse::Status::Partial) => Head::Partial,
        Err(_) => Head::Invalid,
    }
}

/// Parse a response head: the status code.
pub fn response(b: &[u8]) -> Head<u16> {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut resp = httparse::Response::new(&mut headers);
    match resp.parse(b) {
        Ok(httparse::Status::Complete(n)) => Head::Done(resp.code.unwrap_or(0), n),
        Ok(httparse::Status::Partial) => Head::Partial,
        Err(_) => Head::Invalid,
    }
}

/// Method and target of the request line at the start of one segment (no reassembly): what
/// a client sent on a connection it reused.
pub fn request_line(b: &[u8]) -> Option<(String, String)> {
    if !looks_like_request(b) {
        return None;
    }
    let line = b.split(|&c| c == b'\r' || c == b'\n').next()?;
    let text = std::str::from_utf8(line).ok()?;
    let mut parts = text.split(' ');
    let method = parts.next()?.to_string();
    let target = redact_target(parts.next()?);
    Some((method, target))
}

/// The host of an absolute-form target (`http://host:port/path`).
fn authority(target: &str) -> Option<String> {
    let rest = target
        .strip_prefix("http://")
        .or_else(|| target.strip_prefix("https://"))?;
    let end = rest.find(['/', '?']).unwrap_or(rest.len());
    let auth = rest.get(..end)?;
    // Drop any userinfo: it is a credential.
    let host = auth.rsplit('@').next()?;
    (!host.is_empty()).then(|| host.to_ascii_lowercase())
}

/// Query parameter names whose values are credentials.
fn is_secret_param(name: &str) -> bool {
    let n = name.to_ascii_lowercase();
    [
        "token", "key", "auth", "pass", "secret", "sig", "session", "code", "jwt",
    ]
    .iter()
    .any(|s| n.contains(s))
}

/// The target with credential-like query values (and URL userinfo) replaced by `REDACTED`.
pub fn redact_target(t: &str) -> String {
    let (path, query) = match t.split_once('?') {
        Some((p, q)) => (p, Some(q)),
        None => (t, None),
    };
    let path = match path.split_once("://") {
        Some((scheme, rest)) => {
            let end = rest.find('/').unwrap_or(rest.len());
            let (auth, tail) = rest.split_at(end);
            match auth.rsplit_once('@') {
                Some((_, host)) => format!("{scheme}://REDACTED@{host}{tail}"),
                None => path.to_string(),
            }
        }
        None => path.to_string(),
    };
    let Some(q) = query else { return path };
    let q: Vec<String> = q
        .split('&')
        .map(|kv| match kv.split_once('=') {
            Some((k, _)) if is_secret_param(k) => format!("{k}=REDACTED"),
            _ => kv.to_string(),
        })
        .collect();
    format!("{path}?{}", q.join("&"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn upgrade_request_keeps_presence_not_values() {
        let b = b"GET /chat?room=1&token=abc123 HTTP/1.1\r\nHost: Ws.Example:8080\r\nUpgrade: websocket\r\nConnection: keep-alive, Upgrade\r\nAuthorization: Bearer s3cr3t\r\nCookie: sid=xyz\r\nSec-WebSocket-Key: dGhlIHNhbXBsZQ==\r\n\r\n";
        let Head::Done(r, n) = request(b) else {
            panic!("not parsed")
        };
        assert_eq!(n, b.len());
        assert_eq!(r.method, "GET");
        assert_eq!(r.target, "/chat?room=1&token=REDACTED");
        assert_eq!(r.host.as_deref(), Some("ws.example:8080"));
        assert!(r.ws_upgrade && r.authorization && r.cookie && r.ws_key);
        let all = format!("{r:?}");
        for secret in ["abc123", "s3cr3t", "xyz", "dGhlIHNhbXBsZQ"] {
            assert!(!all.contains(secret), "{secret} leaked");
        }
    }

    #[test]
    fn partial_garbage_and_response() {
        assert!(matches!(request(b"GET / HTTP/1.1\r\nHo"), Head::Partial));
        assert!(matches!(request(b"\x00\x01garbage\r\n\r\n"), Head::Invalid));
        assert!(matches!(
            response(b"HTTP/1.1 101 Switching Protocols\r\n\r\n"),
            Head::Done(101, 36)
        ));
        assert!(looks_like_request(b"POST /x HTTP/1.1"));
        assert!(!looks_like_request(b"\x16\x03\x01"));
        assert_eq!(
            request_line(b"GET /a?key=1 HTTP/1.1\r\n"),
            Some(("GET".into(), "/a?key=REDACTED".into()))
        );
        assert_eq!(
            redact_target("http://user:pw@h.example/x"),
            "http://REDACTED@h.example/x"
        );
    }
}
