//! The requests the enclave makes of a worker over its tunnel, as HTTP request targets.

use std::fmt;

use super::query;

/// A pod, as the enclave names it to its worker.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct PodRef {
    /// The namespace.
    pub namespace: String,
    /// The pod's name.
    pub name: String,
    /// The pod's UID (empty when unknown); a worker refuses a pod whose UID differs, so a
    /// request never reaches a newer pod of the same name.
    pub uid: String,
}

/// Which standard streams an exec or attach session carries (the kubelet's `input`,
/// `output`, `error` and `tty`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct StdStreams {
    /// The client sends stdin.
    pub stdin: bool,
    /// The client wants stdout.
    pub stdout: bool,
    /// The client wants stderr (never with a TTY: the terminal merges it into stdout).
    pub stderr: bool,
    /// The process gets a terminal.
    pub tty: bool,
}

/// `pods/log` options, as the worker applies them (`sinceTime` already resolved by the
/// enclave to seconds since the epoch).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct LogOptions {
    /// Keep streaming until the container ends.
    pub follow: bool,
    /// The previous instance of the container.
    pub previous: bool,
    /// Prefix each line with its RFC 3339 timestamp.
    pub timestamps: bool,
    /// Only the last N lines.
    pub tail_lines: Option<u64>,
    /// Stop after N bytes.
    pub limit_bytes: Option<u64>,
    /// Only lines of the last N seconds (by the worker's clock, as the kubelet does).
    pub since_seconds: Option<u64>,
    /// Only lines at or after this time, seconds since the epoch.
    pub since_unix_seconds: Option<i64>,
}

/// One request over the tunnel; see the [module documentation](super).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TunnelRequest {
    /// A container's log.
    Logs {
        /// The pod.
        pod: PodRef,
        /// The container.
        container: String,
        /// What to return.
        options: LogOptions,
    },
    /// Run a command in a container.
    Exec {
        /// The pod.
        pod: PodRef,
        /// The container.
        container: String,
        /// The command and its arguments (never empty).
        command: Vec<String>,
        /// The streams.
        streams: StdStreams,
    },
    /// Attach to a container's main process.
    Attach {
        /// The pod.
        pod: PodRef,
        /// The container.
        container: String,
        /// The streams.
        streams: StdStreams,
    },
    /// One connection to a port in the pod's network namespace.
    PortForward {
        /// The pod.
        pod: PodRef,
        /// The port (never 0).
        port: u16,
    },
    /// A sample of the node's and its pods' resource usage.
    Stats,
}

/// How a worker refuses a request: the HTTP status it answers with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RefusalKind {
    /// 400: the request makes no sense (e.g. no previous container instance).
    BadRequest,
    /// 404: no such pod or container on this node.
    NotFound,
    /// 409: the container exists but is not running.
    NotRunning,
    /// 500: the runtime failed.
    Internal,
}

impl RefusalKind {
    /// The HTTP status.
    pub fn status(self) -> u16 {
        match self {
            RefusalKind::BadRequest => 400,
            RefusalKind::NotFound => 404,
            RefusalKind::NotRunning => 409,
            RefusalKind::Internal => 500,
        }
    }

    /// The kind of a non-200 status (anything unknown is [`RefusalKind::Internal`]).
    pub fn from_status(status: u16) -> Self {
        match status {
            400 => RefusalKind::BadRequest,
            404 => RefusalKind::NotFound,
            409 => RefusalKind::NotRunning,
            _ => RefusalKind::Internal,
        }
    }
}

/// A request target that is not a [`TunnelRequest`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TunnelRequestError {
    /// What is wrong.
    pub reason: String,
}

impl fmt::Display for TunnelRequestError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "bad tunnel request: {}", self.reason)
    }
}

impl std::error::Error for TunnelRequestError {}

fn bad(reason: impl Into<String>) -> TunnelRequestError {
    TunnelRequestError {
        reason: reason.into(),
    }
}

fn push_segment(out: &mut String, segment: &str) {
    out.push('/');
    query::encode_into(out, segment);
}

fn push_param(out: &mut String, key: &str, value: &str) {
    out.push(if out.contains('?') { '&' } else { '?' });
    out.push_str(key);
    out.push('=');
    query::encode_into(out, value);
}

fn push_flag(out: &mut String, key: &str, on: bool) {
    if on {
        push_param(out, key, "1");
    }
}

