//! The unit tests' deployment file: one `web` service whose variable parts the tests set.

/// What a test varies.
pub(crate) struct WebSdl<'a> {
    /// Memory per replica, e.g. `64Mi`.
    pub(crate) memory: &'a str,
    /// The `storage:` value, indented as under `resources:`.
    pub(crate) storage: &'a str,
    /// Max price per block in `ukumo`.
    pub(crate) price: u64,
    /// Replicas.
    pub(crate) count: u32,
    /// One `env` entry, or none.
    pub(crate) env: Option<&'a str>,
}

impl Default for WebSdl<'_> {
    fn default() -> Self {
        WebSdl {
            memory: "64Mi",
            storage: "\n          size: 64Mi",
            price: 10,
            count: 1,
            env: None,
        }
    }
}

impl WebSdl<'_> {
    /// The groups of the file.
    pub(crate) fn groups(&self) -> Vec<kumo_types::GroupSpec> {
        let env = self
            .env
            .map(|e| format!("    env:\n      - {e}\n"))
            .unwrap_or_default();
        let text = format!(
            r#"version: "2.0"
services:
  web:
    image: nginx
{env}    expose:
      - port: 80
        to:
          - global: true
profiles:
  compute:
    web:
      resources:
        cpu:
          units: 0.5
        memory:
          size: {memory}
        storage:{storage}
  placement:
    dc:
      pricing:
        web:
          denom: ukumo
          amount: {price}
deployment:
  web:
    dc:
      profile: web
      count: {count}
"#,
            memory = self.memory,
            storage = self.storage,
            price = self.price,
            count = self.count,
        );
        kumo_sdl::parse(&text).unwrap().groups().to_vec()
    }
}
