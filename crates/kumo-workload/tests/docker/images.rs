//! Getting images: the IfNotPresent rule against the local registry, and a private registry
//! that needs the manifest's credentials.

use bollard::auth::DockerCredentials;
use bollard::query_parameters::{
    PushImageOptionsBuilder, RemoveImageOptionsBuilder, TagImageOptionsBuilder,
};
use futures::StreamExt;
use kumo_sdl::manifest::ImageCredentials;
use kumo_workload::{Backend, DeployOptions, WorkloadError};

use crate::support::{
    AUTH_PASSWORD, AUTH_REGISTRY, AUTH_USER, Engine, IMAGE, IMAGE_2, OPEN_REGISTRY, engine, group,
    random_hex, service,
};

/// Tags the local image `source` as `repo:tag`.
async fn tag(engine: &Engine, source: &str, repo: &str, tag: &str) {
    let opts = TagImageOptionsBuilder::new().repo(repo).tag(tag).build();
    engine
        .backend
        .docker()
        .tag_image(source, Some(opts))
        .await
        .unwrap_or_else(|e| panic!("tagging {source} as {repo}:{tag}: {e}"));
}

/// Pushes `repo:tag` to its (open) registry.
async fn push(engine: &Engine, repo: &str, tag: &str) {
    let opts = PushImageOptionsBuilder::new().tag(tag).build();
    let mut progress =
        engine
            .backend
            .docker()
            .push_image(repo, Some(opts), Some(DockerCredentials::default()));
    while let Some(step) = progress.next().await {
        step.unwrap_or_else(|e| {
            panic!("pushing {repo}:{tag} (is the registry of scripts/test-images.sh up?): {e}")
        });
    }
}

async fn remove_local(engine: &Engine, image: &str) {
    let opts = RemoveImageOptionsBuilder::new().force(true).build();
    let _ = engine
        .backend
        .docker()
        .remove_image(image, Some(opts), None)
        .await;
}

/// The marker of the image a service's replica runs: `1` for [`IMAGE`], `2` for [`IMAGE_2`].
async fn marker(engine: &Engine, lease: &kumo_types::LeaseId, service: &str) -> String {
    let out = engine.sh(lease, service, "cat /etc/kumo-test-image").await;
    assert_eq!(out.code, 0, "{out:?}");
    out.stdout.trim().to_string()
}

#[tokio::test]
async fn a_tagged_image_in_the_engine_is_used_as_is_but_latest_is_pulled() {
    let Some(engine) = engine().await else { return };
    // A repository of this test only: the registry holds image 1 under every tag, the engine
    // holds image 2 under the same names. Which marker a replica sees tells where it came from.
    let repo = format!("{OPEN_REGISTRY}/kumo-test/pull-{}", random_hex(4));
    for t in ["1", "latest", "only-remote"] {
        tag(&engine, IMAGE, &repo, t).await;
        push(&engine, &repo, t).await;
    }
    tag(&engine, IMAGE_2, &repo, "1").await;
    tag(&engine, IMAGE_2, &repo, "latest").await;
    remove_local(&engine, &format!("{repo}:only-remote")).await;

    let lease = engine.lease();
    let idle = |name: &str, tag: &str| service(name, &format!("{repo}:{tag}"), &["sleep", "3600"]);
    let untagged = service("untagged", &repo, &["sleep", "3600"]);
    let result = engine
        .backend
        .deploy(
            &lease,
            &group(vec![
                idle("pinned", "1"),
                idle("latest", "latest"),
                idle("remote", "only-remote"),
                untagged,
            ]),
            &DeployOptions::default(),
        )
        .await;
    let markers = match result {
        Ok(_) => (
            marker(&engine, &lease, "pinned").await,
            marker(&engine, &lease, "latest").await,
            marker(&engine, &lease, "remote").await,
            marker(&engine, &lease, "untagged").await,
        ),
        Err(e) => panic!("deploy: {e}"),
    };
    for t in ["1", "latest", "only-remote"] {
        remove_local(&engine, &format!("{repo}:{t}")).await;
    }
    assert_eq!(
        markers,
        ("2".into(), "1".into(), "1".into(), "1".into()),
        "pinned tag: the engine's copy; latest, written or implied: pulled; missing: pulled"
    );
}

#[tokio::test]
async fn a_private_image_is_pulled_with_the_manifests_credentials() {
    let Some(engine) = engine().await else { return };
    let image = format!("{AUTH_REGISTRY}/kumo-test/private:1");
    // Only this test uses the image; a copy from an earlier run would hide the pull.
    remove_local(&engine, &image).await;
    let credentials = |password: &str| ImageCredentials {
        host: AUTH_REGISTRY.into(),
        email: String::new(),
        username: AUTH_USER.into(),
        password: password.into(),
    };
    let private = |creds: Option<ImageCredentials>| {
        let mut s = service("private", &image, &["sleep", "3600"]);
        s.credentials = creds;
        group(vec![s])
    };
    let opts = DeployOptions::default();

    let lease = engine.lease();
    for creds in [None, Some(credentials("wrong-password"))] {
        let err = engine
            .backend
            .deploy(&lease, &private(creds.clone()), &opts)
            .await
            .unwrap_err();
        assert!(
            matches!(&err, WorkloadError::ImagePull { image: i, .. } if *i == image),
            "{creds:?}: {err}"
        );
        assert!(
            !engine.backend.leases().await.unwrap().contains(&lease),
            "nothing is created when the image cannot be had"
        );
    }

    let status = engine
        .backend
        .deploy(&lease, &private(Some(credentials(AUTH_PASSWORD))), &opts)
        .await
        .expect("deploy with credentials");
    assert_eq!(status.service("private").unwrap().instances.len(), 1);
    assert_eq!(marker(&engine, &lease, "private").await, "1");
}
