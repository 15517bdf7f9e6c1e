//! Storage that holds to its size, on the host the backend runs on.
//!
//! - [`VolumeDisk`]: a persistent volume as an ext4 file system in an image file of its own,
//!   mounted through a loop device (`mount -o loop`). The file system is as large as the volume
//!   the tenant pays for, so a write past it fails with `ENOSPC` inside the volume and the
//!   host's disk never fills. The image is preallocated (`fallocate`), so a provider that sold
//!   more disk than it has fails when the volume is created, not later in the middle of a
//!   tenant's write.
//! - [`disk_usage`]: the disk blocks a set of directory trees holds, what the Docker backend
//!   measures a replica's writable layer and scratch volumes with (see `docker::evict`).
//!
//! On disk, under the backend's storage directory:
//!
//! ```text
//! <dir>/<volume>.img        the image (ext4, no blocks reserved for root)
//! <dir>/<volume>/           its mount point (nodev, nosuid)
//! <dir>/<volume>/data/      what the container sees; exists only while the image is mounted
//! ```
//!
//! The container gets `data/`, not the mount point: after a host reboot the image is not
//! mounted until the provider mounts it again, and a replica the engine restarts before that
//! fails to start (its volume's directory does not exist) instead of writing into the host's
//! disk. Mounting uses `mount`, `umount` (util-linux) and `mkfs.ext4` (e2fsprogs), as root.

use std::collections::HashSet;
use std::io;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use tokio::process::Command;

use crate::WorkloadError;

/// Attempts to unmount while the engine still holds the volume (it releases a bind mount a
/// moment after the container is removed).
const UNMOUNT_ATTEMPTS: u32 = 20;
const UNMOUNT_PAUSE: Duration = Duration::from_millis(100);
/// Formatting again with a larger image, when the file system's own overhead left the tenant
/// less than the volume's size: at most this many rounds.
const FORMAT_ROUNDS: u32 = 4;
const MIB: u64 = 1 << 20;

/// One persistent volume's image file and mount point.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VolumeDisk {
    /// The image file (`<dir>/<volume>.img`).
    pub image: PathBuf,
    /// Where it is mounted (`<dir>/<volume>`).
    pub mount_point: PathBuf,
}

impl VolumeDisk {
    /// The disk of the volume named `volume` under the storage directory `dir`.
    pub fn new(dir: &Path, volume: &str) -> Self {
        VolumeDisk {
            image: dir.join(format!("{volume}.img")),
            mount_point: dir.join(volume),
        }
    }

    /// The disk whose image is `image` (as a volume's label records it).
    pub fn from_image(image: &Path) -> Self {
        VolumeDisk {
            image: image.to_path_buf(),
            mount_point: image.with_extension(""),
        }
    }

    /// The directory the container mounts: inside the file system, so it exists only while
    /// the image is mounted.
    pub fn data_dir(&self) -> PathBuf {
        self.mount_point.join("data")
    }

    fn staging_image(&self) -> PathBuf {
        let mut name = self.image.clone().into_os_string();
        name.push(".new");
        PathBuf::from(name)
    }

    fn error(&self, reason: impl Into<String>) -> WorkloadError {
        WorkloadError::Storage {
            volume: self.image.display().to_string(),
            reason: reason.into(),
        }
    }

    /// Makes the volume usable: mounted already, mounted again (after a host reboot), or
    /// created with at least `bytes` free for the tenant. Safe to repeat; a creation that was
    /// interrupted starts over (nothing of the tenant's was in it yet).
    pub async fn ensure(&self, bytes: u64) -> Result<(), WorkloadError> {
        if is_mount_point(&self.mount_point).map_err(|e| self.error(e.to_string()))? {
            return Ok(());
        }
        let dir = self.image.parent().unwrap_or(Path::new("/"));
        std::fs::create_dir_all(dir)
            .and_then(|()| std::fs::create_dir_all(&self.mount_point))
            .map_err(|e| {
                self.error(format!(
                    "cannot create the volume's directory: {e} (the provider must run as root to mount volumes)"
                ))
            })?;
        if !self.image.exists() {
            self.format(bytes).await?;
        }
        self.mount(&self.image).await?;
        if !self.data_dir().is_dir() {
            // Formatted by an older provider, or by hand: give the container its directory.
            std::fs::create_dir(self.data_dir()).map_err(|e| self.error(e.to_string()))?;
        }
        Ok(())
    }

