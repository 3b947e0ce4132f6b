//! `/oauth/clients`: managing API-managed OAuth clients. Needs a client-credentials
//! access token of an admin client (marked `admin`), with the `latchkey:admin` scope;
//! rows managed by the operator are read-only here.

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

/// Admin rights belong to the subject, not to a scope: the token must carry
/// `latchkey:admin` *and* be a client-credentials token (its subject is the client
/// itself) of a client that is marked `admin` now. A user's token never qualifies,
/// whatever scope the user consented to; a client unmarked later loses the API at once.
async fn require_admin(state: &AppState, bearer: &Bearer) -> latchkey_domain::Result<()> {
    const REFUSED: &str = "the admin API takes a client-credentials token of an admin client, with the latchkey:admin scope";
    let claims = &bearer.0;
    if !scopes::contains(&claims.scope, scopes::ADMIN) || claims.sub != claims.client_id {
        return Err(Error::InsufficientScope(REFUSED));
    }
    match clients::get(&state.db, &claims.client_id).await? {
        Some(client) if client.admin => Ok(()),
        _ => Err(Error::InsufficientScope(REFUSED)),
    }
}

fn invalid(problems: Vec<String>) -> Error {
    Error::Validation {
        message: "the client is invalid".into(),
        details: problems,
    }
}

/// Every client, API-managed and operator-managed.
#[utoipa::path(get, path = "/oauth/clients", tag = "admin", operation_id = "list_clients",
    security(("client_token" = [])),
    responses(
        (status = 200, description = "The clients (never a secret).", body = Vec<ClientView>),
        (status = 401, description = "`invalid_token`, with `WWW-Authenticate: Bearer`.", body = crate::error::Body,
            headers(("www-authenticate" = String))),
        (status = 403, description = "`insufficient_scope`: not a client-credentials token of an admin client with latchkey:admin.", body = crate::error::Body),
    ))]
async fn list(State(state): State<AppState>, bearer: Bearer) -> Result<Json<Vec<ClientView>>> {
    require_admin(&state, &bearer).await?;
    let records = clients::list(&state.db).await?;
    Ok(Json(
        records.iter().map(|r| ClientView::new(r, None)).collect(),
    ))
}

#[utoipa::path(get, path = "/oauth/clients/{client_id}", tag = "admin", operation_id = "show_client",
    security(("client_token" = [])),
    params(("client_id" = String, Path, description = "The client's id.")),
    responses(
        (status = 200, description = "The client.", body = ClientView),
        (status = 401, description = "`invalid_token`, with `WWW-Authenticate: Bearer`.", body = crate::error::Body,
            headers(("www-authenticate" = String))),
        (status = 403, description = "`insufficient_scope`: not a client-credentials token of an admin client with latchkey:admin.", body = crate::error::Body),
        (status = 404, description = "`not_found`.", body = crate::error::Body),
    ))]
async fn show(
    State(state): State<AppState>,
    bearer: Bearer,
    Path(client_id): Path<String>,
) -> Result<Json<ClientView>> {
    require_admin(&state, &bearer).await?;
    let record = clients::get(&state.db, &client_id)
        .await?
        .ok_or(Error::NotFound)?;
    Ok(Json(ClientView::new(&record, None)))
}

/// Registers an API-managed client; a confidential one gets a secret, in this answer only.
#[utoipa::path(post, path = "/oauth/clients", tag = "admin", operation_id = "create_client",
    security(("client_token" = [])),
    request_body = ClientInput,
    responses(
        (status = 201, description = "Created; `client_secret` only here.", body = ClientView,
            links(
                ("show" = (operation_id = "show_client", parameters(("client_id" = "$response.body#/client_id")))),
                ("update" = (operation_id = "update_client", parameters(("client_id" = "$response.body#/client_id")))),
                ("remove" = (operation_id = "remove_client", parameters(("client_id" = "$response.body#/client_id")))),
            )),
        (status = 400, description = "Malformed JSON, or a NUL character.", body = crate::error::Body),
        (status = 413, description = "The body is over LATCHKEY_BODY_LIMIT.", body = crate::error::Body),
        (status = 415, description = "Not `application/json`.", body = crate::error::Body),
        (status = 422, description = "`invalid_request` with `details`: the client is invalid.", body = crate::error::Body),
        (status = 401, description = "`invalid_token`, with `WWW-Authenticate: Bearer`.", body = crate::error::Body,
            headers(("www-authenticate" = String))),
        (status = 403, description = "`insufficient_scope`: not a client-credentials token of an admin client with latchkey:admin.", body = crate::error::Body),
        (status = 409, description = "`already_exists`: the client_id is taken.", body = crate::error::Body),
    ))]
async fn create(
    State(state): State<AppState>,
    bearer: Bearer,
    ApiJson(input): ApiJson<ClientInput>,
) -> Result<Response> {
    require_admin(&state, &bearer).await?;
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

/// Changes the fields given; `client_id` and `public` cannot change.
#[utoipa::path(patch, path = "/oauth/clients/{client_id}", tag = "admin", operation_id = "update_client",
    security(("client_token" = [])),
    params(("client_id" = String, Path, description = "The client's id.")),
    request_body = ClientInput,
    responses(
        (status = 200, description = "The updated client.", body = ClientView),
        (status = 400, description = "Malformed JSON, or a NUL character.", body = crate::error::Body),
        (status = 413, description = "The body is over LATCHKEY_BODY_LIMIT.", body = crate::error::Body),
        (status = 415, description = "Not `application/json`.", body = crate::error::Body),
        (status = 422, description = "`invalid_request` with `details`: the client is invalid.", body = crate::error::Body),
        (status = 401, description = "`invalid_token`, with `WWW-Authenticate: Bearer`.", body = crate::error::Body,
            headers(("www-authenticate" = String))),
        (status = 403, description = "`insufficient_scope`: not a client-credentials token of an admin client with latchkey:admin.", body = crate::error::Body),
        (status = 404, description = "`not_found`.", body = crate::error::Body),
        (status = 409, description = "`managed_by_operator`: an OAuthClient resource owns it.", body = crate::error::Body),
    ))]
async fn update(
    State(state): State<AppState>,
    bearer: Bearer,
    Path(client_id): Path<String>,
    ApiJson(input): ApiJson<ClientInput>,
) -> Result<Json<ClientView>> {
    require_admin(&state, &bearer).await?;
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

#[utoipa::path(delete, path = "/oauth/clients/{client_id}", tag = "admin", operation_id = "remove_client",
    security(("client_token" = [])),
    params(("client_id" = String, Path, description = "The client's id.")),
    responses(
        (status = 204, description = "Deleted."),
        (status = 401, description = "`invalid_token`, with `WWW-Authenticate: Bearer`.", body = crate::error::Body,
            headers(("www-authenticate" = String))),
        (status = 403, description = "`insufficient_scope`: not a client-credentials token of an admin client with latchkey:admin.", body = crate::error::Body),
        (status = 404, description = "`not_found`.", body = crate::error::Body),
        (status = 409, description = "`managed_by_operator`: an OAuthClient resource owns it.", body = crate::error::Body),
    ))]
async fn remove(
    State(state): State<AppState>,
    bearer: Bearer,
    Path(client_id): Path<String>,
) -> Result<StatusCode> {
    require_admin(&state, &bearer).await?;
    let record = clients::get(&state.db, &client_id)
        .await?
        .ok_or(Error::NotFound)?;
    if record.managed_by == ManagedBy::Operator {
        return Err(Error::ManagedElsewhere.into());
    }
    clients::delete(&state.db, &client_id).await?;
    Ok(StatusCode::NO_CONTENT)
}
