//! The cloud-init NoCloud seed: `meta-data` and `user-data` on a small ISO 9660 disk labelled
//! `cidata`, which cloud-init (in every Debian and Ubuntu cloud image) finds at boot.
//!
//! `user-data` is Kumo's `#cloud-config` (the login user with the tenant's SSH keys, no
//! passwords); when the tenant wrote their own `vm.user_data`, both go in a MIME multipart
//! message, the format cloud-init documents for combining parts. `meta-data` names the instance
//! (its id changes when the seed does, so cloud-init applies a changed seed once) and the host
//! name.
//!
//! The ISO is written here, without `genisoimage`: one directory, plain ISO 9660 level 1 names
//! (`META-DATA.;1`), which Linux shows as `meta-data` (lower case, version dropped).

use kumo_sdl::manifest::VmSpec;
use sha2::{Digest, Sha256};

/// The two files of a NoCloud seed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Seed {
    /// `meta-data`.
    pub meta_data: String,
    /// `user-data`.
    pub user_data: String,
}

impl Seed {
    /// The seed for a VM running `vm`, with host name `hostname`.
    pub fn new(vm: &VmSpec, hostname: &str) -> Seed {
        let mut config = String::from("#cloud-config\n");
        config.push_str(&format!("hostname: {}\n", yaml_str(hostname)));
        config.push_str("ssh_pwauth: false\n");
        config.push_str("users:\n");
        config.push_str(&format!("  - name: {}\n", yaml_str(&vm.user)));
        config.push_str("    shell: /bin/bash\n");
        config.push_str("    lock_passwd: true\n");
        config.push_str("    sudo: \"ALL=(ALL) NOPASSWD:ALL\"\n");
        config.push_str("    ssh_authorized_keys:\n");
        for key in &vm.ssh_keys {
            config.push_str(&format!("      - {}\n", yaml_str(key)));
        }
        let user_data = match &vm.user_data {
            None => config,
            Some(own) => multipart(&config, own),
        };
        let id = hex::encode(&Sha256::digest(format!("{hostname}\n{user_data}"))[..8]);
        let meta_data = format!(
            "instance-id: kumo-{id}\nlocal-hostname: {}\n",
            yaml_str(hostname)
        );
        Seed {
            meta_data,
            user_data,
        }
    }

    /// The seed as an ISO 9660 image labelled `cidata`.
    pub fn to_iso(&self) -> Vec<u8> {
        iso9660(
            "cidata",
            &[
                ("meta-data", self.meta_data.as_bytes()),
                ("user-data", self.user_data.as_bytes()),
            ],
        )
    }
}

/// A YAML double-quoted string (JSON's syntax is valid YAML).
fn yaml_str(s: &str) -> String {
    serde_json::Value::String(s.to_string()).to_string()
}

/// Kumo's cloud-config and the tenant's user-data as one multipart message.
fn multipart(kumo: &str, tenant: &str) -> String {
    let boundary = "==kumo-user-data==";
    let kind = if tenant.starts_with("#cloud-config") {
        "text/cloud-config"
    } else if tenant.starts_with("#!") {
        "text/x-shellscript"
    } else {
        // cloud-init looks at the first line (`#include`, `#cloud-boothook`, …).
        "text/plain"
    };
    format!(
        "Content-Type: multipart/mixed; boundary=\"{boundary}\"\nMIME-Version: 1.0\n\n\
         --{boundary}\nContent-Type: text/cloud-config; charset=\"utf-8\"\nMIME-Version: 1.0\n\
         Content-Disposition: attachment; filename=\"kumo.cfg\"\n\n{kumo}\n\
         --{boundary}\nContent-Type: {kind}; charset=\"utf-8\"\nMIME-Version: 1.0\n\
         Content-Disposition: attachment; filename=\"user-data\"\n\n{tenant}\n\
         --{boundary}--\n"
    )
}

const SECTOR: usize = 2048;