    /// Writes a new image at the staging path, formatted and resized until the tenant gets at
    /// least `bytes` (and not much more), then moves it to its place.
    async fn format(&self, bytes: u64) -> Result<(), WorkloadError> {
        let staging = self.staging_image();
        // A little above the size, for the blocks that index a file's data.
        let wanted = bytes.saturating_add(bytes / 1024).saturating_add(MIB);
        let tolerance = wanted / 64 + MIB;
        // ext4's journal, inode tables and group descriptors take a share that is large for
        // small file systems (17 % at 64 MiB, 2 % at 100 GiB): start from a guess, then
        // correct the size by what came out free, which is nearly linear in the size.
        let mut size = round_up(wanted + wanted / 16 + 8 * MIB);
        for round in 1..=FORMAT_ROUNDS {
            let free = self.format_once(&staging, size).await?;
            let last = round == FORMAT_ROUNDS;
            if free >= wanted && (free <= wanted + tolerance || last) {
                break;
            }
            if last {
                return Err(self.error(format!(
                    "a {size}-byte image still leaves less than {bytes} bytes free"
                )));
            }
            size = if free < wanted {
                round_up(size + (wanted - free) + (wanted - free) / 8 + MIB)
            } else {
                round_up(size - (free - wanted) + tolerance / 2)
            };
        }
        preallocate(&staging, size).map_err(|e| {
            let _ = std::fs::remove_file(&staging);
            self.error(format!(
                "reserving {size} bytes on the provider's disk: {e} (is the disk full?)"
            ))
        })?;
        std::fs::rename(&staging, &self.image)
            .map_err(|e| self.error(format!("moving the new image in place: {e}")))
    }

    /// Formats a `size`-byte image at `staging` and returns the bytes free in it, with the
    /// container's `data/` directory made.
    async fn format_once(&self, staging: &Path, size: u64) -> Result<u64, WorkloadError> {
        {
            let file = std::fs::File::create(staging)
                .map_err(|e| self.error(format!("creating the image: {e}")))?;
            file.set_len(size)
                .map_err(|e| self.error(format!("sizing the image: {e}")))?;
        }
        run(
            Command::new("mkfs.ext4")
                // No blocks reserved for root: the tenant gets all of it. No discard: the image
                // is preallocated afterwards and must stay so.
                .args([
                    "-q",
                    "-F",
                    "-m",
                    "0",
                    "-E",
                    "nodiscard",
                    "-L",
                    "kumo-volume",
                ])
                .arg(staging),
            "mkfs.ext4 (package e2fsprogs)",
        )
        .await
        .map_err(|e| self.error(e))?;
        self.mount(staging).await?;
        let free = rustix::fs::statvfs(&self.mount_point)
            .map(|s| s.f_bavail.saturating_mul(s.f_frsize))
            .map_err(|e| self.error(format!("reading the new file system's size: {e}")))
            .and_then(|free| {
                std::fs::create_dir(self.data_dir())
                    .map(|()| free)
                    .map_err(|e| self.error(e.to_string()))
            });
        self.unmount().await?;
        free
    }

    async fn mount(&self, image: &Path) -> Result<(), WorkloadError> {
        run(
            Command::new("mount")
                .args(["-t", "ext4", "-o", "loop,nodev,nosuid"])
                .arg(image)
                .arg(&self.mount_point),
            "mount",
        )
        .await
        .map_err(|e| self.error(e))
    }

    /// Unmounts the file system (its loop device goes with it: `mount -o loop` sets it to
    /// clear itself).
    async fn unmount(&self) -> Result<(), WorkloadError> {
        let mut attempt = 1;
        loop {
            if !is_mount_point(&self.mount_point).map_err(|e| self.error(e.to_string()))? {
                return Ok(());
            }
            match run(Command::new("umount").arg(&self.mount_point), "umount").await {
                Ok(()) => return Ok(()),
                Err(e) if attempt >= UNMOUNT_ATTEMPTS => {
                    return Err(self.error(format!("still in use: {e}")));
                }
                Err(_) => {
                    attempt += 1;
                    tokio::time::sleep(UNMOUNT_PAUSE).await;
                }
            }
        }
    }

    /// Unmounts the volume and deletes its image and mount point: the tenant's data is gone.
    /// Safe to repeat; a volume that is already gone is not an error.
    pub async fn remove(&self) -> Result<(), WorkloadError> {
        if self.mount_point.exists() {
            self.unmount().await?;
            // Not a mount point any more, so this removes only the empty directory (or what
            // a failed creation left in it), never the tenant's file system.
            match std::fs::remove_dir_all(&self.mount_point) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => return Err(self.error(format!("removing the mount point: {e}"))),
            }
        }
        for file in [self.staging_image(), self.image.clone()] {
            match std::fs::remove_file(&file) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => {
                    return Err(self.error(format!("removing {}: {e}", file.display())));
                }
            }
        }
        Ok(())
    }
}

