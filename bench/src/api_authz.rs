//! The authorization phase of `daas bench api`: GET of one configmap by a
//! service account bound through 1,000 RoleBindings and 100
//! ClusterRoleBindings (each to a role of its own; one RoleBinding grants
//! the GET), against the admin's GET rate measured just before; then how
//! fast tokens are issued (TokenRequest), verified on first use (a GET with
//! a token never seen before: ES256 signature and the account's lookups),
//! and verified by the bare signature check in this process.

use std::sync::Arc;
use std::time::Instant;

use anyhow::Context;
use hyper::{Method, StatusCode, header};

use super::api::{Client, JSON, Phase, drive, exchange, print_phase};

/// Bindings of the benchmark user.
const ROLE_BINDINGS: usize = 1_000;
const CLUSTER_ROLE_BINDINGS: usize = 100;
/// Tokens issued and each used once.
const TOKENS: usize = 2_000;
/// Interleaved admin/user GET rounds.
const ROUNDS: usize = 10;
/// Unmeasured GETs of each user before the rounds.
const WARM_UP: usize = 500;

fn post(
    client: &Client,
    path: &str,
    body: serde_json::Value,
) -> anyhow::Result<hyper::Request<http_body_util::Full<bytes::Bytes>>> {
    client.request(
        Method::POST,
        path,
        JSON,
        Some(body.to_string().into_bytes()),
    )
}

/// A Role (or ClusterRole, `namespace` None) granting `get` on `resource`.
fn role(name: &str, namespace: Option<&str>, resource: &str) -> serde_json::Value {
    let mut meta = serde_json::json!({"name": name});
    if let Some(ns) = namespace {
        meta["namespace"] = ns.into();
    }
    serde_json::json!({
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": if namespace.is_some() { "Role" } else { "ClusterRole" },
        "metadata": meta,
        "rules": [{"apiGroups": [""], "resources": [resource], "verbs": ["get"]}],
    })
}

fn binding(name: &str, namespace: Option<&str>, role: &str) -> serde_json::Value {
    let (kind, role_kind) = match namespace {
        Some(_) => ("RoleBinding", "Role"),
        None => ("ClusterRoleBinding", "ClusterRole"),
    };
    let mut meta = serde_json::json!({"name": name});
    if let Some(ns) = namespace {
        meta["namespace"] = ns.into();
    }
    serde_json::json!({
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": kind,
        "metadata": meta,
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": role_kind, "name": role},
        "subjects": [{"kind": "ServiceAccount", "name": "bench-user", "namespace": "default"}],
    })
}

/// Creates `n` objects from `make(i)` at `path(i)` with `concurrency` clients.
async fn create_all(
    client: &Client,
    n: usize,
    concurrency: usize,
    make: impl Fn(usize) -> (String, serde_json::Value) + Send + Sync + 'static,
) -> anyhow::Result<()> {
    drive(client, n, concurrency, StatusCode::CREATED, move |c, i| {
        let (path, body) = make(i);
        post(c, &path, body)
    })
    .await
    .map(drop)
}

async fn token(client: &Client, conn: &mut super::api::Connection) -> anyhow::Result<String> {
    let req = post(
        client,
        "/api/v1/namespaces/default/serviceaccounts/bench-user/token",
        serde_json::json!({"apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest", "spec": {"expirationSeconds": 3600}}),
    )?;
    let body = exchange(conn, req, StatusCode::CREATED).await?;
    let v: serde_json::Value = serde_json::from_slice(&body)?;
    v.pointer("/status/token")
        .and_then(serde_json::Value::as_str)
        .map(str::to_string)
        .context("TokenRequest answered without a token")
}

