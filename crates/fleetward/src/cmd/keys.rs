//! `fleetward keys …`: the offline root and targets keys, and the keys of
//! delegated targets roles (one per product line).
//!
//! These keys never touch the server: they live in a directory on the
//! release manager's machine (ideally an offline one), one JSON file per key,
//! optionally encrypted with a passphrase. Encryption is scrypt (key
//! derivation) and ChaCha20-Poly1305 (authenticated encryption) from the
//! RustCrypto project, with the key's role and id bound as associated data so
//! a file cannot be passed off as another key.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context as _, bail, ensure};
use chacha20poly1305::aead::{Aead as _, KeyInit as _, Payload};
use clap::Subcommand;
use fleetward_tuf::{
    DelegatedRole, Delegations, Expiry, PublicKey, ROLE_ROOT, ROLE_SNAPSHOT, ROLE_TARGETS,
    ROLE_TIMESTAMP, Root, Signed, SigningKey, Targets,
};
use fleetward_wire::release::{OnlineKeys, RepositoryStatus};
use rand::RngCore as _;
use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

use crate::client::Client;

#[derive(Debug, Subcommand)]
pub enum KeysCommand {
    /// Make offline root and targets keys in a new directory the server never reads.
    Init {
        /// The key directory (created; must not hold keys yet).
        #[arg(long)]
        dir: PathBuf,
        #[arg(long, default_value_t = 1)]
        root_keys: u8,
        #[arg(long, default_value_t = 1)]
        root_threshold: u8,
        #[arg(long, default_value_t = 1)]
        targets_keys: u8,
        #[arg(long, default_value_t = 1)]
        targets_threshold: u8,
        /// Encrypt every key with the passphrase in this file (first line).
        #[arg(long)]
        passphrase_file: Option<PathBuf>,
        /// scrypt cost (log2 N); 17 (128 MiB) unless you know better.
        #[arg(long, default_value_t = 17, hide = true)]
        kdf_log_n: u8,
    },
    /// Sign root metadata naming these keys and the server's online keys,
    /// and upload it: the first root, or a rotation (with --old-dir).
    Root {
        #[arg(long)]
        dir: PathBuf,
        /// The current root keys, when rotating to the keys in --dir.
        #[arg(long)]
        old_dir: Option<PathBuf>,
        #[arg(long, value_parser = humantime::parse_duration, default_value = "365d")]
        expires: Duration,
        #[arg(long)]
        passphrase_file: Option<PathBuf>,
        #[arg(long)]
        old_passphrase_file: Option<PathBuf>,
    },
    /// Delegate a product line's targets to a role with its own keys: make
    /// the keys in a new directory (for that product line's release
    /// managers), sign the new delegation with the targets keys in --dir,
    /// and move the product line's signed releases into the role. Run again
    /// with the same --role to re-key it.
    Delegate {
        /// The key directory with the top-level targets keys.
        #[arg(long)]
        dir: PathBuf,
        /// The delegated role's name, e.g. the hardware id `rev2`.
        #[arg(long)]
        role: String,
        /// Target path patterns the role may sign; releases are named
        /// `HARDWARE/VERSION/FILE`, so `rev2/*/*` is product line rev2.
        /// Default: `ROLE/*/*`.
        #[arg(long, value_delimiter = ',')]
        paths: Vec<String>,
        /// The new directory for the role's keys (created; must not hold keys).
        #[arg(long)]
        role_dir: PathBuf,
        #[arg(long, default_value_t = 1)]
        keys: u8,
        #[arg(long, default_value_t = 1)]
        threshold: u8,
        /// How long the new targets and role metadata stay valid.
        #[arg(long, value_parser = humantime::parse_duration, default_value = "365d")]
        expires: Duration,
        /// The passphrase of the targets keys in --dir.
        #[arg(long)]
        passphrase_file: Option<PathBuf>,
        /// Encrypt the role's new keys with the passphrase in this file.
        #[arg(long)]
        role_passphrase_file: Option<PathBuf>,
        #[arg(long, default_value_t = 17, hide = true)]
        kdf_log_n: u8,
    },
}

