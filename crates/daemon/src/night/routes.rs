//! The overnight runner's endpoints, mounted inside the token-protected `/v1` scope:
//! `POST /v1/night` (start; 201, 400 naming the field, 409 while a run is going),
//! `GET /v1/night` (the current or last run; 404 when none was ever started) and
//! `POST /v1/night/stop` (stop; the run as it ended, 404 when none was ever started).

use super::actor::{PromptGenerator, Start, Status, Stop};
use crate::error::ApiFailure;
use crate::routes::AppState;
use actix::{Addr, MailboxError};
use actix_web::{web, HttpResponse};
use imagelab_core::night::{NightRequest, NightStatus};

fn mailbox(err: MailboxError) -> ApiFailure {
    ApiFailure::internal(format!("the overnight runner is not answering: {err}"))
}

fn generator(state: &AppState) -> &Addr<PromptGenerator> {
    &state.night
}

pub async fn start(
    state: web::Data<AppState>,
    body: web::Json<NightRequest>,
) -> Result<HttpResponse, ApiFailure> {
    let status = generator(&state)
        .send(Start(body.into_inner()))
        .await
        .map_err(mailbox)??;
    Ok(HttpResponse::Created().json(status))
}

pub async fn status(state: web::Data<AppState>) -> Result<web::Json<NightStatus>, ApiFailure> {
    let status = generator(&state).send(Status).await.map_err(mailbox)??;
    Ok(web::Json(status))
}

pub async fn stop(state: web::Data<AppState>) -> Result<web::Json<NightStatus>, ApiFailure> {
    let status = generator(&state).send(Stop).await.map_err(mailbox)??;
    Ok(web::Json(status))
}
