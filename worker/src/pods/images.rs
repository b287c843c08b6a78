//! `imagePullPolicy` as the kubelet's image manager applies it, with upstream's reasons:
//! ErrImageNeverPull, ErrImagePull and, while backing off, ImagePullBackOff.

use std::time::Instant;

use k8s_cri::v1 as cri;
use k8s_openapi::api::core::v1::{Container, Pod};

use super::Ctx;
use super::status::WaitReason;
use crate::runtime::Result;

/// A present image: what CreateContainer gets, and the user it runs as.
#[derive(Debug, Clone)]
pub(crate) struct PresentImage {
    /// The reference containerd resolves (the normalised name).
    pub(crate) reference: String,
    pub(crate) uid: Option<i64>,
    pub(crate) username: String,
}

fn pull_policy(container: &Container) -> String {
    if let Some(p) = container
        .image_pull_policy
        .clone()
        .filter(|p| !p.is_empty())
    {
        return p;
    }
    let image = container.image.as_deref().unwrap_or_default();
    let last = image.rsplit('/').next().unwrap_or(image);
    let tag = if image.contains('@') {
        Some("digest")
    } else {
        last.split_once(':').map(|(_, t)| t)
    };
    match tag {
        None | Some("latest") => "Always".to_owned(),
        Some(_) => "IfNotPresent".to_owned(),
    }
}

/// Go's rendering of a gRPC error (`rpc error: code = Unknown desc = ...`).
pub(crate) fn go_grpc_error(err: &crate::runtime::Error) -> String {
    match err {
        crate::runtime::Error::Cri { status, .. } => {
            format!(
                "rpc error: code = {:?} desc = {}",
                status.code(),
                status.message()
            )
        }
        other => other.to_string(),
    }
}

async fn status_of(ctx: &Ctx, image: &str) -> Result<Option<PresentImage>> {
    let status = ctx
        .cri
        .image_status(cri::ImageStatusRequest {
            image: Some(cri::ImageSpec {
                image: image.to_owned(),
                ..Default::default()
            }),
            verbose: false,
        })
        .await?;
    Ok(status.image.map(|i| PresentImage {
        reference: i.repo_tags.first().cloned().unwrap_or_else(|| i.id.clone()),
        uid: i.uid.map(|u| u.value),
        username: i.username,
    }))
}

/// Makes sure the container's image is present per its pull policy.
pub(crate) async fn ensure(
    ctx: &Ctx,
    pod: &Pod,
    container: &Container,
) -> Result<Result<PresentImage, WaitReason>> {
    let image = container.image.clone().unwrap_or_default();
    let policy = pull_policy(container);
    let present = status_of(ctx, &image).await?;
    match (policy.as_str(), present) {
        ("IfNotPresent" | "Never", Some(found)) => return Ok(Ok(found)),
        ("Never", None) => {
            return Ok(Err(WaitReason {
                reason: "ErrImageNeverPull".to_owned(),
                message: format!(
                    "Container image \"{image}\" is not present with pull policy of Never"
                ),
            }));
        }
        _ => {}
    }
    let key = format!(
        "{}_{image}",
        pod.metadata.uid.as_deref().unwrap_or_default()
    );
    let now = Instant::now();
    if ctx
        .image_backoff()
        .in_backoff_since_update(&key, now)
        .is_some()
    {
        return Ok(Err(WaitReason {
            reason: "ImagePullBackOff".to_owned(),
            message: format!("Back-off pulling image \"{image}\""),
        }));
    }
    let auth = super::pull_secrets::auth_for(ctx, pod, &image).await?;
    let pulled = ctx
        .cri
        .pull_image(cri::PullImageRequest {
            image: Some(cri::ImageSpec {
                image: image.clone(),
                ..Default::default()
            }),
            auth,
            sandbox_config: None,
        })
        .await;
    match pulled {
        Ok(_) => match status_of(ctx, &image).await? {
            Some(found) => Ok(Ok(found)),
            None => Ok(Err(WaitReason {
                reason: "ErrImagePull".to_owned(),
                message: format!("image {image} vanished after its pull"),
            })),
        },
        Err(e) => {
            ctx.image_backoff().next(&key, now, now);
            tracing::info!(image = %image, error = %e, "image pull failed");
            Ok(Err(WaitReason {
                reason: "ErrImagePull".to_owned(),
                message: go_grpc_error(&e),
            }))
        }
    }
}