/// `ROLEDIR/role.json`: the keys of one delegated targets role (one
/// product line), kept apart from the top-level keys.
#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RoleManifest {
    pub role: String,
    pub threshold: u64,
    pub keys: Vec<String>,
}

/// A loaded delegated role key directory.
#[derive(Debug)]
pub struct RoleKeyDir {
    pub manifest: RoleManifest,
    pub keys: Vec<SigningKey>,
}

impl RoleKeyDir {
    pub fn is_role_dir(dir: &Path) -> bool {
        dir.join("role.json").exists()
    }

    pub fn load(dir: &Path, passphrase: Option<&[u8]>) -> anyhow::Result<RoleKeyDir> {
        let path = dir.join("role.json");
        let manifest: RoleManifest = serde_json::from_slice(
            &std::fs::read(&path).with_context(|| format!("reading {}", path.display()))?,
        )
        .with_context(|| format!("parsing {}", path.display()))?;
        ensure!(
            fleetward_tuf::valid_role_name(&manifest.role),
            "{} names a bad role {:?}",
            path.display(),
            manifest.role
        );
        let keys = manifest
            .keys
            .iter()
            .map(|name| load_key_file(dir, name, &manifest.role, passphrase))
            .collect::<anyhow::Result<_>>()?;
        Ok(RoleKeyDir { manifest, keys })
    }

    fn create(
        dir: &Path,
        role: &str,
        count: u8,
        threshold: u8,
        passphrase: Option<&[u8]>,
        log_n: u8,
    ) -> anyhow::Result<RoleKeyDir> {
        ensure!(
            fleetward_tuf::valid_role_name(role),
            "role name {role:?}: a lowercase letter, then lowercase letters, digits, - or _ (not root, targets, snapshot or timestamp)"
        );
        ensure!(
            (1..=count).contains(&threshold),
            "the threshold must be between 1 and --keys"
        );
        ensure!(
            !dir.join("role.json").exists() && !dir.join("keys.json").exists(),
            "{} holds keys already; refusing to overwrite them",
            dir.display()
        );
        make_private_dir(dir)?;
        let mut manifest = RoleManifest {
            role: role.to_owned(),
            threshold: u64::from(threshold),
            keys: Vec::new(),
        };
        let mut keys = Vec::new();
        for n in 1..=count {
            let (name, key) = make_key(dir, role, n, passphrase, log_n)?;
            manifest.keys.push(name);
            keys.push(key);
        }
        std::fs::write(dir.join("role.json"), serde_json::to_vec_pretty(&manifest)?)?;
        Ok(RoleKeyDir { manifest, keys })
    }

    /// Removes the key files `create` made (and the directory, if it made
    /// that too and nothing else is in it).
    fn discard(&self, dir: &Path, made_dir: bool) {
        for name in self
            .manifest
            .keys
            .iter()
            .map(String::as_str)
            .chain(["role.json"])
        {
            let _ = std::fs::remove_file(dir.join(name));
        }
        if made_dir {
            let _ = std::fs::remove_dir(dir);
        }
    }

    /// This role as a delegation names it.
    pub fn delegation(&self) -> anyhow::Result<Delegations> {
        let mut keys = std::collections::BTreeMap::new();
        let mut keyids = Vec::new();
        for key in &self.keys {
            let id = key.key_id()?;
            keys.insert(id.clone(), key.public());
            keyids.push(id);
        }
        Ok(Delegations {
            keys,
            roles: vec![DelegatedRole {
                name: self.manifest.role.clone(),
                keyids,
                threshold: self.manifest.threshold,
                terminating: true,
                paths: Some(vec!["*".to_owned()]),
                path_hash_prefixes: None,
            }],
        })
    }
}

fn make_private_dir(dir: &Path) -> anyhow::Result<()> {
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))?;
    }
    Ok(())
}