/// Runs the phase; `admin_get` is the admin's GET phase of the same run.
pub(crate) async fn run(
    client: &Client,
    enclave_pid: u32,
    gets: usize,
    concurrency: usize,
    admin_get: &Phase,
) -> anyhow::Result<()> {
    let mut setup = client.connect().await?;
    let req = post(
        client,
        "/api/v1/namespaces/default/serviceaccounts",
        serde_json::json!({"metadata": {"name": "bench-user"}}),
    )?;
    exchange(&mut setup, req, StatusCode::CREATED).await?;
    let started = Instant::now();
    // Every role but one grants something else; the one that grants the GET
    // is bound last among the RoleBindings (name order), behind all the others.
    create_all(client, ROLE_BINDINGS, concurrency, |i| {
        let resource = if i == ROLE_BINDINGS - 1 {
            "configmaps".to_string()
        } else {
            format!("things{i}")
        };
        (
            "/apis/rbac.authorization.k8s.io/v1/namespaces/default/roles".into(),
            role(&format!("bench-{i:04}"), Some("default"), &resource),
        )
    })
    .await?;
    create_all(client, ROLE_BINDINGS, concurrency, |i| {
        (
            "/apis/rbac.authorization.k8s.io/v1/namespaces/default/rolebindings".into(),
            binding(
                &format!("bench-{i:04}"),
                Some("default"),
                &format!("bench-{i:04}"),
            ),
        )
    })
    .await?;
    create_all(client, CLUSTER_ROLE_BINDINGS, concurrency, |i| {
        (
            "/apis/rbac.authorization.k8s.io/v1/clusterroles".into(),
            role(&format!("bench-{i:03}"), None, &format!("widgets{i}")),
        )
    })
    .await?;
    create_all(client, CLUSTER_ROLE_BINDINGS, concurrency, |i| {
        (
            "/apis/rbac.authorization.k8s.io/v1/clusterrolebindings".into(),
            binding(&format!("bench-{i:03}"), None, &format!("bench-{i:03}")),
        )
    })
    .await?;
    println!(
        "authz setup: {ROLE_BINDINGS} roles + rolebindings, {CLUSTER_ROLE_BINDINGS} clusterroles + clusterrolebindings in {:.1} s",
        started.elapsed().as_secs_f64()
    );
    let user = client.with_token(&token(client, &mut setup).await?);
    // The first request after the policy changed rebuilds the RBAC snapshot
    // (and verifies the token); then warm both users up before measuring.
    let first = Instant::now();
    let req = user.request(
        Method::GET,
        "/api/v1/namespaces/default/configmaps/bench-get",
        JSON,
        None,
    )?;
    exchange(&mut user.connect().await?, req, StatusCode::OK).await?;
    println!(
        "authz: first GET after the bindings were written {:.1} ms (policy snapshot rebuild, token verified)",
        first.elapsed().as_secs_f64() * 1e3
    );
    for c in [client, &user] {
        drive(c, WARM_UP, concurrency, StatusCode::OK, |c, _| {
            c.request(
                Method::GET,
                "/api/v1/namespaces/default/configmaps/bench-get",
                JSON,
                None,
            )
        })
        .await?;
    }
    // Interleaved rounds, admin then user, so that load from elsewhere on
    // the machine weighs on both alike; the enclave's CPU time per GET is
    // the steadier figure on a shared machine.
    let per_round = (gets / ROUNDS).max(1);
    let (mut admin_secs, mut user_secs) = (0.0, 0.0);
    let (mut admin_ticks, mut user_ticks) = (0u64, 0u64);
    let mut pair_ratios = Vec::with_capacity(ROUNDS);
    for _ in 0..ROUNDS {
        let t0 = cpu_ticks(enclave_pid);
        let a = drive(client, per_round, concurrency, StatusCode::OK, |c, _| {
            c.request(
                Method::GET,
                "/api/v1/namespaces/default/configmaps/bench-get",
                JSON,
                None,
            )
        })
        .await?;
        let t1 = cpu_ticks(enclave_pid);
        let u = drive(&user, per_round, concurrency, StatusCode::OK, |c, _| {
            c.request(
                Method::GET,
                "/api/v1/namespaces/default/configmaps/bench-get",
                JSON,
                None,
            )
        })
        .await?;
        let t2 = cpu_ticks(enclave_pid);
        admin_ticks += t1.saturating_sub(t0);
        user_ticks += t2.saturating_sub(t1);
        admin_secs += per_round as f64 / a.per_sec;
        user_secs += per_round as f64 / u.per_sec;
        pair_ratios.push(u.per_sec / a.per_sec);
    }
    pair_ratios.sort_by(f64::total_cmp);
    let median = pair_ratios
        .get(pair_ratios.len() / 2)
        .copied()
        .unwrap_or(0.0);
    let admin_rate = (per_round * ROUNDS) as f64 / admin_secs;
    let user_rate = (per_round * ROUNDS) as f64 / user_secs;
    let us_per = |ticks: u64| ticks as f64 * 1e6 / TICKS_PER_SEC / (per_round * ROUNDS) as f64;
    println!(
        "authz rounds: {ROUNDS} x {per_round} GETs each; admin {admin_rate:.0}/s, RBAC user {user_rate:.0}/s; median pair ratio {:.1}%; enclave CPU per GET: admin {:.1} us, RBAC user {:.1} us",
        100.0 * median,
        us_per(admin_ticks),
        us_per(user_ticks),
    );
    let denied = drive(
        &user,
        gets / 4,
        concurrency,
        StatusCode::FORBIDDEN,
        |c, _| {
            c.request(
                Method::GET,
                "/api/v1/namespaces/default/secrets/none",
                JSON,
                None,
            )
        },
    )
    .await?;
    print_phase("GET denied (403)", &denied);
    // Issue many tokens, then use each exactly once.
    let tokens_wanted = gets.clamp(1, TOKENS);
    let issued_at = Instant::now();
    let tokens = Arc::new(std::sync::Mutex::new(Vec::with_capacity(
        gets.clamp(1, TOKENS),
    )));
    let sink = tokens.clone();
    let mut conns = Vec::new();
    for _ in 0..concurrency {
        conns.push(client.connect().await?);
    }
    let next = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let mut tasks = tokio::task::JoinSet::new();
    for mut conn in conns {
        let (client, sink, next) = (client.clone(), sink.clone(), next.clone());
        tasks.spawn(async move {
            while next.fetch_add(1, std::sync::atomic::Ordering::Relaxed) < tokens_wanted {
                let t = token(&client, &mut conn).await?;
                sink.lock()
                    .map_err(|_| anyhow::anyhow!("poisoned"))?
                    .push(t);
            }
            Ok::<_, anyhow::Error>(())
        });
    }
    while let Some(r) = tasks.join_next().await {
        r??;
    }
    let issue_rate = tokens_wanted as f64 / issued_at.elapsed().as_secs_f64();
    let tokens: Arc<Vec<String>> = Arc::new(std::mem::take(
        &mut *tokens.lock().map_err(|_| anyhow::anyhow!("poisoned"))?,
    ));
    let first_use = {
        let tokens = tokens.clone();
        drive(
            client,
            tokens.len(),
            concurrency,
            StatusCode::OK,
            move |c, i| {
                let mut req = c.request(
                    Method::GET,
                    "/api/v1/namespaces/default/configmaps/bench-get",
                    JSON,
                    None,
                )?;
                req.headers_mut().insert(
                    header::AUTHORIZATION,
                    format!("Bearer {}", tokens[i]).parse()?,
                );
                Ok(req)
            },
        )
        .await?
    };
    print_phase("GET, token first used", &first_use);
    let verify_rate = bare_verify_rate(&tokens[0]);
    println!(
        "authz: RBAC-user GET {user_rate:.0}/s = {:.1}% of admin's {admin_rate:.0}/s in the same rounds (targets: >= 90%, >= 10000/s; admin's first phase {:.0}/s); tokens issued {issue_rate:.0}/s; first-use GET {:.0}/s; ES256 verify {verify_rate:.0}/s on one core",
        100.0 * user_rate / admin_rate,
        admin_get.per_sec,
        first_use.per_sec,
    );
    Ok(())
}