/// An ISO 9660 image with volume label `label` and `files` in its root directory.
///
/// Layout: sectors 0-15 empty (system area), 16 the primary volume descriptor, 17 the set
/// terminator, 18 and 19 the path table (little- and big-endian), 20 the root directory, then
/// the files, each from a sector boundary.
pub fn iso9660(label: &str, files: &[(&str, &[u8])]) -> Vec<u8> {
    const ROOT: usize = 20;
    let mut names: Vec<(String, &[u8])> = files
        .iter()
        .map(|(name, data)| (format!("{}.;1", name.to_ascii_uppercase()), *data))
        .collect();
    names.sort_by(|a, b| a.0.cmp(&b.0));
    let mut extents = Vec::new();
    let mut next = ROOT + 1;
    for (_, data) in &names {
        extents.push(next);
        next += data.len().div_ceil(SECTOR).max(1);
    }
    let total = next;
    let mut iso = vec![0u8; total * SECTOR];

    // Directory records.
    let root_dir = {
        let mut dir = Vec::new();
        dir.extend(dir_record(&[0], ROOT, SECTOR, true));
        dir.extend(dir_record(&[1], ROOT, SECTOR, true));
        for ((name, data), extent) in names.iter().zip(&extents) {
            dir.extend(dir_record(name.as_bytes(), *extent, data.len(), false));
        }
        assert!(dir.len() <= SECTOR, "the seed's directory fits one sector");
        dir
    };
    iso[ROOT * SECTOR..ROOT * SECTOR + root_dir.len()].copy_from_slice(&root_dir);
    for ((_, data), extent) in names.iter().zip(&extents) {
        iso[extent * SECTOR..extent * SECTOR + data.len()].copy_from_slice(data);
    }

    // Path tables: one entry, the root (directory number 1, its own parent).
    let path_entry = |big_endian: bool| {
        let mut e = vec![1u8, 0];
        let loc = ROOT as u32;
        e.extend(if big_endian {
            loc.to_be_bytes()
        } else {
            loc.to_le_bytes()
        });
        e.extend(if big_endian {
            1u16.to_be_bytes()
        } else {
            1u16.to_le_bytes()
        });
        e.extend([0u8, 0]); // identifier 0x00 and the padding byte
        e
    };
    let l_table = path_entry(false);
    iso[18 * SECTOR..18 * SECTOR + l_table.len()].copy_from_slice(&l_table);
    let m_table = path_entry(true);
    iso[19 * SECTOR..19 * SECTOR + m_table.len()].copy_from_slice(&m_table);

    // Primary volume descriptor.
    let pvd = &mut iso[16 * SECTOR..17 * SECTOR];
    pvd[0] = 1;
    pvd[1..6].copy_from_slice(b"CD001");
    pvd[6] = 1;
    pad(&mut pvd[8..40], "");
    pad(&mut pvd[40..72], label);
    pvd[80..88].copy_from_slice(&both32(total as u32));
    pvd[120..124].copy_from_slice(&both16(1));
    pvd[124..128].copy_from_slice(&both16(1));
    pvd[128..132].copy_from_slice(&both16(SECTOR as u16));
    pvd[132..140].copy_from_slice(&both32(l_table.len() as u32));
    pvd[140..144].copy_from_slice(&18u32.to_le_bytes());
    pvd[148..152].copy_from_slice(&19u32.to_be_bytes());
    pvd[156..190].copy_from_slice(&root_dir[..34]);
    for field in [
        190..318,
        318..446,
        446..574,
        574..702,
        702..739,
        739..776,
        776..813,
    ] {
        pad(&mut pvd[field], "");
    }
    // Creation, modification, expiration, effective dates: "not specified".
    for start in [813, 830, 847, 864] {
        pvd[start..start + 16].copy_from_slice(b"0000000000000000");
        pvd[start + 16] = 0;
    }
    pvd[881] = 1;

    // Set terminator.
    let term = &mut iso[17 * SECTOR..18 * SECTOR];
    term[0] = 255;
    term[1..6].copy_from_slice(b"CD001");
    term[6] = 1;
    iso
}

fn dir_record(id: &[u8], extent: usize, len: usize, dir: bool) -> Vec<u8> {
    let mut r = vec![0u8; 33];
    r[2..10].copy_from_slice(&both32(extent as u32));
    r[10..18].copy_from_slice(&both32(len as u32));
    // Recorded 2024-01-01 00:00:00 UTC: fixed, so the same seed gives the same bytes.
    r[18..25].copy_from_slice(&[124, 1, 1, 0, 0, 0, 0]);
    r[25] = if dir { 2 } else { 0 };
    r[28..32].copy_from_slice(&both16(1));
    r[32] = id.len() as u8;
    r.extend_from_slice(id);
    if r.len() % 2 == 1 {
        r.push(0);
    }
    r[0] = r.len() as u8;
    r
}