fn push_pod(out: &mut String, kind: &str, pod: &PodRef, container: Option<&str>) {
    push_segment(out, kind);
    push_segment(out, &pod.namespace);
    push_segment(out, &pod.name);
    if let Some(c) = container {
        push_segment(out, c);
    }
    if !pod.uid.is_empty() {
        push_param(out, "uid", &pod.uid);
    }
}

fn push_streams(out: &mut String, s: StdStreams) {
    push_flag(out, "input", s.stdin);
    push_flag(out, "output", s.stdout);
    push_flag(out, "error", s.stderr);
    push_flag(out, "tty", s.tty);
}

impl TunnelRequest {
    /// The HTTP method: `GET` for logs and stats, `POST` for the rest.
    pub fn method(&self) -> &'static str {
        match self {
            TunnelRequest::Logs { .. } | TunnelRequest::Stats => "GET",
            _ => "POST",
        }
    }

    /// The request target (path and query).
    pub fn target(&self) -> String {
        let mut out = String::new();
        match self {
            TunnelRequest::Logs {
                pod,
                container,
                options: o,
            } => {
                push_pod(&mut out, "containerLogs", pod, Some(container));
                push_flag(&mut out, "follow", o.follow);
                push_flag(&mut out, "previous", o.previous);
                push_flag(&mut out, "timestamps", o.timestamps);
                let numbers = [
                    ("tailLines", o.tail_lines.map(|n| n.to_string())),
                    ("limitBytes", o.limit_bytes.map(|n| n.to_string())),
                    ("sinceSeconds", o.since_seconds.map(|n| n.to_string())),
                    ("sinceTime", o.since_unix_seconds.map(|n| n.to_string())),
                ];
                for (k, v) in numbers {
                    if let Some(v) = v {
                        push_param(&mut out, k, &v);
                    }
                }
            }
            TunnelRequest::Exec {
                pod,
                container,
                command,
                streams,
            } => {
                push_pod(&mut out, "exec", pod, Some(container));
                for arg in command {
                    push_param(&mut out, "command", arg);
                }
                push_streams(&mut out, *streams);
            }
            TunnelRequest::Attach {
                pod,
                container,
                streams,
            } => {
                push_pod(&mut out, "attach", pod, Some(container));
                push_streams(&mut out, *streams);
            }
            TunnelRequest::PortForward { pod, port } => {
                push_pod(&mut out, "portForward", pod, None);
                push_param(&mut out, "port", &port.to_string());
            }
            TunnelRequest::Stats => out.push_str("/stats"),
        }
        out
    }

    /// Parses a request from its method and target.
    ///
    /// # Errors
    ///
    /// [`TunnelRequestError`] for an unknown path, a wrong method, a malformed escape, a missing
    /// or malformed parameter.
    pub fn parse(method: &str, target: &str) -> Result<Self, TunnelRequestError> {
        let (path, query) = target.split_once('?').unwrap_or((target, ""));
        let segments: Vec<String> = path
            .strip_prefix('/')
            .ok_or_else(|| bad("the path must start with /"))?
            .split('/')
            .map(|s| query::decode(s, false).ok_or_else(|| bad("malformed path escape")))
            .collect::<Result<_, _>>()?;
        if segments.iter().any(String::is_empty) && segments.len() > 1 {
            return Err(bad("empty path segment"));
        }
        let params = Params(query::pairs(query).ok_or_else(|| bad("malformed query"))?);
        let pod = |ns: &str, name: &str| PodRef {
            namespace: ns.to_string(),
            name: name.to_string(),
            uid: params.one("uid").unwrap_or_default().to_string(),
        };
        let seg: Vec<&str> = segments.iter().map(String::as_str).collect();
        let request = match seg.as_slice() {
            ["containerLogs", ns, name, container] => TunnelRequest::Logs {
                pod: pod(ns, name),
                container: (*container).to_string(),
                options: LogOptions {
                    follow: params.flag("follow"),
                    previous: params.flag("previous"),
                    timestamps: params.flag("timestamps"),
                    tail_lines: params.number("tailLines")?,
                    limit_bytes: params.number("limitBytes")?,
                    since_seconds: params.number("sinceSeconds")?,
                    since_unix_seconds: params.number("sinceTime")?,
                },
            },
            ["exec", ns, name, container] => {
                let command: Vec<String> = params.all("command").map(str::to_string).collect();
                if command.is_empty() {
                    return Err(bad("exec needs a command"));
                }
                TunnelRequest::Exec {
                    pod: pod(ns, name),
                    container: (*container).to_string(),
                    command,
                    streams: params.streams(),
                }
            }
            ["attach", ns, name, container] => TunnelRequest::Attach {
                pod: pod(ns, name),
                container: (*container).to_string(),
                streams: params.streams(),
            },
            ["portForward", ns, name] => {
                let port = params
                    .number::<u16>("port")?
                    .filter(|p| *p != 0)
                    .ok_or_else(|| bad("port-forward needs a port from 1 to 65535"))?;
                TunnelRequest::PortForward {
                    pod: pod(ns, name),
                    port,
                }
            }
            ["stats"] => TunnelRequest::Stats,
            _ => return Err(bad(format!("unknown path {path}"))),
        };
        if request.method() != method {
            return Err(bad(format!("{method} is not the method of {path}")));
        }
        Ok(request)
    }
}