/// `sysconf(_SC_CLK_TCK)` on Linux.
const TICKS_PER_SEC: f64 = 100.0;

/// User plus system CPU time of process `pid`, in clock ticks (0 if unreadable).
fn cpu_ticks(pid: u32) -> u64 {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return 0;
    };
    // Fields after the command (which may hold spaces) start after the last ')'.
    let rest = stat.rsplit_once(')').map_or("", |(_, r)| r);
    let f: Vec<&str> = rest.split_whitespace().collect();
    let num = |i: usize| f.get(i).and_then(|x| x.parse::<u64>().ok()).unwrap_or(0);
    // utime and stime are fields 14 and 15 of the whole line: 11 and 12 here.
    num(11) + num(12)
}

/// ES256 verifications per second of one token in this process (one core),
/// with a key of the same kind the enclave signs with.
fn bare_verify_rate(sample: &str) -> f64 {
    let Ok(key) = enclave::auth::keys::DerivedKey::derive(&[42; 32]) else {
        return 0.0;
    };
    let claims = enclave::auth::jwt::peek_claims(sample).unwrap_or_default();
    let Ok(token) = enclave::auth::jwt::sign(&key, &claims) else {
        return 0.0;
    };
    let n = 5_000;
    let start = Instant::now();
    let ok = (0..n)
        .filter(|_| enclave::auth::jwt::verify(&key, &token).is_ok())
        .count();
    if ok != n {
        return 0.0;
    }
    n as f64 / start.elapsed().as_secs_f64()
}
