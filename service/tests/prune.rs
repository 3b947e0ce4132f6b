//! Storage stays bounded (issue 15): the pruner deletes expired and spent rows, on both
//! backends, and keeps what reuse detection still needs.

mod common;

use std::time::{Duration, Instant};

use common::{Backend, TestServer};
use latchkey_store::now_ms;
use latchkey_store::prune::Table;

both_backends!(
    the_pruner_deletes_what_nothing_needs_and_keeps_the_rest,
    a_pass_deletes_in_bounded_batches,
    each_statement_resumes_where_the_last_stopped,
);

const HOUR: i64 = 3_600_000;

async fn exec(server: &TestServer, sql: &'static str, binds: &[&str], times: &[i64]) {
    let mut query = sqlx::query(sql);
    for b in binds {
        query = query.bind(*b);
    }
    for t in times {
        query = query.bind(*t);
    }
    query.execute(server.db.pool()).await.expect(sql);
}

async fn refresh(
    server: &TestServer,
    hash: &str,
    family: &str,
    user: &str,
    expires: i64,
    used: bool,
) {
    let now = now_ms();
    let sql = if used {
        "INSERT INTO refresh_tokens (token_hash, family_id, user_id, client_id, created_at, expires_at, used_at) \
         VALUES ($1, $2, $3, 'latchkey', $4, $5, $4)"
    } else {
        "INSERT INTO refresh_tokens (token_hash, family_id, user_id, client_id, created_at, expires_at) \
         VALUES ($1, $2, $3, 'latchkey', $4, $5)"
    };
    exec(
        server,
        sql,
        &[hash, family, user],
        &[now - 48 * HOUR, expires],
    )
    .await;
}

async fn code(server: &TestServer, hash: &str, user: &str, expires: i64, access_exp: Option<i64>) {
    let now = now_ms();
    let sql = "INSERT INTO authorization_codes (code_hash, client_id, user_id, redirect_uri, \
               redirect_given, scope, auth_time, family_id, created_at, expires_at, access_exp) \
               VALUES ($1, 'web', $2, 'https://app.example.com/cb', 1, 'openid', $3, 'f', $3, $4, $5)";
    let mut query = sqlx::query(sql)
        .bind(hash)
        .bind(user)
        .bind(now - 2 * HOUR)
        .bind(expires);
    query = query.bind(access_exp);
    query.execute(server.db.pool()).await.expect("code");
}

async fn keys(server: &TestServer, table: &str, key: &str) -> Vec<String> {
    let sql = format!("SELECT {key} AS k FROM {table} ORDER BY {key}");
    let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
        .fetch_all(server.db.pool())
        .await
        .expect("select");
    rows.iter()
        .map(|r| sqlx::Row::try_get::<String, _>(r, "k").expect("k"))
        .collect()
}

async fn user_id(server: &TestServer, username: &str) -> String {
    server.register(username).await;
    latchkey_store::users::find_by_login(&server.db, username)
        .await
        .expect("lookup")
        .expect("user")
        .id
}