struct Params(Vec<(String, String)>);

impl Params {
    fn all<'a>(&'a self, key: &'a str) -> impl Iterator<Item = &'a str> + 'a {
        self.0
            .iter()
            .filter(move |(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    fn one<'a>(&'a self, key: &'a str) -> Option<&'a str> {
        self.all(key).next()
    }

    fn flag(&self, key: &str) -> bool {
        matches!(self.one(key), Some("1" | "true"))
    }

    fn number<T: std::str::FromStr>(&self, key: &str) -> Result<Option<T>, TunnelRequestError> {
        self.one(key)
            .map(|v| {
                v.parse()
                    .map_err(|_| bad(format!("{key}={v:?} is not a number")))
            })
            .transpose()
    }

    fn streams(&self) -> StdStreams {
        StdStreams {
            stdin: self.flag("input"),
            stdout: self.flag("output"),
            stderr: self.flag("error"),
            tty: self.flag("tty"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pod() -> PodRef {
        PodRef {
            namespace: "default".into(),
            name: "web-1".into(),
            uid: "6f1c".into(),
        }
    }

    #[test]
    fn targets_look_like_the_kubelet_s_and_parse_back() {
        let exec = TunnelRequest::Exec {
            pod: pod(),
            container: "app".into(),
            command: vec!["sh".into(), "-c".into(), "echo a&b=c".into()],
            streams: StdStreams {
                stdin: true,
                stdout: true,
                stderr: false,
                tty: true,
            },
        };
        assert_eq!(
            exec.target(),
            "/exec/default/web-1/app?uid=6f1c&command=sh&command=-c&command=echo%20a%26b%3Dc&input=1&output=1&tty=1"
        );
        assert_eq!(TunnelRequest::parse("POST", &exec.target()), Ok(exec));
        let logs = TunnelRequest::Logs {
            pod: pod(),
            container: "app".into(),
            options: LogOptions {
                follow: true,
                tail_lines: Some(3),
                since_unix_seconds: Some(-5),
                ..LogOptions::default()
            },
        };
        assert_eq!(
            logs.target(),
            "/containerLogs/default/web-1/app?uid=6f1c&follow=1&tailLines=3&sinceTime=-5"
        );
        assert_eq!(TunnelRequest::parse("GET", &logs.target()), Ok(logs));
        let pf = TunnelRequest::PortForward {
            pod: pod(),
            port: 8080,
        };
        assert_eq!(pf.target(), "/portForward/default/web-1?uid=6f1c&port=8080");
        assert_eq!(TunnelRequest::parse("POST", &pf.target()), Ok(pf));
        assert_eq!(
            TunnelRequest::parse("GET", "/stats"),
            Ok(TunnelRequest::Stats)
        );
    }

    #[test]
    fn bad_targets_are_refused() {
        for (method, target) in [
            ("POST", "/stats"),
            ("GET", "/exec/ns/p/c?command=ls"),
            ("POST", "/exec/ns/p/c"),
            ("POST", "/portForward/ns/p?port=0"),
            ("POST", "/portForward/ns/p?port=70000"),
            ("POST", "/portForward/ns/p"),
            ("GET", "/containerLogs/ns/p/c?tailLines=x"),
            ("GET", "/containerLogs/ns//c"),
            ("GET", "/containerLogs/ns/p%zz/c"),
            ("GET", "stats"),
            ("GET", "/nope"),
        ] {
            assert!(
                TunnelRequest::parse(method, target).is_err(),
                "{method} {target}"
            );
        }
    }
}