fn both32(v: u32) -> [u8; 8] {
    let mut b = [0u8; 8];
    b[..4].copy_from_slice(&v.to_le_bytes());
    b[4..].copy_from_slice(&v.to_be_bytes());
    b
}

fn both16(v: u16) -> [u8; 4] {
    let mut b = [0u8; 4];
    b[..2].copy_from_slice(&v.to_le_bytes());
    b[2..].copy_from_slice(&v.to_be_bytes());
    b
}

fn pad(field: &mut [u8], text: &str) {
    field.fill(b' ');
    field[..text.len()].copy_from_slice(text.as_bytes());
}

#[cfg(test)]
mod tests {
    use super::*;
    use kumo_sdl::manifest::VmImage;

    fn spec(user_data: Option<&str>) -> VmSpec {
        VmSpec {
            image: VmImage {
                url: "https://example.com/d.qcow2".into(),
                sha256: "0".repeat(64),
            },
            ssh_keys: vec!["ssh-ed25519 AAAA a@b".into(), "ssh-rsa BBBB c: d".into()],
            user: "kumo".into(),
            user_data: user_data.map(String::from),
        }
    }

    #[test]
    fn user_data_installs_the_keys_for_the_user() {
        let seed = Seed::new(&spec(None), "box-0");
        assert!(seed.user_data.starts_with("#cloud-config\n"));
        assert!(seed.user_data.contains("  - name: \"kumo\"\n"));
        assert!(seed.user_data.contains("      - \"ssh-rsa BBBB c: d\"\n"));
        assert!(seed.meta_data.contains("local-hostname: \"box-0\"\n"));
        // A changed seed is a new instance for cloud-init; the same seed is the same instance.
        assert_eq!(seed, Seed::new(&spec(None), "box-0"));
        assert_ne!(
            seed.meta_data,
            Seed::new(&spec(Some("#!/bin/sh")), "box-0").meta_data
        );
    }

    #[test]
    fn tenant_user_data_goes_in_its_own_part() {
        let seed = Seed::new(&spec(Some("#!/bin/sh\necho hi\n")), "box-0");
        assert!(seed.user_data.starts_with("Content-Type: multipart/mixed"));
        assert!(seed.user_data.contains("Content-Type: text/x-shellscript"));
        assert!(seed.user_data.contains("#!/bin/sh\necho hi\n"));
        assert!(seed.user_data.contains("ssh_authorized_keys:"));
    }

    #[test]
    fn iso_has_label_and_files_where_the_descriptor_says() {
        let iso = iso9660(
            "cidata",
            &[("user-data", b"hello"), ("meta-data", b"id: 1\n")],
        );
        assert_eq!(iso.len() % SECTOR, 0);
        let pvd = &iso[16 * SECTOR..];
        assert_eq!(&pvd[1..6], b"CD001");
        assert_eq!(&pvd[40..48], b"cidata  ");
        let total = u32::from_le_bytes(pvd[80..84].try_into().unwrap()) as usize;
        assert_eq!(total * SECTOR, iso.len());
        // Walk the root directory from the descriptor's root record, as a reader would.
        let root = u32::from_le_bytes(pvd[158..162].try_into().unwrap()) as usize;
        let dir = &iso[root * SECTOR..(root + 1) * SECTOR];
        let mut at = 0;
        let mut found = Vec::new();
        while dir[at] != 0 {
            let len = dir[at] as usize;
            let id_len = dir[at + 32] as usize;
            let id = String::from_utf8_lossy(&dir[at + 33..at + 33 + id_len]).into_owned();
            let extent = u32::from_le_bytes(dir[at + 2..at + 6].try_into().unwrap()) as usize;
            let size = u32::from_le_bytes(dir[at + 10..at + 14].try_into().unwrap()) as usize;
            found.push((id, iso[extent * SECTOR..extent * SECTOR + size].to_vec()));
            at += len;
        }
        assert_eq!(found.len(), 4, "., .. and two files");
        assert_eq!(found[2], ("META-DATA.;1".into(), b"id: 1\n".to_vec()));
        assert_eq!(found[3], ("USER-DATA.;1".into(), b"hello".to_vec()));
    }
}