fn round_up(bytes: u64) -> u64 {
    bytes.div_ceil(MIB) * MIB
}

/// Allocates every block of the file (mkfs punches holes where it writes zeros).
fn preallocate(path: &Path, size: u64) -> io::Result<()> {
    let file = std::fs::OpenOptions::new().write(true).open(path)?;
    rustix::fs::fallocate(&file, rustix::fs::FallocateFlags::empty(), 0, size)?;
    Ok(())
}

/// Runs a helper program; its standard error is the reason when it fails.
async fn run(cmd: &mut Command, what: &str) -> Result<(), String> {
    let out = cmd
        .kill_on_drop(true)
        .output()
        .await
        .map_err(|e| format!("cannot run {what}: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "{what} failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

/// Whether `path` is where a file system is mounted (it is on another device than its parent).
pub fn is_mount_point(path: &Path) -> io::Result<bool> {
    let meta = match std::fs::symlink_metadata(path) {
        Ok(m) => m,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(false),
        Err(e) => return Err(e),
    };
    let parent = std::fs::metadata(path.join(".."))?;
    Ok(meta.dev() != parent.dev())
}

/// The disk space the files under `roots` hold (allocated blocks, as `du` counts them; a file
/// with several links once), staying on each root's file system. Stops counting once the sum
/// passes `stop_above`: the caller only needs to know that it did, and a tree of millions of
/// files is not walked to its end. A root that does not exist counts 0; files that vanish
/// while being counted are skipped.
pub fn disk_usage(roots: &[PathBuf], stop_above: u64) -> io::Result<u64> {
    let mut total = 0u64;
    let mut linked = HashSet::new();
    for root in roots {
        let root_meta = match std::fs::symlink_metadata(root) {
            Ok(m) => m,
            Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
            Err(e) => return Err(e),
        };
        let device = root_meta.dev();
        let mut pending = vec![root.clone()];
        while let Some(dir) = pending.pop() {
            let entries = match std::fs::read_dir(&dir) {
                Ok(e) => e,
                Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
                Err(e) => return Err(e),
            };
            for entry in entries {
                let Ok(entry) = entry else { continue };
                let Ok(meta) = entry.metadata() else { continue };
                if meta.dev() != device {
                    continue;
                }
                if meta.nlink() > 1 && !meta.is_dir() && !linked.insert((meta.dev(), meta.ino())) {
                    continue;
                }
                total = total.saturating_add(meta.blocks().saturating_mul(512));
                if total > stop_above {
                    return Ok(total);
                }
                if meta.is_dir() {
                    pending.push(entry.path());
                }
            }
        }
    }
    Ok(total)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn disk_usage_counts_blocks_once_per_file_and_stops_early() {
        let dir = tempfile::tempdir().unwrap();
        let sub = dir.path().join("a/b");
        std::fs::create_dir_all(&sub).unwrap();
        std::fs::write(sub.join("one"), vec![1u8; 1 << 20]).unwrap();
        std::fs::hard_link(sub.join("one"), dir.path().join("same")).unwrap();
        // Sparse: a large size, almost no blocks.
        std::fs::File::create(dir.path().join("sparse"))
            .unwrap()
            .set_len(1 << 30)
            .unwrap();
        let used = disk_usage(&[dir.path().to_path_buf()], u64::MAX).unwrap();
        assert!(
            ((1 << 20)..(1 << 20) + (64 << 10)).contains(&used),
            "1 MiB written once, linked twice, plus directories: {used}"
        );
        let early = disk_usage(&[dir.path().to_path_buf()], 4096).unwrap();
        assert!(early > 4096, "{early}");
        let none = disk_usage(&[dir.path().join("missing")], u64::MAX).unwrap();
        assert_eq!(none, 0);
    }

    #[test]
    fn a_volumes_paths_derive_from_its_image() {
        let disk = VolumeDisk::new(Path::new("/srv/v"), "kumo-ab-db-0-data");
        assert_eq!(disk.image, Path::new("/srv/v/kumo-ab-db-0-data.img"));
        assert_eq!(disk.mount_point, Path::new("/srv/v/kumo-ab-db-0-data"));
        assert_eq!(disk.data_dir(), Path::new("/srv/v/kumo-ab-db-0-data/data"));
        assert_eq!(VolumeDisk::from_image(&disk.image), disk);
    }
}
