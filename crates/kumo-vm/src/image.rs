//! The image cache: each cloud image downloaded once, verified against the SHA-256 the
//! tenant's manifest names, and kept under that hash.
//!
//! ```text
//! <cache>/sha256-<hex>            a verified image (qcow2 or raw, as downloaded)
//! <cache>/sha256-<hex>.partial    a download in progress (renamed only once verified)
//! ```
//!
//! Since the file name is the content hash, two leases of the same image share one file, and a
//! provider restart finds it again. Lease disks are copy-on-write overlays on these files, so
//! they are never written to.

use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};
use tokio::io::AsyncWriteExt;
use tokio::sync::Mutex;

/// Why an image is not available.
#[derive(Debug, thiserror::Error)]
pub enum ImageError {
    /// The URL's scheme is not one the backend fetches.
    #[error(
        "image URL {url:?}: only http:// and https:// are fetched (file:// only where the operator allows it)"
    )]
    Scheme {
        /// The URL.
        url: String,
    },
    /// The download failed.
    #[error("downloading image {url}: {reason}")]
    Download {
        /// The URL.
        url: String,
        /// The HTTP status or transport error.
        reason: String,
    },
    /// The bytes do not have the hash the manifest names.
    #[error(
        "image {url} has SHA-256 {actual}, but the manifest names {expected}: fix vm.image.sha256 (sha256sum of the file) or the URL"
    )]
    Mismatch {
        /// The URL.
        url: String,
        /// The hash in the manifest.
        expected: String,
        /// The hash of what was downloaded.
        actual: String,
    },
    /// The cache directory could not be written.
    #[error("image cache {path}: {source}")]
    Io {
        /// The file or directory.
        path: String,
        /// The system's error.
        source: std::io::Error,
    },
}

/// The on-disk format of an image, as QEMU names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ImageFormat {
    /// QEMU's copy-on-write format (what most cloud images are).
    Qcow2,
    /// A plain disk image.
    Raw,
}

impl ImageFormat {
    /// `qcow2` or `raw`.
    pub fn as_str(self) -> &'static str {
        match self {
            ImageFormat::Qcow2 => "qcow2",
            ImageFormat::Raw => "raw",
        }
    }

    /// The format of the file at `path`, from its first bytes (qcow2 starts with `QFI\xfb`).
    pub async fn detect(path: &Path) -> std::io::Result<ImageFormat> {
        use tokio::io::AsyncReadExt;
        let mut file = tokio::fs::File::open(path).await?;
        let mut magic = [0u8; 4];
        let n = file.read(&mut magic).await?;
        Ok(if n == 4 && magic == *b"QFI\xfb" {
            ImageFormat::Qcow2
        } else {
            ImageFormat::Raw
        })
    }
}

/// Downloads and keeps images.
#[derive(Debug)]
pub struct ImageCache {
    dir: PathBuf,
    allow_file_urls: bool,
    client: reqwest::Client,
    /// One download at a time: two leases asking for the same new image wait for one copy.
    fetching: Mutex<()>,
}

impl ImageCache {
    /// A cache in `dir` (created when needed). `allow_file_urls` lets `file://` URLs through:
    /// for tests and operators' own images, never for tenants' URLs on a public provider.
    pub fn new(dir: PathBuf, allow_file_urls: bool) -> ImageCache {
        ImageCache {
            dir,
            allow_file_urls,
            client: reqwest::Client::new(),
            fetching: Mutex::new(()),
        }
    }

    /// Where the image with this hash is (or will be) kept.
    pub fn path_of(&self, sha256: &str) -> PathBuf {
        self.dir
            .join(format!("sha256-{}", sha256.to_ascii_lowercase()))
    }