/// With `--prune-interval 1s`, rows nothing needs go within a few passes:
/// - a refresh family all of whose tokens expired (`old-*`) goes; a consumed, expired
///   token of a family that still has a live token (`kept-used`) stays, because
///   presenting it again must still revoke that family;
/// - an expired code whose access token also expired goes; an expired code whose access
///   token is live stays (a replay revokes that token); a live code stays;
/// - expired browser sessions and emailed tokens go, live ones stay.
async fn the_pruner_deletes_what_nothing_needs_and_keeps_the_rest(backend: Backend) {
    let server = TestServer::start_with(backend, &["--prune-interval", "1s"]).await;
    let user = user_id(&server, "petra").await;
    let now = now_ms();
    refresh(&server, "old-1", "fam-old", &user, now - 2 * HOUR, true).await;
    refresh(&server, "old-2", "fam-old", &user, now - HOUR, false).await;
    refresh(&server, "kept-used", "fam-live", &user, now - HOUR, true).await;
    refresh(&server, "kept-live", "fam-live", &user, now + HOUR, false).await;
    code(&server, "old-code", &user, now - HOUR, Some(now - HOUR)).await;
    code(&server, "old-unused-code", &user, now - HOUR, None).await;
    code(
        &server,
        "kept-replayable",
        &user,
        now - HOUR,
        Some(now + HOUR),
    )
    .await;
    code(&server, "kept-live-code", &user, now + HOUR, None).await;
    for (id, expires) in [("old-session", now - HOUR), ("kept-session", now + HOUR)] {
        exec(
            &server,
            "INSERT INTO browser_sessions (id_hash, user_id, auth_time, created_at, expires_at) \
             VALUES ($1, $2, $3, $3, $4)",
            &[id, &user],
            &[now - 2 * HOUR, expires],
        )
        .await;
    }
    // Registration left its own (live) activation token, when activation is on.
    let before_mail = keys(&server, "email_tokens", "token_hash").await;
    for (id, expires) in [("old-mail", now - HOUR), ("kept-mail", now + HOUR)] {
        exec(
            &server,
            "INSERT INTO email_tokens (token_hash, user_id, purpose, created_at, expires_at) \
             VALUES ($1, $2, 'password_reset', $3, $4)",
            &[id, &user],
            &[now - 2 * HOUR, expires],
        )
        .await;
    }

    let start = Instant::now();
    loop {
        let gone = keys(&server, "refresh_tokens", "token_hash").await.len() == 2
            && keys(&server, "authorization_codes", "code_hash")
                .await
                .len()
                == 2
            && keys(&server, "browser_sessions", "id_hash").await.len() == 1
            && keys(&server, "email_tokens", "token_hash").await.len() == before_mail.len() + 1;
        if gone {
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "{backend:?}: not pruned within 30 s"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(
        keys(&server, "refresh_tokens", "token_hash").await,
        ["kept-live", "kept-used"]
    );
    assert_eq!(
        keys(&server, "authorization_codes", "code_hash").await,
        ["kept-live-code", "kept-replayable"]
    );
    assert_eq!(
        keys(&server, "browser_sessions", "id_hash").await,
        ["kept-session"]
    );
    assert!(
        keys(&server, "email_tokens", "token_hash")
            .await
            .contains(&"kept-mail".to_owned())
    );
    let metrics = server.metrics().await;
    assert!(
        metrics.contains(r#"latchkey_pruned_rows_total{table="refresh_tokens"}"#),
        "{metrics}"
    );
    assert!(metrics.contains(r#"latchkey_prune_lag_seconds{table="authorization_codes"} 0"#));
}

/// One pass drains a backlog in statements of at most `batch` rows: 2,500 expired rows
/// with batches of 1,000 take three.
async fn a_pass_deletes_in_bounded_batches(backend: Backend) {
    let server = TestServer::start_with(backend, &["--prune-interval", "off"]).await;
    let user = user_id(&server, "quinn").await;
    let now = now_ms();
    let mut tx = server.db.pool().begin().await.expect("tx");
    for i in 0..2_500 {
        sqlx::query(
            "INSERT INTO browser_sessions (id_hash, user_id, auth_time, created_at, expires_at) \
             VALUES ($1, $2, $3, $3, $4)",
        )
        .bind(format!("s{i:05}"))
        .bind(&user)
        .bind(now - 2 * HOUR)
        .bind(now - HOUR)
        .execute(&mut *tx)
        .await
        .expect("insert");
    }
    tx.commit().await.expect("commit");
    let pass = latchkey_domain::prune::pass(&server.db, Table::BrowserSessions, 1_000)
        .await
        .expect("pass");
    assert_eq!(pass.deleted, 2_500, "{backend:?}");
    assert_eq!(pass.batches, 3, "{backend:?}");
    assert!(
        keys(&server, "browser_sessions", "id_hash")
            .await
            .is_empty()
    );
}

/// Each statement of a pass starts at the last `expires_at` the one before deleted, and
/// still misses nothing: with batches of one row, of two prunable tokens expiring in the
/// same millisecond the second goes in the next statement, and the kept token
/// (consumed, expired, of a live family) expiring then too stays.
async fn each_statement_resumes_where_the_last_stopped(backend: Backend) {
    let server = TestServer::start_with(backend, &["--prune-interval", "off"]).await;
    let user = user_id(&server, "rosa").await;
    let now = now_ms();
    refresh(
        &server,
        "kept-used",
        "fam-live",
        &user,
        now - 3 * HOUR,
        true,
    )
    .await;
    refresh(&server, "kept-live", "fam-live", &user, now + HOUR, false).await;
    refresh(&server, "a-1", "fam-a", &user, now - 4 * HOUR, true).await;
    refresh(&server, "a-2", "fam-a", &user, now - 3 * HOUR, false).await;
    refresh(&server, "b-1", "fam-b", &user, now - 3 * HOUR, true).await;
    refresh(&server, "b-2", "fam-b", &user, now - HOUR, false).await;
    let pass = latchkey_domain::prune::pass(&server.db, Table::RefreshTokens, 1)
        .await
        .expect("pass");
    assert_eq!(pass.deleted, 4, "{backend:?}");
    assert_eq!(pass.batches, 5, "{backend:?}");
    assert_eq!(
        keys(&server, "refresh_tokens", "token_hash").await,
        ["kept-live", "kept-used"]
    );
}
