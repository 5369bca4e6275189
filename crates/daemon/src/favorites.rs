//! The favorites endpoints: `POST /v1/favorites` stars a job or an image (rating 1–5
//! optional), `POST /v1/favorites/remove` unstars it, `GET /v1/favorites` lists them. The
//! queue stores them durably and logs each change as an event line in `jobs.log`.

use crate::error::ApiFailure;
use crate::routes::AppState;
use actix_web::web;
use imagelab_core::api::{FavoriteRequest, FavoriteView};
use imagelab_queue::{Favorite, FavoriteTarget, JobId};

fn view(f: Favorite) -> FavoriteView {
    FavoriteView {
        job: f.job,
        image: f.image,
        rating: f.rating,
        at: f.at,
    }
}

/// Exactly one of `job` / `image`; an image must exist inside `output/`.
fn target(state: &AppState, request: &FavoriteRequest) -> Result<FavoriteTarget, ApiFailure> {
    match (&request.job, &request.image) {
        (Some(id), None) => Ok(FavoriteTarget::Job(JobId(*id))),
        (None, Some(name)) => {
            let path =
                imagelab_core::paths::resolve_in_folder(&state.folders.output, name, "image")
                    .map_err(|e| {
                        ApiFailure::new(actix_web::http::StatusCode::FORBIDDEN, e.to_string())
                            .field("image")
                    })?;
            if !path.is_file() {
                return Err(
                    ApiFailure::not_found(format!("image {name:?} is not in output/"))
                        .field("image"),
                );
            }
            Ok(FavoriteTarget::Image(name.clone()))
        }
        _ => Err(ApiFailure::unprocessable("give exactly one of job or image").field("job")),
    }
}

pub async fn set(
    state: web::Data<AppState>,
    request: web::Json<FavoriteRequest>,
) -> Result<web::Json<FavoriteView>, ApiFailure> {
    if let Some(r) = request.rating {
        if !(1..=5).contains(&r) {
            return Err(
                ApiFailure::unprocessable(format!("rating {r}: expected 1 to 5")).field("rating"),
            );
        }
    }
    let target = target(&state, &request)?;
    let by_job = matches!(target, FavoriteTarget::Job(_));
    let queue = state.queue.clone();
    let rating = request.rating;
    // An unknown job is named by the request's own field, `job` (not the path's `id`).
    let favorite = web::block(move || queue.set_favorite(&target, rating))
        .await?
        .map_err(|e| {
            let failure = ApiFailure::from(e);
            if by_job && failure.status == actix_web::http::StatusCode::NOT_FOUND {
                failure.field("job")
            } else {
                failure
            }
        })?;
    Ok(web::Json(view(favorite)))
}

pub async fn remove(
    state: web::Data<AppState>,
    request: web::Json<FavoriteRequest>,
) -> Result<web::Json<serde_json::Value>, ApiFailure> {
    let target = match (&request.job, &request.image) {
        (None, Some(name)) => FavoriteTarget::Image(name.clone()),
        _ => target(&state, &request)?,
    };
    let queue = state.queue.clone();
    let removed = web::block(move || queue.clear_favorite(&target)).await??;
    Ok(web::Json(serde_json::json!({ "removed": removed })))
}

pub async fn list(state: web::Data<AppState>) -> Result<web::Json<Vec<FavoriteView>>, ApiFailure> {
    let queue = state.queue.clone();
    let favorites = web::block(move || queue.favorites()).await??;
    Ok(web::Json(favorites.into_iter().map(view).collect()))
}
