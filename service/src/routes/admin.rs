//! `/oauth/clients`: managing API-managed OAuth clients. Needs an access token with the
//! `latchkey:admin` scope; rows managed by the operator are read-only here.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use latchkey_store::clients::{self, ManagedBy};
use latchkey_store::now_ms;

use latchkey_domain::clients::{self as client_admin, ClientInput, ClientView};
use latchkey_domain::{Error, scopes};

use crate::error::Result;
use crate::extract::{ApiJson, Bearer};
use crate::state::AppState;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/oauth/clients", get(list).post(create))
        .route(
            "/oauth/clients/{client_id}",
            get(show).patch(update).delete(remove),
        )
}

fn require_admin(bearer: &Bearer) -> latchkey_domain::Result<()> {
    if scopes::contains(&bearer.0.scope, scopes::ADMIN) {
        Ok(())
    } else {
        Err(Error::InsufficientScope(
            "the latchkey:admin scope is required",
        ))
    }
}

fn invalid(problems: Vec<String>) -> Error {
    Error::Validation {
        message: "the client is invalid".into(),
        details: problems,
    }
}

async fn list(State(state): State<AppState>, bearer: Bearer) -> Result<Json<Vec<ClientView>>> {
    require_admin(&bearer)?;
    let records = clients::list(&state.db).await?;
    Ok(Json(
        records.iter().map(|r| ClientView::new(r, None)).collect(),
    ))
}

async fn show(
    State(state): State<AppState>,
    bearer: Bearer,
    Path(client_id): Path<String>,
) -> Result<Json<ClientView>> {
    require_admin(&bearer)?;
    let record = clients::get(&state.db, &client_id)
        .await?
        .ok_or(Error::NotFound)?;
    Ok(Json(ClientView::new(&record, None)))
}

async fn create(
    State(state): State<AppState>,
    bearer: Bearer,
    ApiJson(input): ApiJson<ClientInput>,
) -> Result<Response> {
    require_admin(&bearer)?;
    let (record, secret) = client_admin::create(input, now_ms()).map_err(invalid)?;
    match clients::insert(&state.db, &record).await {
        Ok(()) => {}
        Err(latchkey_store::Error::Conflict(_)) => return Err(Error::Conflict("client_id").into()),
        Err(e) => return Err(e.into()),
    }
    tracing::info!(
        client_id = record.client_id,
        by = bearer.0.sub,
        "client created"
    );
    Ok((
        StatusCode::CREATED,
        Json(ClientView::new(&record, secret.as_ref())),
    )
        .into_response())
}

async fn update(
    State(state): State<AppState>,
    bearer: Bearer,
    Path(client_id): Path<String>,
    ApiJson(input): ApiJson<ClientInput>,
) -> Result<Json<ClientView>> {
    require_admin(&bearer)?;
    let mut record = clients::get(&state.db, &client_id)
        .await?
        .ok_or(Error::NotFound)?;
    if record.managed_by == ManagedBy::Operator {
        return Err(Error::ManagedElsewhere.into());
    }
    if input.client_id.as_ref().is_some_and(|id| *id != client_id)
        || input.public.is_some_and(|p| p != record.public)
    {
        return Err(invalid(vec!["client_id and public cannot change".into()]).into());
    }
    client_admin::apply(&mut record, input).map_err(invalid)?;
    record.updated_at = now_ms();
    clients::upsert(&state.db, &record).await?;
    Ok(Json(ClientView::new(&record, None)))
}

async fn remove(
    State(state): State<AppState>,
    bearer: Bearer,
    Path(client_id): Path<String>,
) -> Result<StatusCode> {
    require_admin(&bearer)?;
    let record = clients::get(&state.db, &client_id)
        .await?
        .ok_or(Error::NotFound)?;
    if record.managed_by == ManagedBy::Operator {
        return Err(Error::ManagedElsewhere.into());
    }
    clients::delete(&state.db, &client_id).await?;
    Ok(StatusCode::NO_CONTENT)
}
