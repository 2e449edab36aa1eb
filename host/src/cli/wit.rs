//! `switchboard plugin wit`: the exact plugin interface this binary speaks, every supported
//! version, written out for authors whose tools build from WIT (componentize-py, jco,
//! wit-bindgen for C, …) — so nobody has to find the matching checkout.

use std::path::{Path, PathBuf};

/// One WIT package version: its directory name and files.
pub struct WitVersion {
    pub version: &'static str,
    /// Whether it is frozen (released) or still gaining changes.
    pub released: bool,
    pub files: [(&'static str, &'static str); 3],
}

/// Every version the server loads, newest first: the same text the server was built from.
pub const VERSIONS: [WitVersion; 3] = [
    WitVersion {
        version: "0.3.0",
        released: false,
        files: [
            ("types.wit", include_str!("../../../wit/types.wit")),
            ("hooks.wit", include_str!("../../../wit/hooks.wit")),
            ("host.wit", include_str!("../../../wit/host.wit")),
        ],
    },
    WitVersion {
        version: "0.2.0",
        released: true,
        files: [
            ("types.wit", include_str!("../../../wit/v0.2/types.wit")),
            ("hooks.wit", include_str!("../../../wit/v0.2/hooks.wit")),
            ("host.wit", include_str!("../../../wit/v0.2/host.wit")),
        ],
    },
    WitVersion {
        version: "0.1.0",
        released: true,
        files: [
            ("types.wit", include_str!("../../../wit/v0.1/types.wit")),
            ("hooks.wit", include_str!("../../../wit/v0.1/hooks.wit")),
            ("host.wit", include_str!("../../../wit/v0.1/host.wit")),
        ],
    },
];

#[derive(Debug, thiserror::Error)]
pub enum WitError {
    #[error("{0} already exists; choose another --out (nothing was overwritten)")]
    Exists(PathBuf),
    #[error("writing {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// Write every version into `out/switchboard-plugin-<version>/`; the directories made.
pub fn write_all(out: &Path) -> Result<Vec<PathBuf>, WitError> {
    let dirs: Vec<PathBuf> = VERSIONS
        .iter()
        .map(|v| out.join(format!("switchboard-plugin-{}", v.version)))
        .collect();
    // Checked first: a partial write next to an author's own files helps nobody.
    if let Some(existing) = dirs.iter().find(|d| d.exists()) {
        return Err(WitError::Exists(existing.clone()));
    }
    for (version, dir) in VERSIONS.iter().zip(&dirs) {
        std::fs::create_dir_all(dir).map_err(|source| WitError::Io {
            path: dir.clone(),
            source,
        })?;
        for (name, text) in version.files {
            let path = dir.join(name);
            std::fs::write(&path, text).map_err(|source| WitError::Io { path, source })?;
        }
    }
    Ok(dirs)
}
