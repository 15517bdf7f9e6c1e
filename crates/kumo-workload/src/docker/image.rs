//! Getting a service's image into the engine: Kubernetes' IfNotPresent rule (an image in the
//! engine is used as it is unless its tag is `latest` or absent) and the manifest's registry
//! credentials.

use bollard::auth::DockerCredentials;
use bollard::query_parameters::CreateImageOptionsBuilder;
use futures::StreamExt;
use kumo_sdl::manifest::ImageCredentials;

use super::spec::ImageRef;
use super::{DockerBackend, is_not_found};
use crate::WorkloadError;

impl DockerBackend {
    /// Makes `image` available in the engine, pulling it when the rule says so.
    pub(super) async fn ensure_image(
        &self,
        image: &str,
        credentials: Option<&ImageCredentials>,
    ) -> Result<(), WorkloadError> {
        let reference = ImageRef::parse(image);
        let present = self.image_present(image).await?;
        if present && !reference.pull_even_if_present() {
            tracing::debug!(image, "image present, not pulling");
            return Ok(());
        }
        match self.pull(&reference.pull_reference(), credentials).await {
            Ok(()) => Ok(()),
            Err(reason) if present => {
                // A `latest` image that cannot be refreshed still runs: a registry outage must
                // not stop a restarted provider from bringing its leases back.
                tracing::warn!(image, %reason, "pull failed; using the copy already in the engine");
                Ok(())
            }
            Err(reason) => Err(WorkloadError::ImagePull {
                image: image.to_string(),
                reason,
            }),
        }
    }

    async fn image_present(&self, image: &str) -> Result<bool, WorkloadError> {
        match self.docker.inspect_image(image).await {
            Ok(_) => Ok(true),
            Err(e) if is_not_found(&e) => Ok(false),
            Err(e) => Err(WorkloadError::engine(
                format!("inspecting image {image}"),
                e,
            )),
        }
    }

    /// Pulls `reference`; the error is the registry's or engine's message.
    async fn pull(
        &self,
        reference: &str,
        credentials: Option<&ImageCredentials>,
    ) -> Result<(), String> {
        tracing::info!(image = reference, "pulling image");
        let opts = CreateImageOptionsBuilder::new()
            .from_image(reference)
            .build();
        let credentials = credentials.map(|c| DockerCredentials {
            username: Some(c.username.clone()),
            password: Some(c.password.clone()),
            email: (!c.email.is_empty()).then(|| c.email.clone()),
            serveraddress: Some(c.host.clone()),
            ..Default::default()
        });
        let mut progress = self.docker.create_image(Some(opts), None, credentials);
        while let Some(step) = progress.next().await {
            step.map_err(|e| e.to_string())?;
        }
        Ok(())
    }
}