/// A fresh key for `role`, written (sealed) to `DIR/ROLE-N.json`.
fn make_key(
    dir: &Path,
    role: &str,
    n: u8,
    passphrase: Option<&[u8]>,
    log_n: u8,
) -> anyhow::Result<(String, SigningKey)> {
    let mut seed = Zeroizing::new([0u8; 32]);
    rand::rngs::OsRng.fill_bytes(seed.as_mut());
    let key = SigningKey::from_seed(seed.as_ref())?;
    let name = format!("{role}-{n}.json");
    let file = seal(role, &key, passphrase, log_n)?;
    fleetward_server::repo::write_private(&dir.join(&name), &serde_json::to_vec_pretty(&file)?)
        .with_context(|| format!("writing {name}"))?;
    Ok((name, key))
}

/// Loads one key file of `role` from `dir`.
fn load_key_file(
    dir: &Path,
    name: &str,
    role: &str,
    passphrase: Option<&[u8]>,
) -> anyhow::Result<SigningKey> {
    ensure!(
        name.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.' || b == b'_')
            && !name.starts_with('.'),
        "bad key file name {name:?}"
    );
    let path = dir.join(name);
    let file: KeyFile = serde_json::from_slice(
        &std::fs::read(&path).with_context(|| format!("reading {}", path.display()))?,
    )
    .with_context(|| format!("parsing {}", path.display()))?;
    ensure!(
        file.role == role,
        "{} is a {} key, listed as {role}",
        path.display(),
        file.role
    );
    open_key(&file, passphrase)
}