    /// The verified image at `url` with SHA-256 `sha256`: from the cache, or downloaded now.
    pub async fn get(&self, url: &str, sha256: &str) -> Result<PathBuf, ImageError> {
        let expected = sha256.to_ascii_lowercase();
        let path = self.path_of(&expected);
        if tokio::fs::try_exists(&path).await.unwrap_or(false) {
            return Ok(path);
        }
        let _one_at_a_time = self.fetching.lock().await;
        if tokio::fs::try_exists(&path).await.unwrap_or(false) {
            return Ok(path);
        }
        let io = |p: &Path| {
            let p = p.display().to_string();
            move |source| ImageError::Io { path: p, source }
        };
        tokio::fs::create_dir_all(&self.dir)
            .await
            .map_err(io(&self.dir))?;
        let partial = path.with_extension("partial");
        let actual = if let Some(local) = url.strip_prefix("file://") {
            if !self.allow_file_urls {
                return Err(ImageError::Scheme { url: url.into() });
            }
            copy_hashing(Path::new(local), &partial)
                .await
                .map_err(io(Path::new(local)))?
        } else if url.starts_with("https://") || url.starts_with("http://") {
            tracing::info!(url, "downloading VM image");
            self.download(url, &partial).await?
        } else {
            return Err(ImageError::Scheme { url: url.into() });
        };
        if actual != expected {
            let _ = tokio::fs::remove_file(&partial).await;
            return Err(ImageError::Mismatch {
                url: url.into(),
                expected,
                actual,
            });
        }
        tokio::fs::rename(&partial, &path)
            .await
            .map_err(io(&path))?;
        Ok(path)
    }

    async fn download(&self, url: &str, to: &Path) -> Result<String, ImageError> {
        let failed = |reason: String| ImageError::Download {
            url: url.into(),
            reason,
        };
        let mut response = self
            .client
            .get(url)
            .send()
            .await
            .map_err(|e| failed(e.to_string()))?;
        if !response.status().is_success() {
            return Err(failed(format!("HTTP {}", response.status())));
        }
        let mut file = tokio::fs::File::create(to)
            .await
            .map_err(|source| ImageError::Io {
                path: to.display().to_string(),
                source,
            })?;
        let mut hasher = Sha256::new();
        while let Some(chunk) = response.chunk().await.map_err(|e| failed(e.to_string()))? {
            hasher.update(&chunk);
            file.write_all(&chunk)
                .await
                .map_err(|source| ImageError::Io {
                    path: to.display().to_string(),
                    source,
                })?;
        }
        file.flush().await.map_err(|source| ImageError::Io {
            path: to.display().to_string(),
            source,
        })?;
        Ok(hex::encode(hasher.finalize()))
    }
}

/// Copies `from` to `to`, returning the SHA-256 of the bytes.
async fn copy_hashing(from: &Path, to: &Path) -> std::io::Result<String> {
    use tokio::io::AsyncReadExt;
    let mut src = tokio::fs::File::open(from).await?;
    let mut dst = tokio::fs::File::create(to).await?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = src.read(&mut buf).await?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
        dst.write_all(&buf[..n]).await?;
    }
    dst.flush().await?;
    Ok(hex::encode(hasher.finalize()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn verifies_and_caches_by_hash() {
        let dir = tempfile::tempdir().unwrap();
        let src = dir.path().join("disk.img");
        std::fs::write(&src, b"not really a disk").unwrap();
        let sha = hex::encode(Sha256::digest(b"not really a disk"));
        let url = format!("file://{}", src.display());

        let strict = ImageCache::new(dir.path().join("strict"), false);
        assert!(matches!(
            strict.get(&url, &sha).await,
            Err(ImageError::Scheme { .. })
        ));

        let cache = ImageCache::new(dir.path().join("cache"), true);
        let wrong = "0".repeat(64);
        let err = cache.get(&url, &wrong).await.unwrap_err();
        assert!(matches!(err, ImageError::Mismatch { .. }), "{err}");
        assert!(!cache.path_of(&wrong).exists());

        let path = cache.get(&url, &sha.to_uppercase()).await.unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), b"not really a disk");
        // Once cached, the source is not read again.
        std::fs::remove_file(&src).unwrap();
        assert_eq!(cache.get(&url, &sha).await.unwrap(), path);
        assert_eq!(ImageFormat::detect(&path).await.unwrap(), ImageFormat::Raw);
    }
}
