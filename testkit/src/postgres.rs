//! A fresh PostgreSQL database per test, on the server named by
//! [`DATABASE_URL_ENV`](crate::DATABASE_URL_ENV).

use latchkey_store::Db;

use crate::{DATABASE_URL_ENV, Error, Result};

/// Creates an empty database `latchkey_test_<random>` and returns its URL.
pub async fn fresh_database() -> Result<String> {
    let admin_url = std::env::var(DATABASE_URL_ENV).map_err(|_| {
        Error::Environment(format!(
            "{DATABASE_URL_ENV} is not set: run ./test.sh, or \
             eval \"$(tests/scripts/services.sh start)\" first"
        ))
    })?;
    let admin = Db::connect(&admin_url, 1).await?;
    let name = format!(
        "latchkey_test_{}",
        &uuid::Uuid::new_v4().simple().to_string()[..12]
    );
    // The name is ours: a fixed prefix and hex digits.
    let created = sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
        .execute(admin.pool())
        .await;
    admin.close().await;
    created.map_err(|e| Error::Database(e.into()))?;
    let (base, _) = admin_url
        .rsplit_once('/')
        .ok_or_else(|| Error::Environment(format!("{DATABASE_URL_ENV} has no database path")))?;
    Ok(format!("{base}/{name}"))
}