/// `KEYDIR/keys.json`: which keys are there and the thresholds.
#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Manifest {
    pub root_threshold: u64,
    pub targets_threshold: u64,
    pub root: Vec<String>,
    pub targets: Vec<String>,
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct KeyFile {
    role: String,
    keyid: String,
    public: PublicKey,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    seed: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    encrypted: Option<Encrypted>,
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Encrypted {
    kdf: String,
    log_n: u8,
    r: u32,
    p: u32,
    salt: String,
    cipher: String,
    nonce: String,
    ciphertext: String,
}

/// A loaded key directory.
#[derive(Debug)]
pub struct KeyDir {
    pub manifest: Manifest,
    pub root: Vec<SigningKey>,
    pub targets: Vec<SigningKey>,
}

fn derive(
    passphrase: &[u8],
    salt: &[u8],
    log_n: u8,
    r: u32,
    p: u32,
) -> anyhow::Result<Zeroizing<[u8; 32]>> {
    let params = scrypt::Params::new(log_n, r, p, 32)
        .map_err(|_| anyhow::anyhow!("invalid scrypt parameters"))?;
    let mut key = Zeroizing::new([0u8; 32]);
    scrypt::scrypt(passphrase, salt, &params, key.as_mut())
        .map_err(|_| anyhow::anyhow!("scrypt output length"))?;
    Ok(key)
}

pub fn read_passphrase(file: Option<&Path>) -> anyhow::Result<Option<Zeroizing<Vec<u8>>>> {
    let Some(file) = file else { return Ok(None) };
    let text =
        Zeroizing::new(std::fs::read(file).with_context(|| format!("reading {}", file.display()))?);
    let line = text.split(|b| *b == b'\n').next().unwrap_or_default();
    let line = line.strip_suffix(b"\r").unwrap_or(line);
    ensure!(
        !line.is_empty(),
        "the passphrase file {} is empty",
        file.display()
    );
    Ok(Some(Zeroizing::new(line.to_vec())))
}

fn seal(
    role: &str,
    key: &SigningKey,
    passphrase: Option<&[u8]>,
    log_n: u8,
) -> anyhow::Result<KeyFile> {
    let keyid = key.key_id()?;
    let public = key.public();
    let Some(passphrase) = passphrase else {
        return Ok(KeyFile {
            role: role.to_owned(),
            keyid,
            public,
            seed: Some(hex::encode(key.seed())),
            encrypted: None,
        });
    };
    let mut salt = [0u8; 16];
    let mut nonce = [0u8; 12];
    rand::rngs::OsRng.fill_bytes(&mut salt);
    rand::rngs::OsRng.fill_bytes(&mut nonce);
    let (r, p) = (8, 1);
    let derived = derive(passphrase, &salt, log_n, r, p)?;
    let cipher = chacha20poly1305::ChaCha20Poly1305::new(chacha20poly1305::Key::from_slice(
        derived.as_ref(),
    ));
    let aad = format!("fleetward key {role} {keyid}");
    let seed = Zeroizing::new(key.seed());
    let ciphertext = cipher
        .encrypt(
            chacha20poly1305::Nonce::from_slice(&nonce),
            Payload {
                msg: seed.as_ref(),
                aad: aad.as_bytes(),
            },
        )
        .map_err(|_| anyhow::anyhow!("encrypting the key"))?;
    Ok(KeyFile {
        role: role.to_owned(),
        keyid,
        public,
        seed: None,
        encrypted: Some(Encrypted {
            kdf: "scrypt".to_owned(),
            log_n,
            r,
            p,
            salt: hex::encode(salt),
            cipher: "chacha20poly1305".to_owned(),
            nonce: hex::encode(nonce),
            ciphertext: hex::encode(ciphertext),
        }),
    })
}

fn open_key(file: &KeyFile, passphrase: Option<&[u8]>) -> anyhow::Result<SigningKey> {
    let key = match (&file.seed, &file.encrypted) {
        (Some(seed), None) => SigningKey::from_seed(&Zeroizing::new(
            hex::decode(seed).context("seed is not hex")?,
        ))?,
        (None, Some(sealed)) => {
            let passphrase =
                passphrase.context("the keys are encrypted: pass --passphrase-file")?;
            ensure!(
                sealed.kdf == "scrypt" && sealed.cipher == "chacha20poly1305",
                "unknown key encryption"
            );
            ensure!(
                (10..=22).contains(&sealed.log_n),
                "implausible scrypt cost {}",
                sealed.log_n
            );
            let derived = derive(
                passphrase,
                &hex::decode(&sealed.salt)?,
                sealed.log_n,
                sealed.r,
                sealed.p,
            )?;
            let cipher = chacha20poly1305::ChaCha20Poly1305::new(
                chacha20poly1305::Key::from_slice(derived.as_ref()),
            );
            let nonce = hex::decode(&sealed.nonce)?;
            ensure!(nonce.len() == 12, "bad nonce");
            let aad = format!("fleetward key {} {}", file.role, file.keyid);
            let seed = Zeroizing::new(
                cipher
                    .decrypt(
                        chacha20poly1305::Nonce::from_slice(&nonce),
                        Payload {
                            msg: &hex::decode(&sealed.ciphertext)?,
                            aad: aad.as_bytes(),
                        },
                    )
                    .map_err(|_| {
                        anyhow::anyhow!(
                            "wrong passphrase (or a damaged key file) for key {}",
                            file.keyid
                        )
                    })?,
            );
            SigningKey::from_seed(&seed)?
        }
        _ => bail!(
            "key file for {} has neither or both of seed and encrypted",
            file.keyid
        ),
    };
    ensure!(
        key.public() == file.public && key.key_id()? == file.keyid,
        "key file {} does not match its public key",
        file.keyid
    );
    Ok(key)
}

impl KeyDir {
    pub fn load(dir: &Path, passphrase: Option<&[u8]>) -> anyhow::Result<KeyDir> {
        let path = dir.join("keys.json");
        let manifest: Manifest = serde_json::from_slice(
            &std::fs::read(&path).with_context(|| format!("reading {}", path.display()))?,
        )
        .with_context(|| format!("parsing {}", path.display()))?;
        let load = |role: &str, names: &[String]| -> anyhow::Result<Vec<SigningKey>> {
            names
                .iter()
                .map(|name| load_key_file(dir, name, role, passphrase))
                .collect()
        };
        let root = load(ROLE_ROOT, &manifest.root)?;
        let targets = load(ROLE_TARGETS, &manifest.targets)?;
        Ok(KeyDir {
            manifest,
            root,
            targets,
        })
    }

    pub fn targets_public(&self) -> Vec<PublicKey> {
        self.targets.iter().map(SigningKey::public).collect()
    }
}

#[allow(clippy::too_many_arguments)]
pub fn init(
    dir: &Path,
    root_keys: u8,
    root_threshold: u8,
    targets_keys: u8,
    targets_threshold: u8,
    passphrase: Option<&[u8]>,
    log_n: u8,
) -> anyhow::Result<Manifest> {
    ensure!(
        (1..=root_keys).contains(&root_threshold),
        "the root threshold must be between 1 and --root-keys"
    );
    ensure!(
        (1..=targets_keys).contains(&targets_threshold),
        "the targets threshold must be between 1 and --targets-keys"
    );
    ensure!(
        !dir.join("keys.json").exists(),
        "{} holds keys already; refusing to overwrite them",
        dir.display()
    );
    make_private_dir(dir)?;
    let mut manifest = Manifest {
        root_threshold: u64::from(root_threshold),
        targets_threshold: u64::from(targets_threshold),
        root: Vec::new(),
        targets: Vec::new(),
    };
    for (role, count) in [(ROLE_ROOT, root_keys), (ROLE_TARGETS, targets_keys)] {
        for n in 1..=count {
            let (name, _) = make_key(dir, role, n, passphrase, log_n)?;
            if role == ROLE_ROOT {
                manifest.root.push(name)
            } else {
                manifest.targets.push(name)
            }
        }
    }
    std::fs::write(dir.join("keys.json"), serde_json::to_vec_pretty(&manifest)?)?;
    Ok(manifest)
}

pub async fn run(
    client: Option<Client>,
    json: bool,
    command: &KeysCommand,
) -> anyhow::Result<ExitCode> {
    match command {
        KeysCommand::Init {
            dir,
            root_keys,
            root_threshold,
            targets_keys,
            targets_threshold,
            passphrase_file,
            kdf_log_n,
        } => {
            let passphrase = read_passphrase(passphrase_file.as_deref())?;
            let manifest = init(
                dir,
                *root_keys,
                *root_threshold,
                *targets_keys,
                *targets_threshold,
                passphrase.as_deref().map(|p| p.as_slice()),
                *kdf_log_n,
            )?;
            if json {
                crate::output::json(&manifest)?;
            } else {
                println!(
                    "Made {} root key(s) (threshold {}) and {} targets key(s) (threshold {}) in {}{}.",
                    manifest.root.len(),
                    manifest.root_threshold,
                    manifest.targets.len(),
                    manifest.targets_threshold,
                    dir.display(),
                    if passphrase.is_some() {
                        ", encrypted"
                    } else {
                        ", NOT encrypted (use --passphrase-file)"
                    }
                );
                println!(
                    "Keep this directory offline. Next: `fleetward keys root --dir {}`.",
                    dir.display()
                );
            }
        }
        KeysCommand::Root {
            dir,
            old_dir,
            expires,
            passphrase_file,
            old_passphrase_file,
        } => {
            let client =
                client.context("no operator token: pass --token or set FLEETWARD_TOKEN")?;
            let passphrase = read_passphrase(passphrase_file.as_deref())?;
            let keys = KeyDir::load(dir, passphrase.as_deref().map(|p| p.as_slice()))?;
            let old = match old_dir {
                Some(old_dir) => {
                    let old_passphrase = read_passphrase(
                        old_passphrase_file
                            .as_deref()
                            .or(passphrase_file.as_deref()),
                    )?;
                    Some(KeyDir::load(
                        old_dir,
                        old_passphrase.as_deref().map(|p| p.as_slice()),
                    )?)
                }
                None => None,
            };
            let online: OnlineKeys = client.get("/api/v1/tuf/online-keys", &[]).await?;
            let status: RepositoryStatus = client.get("/api/v1/tuf/status", &[]).await?;
            let version = status.root_version.map_or(1, |v| v + 1);
            ensure!(
                version == 1 || old.is_some(),
                "the repository has root version {}; rotating needs the current root keys (--old-dir)",
                version - 1
            );
            let expires = time::Duration::try_from(*expires).context("expiry too far")?;
            let root_public: Vec<PublicKey> = keys.root.iter().map(SigningKey::public).collect();
            let root = Root::new(
                version,
                Expiry::at(time::OffsetDateTime::now_utc() + expires),
                &[
                    (ROLE_ROOT, &root_public, keys.manifest.root_threshold),
                    (
                        ROLE_TARGETS,
                        &keys.targets_public(),
                        keys.manifest.targets_threshold,
                    ),
                    (
                        ROLE_SNAPSHOT,
                        &[serde_json::from_value(online.snapshot)?],
                        1,
                    ),
                    (
                        ROLE_TIMESTAMP,
                        &[serde_json::from_value(online.timestamp)?],
                        1,
                    ),
                ],
            )?;
            let mut signers: Vec<&SigningKey> = keys.root.iter().collect();
            if let Some(old) = &old {
                signers.extend(old.root.iter());
            }
            let bytes = Signed::sign(root, &signers)?.to_bytes()?;
            let status: RepositoryStatus = client
                .post_raw(
                    "/api/v1/tuf/root",
                    &[("content-type", "application/json".to_owned())],
                    bytes.into(),
                )
                .await
                .context("uploading root metadata")?;
            if json {
                crate::output::json(&status)?;
            } else {
                println!(
                    "Root metadata version {} is live.",
                    status.root_version.unwrap_or_default()
                );
            }
        }
        KeysCommand::Delegate {
            dir,
            role,
            paths,
            role_dir,
            keys,
            threshold,
            expires,
            passphrase_file,
            role_passphrase_file,
            kdf_log_n,
        } => {
            let client =
                client.context("no operator token: pass --token or set FLEETWARD_TOKEN")?;
            let passphrase = read_passphrase(passphrase_file.as_deref())?;
            let top_keys = KeyDir::load(dir, passphrase.as_deref().map(|p| p.as_slice()))?;
            let paths = if paths.is_empty() {
                vec![format!("{role}/*/*")]
            } else {
                paths.clone()
            };
            let expires = time::Duration::try_from(*expires).context("expiry too far")?;
            let expires = Expiry::at(time::OffsetDateTime::now_utc() + expires);
            // Read what is served before making keys, so a refusal leaves nothing behind.
            let current = served_targets(&client, &top_keys).await?;
            let role_passphrase = read_passphrase(role_passphrase_file.as_deref())?;
            let made_dir = !role_dir.exists();
            let role_keys = RoleKeyDir::create(
                role_dir,
                role,
                *keys,
                *threshold,
                role_passphrase.as_deref().map(|p| p.as_slice()),
                *kdf_log_n,
            )?;
            let published = async {
                let plan = delegation_plan(&client, current, &role_keys, paths, expires).await?;
                let targets_signers: Vec<&SigningKey> = top_keys.targets.iter().collect();
                let role_signers: Vec<&SigningKey> = role_keys.keys.iter().collect();
                let upload = fleetward_wire::release::DelegationUpload {
                    targets: serde_json::to_value(Signed::sign(plan.top, &targets_signers)?)?,
                    roles: [(
                        role.clone(),
                        serde_json::to_value(Signed::sign(plan.role, &role_signers)?)?,
                    )]
                    .into_iter()
                    .collect(),
                };
                let status: RepositoryStatus = client
                    .post("/api/v1/tuf/delegations", &upload)
                    .await
                    .context("uploading the delegation")?;
                anyhow::Ok((plan.paths, plan.moved, status))
            }
            .await;
            let (delegated_paths, moved, status) = match published {
                Ok(published) => published,
                Err(error) => {
                    // Keys nobody delegates to must not look like a role's keys.
                    role_keys.discard(role_dir, made_dir);
                    return Err(error.context(format!(
                        "nothing was delegated; the new keys in {} were removed",
                        role_dir.display()
                    )));
                }
            };
            if json {
                crate::output::json(&status)?;
            } else {
                for name in &moved {
                    println!("> {name} (now signed by {role})");
                }
                println!(
                    "Delegated {} to role {role}: {} key(s), threshold {}, in {}{}. Targets metadata version {} is live.",
                    delegated_paths.join(", "),
                    role_keys.keys.len(),
                    role_keys.manifest.threshold,
                    role_dir.display(),
                    if role_passphrase.is_some() {
                        ", encrypted"
                    } else {
                        ", NOT encrypted (use --role-passphrase-file)"
                    },
                    status.targets_version.unwrap_or_default()
                );
                println!(
                    "Its releases are signed with `fleetward release sign VERSION --keys {}`.",
                    role_dir.display()
                );
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// The served top-level targets metadata, checked against our own
/// targets keys (nothing is signed on top of metadata we did not sign).
async fn served_targets(client: &Client, keys: &KeyDir) -> anyhow::Result<Option<Targets>> {
    let status: RepositoryStatus = client.get("/api/v1/tuf/status", &[]).await?;
    let Some(version) = status.targets_version else {
        return Ok(None);
    };
    let bytes = client
        .get_bytes(&format!("/tuf/metadata/{version}.targets.json"))
        .await
        .context("reading the served targets metadata")?;
    let raw = fleetward_tuf::parse_signed::<Targets>(&bytes)?;
    fleetward_tuf::verify_role(
        &raw.canonical_signed,
        &raw.signatures,
        &crate::cmd::release::targets_trust(keys)?,
        ROLE_TARGETS,
    )
    .context("the served targets metadata is not signed by these targets keys")?;
    Ok(Some(raw.signed))
}

/// The metadata a delegation change signs.
struct DelegationPlan {
    top: Targets,
    role: Targets,
    paths: Vec<String>,
    /// Targets moving from the top-level role into the delegated one.
    moved: Vec<String>,
}

/// Adds (or re-keys) `role_keys`' role for `paths` in the delegations of
/// `current`, and moves the releases the role now covers out of the
/// top-level listing into the role's metadata.
async fn delegation_plan(
    client: &Client,
    current: Option<Targets>,
    role_keys: &RoleKeyDir,
    paths: Vec<String>,
    expires: Expiry,
) -> anyhow::Result<DelegationPlan> {
    let name = role_keys.manifest.role.clone();
    let mut top =
        current.unwrap_or_else(|| Targets::new(0, expires, std::collections::BTreeMap::new()));
    top.version += 1;
    top.expires = expires;
    let old_delegations = top.delegations.take();
    let mut delegations = old_delegations.clone().unwrap_or_default();
    let mine = role_keys.delegation()?;
    let mut role = mine.roles.into_iter().next().context("no role")?;
    role.paths = Some(paths.clone());
    let previous = delegations.roles.iter().position(|r| r.name == name);
    match previous {
        Some(at) => delegations.roles[at] = role,
        None => delegations.roles.push(role),
    }
    delegations.keys.extend(mine.keys);
    let used: std::collections::BTreeSet<String> = delegations
        .roles
        .iter()
        .flat_map(|r| r.keyids.iter().cloned())
        .collect();
    delegations.keys.retain(|id, _| used.contains(id));
    delegations.check_consistent()?;
    // Re-keying: the role keeps what it lists, re-signed with its new keys,
    // once its served metadata checks out under the delegation we signed.
    let (mut listing, role_version) = match previous {
        Some(_) => {
            let bytes = client
                .get_bytes(&format!("/tuf/metadata/{name}.json"))
                .await
                .with_context(|| format!("reading the served {name} metadata"))?;
            let raw = fleetward_tuf::parse_signed::<Targets>(&bytes)?;
            let old = old_delegations.as_ref().context("no current delegations")?;
            let old_role = old.role(&name).context("no current role")?;
            old.verify(old_role, &raw.canonical_signed, &raw.signatures)
                .with_context(|| {
                    format!("the served {name} metadata is not signed by its current keys")
                })?;
            (raw.signed.targets, raw.signed.version + 1)
        }
        None => (std::collections::BTreeMap::new(), 1),
    };
    let mut moved = Vec::new();
    let covered: Vec<String> = top
        .targets
        .keys()
        .filter(|target| {
            fleetward_server::repo::signing_role(Some(&delegations), target) == Some(name.as_str())
        })
        .cloned()
        .collect();
    for target in covered {
        if let Some(file) = top.targets.remove(&target) {
            listing.insert(target.clone(), file);
            moved.push(target);
        }
    }
    top.delegations = Some(delegations);
    Ok(DelegationPlan {
        top,
        role: Targets::new(role_version, expires, listing),
        paths,
        moved,
    })
}
